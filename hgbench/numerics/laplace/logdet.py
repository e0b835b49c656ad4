"""Log-determinants of curvature plus prior, in the whitened form that stays stable in float32.

Every log-det ratio log det(P0 + G) − log det P0 (P0 = diag(δ) the prior precision, G ⪰ 0) is
computed as log det(I + P0^{-1/2} G P0^{-1/2}): the matrix is ⪰ I, so its Cholesky factor exists
with a diagonal ≥ 1 whatever the scale of δ or G, and the two large log det terms never cancel
in floating point. In float64 the results are exact up to rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor


def logdet_spd(a: Tensor) -> Tensor:
    """log det of symmetric positive-definite matrices (..., n, n) via Cholesky: 2 Σ log diag L.

    Only the lower triangle is read (a matrix built symmetric may differ above it by rounding).
    The gradient is A⁻¹ from the same factor (`cholesky_inverse`, about n³ flops): a third of
    what autograd's Cholesky backward costs (two triangular solves against full matrices and
    their products), the dominant cost of a full-GGN step. Falls back to the eigenvalues
    (clamped at the dtype's tiny) where Cholesky fails, which for the ⪰ I matrices built here
    happens only at float32 rounding's edge.
    """
    chol, info = torch.linalg.cholesky_ex(a.detach())
    if bool((info == 0).all()):
        return _CholeskyLogdet.apply(a, chol)
    eig = torch.linalg.eigvalsh(a)
    return eig.clamp_min(torch.finfo(a.dtype).tiny).log().sum(-1)


class _CholeskyLogdet(torch.autograd.Function):
    """log det A from its Cholesky factor L; d/dA = A⁻¹ = L⁻ᵀL⁻¹ (first order only)."""

    @staticmethod
    def forward(ctx, a: Tensor, chol: Tensor) -> Tensor:
        ctx.save_for_backward(chol)
        return 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (chol,) = ctx.saved_tensors
        return grad[..., None, None] * torch.cholesky_inverse(chol), None


def plus_identity(a: Tensor) -> Tensor:
    """a + I in place on a fresh matrix (an n × n product no backward pass needs): no second
    n × n buffer, which for the full GGN's P × P matrices is tens of MB."""
    a.diagonal(dim1=-2, dim2=-1).add_(1.0)
    return a


def identity_plus_gram_logdet(x: Tensor, side: str = "auto") -> Tensor:
    """log det(I + x xᵀ) = log det(I + xᵀ x) for x (..., r, p) (Sylvester's identity).

    `side`: "rows" forms the r × r kernel matrix, "cols" the p × p parametric one, "auto" the
    smaller of the two (same value, different cost).
    """
    r, p = x.shape[-2], x.shape[-1]
    if side == "auto":
        side = "rows" if r <= p else "cols"
    if side == "rows":
        gram = x @ x.mT
    elif side == "cols":
        gram = x.mT @ x
    else:
        raise ValueError(f"side must be 'rows', 'cols' or 'auto', got {side!r}")
    return logdet_spd(plus_identity(gram))


def scaled_gram_logdet(gram: Tensor, delta: Tensor) -> Tensor:
    """log det(diag(δ) + G) − Σ log δ = log det(I + D^{-1/2} G D^{-1/2}), for G (n, n), δ (n,)."""
    s = delta.rsqrt()
    return logdet_spd(plus_identity(s[:, None] * gram * s[None, :]))


def diagonal_logdet(diag: Tensor, delta: Tensor) -> Tensor:
    """Σ log(δ + g) − Σ log δ = Σ log1p(g / δ) for a diagonal curvature g ⪰ 0."""
    return torch.log1p(diag / delta).sum()


def kron_logdet(eig_out: Tensor, eig_in: Tensor, delta: Tensor) -> Tensor:
    """log det(B ⊗ A + δ I) − n log δ = Σ_ij log1p(λ_i μ_j / δ), B, A ⪰ 0, scalar δ."""
    return torch.log1p(torch.outer(eig_out.clamp_min(0), eig_in.clamp_min(0)) / delta).sum()
