"""Implicit-function-theorem hypergradients at an (approximate) inner optimum.

    dL_V/dλ = ∂L_V/∂λ − (∂L_V/∂w) H⁻¹ ∂²L_T/∂w∂λᵀ,   H = ∂²L_T/∂w∂wᵀ

The inverse-Hessian-vector product comes from any `hgbench.numerics.linalg` solver, so the exact
reference (dense or converged CG) and the approximate methods (Neumann, CG with few iterations)
share it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from hgbench.numerics.functional import LinearizedGradient, TensorDict, flatten, unflatten
from hgbench.numerics.linalg import Solver

TrainLoss = Callable[[TensorDict, TensorDict], Tensor]  # (params, hparams) -> scalar
ValLoss = Callable[[TensorDict, TensorDict], Tensor]


@dataclass(frozen=True)
class ImplicitResult:
    hypergradient: TensorDict
    residual: float  # the linear solve's ‖H v − g‖ / ‖g‖
    iterations: int


def implicit_hypergradient(
    train_loss: TrainLoss,
    val_loss: ValLoss,
    params: TensorDict,
    hparams: TensorDict,
    solver: Solver,
) -> ImplicitResult:
    """dL_V/dλ at (params, hparams) with `solver` for the inverse-Hessian-vector product.

    Cost: one validation gradient, one forward and backward pass of the training loss kept as a
    graph (`LinearizedGradient`), one reverse pass through it per solver product and one for the
    mixed derivative.
    """
    w = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    h = {k: v.detach().requires_grad_(True) for k, v in hparams.items()}
    with torch.enable_grad():
        grads = torch.autograd.grad(
            val_loss(w, h), [*w.values(), *h.values()], allow_unused=True, materialize_grads=True
        )
    g_params = grads[: len(w)]
    g_direct = dict(zip(h, grads[len(w) :], strict=True))

    lin = LinearizedGradient(train_loss, params, hparams)

    def matvec(v_flat: Tensor) -> Tensor:
        return flatten(lin.hvp(unflatten(v_flat, params)))

    sol = solver(matvec, torch.cat([g.reshape(-1) for g in g_params]))  # v = H⁻¹ ∂L_V/∂w
    indirect = lin.mixed_vjp(unflatten(sol.x, params))
    hg = {k: g_direct[k] - indirect[k] for k in hparams}
    return ImplicitResult(hg, sol.residual, sol.iterations)
