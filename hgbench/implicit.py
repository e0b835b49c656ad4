"""Implicit-function-theorem hypergradients at an (approximate) inner optimum.

    dL_V/dλ = ∂L_V/∂λ − (∂L_V/∂w) H⁻¹ ∂²L_T/∂w∂λᵀ,   H = ∂²L_T/∂w∂wᵀ

The inverse-Hessian-vector product comes from any `hgbench.linalg` solver, so the exact reference
(dense or converged CG) and the approximate methods (Neumann, CG with few iterations) share it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor
from torch.func import grad

from hgbench.functional import TensorDict, flatten, hvp_operator, mixed_vjp, unflatten
from hgbench.linalg import Solver

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
    g_params, g_direct = grad(val_loss, argnums=(0, 1))(params, hparams)

    h_times = hvp_operator(lambda w: train_loss(w, hparams), params)

    def matvec(v_flat: Tensor) -> Tensor:
        return flatten(h_times(unflatten(v_flat, params)))

    sol = solver(matvec, flatten(g_params))  # v = H⁻¹ ∂L_V/∂w
    indirect = mixed_vjp(train_loss, params, hparams, unflatten(sol.x, params))
    hg = {k: g_direct[k] - indirect[k] for k in hparams}
    return ImplicitResult(hg, sol.residual, sol.iterations)
