"""GGN structures: each is a fitted curvature that returns log det(P0 + G) − log det P0 for any
prior precision P0 = diag(δ), so hyper-steps that only change δ reuse one fit.

Structures (P parameters, r = number of factor rows in the fit, see
hgbench.numerics.laplace.jacobians; hgbench.numerics.laplace.fitting feeds them chunk by chunk):

    kernel     log det(I_r + L P0⁻¹ Lᵀ), the weighted NTK (function space)   O(r²P + r³)
    full       log det(I_P + P0^{-1/2} LᵀL P0^{-1/2}), the full GGN          O(rP² + P³), or
               the kernel side O(r²P + r³) while r ≤ P
    blockdiag  Σ_t of `full` per parameter tensor t                          O(r Σ P_t² + Σ P_t³)
    kron       Σ_layers K-FAC (hgbench.numerics.laplace.kron); tensors outside Linear/Conv2d layers
    fall back
               to their exact per-tensor block
    diag       Σ_p log1p(G_pp / δ_p), G_pp by per-layer contractions       O(rP), no row formed

`kernel` and `full` are equal (Sylvester). Relative to them, `blockdiag` and `diag` are never
smaller (Fischer's inequality: det M ≤ Π_b det M_bb for M ≻ 0 partitioned into diagonal blocks;
Hadamard's inequality is its 1 × 1-block case), so a log marginal likelihood built on them is a
lower bound of the one built on `full`. `kron` is an approximation, not a bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from hgbench.contracts.schema import StrEnum
from hgbench.numerics.laplace.jacobians import Rows
from hgbench.numerics.laplace.kron import KronBlock
from hgbench.numerics.laplace.logdet import (
    diagonal_logdet,
    identity_plus_gram_logdet,
    logdet_spd,
    plus_identity,
    scaled_gram_logdet,
)


class Structure(StrEnum):
    KERNEL = "kernel"
    FULL = "full"
    BLOCKDIAG = "blockdiag"
    KRON = "kron"
    DIAG = "diag"


class Curvature(Protocol):
    def logdet_ratio(self, delta: dict[str, Tensor]) -> Tensor:
        """log det(P0 + G) − log det P0 for prior precisions δ (broadcastable per tensor)."""
        ...


def _flat(rows: Tensor) -> Tensor:
    """(r, *shape) -> (r, P_t), also for a 0-dim parameter."""
    return rows.reshape(rows.shape[0], math.prod(rows.shape[1:]))


def _flat_delta(delta: dict[str, Tensor], shapes: dict[str, torch.Size]) -> Tensor:
    return torch.cat([delta[k].expand(s).reshape(-1) for k, s in shapes.items()])


@dataclass
class KernelCurvature:
    """The weighted NTK I + L P0⁻¹ Lᵀ over r factor rows: per-tensor Grams L_t L_tᵀ (r × r) for
    tensors with one scalar δ (a new δ then costs one r × r Cholesky), rows for the others."""

    grams: dict[str, Tensor]  # name -> L_t L_tᵀ, (r, r)
    rows: Rows = field(default_factory=dict)  # name -> (r, *shape)

    def logdet_ratio(self, delta: dict[str, Tensor]) -> Tensor:
        kernel = None
        for k, g in self.grams.items():
            term = g / delta[k].reshape(())
            kernel = term if kernel is None else kernel + term
        if self.rows:
            white = torch.cat(
                [_flat(r * delta[k].expand(r.shape[1:]).rsqrt()) for k, r in self.rows.items()],
                dim=1,
            )
            term = white @ white.T
            kernel = term if kernel is None else kernel + term
        assert kernel is not None, "empty kernel"
        return logdet_spd(plus_identity(kernel))


@dataclass
class FullCurvature:
    """The full GGN G = Σ LᵀL (P × P) over r factor rows, accumulated chunk by chunk.

    While r ≤ P the rows themselves are kept (no more memory than the P × P Gram), and each
    log-det takes the cheapest of three equal forms (Sylvester):

    - kernel side, per-tensor Grams: log det(I_r + Σ_t L_t L_tᵀ / δ_t) for scalar priors, the
      Grams L_t L_tᵀ computed once (r²P); a prior then costs one r × r Cholesky and nothing
      flows back through the Grams. Used while the T Grams take no more memory than P².
    - kernel side, whitened rows: log det(I_r + L P0⁻¹ Lᵀ), r²P + r³ per prior, and as much
      again in the backward pass through the Gram (where the prior is inside it).
    - parametric side: the rows folded once into G, then log det(I_P + P0^{-1/2} G P0^{-1/2}),
      P³ per prior with nothing flowing back through G (laplace-torch's way).

    Past r = P the rows fold into G as they come.
    """

    shapes: dict[str, torch.Size]
    gram: Tensor | None = None
    rows: list[Tensor] = field(default_factory=list)  # (r_i, P) chunks while Σ r_i ≤ P
    grams: dict[str, Tensor] = field(default_factory=dict)  # per-tensor L_t L_tᵀ, (r, r)

    def add(self, rows: Rows) -> None:
        flat = torch.cat([_flat(rows[k]) for k in self.shapes], dim=1)  # (r, P)
        self.grams = {}
        if self.gram is None and self.n_rows + flat.shape[0] <= flat.shape[1]:
            self.rows.append(flat)
            return
        self._fold(flat)

    @property
    def n_rows(self) -> int:
        return sum(r.shape[0] for r in self.rows)

    def _fold(self, *extra: Tensor) -> None:
        for kept in [*self.rows, *extra]:
            term = kept.T @ kept
            self.gram = term if self.gram is None else self.gram + term
        self.rows = []

    def form(self, delta: dict[str, Tensor]) -> str:
        """The cheapest form for this prior: "grams", "rows" or "gram" (class doc)."""
        r, p = self.n_rows, sum(shape.numel() for shape in self.shapes.values())
        if self.gram is not None:
            return "gram"
        if all(delta[k].numel() == 1 for k in self.shapes) and len(self.shapes) * r * r <= p * p:
            return "grams"
        return "rows" if 3 * r * r * p + r**3 <= r * p * p + p**3 else "gram"

    def logdet_ratio(self, delta: dict[str, Tensor], form: str | None = None) -> Tensor:
        """log det(P0 + G) − log det P0 in `form` (default: the cheapest, `form(delta)`)."""
        form = form or self.form(delta)
        flat_delta = _flat_delta(delta, self.shapes)
        if form == "grams":
            if not self.grams:
                flat, start = torch.cat(self.rows), 0
                for k, shape in self.shapes.items():
                    part = flat[:, start : start + shape.numel()]
                    self.grams[k] = part @ part.T
                    start += shape.numel()
            kernel = sum(g / delta[k].reshape(()) for k, g in self.grams.items())
            return logdet_spd(plus_identity(kernel))
        if form == "rows":
            white = torch.cat(self.rows) * flat_delta.rsqrt()
            return identity_plus_gram_logdet(white, side="rows")
        if self.gram is None:
            self._fold()
        assert self.gram is not None, "no rows added"
        return scaled_gram_logdet(self.gram, flat_delta)


@dataclass
class BlockDiagCurvature:
    """Per-tensor GGN blocks G_tt (P_t × P_t), accumulated chunk by chunk."""

    shapes: dict[str, torch.Size]
    blocks: dict[str, Tensor] = field(default_factory=dict)

    def add(self, rows: Rows) -> None:
        for k in self.shapes:
            flat = _flat(rows[k])
            term = flat.T @ flat
            self.blocks[k] = self.blocks[k] + term if k in self.blocks else term

    def logdet_ratio(self, delta: dict[str, Tensor]) -> Tensor:
        total = None
        for k, shape in self.shapes.items():
            term = scaled_gram_logdet(self.blocks[k], delta[k].expand(shape).reshape(-1))
            total = term if total is None else total + term
        assert total is not None
        return total


@dataclass
class DiagCurvature:
    """The GGN's diagonal, Σ_rows L², per tensor (summed from per-chunk contractions)."""

    shapes: dict[str, torch.Size]
    diag: dict[str, Tensor] = field(default_factory=dict)

    def add(self, diag: dict[str, Tensor]) -> None:
        for k in self.shapes:
            self.diag[k] = self.diag[k] + diag[k] if k in self.diag else diag[k]

    def logdet_ratio(self, delta: dict[str, Tensor]) -> Tensor:
        terms = [diagonal_logdet(self.diag[k], delta[k].expand(s)) for k, s in self.shapes.items()]
        return torch.stack(terms).sum()


@dataclass
class KronCurvature:
    """K-FAC blocks per layer, plus exact per-tensor blocks for tensors K-FAC does not cover."""

    layers: dict[str, KronBlock]
    rest: BlockDiagCurvature | None = None

    def logdet_ratio(self, delta: dict[str, Tensor]) -> Tensor:
        terms = [block.logdet_ratio(delta) for block in self.layers.values()]
        if self.rest is not None and self.rest.shapes:
            terms.append(self.rest.logdet_ratio(delta))
        return torch.stack(terms).sum()


@dataclass
class SplitCurvature:
    """Independent groups of factor rows (Fischer blocks), each weighted: Σ_g w_g logdet_g."""

    groups: list[Curvature]
    weights: list[float]

    def logdet_ratio(self, delta: dict[str, Tensor]) -> Tensor:
        terms = [w * c.logdet_ratio(delta) for c, w in zip(self.groups, self.weights, strict=True)]
        return torch.stack(terms).sum()
