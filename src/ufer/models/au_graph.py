"""AU co-occurrence graph and the dense two-layer GCN head (MTAC eqs 6-7, ULC-AG eqs 5-6).

The adjacency is a dense M x M tensor with row p, column q = P(AU_p | AU_q). It is
asymmetric and row-normalised (not the symmetric D^-1/2 A D^-1/2 of graph libraries),
as the papers specify, so no graph library is used.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def au_cooccurrence_graph(
    au: Tensor, mask: Tensor | None = None, threshold: float = 0.5
) -> Tensor:
    """Conditional co-occurrence matrix A[p, q] = P(AU_p | AU_q) (MTAC eq 6).

    A[p, q] = count(p and q present) / count(q present), both counts taken over the rows
    where AU_p and AU_q are both known. Hence A[q, q] = 1 for an AU present at least once,
    and an AU never present (among known rows) has an all-zero column, its diagonal
    included. A is asymmetric in general.

    Args:
        au: (N, M) AU occurrences in {0, 1} or intensities; present means ``>= threshold``.
        mask: (N, M) bool, True where the AU label is known; None means all known.
        threshold: binarisation threshold (0.5 for [0, 1] intensities or 0/1 labels).

    Returns:
        (M, M) float32 A on the CPU with entries in [0, 1]. The counts are float64 CPU
        matmuls, exact for any realistic N and immune to reduced-precision (TF32) settings.
    """
    known = torch.ones_like(au, dtype=torch.bool) if mask is None else mask
    known = known.to("cpu", torch.float64)  # (N, M)
    present = (au >= threshold).to("cpu", torch.float64) * known  # (N, M)
    both = present.T @ present  # (M, M): [p, q] = count(p and q present)
    given = known.T @ present  # (M, M): [p, q] = count(q present, p known)
    graph = torch.where(given > 0, both / given.clamp(min=1.0), torch.zeros_like(both))
    return graph.float()


def row_normalize(adjacency: Tensor) -> Tensor:
    """A_bar: each row of a non-negative (M, M) matrix divided by its sum (MTAC eq 7).

    Returns:
        (M, M) with row sums 1, or 0 for a row that sums to 0 (that row stays zero).
    """
    total = adjacency.sum(1, keepdim=True)
    return torch.where(total > 0, adjacency / total.clamp(min=1e-12), torch.zeros_like(adjacency))


def random_graph(num_aus: int, generator: torch.Generator | None = None) -> Tensor:
    """(M, M) adjacency with U(0, 1) entries: the 'random edges' ablation of MTAC table III."""
    return torch.rand(num_aus, num_aus, generator=generator)


def ones_graph(num_aus: int) -> Tensor:
    """(M, M) all-ones adjacency: the 'fixed edges' ablation of MTAC table III."""
    return torch.ones(num_aus, num_aus)


class GCNLayer(nn.Module):
    """One dense graph convolution X' = LeakyReLU(A_bar X W_g) (MTAC eq 7), no bias.

    Args:
        in_features: F, node feature size in.
        out_features: F', node feature size out.
        negative_slope: LeakyReLU slope; the papers give none, PyTorch's default is used.
    """

    def __init__(self, in_features: int, out_features: int, negative_slope: float = 0.01):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.negative_slope = negative_slope
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: Tensor, adjacency: Tensor) -> Tensor:
        """x: (B, M, F), adjacency: (M, M) row-normalised A_bar -> (B, M, F')."""
        return F.leaky_relu(adjacency @ (x @ self.weight), self.negative_slope)


class AUGraphHead(nn.Module):
    """AU branch: per-AU node features, GCN layers over A_bar, per-AU logits (MTAC III-D).

    f (B, D) -> M per-AU linear maps -> X (B, M, node_dim) -> ``layers`` x GCNLayer ->
    per-node linear node_dim -> 1 -> s (B, M), the AU logits and "semantic representation"
    s_i used by the templates (MTAC eqs 9-11); p = sigmoid(s).

    Args:
        in_features: D, size of the pooled backbone feature.
        adjacency: (M, M) non-negative A (from :func:`au_cooccurrence_graph`,
            :func:`random_graph` or :func:`ones_graph`); stored row-normalised as the
            buffer ``adjacency`` (saved in the state dict, not trained).
        node_dim: B in the papers, 64.
        layers: number of GCN layers, 2 in the papers.
        negative_slope: LeakyReLU slope of the GCN layers.
    """

    adjacency: Tensor

    def __init__(
        self,
        in_features: int,
        adjacency: Tensor,
        node_dim: int = 64,
        layers: int = 2,
        negative_slope: float = 0.01,
    ):
        super().__init__()
        num_aus = adjacency.shape[0]
        self.register_buffer("adjacency", row_normalize(adjacency.float()))
        bound_in, bound_out = 1.0 / math.sqrt(in_features), 1.0 / math.sqrt(node_dim)
        self.node_weight = nn.Parameter(
            torch.empty(num_aus, in_features, node_dim).uniform_(-bound_in, bound_in)
        )
        self.node_bias = nn.Parameter(torch.empty(num_aus, node_dim).uniform_(-bound_in, bound_in))
        self.gcn = nn.ModuleList(
            GCNLayer(node_dim, node_dim, negative_slope) for _ in range(layers)
        )
        self.out_weight = nn.Parameter(
            torch.empty(num_aus, node_dim).uniform_(-bound_out, bound_out)
        )
        self.out_bias = nn.Parameter(torch.empty(num_aus).uniform_(-bound_out, bound_out))

    def forward(self, features: Tensor) -> Tensor:
        """features: (B, D) -> AU logits s: (B, M)."""
        x = torch.einsum("bd,mdk->bmk", features, self.node_weight) + self.node_bias  # (B, M, K)
        for layer in self.gcn:
            x = layer(x, self.adjacency)  # (B, M, K)
        return torch.einsum("bmk,mk->bm", x, self.out_weight) + self.out_bias  # (B, M)
