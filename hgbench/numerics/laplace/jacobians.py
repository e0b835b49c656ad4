"""Per-example Jacobians, the likelihood-Hessian factor and the prior-weighted empirical NTK.

Notation. f(x; θ) has C outputs; Λ_n = ∇²_f −log p(y_n | f_n) is the Hessian of the negative
log-likelihood in the outputs (softmax: diag(p) − ppᵀ; unit-variance Gaussian: I). We write
Λ_n = M_n M_nᵀ with the factor

    categorical:  M_n = diag(√p) − p √pᵀ      (M Mᵀ = diag(p) − ppᵀ since Σ_c p_c = 1)
    Gaussian:     M_n = I

and call the K = C rows of L_n = M_nᵀ J_n (J_n = ∂f(x_n)/∂θ, C × P) the example's *factor rows*.
Every curvature in hgbench.numerics.laplace is built from them:

    GGN            Σ_n J_nᵀ Λ_n J_n = Σ_n L_nᵀ L_n                         (P × P)
    weighted NTK   Λ^½ᵀ K Λ^½ with K = J P0⁻¹ Jᵀ, i.e. L P0⁻¹ Lᵀ           (NK × NK)

and by Sylvester's identity log det(I + L P0⁻¹ Lᵀ) = log det(P0 + LᵀL) − log det P0, so the
kernel (function-space) and parametric views give the same number.

Everything is torch.func (vmap over examples of jacrev) and stays differentiable with respect to
whatever the inputs depend on: pass augmented inputs that carry an autograd graph back to the
augmentation magnitudes, and the rows, the NTK and every log-determinant built on them do too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jacrev, vmap

from hgbench.contracts.hparams import Params
from hgbench.contracts.task import Likelihood

# (params, batched inputs) -> (B, C) outputs; examples must not interact (no BatchNorm).
ModelFn = Callable[[Params, Tensor], Tensor]
Rows = dict[str, Tensor]  # parameter name -> (..., K, *param.shape) factor rows


def hessian_factor(f: Tensor, likelihood: Likelihood) -> Tensor:
    """M_n with M_n M_nᵀ = Λ_n, the NLL Hessian in the outputs: (B, C) -> (B, C, K), K = C."""
    if likelihood == Likelihood.CATEGORICAL:
        p = f.softmax(-1)  # (B, C)
        sqrt_p = p.sqrt()
        return torch.diag_embed(sqrt_p) - p[:, :, None] * sqrt_p[:, None, :]
    if likelihood == Likelihood.GAUSSIAN:
        eye = torch.eye(f.shape[-1], dtype=f.dtype, device=f.device)
        return eye.expand(f.shape[0], -1, -1)
    raise ValueError(f"no Hessian factor for likelihood {likelihood!r}")


def per_example_jacobians(
    fn: ModelFn, params: Params, inputs: Tensor, wrt: list[str], chunk_size: int | None = None
) -> tuple[dict[str, Tensor], Tensor]:
    """J[name] = ∂f(x_n)/∂params[name], (B, C, *shape), for the names in `wrt`, and f (B, C).

    vmap over examples of jacrev over parameters; parameters outside `wrt` are held fixed.
    `chunk_size` bounds how many examples vmap processes at once (peak memory).
    """
    fixed = {k: v for k, v in params.items() if k not in wrt}
    free = {k: params[k] for k in wrt}

    def single(p: Params, x: Tensor) -> tuple[Tensor, Tensor]:
        out = fn({**fixed, **p}, x.unsqueeze(0))[0]  # (C,)
        return out, out

    per_example = vmap(jacrev(single, has_aux=True), in_dims=(None, 0), chunk_size=chunk_size)
    jac, f = per_example(free, inputs)
    return jac, f


def factor_rows(jac: dict[str, Tensor], factor: Tensor) -> Rows:
    """L_n = M_nᵀ J_n per tensor: (B, C, *shape) with factor (B, C, K) -> (B, K, *shape)."""
    out = {}
    for name, j in jac.items():
        flat = j.reshape(j.shape[0], j.shape[1], -1)  # (B, C, P_t)
        out[name] = torch.einsum("bck,bcp->bkp", factor, flat).reshape(
            flat.shape[0], factor.shape[-1], *j.shape[2:]
        )
    return out


def linearize(
    fn: ModelFn,
    params: Params,
    inputs: Tensor,
    likelihood: Likelihood,
    wrt: list[str],
    chunk_size: int | None = 256,
) -> tuple[Rows, Tensor]:
    """Factor rows (B, K, *shape) per tensor in `wrt`, and the outputs f (B, C), in chunks."""
    rows: list[Rows] = []
    outs: list[Tensor] = []
    step = inputs.shape[0] if chunk_size is None else chunk_size
    for chunk in inputs.split(step):
        jac, f = per_example_jacobians(fn, params, chunk, wrt)
        rows.append(factor_rows(jac, hessian_factor(f, likelihood)))
        outs.append(f)
    if len(rows) == 1:
        return rows[0], outs[0]
    return {k: torch.cat([r[k] for r in rows]) for k in wrt}, torch.cat(outs)
