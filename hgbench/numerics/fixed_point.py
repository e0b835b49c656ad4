"""Exact arithmetic for reversible learning: int64 fixed point and rational momenta.

Weights and velocities are held as value · 2^52 in int64, so additions are exact and invertible;
a momentum γ is rationalised to n / 2^16 and used as that rational everywhere
(hgbench.numerics.reversible explains the scheme). The errors a reversal can end in live here too:
every piece raises them.
"""

from __future__ import annotations

import torch
from torch import Tensor

RADIX_BITS = 52  # fixed point: value = int64 / 2^52, the paper's choice
VALUE_LIMIT = 2.0**10  # |value| bound: two in-range values sum within int64 (2^62 + 2^62 < 2^63)
FIXED_LIMIT = int(VALUE_LIMIT) << RADIX_BITS
DENOMINATOR_BITS = 16  # γ = n / 2^16
DENOMINATOR = 1 << DENOMINATOR_BITS


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


def checksum(x: Tensor) -> Tensor:
    """Two int64 sums of x (wrapping modulo 2^64, so independent of the reduction order):
    Σ x and Σ x². Any change of a single element changes one of them."""
    return torch.stack([x.sum(), (x * x).sum()])
