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
from typing import ClassVar, Protocol

import torch
from torch import Tensor
from torch.func import grad, vjp

from hgbench.errors import DivergedError
from hgbench.functional import flatten, unflatten
from hgbench.hparams import HParams, Params

RADIX_BITS = 52  # fixed point: value = int64 / 2^52, the paper's choice
VALUE_LIMIT = 2.0**10  # |value| bound: two in-range values sum within int64 (2^62 + 2^62 < 2^63)
_FIXED_LIMIT = int(VALUE_LIMIT) << RADIX_BITS
DENOMINATOR_BITS = 16  # γ = n / 2^16
DENOMINATOR = 1 << DENOMINATOR_BITS

# rANS constants. Head interval [HEAD_LOW, HEAD_LOW · 2^WORD_BITS) = [2^31, 2^63) fits int64;
# HEAD_LOW is a multiple of the coding precision 2^PRECISION_BITS, which makes every push and
# pop exactly invertible (rANS's b-uniqueness condition). The precision trades two small
# losses: frequencies quantised to 1/2^24 (KL from uniform ≈ 0.7 (n/2^24)² bits per symbol)
# and the floor in a pop on a head just refilled (at most log2(1 + 2^-7) bits).
WORD_BITS = 32
PRECISION_BITS = 24
HEAD_LOW_BITS = 31
HEAD_LOW = 1 << HEAD_LOW_BITS
_EMIT_SHIFT = HEAD_LOW_BITS - PRECISION_BITS + WORD_BITS  # emit iff head ≥ freq · 2^39
_PRECISION = 1 << PRECISION_BITS
_WORD_MASK = (1 << WORD_BITS) - 1
_WORD_OFFSET = 1 << 31  # words in [0, 2^32) are stored as int32 after subtracting this


class ReversalError(RuntimeError):
    """The exact reversal cannot vouch for its result; the message names the cause."""


class FixedPointRangeError(ReversalError):
    """A weight, velocity or update left the fixed-point range (or was not finite)."""


class GradientMismatchError(ReversalError):
    """A minibatch gradient recomputed in the reverse pass differs from the forward one."""


class BufferUnderflowError(ReversalError):
    """The information buffer was popped past its bottom (it cannot supply the bits)."""


class NotBitExactError(ReversalError):
    """The reversed initial state differs from the stored one."""


# --- fixed point ---------------------------------------------------------------------------------
def to_fixed(x: Tensor) -> Tensor:
    """round-toward-zero(x · 2^52) as int64. Scaling by a power of two is exact in any float
    dtype, so the result depends on x's bits only (the reverse pass gets the same integers)."""
    return (x * float(1 << RADIX_BITS)).to(torch.int64)


def from_fixed(i: Tensor, dtype: torch.dtype) -> Tensor:
    return i.to(dtype) * (2.0**-RADIX_BITS)


def in_range(x: Tensor) -> Tensor:
    """A 0-d bool tensor: every element finite and below VALUE_LIMIT (no host sync)."""
    return (x.abs() < VALUE_LIMIT).all()


def rationalise(gamma: Tensor) -> Tensor:
    """γ → the numerator n of n / 2^16 (int64), n in [1, 2^16]: n = 0 could not be divided by."""
    return torch.round(gamma.double() * DENOMINATOR).clamp(1, DENOMINATOR).to(torch.int64)


def rational_value(n: Tensor, dtype: torch.dtype) -> Tensor:
    """n / 2^16 in `dtype`, exactly (n has at most 17 significant bits)."""
    return n.to(dtype) * (1.0 / DENOMINATOR)


def _checksum(x: Tensor) -> Tensor:
    """Two int64 sums of x (wrapping modulo 2^64, so independent of the reduction order):
    Σ x and Σ x². Any change of a single element changes one of them."""
    return torch.stack([x.sum(), (x * x).sum()])


