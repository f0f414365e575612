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
    layer = PairwiseProducts(5)
    products, pair_present = layer(fields), layer.present(present)
    assert products.shape == (10, 4, 3) and pair_present.shape == (10, 4)
    p = 0
    for i in range(5):
        for j in range(i + 1, 5):
            torch.testing.assert_close(products[p], fields[:, i] * fields[:, j])
            assert torch.equal(pair_present[p], present[:, i] & present[:, j])
            assert (int(layer.rows[p]), int(layer.cols[p])) == (i, j)
            p += 1


def test_weighted_sum_matches_double_loop() -> None:
    fields = torch.randn(3, 4, 5)
    pair_weights = torch.rand(6, 3)  # (P, B)
    expected = torch.zeros(3, 5)
    p = 0
    for i in range(4):
        for j in range(i + 1, 4):
            expected += pair_weights[p].unsqueeze(-1) * fields[:, i] * fields[:, j]
            p += 1
    torch.testing.assert_close(PairwiseProducts(4).weighted_sum(fields, pair_weights), expected)


def test_attention_softmax_runs_over_the_pair_axis() -> None:
    torch.manual_seed(0)
    net = AttentionNet(embed_dim=6, attention_dim=4)
    products = torch.randn(10, 8, 6)  # (P, B, K)
    attention = net(products, torch.ones(10, 8, dtype=torch.bool))
    torch.testing.assert_close(attention.sum(dim=0), torch.ones(8))
    # Not the authors' size-1 axis bug, where every weight is 1.0:
    assert attention.max() < 1.0
    assert attention.std(dim=0).min() > 1e-3


def test_attention_matches_equation_five() -> None:
    net = AttentionNet(embed_dim=3, attention_dim=2)
    products = torch.randn(3, 2, 3)  # (P, B, K)
    w, b, h = net.project.weight, net.project.bias, net.h.weight[0]
    logits = torch.stack(
        [torch.stack([h @ torch.relu(w @ products[p, n] + b) for n in range(2)]) for p in range(3)]
    )
    expected = torch.exp(logits) / torch.exp(logits).sum(dim=0, keepdim=True)
    torch.testing.assert_close(net(products, torch.ones(3, 2, dtype=torch.bool)), expected)


def test_absent_pairs_get_no_attention_and_all_absent_stays_finite() -> None:
    net = AttentionNet(embed_dim=4, attention_dim=3)
    mask = torch.tensor([[True, False, True], [False, False, False]]).t()  # (P, B)
    attention = net(torch.randn(3, 2, 4), mask)
    assert attention[1, 0] == 0
    torch.testing.assert_close(attention[:, 0].sum(), torch.tensor(1.0))
    assert torch.isfinite(attention).all()
