"""Each layer against a brute-force double loop over field pairs."""

import torch

from model.layers import AttentionNet, FieldEmbedding, LinearTerm, PairwiseProducts


def test_field_embedding_is_weighted_sum_of_entries() -> None:
    layer = FieldEmbedding(num_features=10, embed_dim=3)
    indices = torch.tensor([[[1, 2], [3, 0]]])
    weights = torch.tensor([[[0.5, 2.0], [1.0, 0.0]]])
    table = layer.embedding.weight
    expected = torch.stack([0.5 * table[1] + 2.0 * table[2], table[3]])
    torch.testing.assert_close(layer(indices, weights)[0], expected)


def test_padding_row_starts_at_zero() -> None:
    assert torch.count_nonzero(FieldEmbedding(5, 4).embedding.weight[0]) == 0


def test_linear_term_per_field() -> None:
    layer = LinearTerm(num_features=6)
    with torch.no_grad():
        layer.weight.weight.copy_(torch.arange(6.0).unsqueeze(1))
    indices = torch.tensor([[[1, 2], [5, 0]]])
    weights = torch.tensor([[[1.0, 0.5], [2.0, 0.0]]])
    torch.testing.assert_close(layer(indices, weights), torch.tensor([[1.0 + 1.0, 10.0]]))


def test_pairwise_products_match_double_loop() -> None:
    fields = torch.randn(4, 5, 3)
    present = torch.rand(4, 5) > 0.3
    products, pair_present = PairwiseProducts(5)(fields, present)
    p = 0
    for i in range(5):
        for j in range(i + 1, 5):
            torch.testing.assert_close(products[:, p], fields[:, i] * fields[:, j])
            assert torch.equal(pair_present[:, p], present[:, i] & present[:, j])
            p += 1
    assert products.shape == (4, 10, 3)


def test_attention_softmax_runs_over_the_pair_axis() -> None:
    torch.manual_seed(0)
    net = AttentionNet(embed_dim=6, attention_dim=4)
    products = torch.randn(8, 10, 6)
    attention = net(products, torch.ones(8, 10, dtype=torch.bool))
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(8))
    # Not the authors' size-1 axis bug, where every weight is 1.0:
    assert attention.max() < 1.0
    assert attention.std(dim=1).min() > 1e-3


def test_attention_matches_equation_five() -> None:
    net = AttentionNet(embed_dim=3, attention_dim=2)
    products = torch.randn(2, 3, 3)
    w, b, h = net.project.weight, net.project.bias, net.h.weight[0]
    logits = torch.stack(
        [torch.stack([h @ torch.relu(w @ products[n, p] + b) for p in range(3)]) for n in range(2)]
    )
    expected = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
    torch.testing.assert_close(net(products, torch.ones(2, 3, dtype=torch.bool)), expected)


def test_absent_pairs_get_no_attention_and_all_absent_stays_finite() -> None:
    net = AttentionNet(embed_dim=4, attention_dim=3)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    attention = net(torch.randn(2, 3, 4), mask)
    assert attention[0, 1] == 0
    torch.testing.assert_close(attention[0].sum(), torch.tensor(1.0))
    assert torch.isfinite(attention).all()