# --- the information buffer ----------------------------------------------------------------------
class InfoBuffer:
    """Per-element rANS bit stack on the device: push(s, n) stores s ∈ [0, n), pop(n) returns it.

    Pushes and pops are LIFO per element. Every element owns an int64 head in [2^31, 2^63) and a
    column of a (rows, size) int32 stack of 32-bit words, with its own fill level `ptr`. The stack
    grows by `chunk_rows` rows when the fullest column needs one more; the fill level is read
    back to the host only when the bound kept here says that a column could be full. On the CPU,
    where reading a flag costs nothing, the stack is not touched at all in the (common) pushes
    and pops where no head spills over or runs short.
    """

    skip_idle_on_cpu: ClassVar[bool] = True  # tests switch it off to run the device path

    def __init__(self, size: int, device: torch.device | str, chunk_rows: int = 4) -> None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        self.size, self.device, self.chunk_rows = size, torch.device(device), chunk_rows
        self.head = torch.full((size,), HEAD_LOW, dtype=torch.int64, device=self.device)
        self.ptr = torch.zeros(size, dtype=torch.int32, device=self.device)
        self.stack = torch.zeros((0, size), dtype=torch.int32, device=self.device)
        self.underflow = torch.zeros((), dtype=torch.bool, device=self.device)
        self._fill_bound = 0  # ≥ max(ptr), kept on the host so that most writes need no sync
        self._skip_idle = self.skip_idle_on_cpu and self.device.type == "cpu"

    # sizes ------------------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes held: heads, fill levels and the allocated stack."""
        return sum(t.numel() * t.element_size() for t in (self.head, self.ptr, self.stack))

    def bits(self) -> Tensor:
        """Information held per element, in bits (float64): log2(head / 2^31) + 32 · ptr."""
        return torch.log2(self.head.double() / HEAD_LOW) + WORD_BITS * self.ptr.double()

    # the stack of words -----------------------------------------------------------------------
    def _idle(self, mask: Tensor) -> bool:
        return self._skip_idle and not bool(mask.any())

    def _write(self, word: Tensor, mask: Tensor) -> None:
        """Push word (int64 in [0, 2^32)) onto the stack of each element where mask is set."""
        if self._idle(mask):
            return
        self._fill_bound += 1
        if self._fill_bound > self.stack.shape[0]:
            self._fill_bound = int((self.ptr + mask).max())  # a sync, at most once per chunk
            if self._fill_bound == 0:
                return  # nothing to write anywhere, and possibly no row to index yet
            if self._fill_bound > self.stack.shape[0]:
                grow = torch.zeros(
                    (self.chunk_rows, self.size), dtype=torch.int32, device=self.device
                )
                self.stack = torch.cat([self.stack, grow])
        idx = self.ptr.clamp(max=self.stack.shape[0] - 1).long().unsqueeze(0)  # (1, size)
        current = self.stack.gather(0, idx)
        stored = (word - _WORD_OFFSET).to(torch.int32).unsqueeze(0)
        self.stack.scatter_(0, idx, torch.where(mask.unsqueeze(0), stored, current))
        self.ptr += mask.to(torch.int32)

    def _read(self, mask: Tensor) -> Tensor | None:
        """Pop a word where mask is set (0 elsewhere); None when no element pops."""
        if self._idle(mask):
            return None
        self.underflow |= (mask & (self.ptr <= 0)).any()
        self.ptr -= mask.to(torch.int32)
        if self.stack.shape[0] == 0:
            return torch.zeros_like(self.head)
        idx = self.ptr.clamp(min=0, max=self.stack.shape[0] - 1).long().unsqueeze(0)
        word = self.stack.gather(0, idx).squeeze(0).to(torch.int64) + _WORD_OFFSET
        return torch.where(mask, word, 0)

    def _refill(self, x: Tensor) -> Tensor:
        """After a pop: a head below 2^31 takes the word on top of its stack as its low bits."""
        pull = x < HEAD_LOW
        word = self._read(pull)
        return x if word is None else torch.where(pull, (x << WORD_BITS) | word, x)

    def _spill(self, x: Tensor, limit_shift: int, limit: Tensor | int) -> Tensor:
        """Before a push: a head at or above limit · 2^limit_shift moves its low 32 bits to the
        stack, so that the push keeps it below 2^63."""
        emit = (x >> limit_shift) >= limit
        if self._idle(emit):
            return x
        self._write(x & _WORD_MASK, emit)
        return torch.where(emit, x >> WORD_BITS, x)

    # coding: any base up to 2^16 --------------------------------------------------------------
    @staticmethod
    def _frequencies(base: Tensor) -> tuple[Tensor, Tensor]:
        """Symbol s < n gets frequency q + 1 (s < rem) or q out of 2^24, q = ⌊2^24 / n⌋."""
        q = torch.div(_PRECISION, base, rounding_mode="floor")
        return q, _PRECISION - q * base

    def push(self, symbol: Tensor, base: Tensor) -> None:
        """Store `symbol` ∈ [0, base) per element (int64; 1 ≤ base ≤ 2^16)."""
        q, rem = self._frequencies(base)
        low = symbol < rem
        freq = q + low
        start = symbol * q + torch.minimum(symbol, rem)
        x = self._spill(self.head, _EMIT_SHIFT, freq)  # the encoded head ≈ x · 2^24 / freq
        self.head = torch.div(x, freq, rounding_mode="floor") * _PRECISION + start + x % freq

    def pop(self, base: Tensor) -> Tensor:
        """The last symbol pushed with this base, per element (int64 in [0, base))."""
        q, rem = self._frequencies(base)
        x = self.head
        slot = x & (_PRECISION - 1)
        boundary = rem * (q + 1)
        low = slot < boundary
        symbol = torch.where(
            low,
            torch.div(slot, q + 1, rounding_mode="floor"),
            rem + torch.div(slot - boundary, q, rounding_mode="floor"),
        )
        freq = q + low
        start = symbol * q + torch.minimum(symbol, rem)
        self.head = self._refill(freq * (x >> PRECISION_BITS) + slot - start)
        return symbol

    # coding: a power-of-two base, the cheap special case ---------------------------------------
    def push_bits(self, value: Tensor, bits: int) -> None:
        """Store the low `bits` bits of `value` (non-negative, < 2^bits; bits ≤ 32)."""
        x = self._spill(self.head, 63 - bits, 1)
        self.head = (x << bits) | value

    def pop_bits(self, bits: int) -> Tensor:
        value = self.head & ((1 << bits) - 1)
        self.head = self._refill(self.head >> bits)
        return value

    def check(self) -> None:
        if bool(self.underflow):
            raise BufferUnderflowError(
                "the information buffer was popped past its bottom: the reverse pass asked for "
                "bits the forward pass never stored"
            )


