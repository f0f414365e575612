"""FM and AFM: the equations, FM-equivalence of uniform attention, explanations."""

import pytest
import torch

from model.afm import AFM, FM, ModelConfig, build_model, init_from_fm, start_as_fm


def _config(kind: str = "afm", **overrides: object) -> ModelConfig:
    base = dict(kind=kind, num_features=30, num_fields=4, embed_dim=5, attention_dim=3,
                pair_dropout=0.0)
    return ModelConfig(**{**base, **overrides})  # type: ignore[arg-type]


def _batch(batch: int = 16, fields: int = 4, entries: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    indices = torch.randint(1, 30, (batch, fields, entries))
    weights = torch.rand(batch, fields, entries)
    weights[0, 1] = 0.0  # an empty field
    return indices, weights


def _randomise(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()


def test_fm_matches_brute_force_pair_sum() -> None:
    fm = FM(_config("fm"))
    _randomise(fm)
    fm.eval()
    indices, weights = _batch()
    v = fm.embedding(indices, weights)
    expected = fm.linear.bias + fm.linear(indices, weights).sum(1)
    for i in range(4):
        for j in range(i + 1, 4):
            expected = expected + (v[:, i] * v[:, j]).sum(-1)
    torch.testing.assert_close(fm(indices, weights), expected)


def test_afm_with_uniform_attention_equals_fm() -> None:
    fm, afm = FM(_config("fm")), AFM(_config("afm"))
    _randomise(fm)
    init_from_fm(afm, fm)
    indices, weights = _batch()
    weights[:, :, :] = weights.abs() + 0.1  # every pair present: uniform weight 1/P
    with torch.no_grad():
        afm.attention.h.weight.zero_()  # equal logits -> a_ij = 1/P, and p = P * 1 from the FM
    fm.eval(), afm.eval()
    torch.testing.assert_close(afm(indices, weights), fm(indices, weights), rtol=1e-5, atol=1e-5)


def test_an_afm_started_as_fm_scores_as_the_fm_of_its_own_vectors() -> None:
    afm = AFM(_config("afm"))
    _randomise(afm)
    start_as_fm(afm)
    fm = FM(_config("fm"))
    fm.embedding.load_state_dict(afm.embedding.state_dict())
    fm.linear.load_state_dict(afm.linear.state_dict())
    indices, weights = _batch()
    weights[:, :, :] = weights.abs() + 0.1  # every pair present: uniform weight 1/P
    fm.eval(), afm.eval()
    torch.testing.assert_close(afm(indices, weights), fm(indices, weights), rtol=1e-5, atol=1e-5)


def test_explanations_decompose_the_score() -> None:
    for kind in ("afm", "fm"):
        model = build_model(_config(kind))
        _randomise(model)
        model.eval()
        indices, weights = _batch()
        e = model.explain(indices, weights)
        torch.testing.assert_close(e.score, model(indices, weights), rtol=1e-5, atol=1e-5)
        rebuilt = model.linear.bias + e.field_linear.sum(1) + e.contributions.sum(1)
        torch.testing.assert_close(e.score, rebuilt)
        torch.testing.assert_close(e.attention.sum(1), torch.ones(16))
        # Pairs with the empty field 1 of instance 0 take no part.
        assert e.attention[0, 0] == 0 and e.contributions[0, 0] == 0


def test_afm_attention_is_not_uniform_on_structured_input() -> None:
    model = AFM(_config("afm"))
    _randomise(model)
    e = model.explain(*_batch())
    assert (e.attention.max(1).values - e.attention.min(1).values).min() > 1e-3


def test_dropout_only_in_training() -> None:
    model = AFM(_config("afm", pair_dropout=0.5, attention_dropout=0.3))
    _randomise(model)
    indices, weights = _batch()
    model.eval()
    assert torch.equal(model(indices, weights), model(indices, weights))
    model.train()
    assert not torch.equal(model(indices, weights), model(indices, weights))


def test_attention_l2_covers_w_only() -> None:
    model = AFM(_config("afm"))
    expected = 0.5 * model.attention.project.weight.square().sum()
    torch.testing.assert_close(model.attention_l2(), expected)


def test_init_from_fm_copies_embeddings_and_biases() -> None:
    fm, afm = FM(_config("fm")), AFM(_config("afm"))
    _randomise(fm)
    init_from_fm(afm, fm)
    assert torch.equal(afm.embedding.embedding.weight, fm.embedding.embedding.weight)
    assert torch.equal(afm.linear.weight.weight, fm.linear.weight.weight)
    assert torch.equal(afm.linear.bias, fm.linear.bias)
    assert torch.equal(afm.p, torch.full_like(afm.p, afm.pairs.num_pairs))
    with pytest.raises(ValueError, match="feature tables differ"):
        init_from_fm(afm, FM(_config("fm", num_features=31)))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"kind": "ffm"}, "kind"), ({"pair_dropout": 1.0}, "pair_dropout"),
     ({"num_fields": 1}, "2 fields")],
)
def test_invalid_config_is_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(_config(**{"kind": "afm", **overrides}))  # type: ignore[arg-type]
