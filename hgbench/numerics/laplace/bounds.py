"""Block bounds of the Laplace log marginal likelihood (Immer et al. 2023): output splits,
partitions of the data, and what each estimator is relative to the exact value.

For a partition of the N points into blocks B_b,

    log q_part = Σ_b [Σ_{n∈B_b} log p(y_n|f_n) − ½ log det(I + L_b P0⁻¹ L_bᵀ)] − ½ θᵀ P0 θ  ≤  log q

by Fischer's inequality on I + L P0⁻¹ Lᵀ ≻ 0 (keep its diagonal blocks); each block term is also
a parametric log-det ratio (Sylvester), so any structure can evaluate it. One block's estimate,

    log q̂_b = (N/|B_b|) [Σ_{n∈B_b} log p − ½ logdet_b] − ½ θᵀ P0 θ,

averages over the blocks (weighted by |B_b|/N; equal weights when |B_b| = M divides N) to
log q_part exactly. Which estimators are bounds (see `bound_kind`):
- kernel / full per block: lower bounds, equal to log q when M = N without an output split.
- blockdiag / diag per block: lower bounds (Fischer per tensor, Hadamard per weight, on top).
- output split `independent`: the factor rows (n, k) of the block are split by k, again Fischer
  blocks, so a lower bound. We split along the columns of Λ_n^½ = diag(√p) − p√pᵀ (Λ = Λ^½Λ^½ᵀ);
  keeping only diag(Λ) per output instead (the reference code) drops cross-output curvature of
  either sign and is not a bound in general.
- `single` (one random k per block, log det × K) and `single_iid` (one k per point): unbiased for
  a split bound in expectation over k: log det of I + L P0⁻¹ Lᵀ restricted to index sets is
  submodular and ≥ 0, hence subadditive; the K cyclic shifts of one draw partition the block's
  rows, so K · E[logdet(draw)] ≥ logdet(block). A single draw is not a bound.
- kron: an approximation, not a bound.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hgbench.contracts.schema import StrEnum
from hgbench.numerics.laplace.ggn import Structure


class OutputSplit(StrEnum):
    NONE = "none"
    INDEPENDENT = "independent"
    SINGLE = "single"
    SINGLE_IID = "single_iid"


class Partition(StrEnum):
    RANDOM = "random"
    GROUPED = "grouped"  # blocks filled class by class: correlated points share a block


class BoundKind(StrEnum):
    EXACT = "exact"
    LOWER = "lower_bound"
    LOWER_IN_EXPECTATION = "lower_bound_in_expectation"
    APPROXIMATION = "approximation"


def bound_kind(structure: Structure, split: OutputSplit, all_data_one_block: bool) -> BoundKind:
    """What an estimator's log marglik value is relative to the exact full-GGN one (module doc)."""
    if structure == Structure.KRON:
        return BoundKind.APPROXIMATION
    if split in (OutputSplit.SINGLE, OutputSplit.SINGLE_IID):
        return BoundKind.LOWER_IN_EXPECTATION
    if (
        structure in (Structure.KERNEL, Structure.FULL)
        and split == OutputSplit.NONE
        and all_data_one_block
    ):
        return BoundKind.EXACT
    return BoundKind.LOWER


def split_rows(
    split: OutputSplit, n: int, k: int, generator: torch.Generator | None, device: torch.device
) -> tuple[list[Tensor | None], list[float]]:
    """Groups of factor rows as (n, k) 0/1 masks (None: every row), and each group's weight on
    its log det."""
    if split == OutputSplit.NONE:
        return [None], [1.0]
    eye = torch.eye(k, dtype=torch.bool, device=device)
    if split == OutputSplit.INDEPENDENT:
        return [eye[c].expand(n, k) for c in range(k)], [1.0] * k
    where = generator.device if generator is not None else device
    if split == OutputSplit.SINGLE:
        c = torch.randint(k, (1,), generator=generator, device=where).to(device)
        return [eye[c].expand(n, k)], [float(k)]
    if split == OutputSplit.SINGLE_IID:
        c = torch.randint(k, (n,), generator=generator, device=where).to(device)
        return [eye[c]], [float(k)]
    raise ValueError(f"unknown output split {split!r}")


def partition(
    n: int,
    block_size: int,
    generator: torch.Generator,
    labels: Tensor | None = None,
    kind: Partition = Partition.RANDOM,
) -> list[Tensor]:
    """⌈n / M⌉ blocks of (almost) equal size ≤ M covering range(n) once: a random permutation
    cut in order, or for `grouped` the permutation sorted by label first (class by class)."""
    if block_size < 1:
        raise ValueError("block_size must be at least 1")
    perm = torch.randperm(n, generator=generator, device=generator.device)
    if kind == Partition.GROUPED:
        if labels is None:
            raise ValueError("a grouped partition needs labels")
        perm = perm[torch.sort(labels.to(perm.device)[perm], stable=True).indices]
    return list(perm.tensor_split(math.ceil(n / block_size)))