# --- trajectories: one exact, one stored ---------------------------------------------------------
@dataclass(frozen=True)
class StepConstants:
    """One step's α, γ = n / 2^16 and 1 − γ, expanded to every element (P,)."""

    alpha: Tensor
    numer: Tensor  # int64 n
    gamma: Tensor
    one_minus: Tensor


class Trajectory(Protocol):
    """An SGD-with-momentum state that steps forward and is walked back, on flat vectors.

    Reverse step t: `reverse_position(c_t)` makes `weights()` w_{t-1}; the caller recomputes
    g = ∇L(w_{t-1}, θ, t); `reverse_velocity(g, c_t)` makes `velocity()` v_{t-1}.
    """

    @property
    def nbytes(self) -> int: ...

    def weights(self) -> Tensor: ...

    def velocity(self) -> Tensor: ...

    def forward_step(self, g: Tensor, c: StepConstants) -> None: ...

    def check_forward(self) -> None: ...

    def reverse_position(self, c: StepConstants) -> None: ...

    def reverse_velocity(self, g: Tensor, c: StepConstants) -> None: ...

    def finish_reverse(self) -> None: ...


class FixedPointSGD:
    """Flat weights and velocity in int64 fixed point, with the buffer that makes γ invertible.

    `forward_step` checks the range of what it adds and of the state (on the device, no sync)
    and keeps a checksum of each step's fixed-point gradient term; `reverse_velocity` compares
    the recomputed term's checksum with it. `check_forward` / `finish_reverse` raise on any
    violation, naming the first step concerned.
    """

    def __init__(
        self, w0: Tensor, v0: Tensor, dtype: torch.dtype, steps: int, chunk_rows: int = 4
    ) -> None:
        self.dtype, self.t = dtype, 0
        self.w, self.v = to_fixed(w0), to_fixed(v0)
        self.buffer = InfoBuffer(w0.numel(), w0.device, chunk_rows)
        self._initial_ok = in_range(w0) & in_range(v0)
        # per step, preallocated (T small tensors would cost more as Python objects than data):
        # everything in range (forward), the checksum of the gradient term (forward), whether
        # the recomputed term's checksum differs (reverse)
        self._ok = torch.ones(steps, dtype=torch.bool, device=w0.device)
        self._sums = torch.zeros((steps, 2), dtype=torch.int64, device=w0.device)
        self._differs = torch.zeros(steps, dtype=torch.bool, device=w0.device)
        self._w_float: Tensor | None = None
        self._v_float: Tensor | None = None

    @property
    def nbytes(self) -> int:
        """Fixed-point state, information buffer and the per-step checks."""
        checks = (self._ok, self._sums, self._differs)
        return self.w.nbytes + self.v.nbytes + self.buffer.nbytes + sum(c.nbytes for c in checks)

    def weights(self) -> Tensor:
        if self._w_float is None:
            self._w_float = from_fixed(self.w, self.dtype)
        return self._w_float

    def velocity(self) -> Tensor:
        if self._v_float is None:
            self._v_float = from_fixed(self.v, self.dtype)
        return self._v_float

    def _set(self, w: Tensor | None = None, v: Tensor | None = None) -> None:
        if w is not None:
            self.w, self._w_float = w, None
        if v is not None:
            self.v, self._v_float = v, None

    def forward_step(self, g: Tensor, c: StepConstants) -> None:
        scaled = c.one_minus * g  # 1 − n/d is exact in float: the reverse pass gets these bits
        step = to_fixed(scaled)
        self._sums[self.t] = _checksum(step)
        # v ← (n/d) v: push v mod d (two's complement: the low bits, Python-style for negatives),
        # floor(v / d) · n (arithmetic shift: floor), plus a symbol < n popped from the buffer
        self.buffer.push_bits(self.v & (DENOMINATOR - 1), DENOMINATOR_BITS)
        v = (self.v >> DENOMINATOR_BITS) * c.numer + self.buffer.pop(c.numer) - step
        self._set(v=v)
        move = c.alpha * self.velocity()
        self._set(w=self.w + to_fixed(move))
        added = torch.maximum(scaled.abs().amax(), move.abs().amax())
        state = torch.maximum(self.w.abs().amax(), self.v.abs().amax())
        self._ok[self.t] = (added < VALUE_LIMIT) & (state < _FIXED_LIMIT)
        self.t += 1

    def check_forward(self) -> None:
        ok = torch.cat([self._initial_ok.reshape(1), self._ok[: self.t]])
        if not bool(ok.all()):
            first = int((~ok).nonzero()[0, 0])
            where = f"at step {first}" if first > 0 else "in the initial state"
            raise FixedPointRangeError(
                f"a weight, velocity or update left the fixed-point range |x| < {VALUE_LIMIT:g} "
                f"(or was not finite) {where}: int64 at 2^-{RADIX_BITS} cannot hold it exactly"
            )
        self.buffer.check()

    def reverse_position(self, c: StepConstants) -> None:
        self._set(w=self.w - to_fixed(c.alpha * self.velocity()))

    def reverse_velocity(self, g: Tensor, c: StepConstants) -> None:
        self.t -= 1
        step = to_fixed(c.one_minus * g)
        self._differs[self.t] = (_checksum(step) != self._sums[self.t]).any()
        v = self.v + step
        # v ← v · d/n, the exact inverse: push v mod n, floor(v / n) · d plus the popped v mod d
        self.buffer.push(torch.remainder(v, c.numer), c.numer)
        v = torch.div(v, c.numer, rounding_mode="floor") << DENOMINATOR_BITS
        self._set(v=v | self.buffer.pop_bits(DENOMINATOR_BITS))

    def finish_reverse(self) -> None:
        if bool(self._differs.any()):
            # the latest such step is where the reversal went wrong: every step undone after it
            # started from a wrong state and mismatches too
            step = int(self._differs.nonzero()[-1, 0]) + 1
            raise GradientMismatchError(
                f"the minibatch gradient recomputed for step {step} in the reverse pass differs "
                "from the forward pass (non-deterministic kernels, or another batch or "
                "augmentation noise): the reversal is not exact"
            )
        self.buffer.check()


