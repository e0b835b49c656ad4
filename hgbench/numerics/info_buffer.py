"""The information buffer of exact reversal: a per-element rANS bit stack on the device.

Multiplying a fixed-point velocity by γ = n / 2^16 destroys log2(2^16 / n) bits per element; the
buffer keeps them so that the reverse pass divides exactly (hgbench.numerics.reversible has the
scheme).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from hgbench.numerics.fixed_point import BufferUnderflowError

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
