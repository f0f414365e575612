"""The building blocks of FM and AFM (Xiao et al., IJCAI 2017, eq. 1-6).

An instance is F fields; a field holds up to L (index, weight) entries into one shared
feature table, and a field's vector is the weighted sum of its entries' embeddings.
Index 0 is padding (weight 0). Shapes: B batch, F fields, L entries, K embedding size,
P = F (F - 1) / 2 field pairs, T attention size.

Per-pair tensors are laid out pair-major, (P, B, ...): gathering field rows is then a copy of
contiguous (B, K) blocks, and its backward pass an add of such blocks rather than a
scattered `index_put`.
"""

from __future__ import annotations

import torch
from torch import nn


class FieldEmbedding(nn.Module):
    """Weighted bag of embeddings per field: (B, F, L) indices and weights -> (B, F, K)."""

    def __init__(self, num_features: int, embed_dim: int, init_std: float = 0.01) -> None:
        super().__init__()
        if num_features < 2 or embed_dim < 1:
            raise ValueError(f"need num_features >= 2 and embed_dim >= 1, got {num_features}, {embed_dim}")
        self.embedding = nn.Embedding(num_features, embed_dim)
        nn.init.normal_(self.embedding.weight, std=init_std)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        vectors = self.embedding(indices)  # (B, F, L, K)
        return (vectors * weights.unsqueeze(-1)).sum(dim=2)  # (B, F, K)


class LinearTerm(nn.Module):
    """w0 + sum_i w_i x_i, returned per field so that explanations can show each term."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.weight = nn.Embedding(num_features, 1)
        nn.init.zeros_(self.weight.weight)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(B, F, L) -> (B, F): each field's w_i x_i; the global bias is `self.bias`."""
        return (self.weight(indices).squeeze(-1) * weights).sum(dim=2)


class PairwiseProducts(nn.Module):
    """Element-wise products v_i x_i * v_j x_j for every field pair i < j (eq. 2), and the
    pair-weighted sums over them.

    The pair indices are computed once; there is no Python loop over pairs.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    flat: torch.Tensor

    def __init__(self, num_fields: int) -> None:
        super().__init__()
        if num_fields < 2:
            raise ValueError(f"pairwise interactions need at least 2 fields, got {num_fields}")
        self.num_fields = num_fields
        rows, cols = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.register_buffer("flat", rows * num_fields + cols, persistent=False)

    @property
    def num_pairs(self) -> int:
        return int(self.rows.numel())

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        """(B, F, K) field vectors -> (P, B, K) products, pair-major."""
        by_field = fields.transpose(0, 1).contiguous()  # (F, B, K)
        return by_field.index_select(0, self.rows) * by_field.index_select(0, self.cols)

    def present(self, present: torch.Tensor) -> torch.Tensor:
        """(B, F) field presence -> (P, B): both fields of the pair are in the instance."""
        by_field = present.t()  # (F, B)
        return by_field[self.rows] & by_field[self.cols]

    def weighted_sum(self, fields: torch.Tensor, pair_weights: torch.Tensor) -> torch.Tensor:
        """sum_{i<j} a_ij (v_i * v_j) as sum_i v_i * (A V)_i, A the (B, F, F) upper-triangular
        matrix of the (P, B) weights: a batched matmul instead of per-pair (B, P, K) tensors."""
        batch, f = fields.shape[0], self.num_fields
        # Batch-major and contiguous: bmm takes a slow per-instance path on strided batches.
        matrix = pair_weights.new_zeros(batch, f * f).index_copy(1, self.flat, pair_weights.t())
        return (fields * torch.bmm(matrix.view(batch, f, f), fields)).sum(dim=1)  # (B, K)


class AttentionNet(nn.Module):
    """a_ij = softmax over pairs of h^T ReLU(W (v_i * v_j) x_i x_j + b) (eq. 5).

    Pairs with an empty field are not in the instance (x_i x_j = 0) and get no weight.
    There is no dropout inside this network: the paper found it unstable.
    """

    def __init__(self, embed_dim: int, attention_dim: int) -> None:
        super().__init__()
        if attention_dim < 1:
            raise ValueError(f"attention_dim must be >= 1, got {attention_dim}")
        self.project = nn.Linear(embed_dim, attention_dim)  # W, b
        self.h = nn.Linear(attention_dim, 1, bias=False)
        nn.init.xavier_normal_(self.project.weight)
        nn.init.zeros_(self.project.bias)
        nn.init.normal_(self.h.weight, std=1.0 / attention_dim**0.5)

    def forward(self, products: torch.Tensor, pair_present: torch.Tensor) -> torch.Tensor:
        """(P, B, K), (P, B) -> (P, B) weights summing to 1 over the pair axis."""
        logits = self.h(torch.relu(self.project(products))).squeeze(-1)  # (P, B)
        # A large finite negative rather than -inf: an instance with no pair left still
        # gets finite, uniform weights over zero products instead of NaN.
        logits = torch.where(pair_present, logits, torch.full_like(logits, -1e9))
        return torch.softmax(logits, dim=0)
