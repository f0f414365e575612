"""FM (Rendle 2010) and AFM (Xiao et al., IJCAI 2017) over fielded sparse inputs.

    FM:  y = w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j
    AFM: y = w0 + sum_i w_i x_i + p^T sum_{i<j} a_ij (v_i * v_j) x_i x_j      (eq. 5-6)

Both return, besides the score, an explanation per pair: the attention weight a_ij
(uniform over the instance's pairs for FM) and the signed contribution c_ij, whose sum
is the interaction term.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple

import torch
from torch import nn

from model.layers import AttentionNet, FieldEmbedding, LinearTerm, PairwiseProducts

ModelKind = Literal["afm", "fm"]


@dataclass(frozen=True)
class ModelConfig:
    kind: ModelKind
    num_features: int
    num_fields: int
    embed_dim: int = 256
    attention_dim: int = 8
    attention_dropout: float = 0.0
    """Dropout on the attention weights a_ij (AFM only)."""
    pair_dropout: float = 0.5
    """Dropout on the pooled pair vector (the paper's dropout on the interaction layer)."""

    def __post_init__(self) -> None:
        if self.kind not in ("afm", "fm"):
            raise ValueError(f"model kind must be 'afm' or 'fm', got {self.kind!r}")
        for name in ("attention_dropout", "pair_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Explanation(NamedTuple):
    score: torch.Tensor  # (B,)
    attention: torch.Tensor  # (B, P)
    contributions: torch.Tensor  # (B, P)
    field_linear: torch.Tensor  # (B, F): w_i x_i summed per field; score = w0 + these + contributions


class PairModel(nn.Module):
    """What FM and AFM share: embeddings, the linear term and the field pairs."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = FieldEmbedding(config.num_features, config.embed_dim)
        self.linear = LinearTerm(config.num_features)
        self.pairs = PairwiseProducts(config.num_fields)
        self.pair_dropout = nn.Dropout(config.pair_dropout)

    def forward(self, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(B, F, L) int64 indices and float32 weights -> (B,) scores."""
        fields = self.embedding(indices, weights)  # (B, F, K)
        linear = self.linear.bias + self.linear(indices, weights).sum(dim=1)
        return linear + self.interaction(fields, _present(weights))

    @torch.no_grad()
    def explain(self, indices: torch.Tensor, weights: torch.Tensor) -> Explanation:
        """Score with per-pair attention and contributions; use in eval mode."""
        fields = self.embedding(indices, weights)
        products = self.pairs(fields)  # (P, B, K)
        attention, contributions = self.pair_terms(products, self.pairs.present(_present(weights)))
        field_linear = self.linear(indices, weights)  # (B, F)
        score = self.linear.bias + field_linear.sum(dim=1) + contributions.sum(dim=0)
        return Explanation(score, attention.t(), contributions.t(), field_linear)

    def interaction(self, fields: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pair_terms(
        self, products: torch.Tensor, pair_present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, B, K) products, (P, B) pair mask -> attention a_ij and signed contributions
        c_ij, (P, B) each."""
        raise NotImplementedError


class FM(PairModel):
    def interaction(self, fields: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        # Rendle's O(FK) identity: sum_{i<j} v_i * v_j = ((sum v)^2 - sum v^2) / 2.
        pooled = 0.5 * (fields.sum(dim=1).square() - fields.square().sum(dim=1))  # (B, K)
        return self.pair_dropout(pooled).sum(dim=1)

    def pair_terms(
        self, products: torch.Tensor, pair_present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = pair_present.to(products.dtype)
        attention = mask / mask.sum(dim=0, keepdim=True).clamp(min=1.0)
        return attention, products.sum(dim=-1) * mask


class AFM(PairModel):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.attention = AttentionNet(config.embed_dim, config.attention_dim)
        self.attention_dropout = nn.Dropout(config.attention_dropout)
        # p starts at ones, as in the authors' code: the pooled vector is first read as FM reads it.
        self.p = nn.Parameter(torch.ones(config.embed_dim))

    def interaction(self, fields: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        attention = self.attention(self.pairs(fields), self.pairs.present(present))  # (P, B)
        pooled = self.pairs.weighted_sum(fields, self.attention_dropout(attention))  # (B, K)
        return self.pair_dropout(pooled) @ self.p

    def pair_terms(
        self, products: torch.Tensor, pair_present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        attention = self.attention(products, pair_present)
        return attention, attention * (products @ self.p)

    def attention_l2(self) -> torch.Tensor:
        """0.5 * ||W||^2, the only weight the paper regularises (lambda in eq. 7)."""
        return 0.5 * self.attention.project.weight.square().sum()


def _present(weights: torch.Tensor) -> torch.Tensor:
    """(B, F, L) -> (B, F): a field is in the instance when any of its entries is non-zero."""
    return (weights != 0).any(dim=2)


def build_model(config: ModelConfig) -> PairModel:
    return AFM(config) if config.kind == "afm" else FM(config)


def start_as_fm(afm: AFM) -> None:
    """Uniform attention (h = 0, so a_ij = 1/P) and p = P: the AFM scores exactly as an FM
    with its embeddings and linear term, and learns its attention from there."""
    with torch.no_grad():
        afm.attention.h.weight.zero_()
        afm.p.fill_(float(afm.pairs.num_pairs))


def init_from_fm(afm: AFM, fm: FM) -> None:
    """The paper's protocol: AFM starts from a trained FM's embeddings and biases.

    p is set to P * 1 (P pairs) rather than the authors' 1: with near-uniform attention
    (a_ij ~ 1/P) the AFM then starts where the FM ended instead of at 1/P of its
    interaction term, and does not spend its first epochs relearning the scale.
    """
    if fm.embedding.embedding.weight.shape != afm.embedding.embedding.weight.shape:
        raise ValueError(
            "FM and AFM feature tables differ: "
            f"{tuple(fm.embedding.embedding.weight.shape)} vs {tuple(afm.embedding.embedding.weight.shape)}"
        )
    afm.embedding.load_state_dict(fm.embedding.state_dict())
    afm.linear.load_state_dict(fm.linear.state_dict())
    with torch.no_grad():
        afm.p.fill_(float(afm.pairs.num_pairs))
