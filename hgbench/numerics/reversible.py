"""Exact reversal of SGD with momentum (Maclaurin, Duvenaud and Adams, ICML 2015).

Forward, velocity first, one learning rate α and momentum γ per step and per parameter tensor:

    v_t = γ_t v_{t-1} − (1 − γ_t) ∇L(w_{t-1}, θ, t)        w_t = w_{t-1} + α_t v_t

Weights and velocities are held as int64 fixed point (value · 2^52), so additions are exact and
invertible. γ is rationalised to n/d with d = 2^16 and used as that rational everywhere (also in
the float factor 1 − γ, which is then exact). Multiplying by n/d destroys log2(d/n) bits per
element; they are pushed into a per-element information buffer so that dividing by n/d in the
reverse pass is exact. The reverse pass recomputes every minibatch gradient (it must reproduce
bit for bit), undoes the steps, and accumulates the hypergradients (their Algorithm 2):

    dα_t = dwᵀ v_t;  w ← w − α v;  g = ∇L(w, θ, t);  v ← (v + (1−γ) g)/γ;  dv += α dw
    dγ_t = dvᵀ(v + g);  u = (1−γ) ⊙ dv;  dw −= H u;  dθ −= ∂_θ(uᵀ∇L);  dv ← γ dv

(u carries the per-tensor 1 − γ inside the Hessian product: ∂v_t/∂w = −diag(1−γ) H.)

The buffer is a streaming rANS coder (Duda 2013; as in bits-back coding, Townsend et al. 2019):
each element has an int64 head in [2^31, 2^63) and a stack of 32-bit words in device tensors
that grows in chunks of rows. Pushing a symbol s < n multiplies the head by about n, popping
divides it; when the head would overflow, its low 32 bits move to the stack, and when a pop
leaves it below 2^31 it takes the top word back. Everything is a handful of elementwise int64
kernels over all parameters at once: no Python integers, no loop over elements. A symbol
< n costs log2(2^24 / f_s) bits with f_s ∈ {⌊2^24/n⌋, ⌈2^24/n⌉}. Stated overhead: the buffer
grows by log2(d/n) bits per element per step plus less than 1e-4 bits (measured: about 2e-6 on
average at γ ∈ {0.5, 0.9, 0.98}, from quantised frequencies and the floor of a pop on a small
head), and memory is allocated in whole words, in chunks of `chunk_rows` rows.

Guards: a value leaving the fixed-point range, a gradient whose recomputation differs, a buffer
popped past its bottom, or a reversed initial state that differs from the stored one raise a
`ReversalError` subclass naming the cause; a hypergradient is never returned from a reversal
that was not exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, vjp

from hgbench.contracts.hparams import HParams, Params
from hgbench.numerics.fixed_point import (
    DENOMINATOR,
    DENOMINATOR_BITS,
    FixedPointRangeError,
    GradientMismatchError,
    NotBitExactError,
    ReversalError,
    rational_value,
    rationalise,
    to_fixed,
)
from hgbench.numerics.functional import flatten, unflatten
from hgbench.numerics.info_buffer import InfoBuffer
from hgbench.numerics.trajectories import FixedPointSGD, StepConstants, StoredSGD, Trajectory

__all__ = [  # what the methods and tests use, wherever it is defined
    "DENOMINATOR",
    "DENOMINATOR_BITS",
    "FixedPointRangeError",
    "FixedPointSGD",
    "GradientMismatchError",
    "InfoBuffer",
    "NotBitExactError",
    "ReversalError",
    "ReversalResult",
    "StepConstants",
    "StoredSGD",
    "rational_value",
    "rationalise",
    "reversible_hypergradient",
    "to_fixed",
]


# --- forward + reverse with hypergradients ---------------------------------------------------
StepLoss = Callable[[Params, HParams, int], Tensor]  # L(w, θ, t): the training loss of step t


@dataclass
class ReversalResult:
    """Everything one forward + reverse pass yields. Derivatives are of the validation loss at
    w_T with respect to the step sizes α, momenta γ (both (T, K): step × parameter tensor), the
    initial weights and velocity, and the loss hparams θ."""

    val_loss: Tensor
    params: Params  # w_T
    d_lr: Tensor
    d_momentum: Tensor
    d_params0: Params
    d_velocity0: Params
    d_hparams: HParams
    memory_bytes: int  # held by the trajectory at its largest (exact: state + buffer)
    stored_bytes: int  # what storing (w_t, v_t) for t = 0..T takes at the working dtype
    bit_exact: bool | None  # reversed w_0, v_0 equal the fixed-point initial state (None: stored)
    buffer_bits: float  # mean information per element in the buffer after the forward pass
    reversed_state: tuple[Tensor, Tensor] | None  # the reversed fixed-point (w_0, v_0), flat


def _segment_sum(x: Tensor, segment: Tensor, n_segments: int) -> Tensor:
    return x.new_zeros(n_segments).index_add_(0, segment, x)


class _Schedule:
    """(T, K) α and rationalised γ per step and tensor; `at(t)` expands step t to elements."""

    def __init__(self, lr: Tensor, momentum: Tensor, tensor_id: Tensor, dtype: torch.dtype) -> None:
        self.tensor_id = tensor_id
        self.numer = rationalise(momentum.detach())  # (T, K)
        gamma = rational_value(self.numer, dtype)
        one_minus = rational_value(DENOMINATOR - self.numer, dtype)
        self.floats = torch.stack([lr.detach().to(dtype), gamma, one_minus], 1)  # (T, 3, K)

    def at(self, t: int) -> StepConstants:
        alpha, gamma, one_minus = self.floats[t][:, self.tensor_id]  # (3, P): one gather
        return StepConstants(alpha, self.numer[t][self.tensor_id], gamma, one_minus)


def reversible_hypergradient(
    loss: StepLoss,
    val_loss: Callable[[Params], Tensor],
    params0: Params,
    velocity0: Params,
    hparams: HParams,
    lr: Tensor,
    momentum: Tensor,
    exact: bool = True,
    chunk_rows: int = 4,
) -> ReversalResult:
    """T = len(lr) steps of SGD with momentum from (params0, velocity0), then back, accumulating
    the hypergradient of val_loss(w_T). `lr`, `momentum`: (T, K) α and γ per step and tensor (in
    the order of params0); γ is rationalised to n/2^16 and used as such.

    `exact=True` reverses the fixed-point trajectory (memory: O(P) plus the buffer); `False`
    stores every float (w_t, v_t) instead (O(T·P)), with the same recursion otherwise.
    Raises a `ReversalError` when the result could not be exact.
    """
    names = list(params0)
    template = {k: params0[k] for k in names}
    dtype, device = params0[names[0]].dtype, params0[names[0]].device
    sizes = torch.tensor([template[k].numel() for k in names], device=device)
    tensor_id = torch.repeat_interleave(torch.arange(len(names), device=device), sizes)  # (P,)
    n_tensors, steps = len(names), lr.shape[0]
    if lr.shape != (steps, n_tensors) or momentum.shape != (steps, n_tensors):
        raise ValueError(f"lr and momentum must be (T, {n_tensors}), got {tuple(lr.shape)}")
    schedule = _Schedule(lr, momentum, tensor_id, dtype)
    hparams = {k: v.detach() for k, v in hparams.items()}
    w0, v0 = flatten(template).to(dtype), flatten({k: velocity0[k] for k in names}).to(dtype)
    traj: Trajectory = (
        FixedPointSGD(w0, v0, dtype, steps, chunk_rows) if exact else StoredSGD(w0, v0, dtype)
    )

    def tree(flat: Tensor) -> Params:
        return unflatten(flat, template)

    for t in range(steps):
        g = flatten(grad(loss)(tree(traj.weights()), hparams, t))
        traj.forward_step(g, schedule.at(t))
    traj.check_forward()
    memory = traj.nbytes
    stored = (steps + 1) * 2 * w0.numel() * w0.element_size()
    bits = float(traj.buffer.bits().mean()) if isinstance(traj, FixedPointSGD) else 0.0

    w_final = traj.weights()
    d_w, value = grad(lambda w: (val_loss(w),) * 2, has_aux=True)(tree(w_final))
    d_w = flatten(d_w)
    d_v = torch.zeros_like(d_w)
    d_hparams = {k: torch.zeros_like(v) for k, v in hparams.items()}
    d_lr = torch.zeros(steps, n_tensors, dtype=dtype, device=device)
    d_momentum = torch.zeros_like(d_lr)
    for t in reversed(range(steps)):
        c = schedule.at(t)
        d_lr[t] = _segment_sum(d_w * traj.velocity(), tensor_id, n_tensors)
        traj.reverse_position(c)
        # one VJP of ∇_w L: its primal output is the gradient itself (bit for bit the forward
        # pass's, which the trajectory checks), its pullback gives H u and ∂_θ(uᵀ∇L)
        g_tree, pullback = vjp(lambda w, h, t=t: grad(loss)(w, h, t), tree(traj.weights()), hparams)
        g = flatten(g_tree)
        traj.reverse_velocity(g, c)
        d_v = d_v + c.alpha * d_w
        d_momentum[t] = _segment_sum(d_v * (traj.velocity() + g), tensor_id, n_tensors)
        h_u, mixed = pullback(tree(c.one_minus * d_v))
        d_w = d_w - flatten(h_u)
        for k in d_hparams:
            d_hparams[k] = d_hparams[k] - mixed[k]
        d_v = c.gamma * d_v
    traj.finish_reverse()

    bit_exact, reversed_state = None, None
    if isinstance(traj, FixedPointSGD):
        reversed_state = (traj.w, traj.v)
        bit_exact = torch.equal(traj.w, to_fixed(w0)) and torch.equal(traj.v, to_fixed(v0))
        if not bit_exact:
            raise NotBitExactError(
                "the reversed initial weights or velocity differ from the stored ones"
            )
    return ReversalResult(
        val_loss=value.detach(),
        params=tree(w_final),
        d_lr=d_lr,
        d_momentum=d_momentum,
        d_params0=tree(d_w),
        d_velocity0=tree(d_v),
        d_hparams=d_hparams,
        memory_bytes=memory,
        stored_bytes=stored,
        bit_exact=bit_exact,
        buffer_bits=bits,
        reversed_state=reversed_state,
    )