class StoredSGD:
    """The same recursion in floats, storing (w_t, v_t) for every step: O(T·P) memory."""

    def __init__(self, w0: Tensor, v0: Tensor, dtype: torch.dtype) -> None:
        self.states: list[tuple[Tensor, Tensor]] = [(w0.to(dtype), v0.to(dtype))]

    @property
    def nbytes(self) -> int:
        return sum(
            w.numel() * w.element_size() + v.numel() * v.element_size() for w, v in self.states
        )

    def weights(self) -> Tensor:
        return self.states[-1][0]

    def velocity(self) -> Tensor:
        return self.states[-1][1]

    def forward_step(self, g: Tensor, c: StepConstants) -> None:
        w, v = self.states[-1]
        v = c.gamma * v - c.one_minus * g
        self.states.append((w + c.alpha * v, v))

    def check_forward(self) -> None:
        w, v = self.states[-1]
        if not bool(torch.isfinite(w).all() & torch.isfinite(v).all()):
            raise DivergedError("the stored trajectory is not finite")

    def reverse_position(self, c: StepConstants) -> None:
        self.states.pop()  # (w_{t-1}, v_{t-1}) were stored: nothing to undo

    def reverse_velocity(self, g: Tensor, c: StepConstants) -> None:
        pass

    def finish_reverse(self) -> None:
        pass


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
