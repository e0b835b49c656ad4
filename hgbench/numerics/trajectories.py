"""SGD-with-momentum trajectories that step forward and are walked back, on flat vectors: the
exact one (fixed point plus information buffer) and the stored one (every float state kept)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from hgbench.contracts.errors import DivergedError
from hgbench.numerics.fixed_point import (
    DENOMINATOR,
    DENOMINATOR_BITS,
    FIXED_LIMIT,
    RADIX_BITS,
    VALUE_LIMIT,
    FixedPointRangeError,
    GradientMismatchError,
    checksum,
    from_fixed,
    in_range,
    to_fixed,
)
from hgbench.numerics.info_buffer import InfoBuffer


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
        self._sums[self.t] = checksum(step)
        # v ← (n/d) v: push v mod d (two's complement: the low bits, Python-style for negatives),
        # floor(v / d) · n (arithmetic shift: floor), plus a symbol < n popped from the buffer
        self.buffer.push_bits(self.v & (DENOMINATOR - 1), DENOMINATOR_BITS)
        v = (self.v >> DENOMINATOR_BITS) * c.numer + self.buffer.pop(c.numer) - step
        self._set(v=v)
        move = c.alpha * self.velocity()
        self._set(w=self.w + to_fixed(move))
        added = torch.maximum(scaled.abs().amax(), move.abs().amax())
        state = torch.maximum(self.w.abs().amax(), self.v.abs().amax())
        self._ok[self.t] = (added < VALUE_LIMIT) & (state < FIXED_LIMIT)
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
        self._differs[self.t] = (checksum(step) != self._sums[self.t]).any()
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
