"""FM and AFM against a brute-force double loop over field pairs: scores, explanations and
the gradients of every parameter, with empty fields, padding entries and multi-entry fields."""

import pytest
import torch

from model.afm import AFM, ModelConfig, PairModel, build_model


def _model(kind: str, fields: int) -> PairModel:
    torch.manual_seed(3)
    config = ModelConfig(kind=kind, num_features=40, num_fields=fields, embed_dim=6,  # type: ignore[arg-type]
                         attention_dim=4, pair_dropout=0.0)
    model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.5)
    return model


def _batch(fields: int, entries: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(4)
    indices = torch.randint(1, 40, (7, fields, entries))
    weights = torch.rand(7, fields, entries) + 0.1
    weights[0, 1] = 0.0  # an empty field
    weights[1, :, :] = 0.0
    weights[1, 2, 0] = 1.0  # one field only: no pair at all
    weights[2, 0] = weights[2, 3] = 0.0  # two empty fields
    if entries > 1:
        indices[3, :, -1] = 0  # padding entries
        weights[3, :, -1] = 0.0
    return indices, weights


def _reference(model: PairModel, indices: torch.Tensor, weights: torch.Tensor) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score, attention (B, P), contributions (B, P), one instance and one pair at a time."""
    table, linear = model.embedding.embedding.weight, model.linear.weight.weight[:, 0]
    scores, attentions, contributions = [], [], []
    for n in range(indices.shape[0]):
        v = [(weights[n, f].unsqueeze(-1) * table[indices[n, f]]).sum(0) for f in range(indices.shape[1])]
        present = [bool((weights[n, f] != 0).any()) for f in range(indices.shape[1])]
        pairs = [(i, j) for i in range(len(v)) for j in range(i + 1, len(v))]
        inside = torch.tensor([present[i] and present[j] for i, j in pairs])
        if isinstance(model, AFM):
            net = model.attention
            w, b, h = net.project.weight, net.project.bias, net.h.weight[0]
            logits = torch.stack([h @ torch.relu(w @ (v[i] * v[j]) + b) for i, j in pairs])
            a = torch.softmax(logits.masked_fill(~inside, float("-inf")), 0) if inside.any() else (
                torch.full((len(pairs),), 1.0 / len(pairs)))
            c = torch.stack([a[q] * (model.p @ (v[i] * v[j])) for q, (i, j) in enumerate(pairs)])
        else:
            a = inside.float() / max(int(inside.sum()), 1)
            c = torch.stack([(v[i] * v[j]).sum() * inside[q] for q, (i, j) in enumerate(pairs)])
        scores.append(model.linear.bias + (linear[indices[n]] * weights[n]).sum() + c.sum())
        attentions.append(a)
        contributions.append(c)
    return torch.stack(scores), torch.stack(attentions), torch.stack(contributions)


def _gradients(model: PairModel, score: torch.Tensor) -> dict[str, torch.Tensor]:
    names, params = zip(*model.named_parameters(), strict=True)
    coefficients = torch.linspace(-1.0, 2.0, score.numel())
    return dict(zip(names, torch.autograd.grad((score * coefficients).sum(), params), strict=True))


@pytest.mark.parametrize("kind", ["afm", "fm"])
@pytest.mark.parametrize(("fields", "entries"), [(5, 1), (4, 3)])
def test_scores_and_gradients_match_the_double_loop(kind: str, fields: int, entries: int) -> None:
    model = _model(kind, fields)
    indices, weights = _batch(fields, entries)
    model.train()  # dropout rates are 0: the training path, deterministic
    got = _gradients(model, model(indices, weights))
    expected_score = _reference(model, indices, weights)[0]
    expected = _gradients(model, expected_score)
    torch.testing.assert_close(model(indices, weights), expected_score, rtol=1e-5, atol=1e-5)
    names = {"embedding.embedding.weight", "linear.weight.weight", "linear.bias"}
    if kind == "afm":
        names |= {"attention.project.weight", "attention.project.bias", "attention.h.weight", "p"}
    assert set(got) == names
    for name in names:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)
    if kind == "afm":  # the attention network receives a gradient at all
        assert got["attention.project.weight"].abs().sum() > 0


@pytest.mark.parametrize("kind", ["afm", "fm"])
def test_explanations_match_the_double_loop(kind: str) -> None:
    model = _model(kind, 4)
    model.eval()
    indices, weights = _batch(4, 2)
    explanation = model.explain(indices, weights)
    score, attention, contributions = _reference(model, indices, weights)
    torch.testing.assert_close(explanation.score, score, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(explanation.attention, attention, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(explanation.contributions, contributions, rtol=1e-5, atol=1e-6)
