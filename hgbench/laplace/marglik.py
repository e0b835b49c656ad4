"""Linearised-Laplace log marginal likelihoods of a Problem: exact, structured, and block bounds.

Hparams → prior. hgbench's training loss is mean NLL + ½ Σ_p exp(log_wd.p) ⊙ p² (hgbench.hparams),
so N times it is the negative log joint under a Gaussian prior of precision

    δ_p = N · exp(log_wd.p)      (broadcast to the parameter's shape)

with N the number of points the marginal likelihood covers: the training split in probe mode,
train + validation in the marglik methods' run mode (they need no validation split). A parameter
without a `log_wd` hparam has no prior; the Laplace approximation conditions on it (holds it at
its MAP value, which is δ → ∞ in the kernel view), so it enters neither the prior nor the GGN.
At a MAP θ of that loss the Laplace log marginal likelihood (Immer et al. 2021) is

    log q(D | h) = Σ_n log p(y_n | f_n) − ½ θᵀ P0 θ − ½ [log det(P0 + G) − log det P0]
                 = −N · L_T(θ, h) − ½ log-det ratio,

G = Σ_n J_nᵀ Λ_n J_n the GGN. Augmentation hparams enter through the inputs (f is the model on
the augmented, possibly S-fold averaged, inputs), so the value is differentiable in them too.
Hypergradients follow hgbench's convention: gradients of −log q / N (minimised) at fixed θ.

Block bounds (Immer et al. 2023). For a partition of the N points into blocks B_b,

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

import dataclasses
import math
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor

from hgbench.functional import detach, flatten
from hgbench.hparams import WD_PREFIX, HParams, Params, l2_penalty
from hgbench.laplace.ggn import (
    BlockDiagCurvature,
    Curvature,
    KernelCurvature,
    KronCurvature,
    SplitCurvature,
    Structure,
    accumulator,
)
from hgbench.laplace.jacobians import Rows, linearize
from hgbench.laplace.kron import kron_factors
from hgbench.laplace.layers import capture_layers, covered_layers
from hgbench.method import ProbeState, Reference
from hgbench.optimum import tight_optimum
from hgbench.task import Problem

EXACT_LIMIT = 20_000  # min(P, N·C) above this: no exact reference on a CPU


class OutputSplit(str, Enum):
    NONE = "none"
    INDEPENDENT = "independent"
    SINGLE = "single"
    SINGLE_IID = "single_iid"

    def __str__(self) -> str:
        return self.value


class Partition(str, Enum):
    RANDOM = "random"
    GROUPED = "grouped"  # blocks filled class by class: correlated points share a block

    def __str__(self) -> str:
        return self.value


class BoundKind(str, Enum):
    EXACT = "exact"
    LOWER = "lower_bound"
    LOWER_IN_EXPECTATION = "lower_bound_in_expectation"
    APPROXIMATION = "approximation"

    def __str__(self) -> str:
        return self.value


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


# --- hparams -> prior --------------------------------------------------------------------------
def laplace_params(params: Params, hparams: HParams) -> list[str]:
    """The parameters the Laplace approximation integrates over: those with a log_wd hparam."""
    return [k for k in params if WD_PREFIX + k in hparams]


def prior_precision(params: Params, hparams: HParams, n_data: int) -> dict[str, Tensor]:
    """δ_p = N · exp(log_wd.p) (shape of the hparam, broadcastable to the parameter)."""
    return {k: n_data * hparams[WD_PREFIX + k].exp() for k in laplace_params(params, hparams)}


def augmented_inputs(
    problem: Problem, hparams: HParams, x: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """The task's augmentation of x, what `problem.forward` is applied to (e.g. (B, S, C, H, W)).

    With `generator=None` the noise is the problem's fixed augmentation noise, as in
    `Problem.data_loss`: augment a whole split in one call so each point keeps its noise.
    """
    if generator is None:
        generator = problem.generator("fixed-augmentation-noise")
    return problem.task.augment(x, hparams, generator)


# --- output splits and partitions --------------------------------------------------------------
def split_rows(
    split: OutputSplit, n: int, k: int, generator: torch.Generator | None, device: torch.device
) -> tuple[list[Tensor], list[float]]:
    """Groups of factor rows as (n, k) 0/1 masks, and each group's weight on its log det."""
    if split == OutputSplit.NONE:
        return [torch.ones(n, k, dtype=torch.bool, device=device)], [1.0]
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


# --- fits --------------------------------------------------------------------------------------
@dataclass
class LaplaceFit:
    """The data-dependent half of a Laplace marglik on n_points points: Σ log p and a curvature
    that gives the log-det ratio for any prior (hyper-steps on δ alone reuse one fit)."""

    log_lik: Tensor  # Σ_{n in the fit} log p(y_n | f_n)
    n_points: int
    curvature: Curvature

    def detached(self) -> LaplaceFit:
        """The same fit cut from the graph to the augmentation (reusable after a backward)."""
        return _detached(self)

    def log_marglik(self, params: Params, hparams: HParams, n_data: int) -> Tensor:
        """(N / n_points) [Σ log p − ½ log-det ratio] − ½ θᵀ P0 θ, with δ = N exp(log_wd)."""
        delta = prior_precision(params, hparams, n_data)
        scale = n_data / self.n_points
        data_term = scale * (self.log_lik - 0.5 * self.curvature.logdet_ratio(delta))
        return data_term - n_data * l2_penalty(detach(params), hparams)


def _detached(obj):
    if isinstance(obj, Tensor):
        return obj.detach()
    if isinstance(obj, dict):
        return {k: _detached(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_detached(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {
            f.name: _detached(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init
        }
        return dataclasses.replace(obj, **changes)
    return obj


def _log_lik(problem: Problem, f: Tensor, y: Tensor) -> Tensor:
    return -problem.nll(f, y) * y.shape[0]


def factor_rows_and_grams(
    problem: Problem,
    params: Params,
    hparams: HParams,
    inputs: Tensor,
    wrt: list[str],
    grams: bool = False,
    layerwise: bool = True,
    columns: Tensor | None = None,
) -> tuple[Rows, dict[str, Tensor], Tensor]:
    """Factor rows (n, K, *shape) per tensor in `wrt` and the outputs f (n, C); with `grams`,
    tensors with one scalar prior precision come as their NTK blocks L_t L_tᵀ (nK × nK) instead.
    `columns` (n,): only the factor row columns[i] of example i (K = 1).

    `layerwise`: nn.Linear / nn.Conv2d tensors from one forward and K backward passes over the
    batch (hgbench.laplace.layers: for a Linear layer the NTK block never forms a row), the
    other tensors from torch.func per-example Jacobians. Otherwise torch.func for all.
    """
    rows: Rows = {}
    out_grams: dict[str, Tensor] = {}
    f = None
    rest = list(wrt)
    if layerwise:
        captures, f = capture_layers(
            problem.model, problem.forward, params, inputs, problem.task.likelihood, wrt, columns
        )
        n = f.shape[0]
        for cap in captures.values():
            names = [t for t in (cap.weight, cap.bias) if t is not None]
            as_gram = {t for t in names if grams and hparams[WD_PREFIX + t].numel() == 1}
            if as_gram:
                out_grams.update({t: g for t, g in cap.grams(n).items() if t in as_gram})
            if len(as_gram) < len(names):
                rows.update({t: r for t, r in cap.rows(n).items() if t not in as_gram})
            rest = [t for t in rest if t not in names]
    if rest:
        rest_rows, f_rest = linearize(
            problem.forward, params, inputs, problem.task.likelihood, rest, None
        )
        if columns is not None:
            pick = torch.arange(columns.shape[0], device=columns.device)
            rest_rows = {t: r[pick, columns].unsqueeze(1) for t, r in rest_rows.items()}
        if grams:
            for t in [t for t in rest if hparams[WD_PREFIX + t].numel() == 1]:
                flat = rest_rows.pop(t).flatten(2).flatten(0, 1)
                out_grams[t] = flat @ flat.T
        rows.update(rest_rows)
        f = f_rest if f is None else f
    assert f is not None
    return rows, out_grams, f


def fit_laplace(
    problem: Problem,
    params: Params,
    hparams: HParams,
    inputs: Tensor,
    y: Tensor,
    structure: Structure,
    split: OutputSplit = OutputSplit.NONE,
    generator: torch.Generator | None = None,
    chunk_size: int = 256,
    layerwise: bool = True,
) -> LaplaceFit:
    """Fit `structure` with output split `split` on the points (inputs, y) at params θ.

    `inputs` are model inputs (see `augmented_inputs`); if they carry a graph back to
    augmentation hparams, so does the fit. `generator` draws the classes of single splits.
    `kernel` processes all points at once; the other structures `chunk_size` at a time.
    """
    structure, split = Structure(structure), OutputSplit(split)
    params = detach(params)
    wrt = laplace_params(params, hparams)
    if not wrt:
        raise ValueError("no parameter has a log_wd hparam: there is no prior to marginalise")
    n, k = y.shape[0], problem.task.n_classes
    masks, weights = split_rows(split, n, k, generator, inputs.device)
    columns = None
    if split in (OutputSplit.SINGLE, OutputSplit.SINGLE_IID):
        # one factor row per example: compute only that one (one backward pass, not K)
        columns = masks[0].to(torch.int64).argmax(1)
        masks = [torch.ones(n, 1, dtype=torch.bool, device=inputs.device)]
    shapes = {name: params[name].shape for name in wrt}

    groups: list[Curvature]
    if structure == Structure.KRON:
        blocks, f = kron_factors(
            problem.model,
            problem.forward,
            params,
            inputs,
            problem.task.likelihood,
            wrt,
            masks,
            chunk_size,
            columns,
        )
        covered = {t for w, b in covered_layers(problem.model, wrt).values() for t in (w, b) if t}
        rest = [name for name in wrt if name not in covered]
        rests = [BlockDiagCurvature({name: shapes[name] for name in rest}) for _ in masks]
        if rest:
            for start in range(0, n, chunk_size):
                cols = None if columns is None else columns[start : start + chunk_size]
                rows, _, _ = factor_rows_and_grams(
                    problem,
                    params,
                    hparams,
                    inputs[start : start + chunk_size],
                    rest,
                    layerwise=False,
                    columns=cols,
                )
                for acc, mask in zip(rests, masks, strict=True):
                    acc.add({name: r[mask[start : start + chunk_size]] for name, r in rows.items()})
        groups = [KronCurvature(b, r if rest else None) for b, r in zip(blocks, rests, strict=True)]
    elif structure == Structure.KERNEL:
        rows, grams, f = factor_rows_and_grams(
            problem, params, hparams, inputs, wrt, grams=True, layerwise=layerwise, columns=columns
        )
        groups = []
        for mask in masks:
            idx = mask.flatten().nonzero().squeeze(1)  # rows are ordered (n, k)
            groups.append(
                KernelCurvature(
                    {t: g[idx][:, idx] for t, g in grams.items()},
                    {t: r[mask] for t, r in rows.items()},
                )
            )
    else:
        accs = [accumulator(structure, shapes) for _ in masks]
        outs = []
        for start in range(0, n, chunk_size):
            cols = None if columns is None else columns[start : start + chunk_size]
            rows, _, f_chunk = factor_rows_and_grams(
                problem,
                params,
                hparams,
                inputs[start : start + chunk_size],
                wrt,
                layerwise=layerwise,
                columns=cols,
            )
            outs.append(f_chunk)
            for acc, mask in zip(accs, masks, strict=True):
                acc.add({name: r[mask[start : start + chunk_size]] for name, r in rows.items()})
        f = torch.cat(outs)
        groups = list(accs)
    if len(groups) == 1 and weights[0] == 1.0:
        curvature = groups[0]
    else:
        curvature = SplitCurvature(groups, weights)
    return LaplaceFit(_log_lik(problem, f, y), n, curvature)


def log_marglik(
    problem: Problem,
    params: Params,
    hparams: HParams,
    inputs: Tensor,
    y: Tensor,
    structure: Structure = Structure.FULL,
    split: OutputSplit = OutputSplit.NONE,
    n_data: int | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int = 256,
) -> Tensor:
    """log q on (inputs, y) with one fit of `structure`, scaled to n_data points (default: all
    of them, the full-batch estimate; fewer points: the single-block estimate log q̂_b)."""
    fit = fit_laplace(problem, params, hparams, inputs, y, structure, split, generator, chunk_size)
    return fit.log_marglik(params, hparams, y.shape[0] if n_data is None else n_data)


def exact_structure(problem: Problem, params: Params, hparams: HParams, n: int) -> Structure:
    """The cheaper exact form: kernel (N·C × N·C) or full parametric (P × P)."""
    p = sum(params[k].numel() for k in laplace_params(params, hparams))
    return Structure.KERNEL if n * problem.task.n_classes < p else Structure.FULL


def exact_log_marglik(
    problem: Problem,
    params: Params,
    hparams: HParams,
    inputs: Tensor,
    y: Tensor,
    chunk_size: int = 256,
) -> Tensor:
    """log q with the full GGN on all the given points (the exact linearised Laplace)."""
    structure = exact_structure(problem, params, hparams, y.shape[0])
    return log_marglik(problem, params, hparams, inputs, y, structure, chunk_size=chunk_size)


def partitioned_log_marglik(
    problem: Problem,
    params: Params,
    hparams: HParams,
    inputs: Tensor,
    y: Tensor,
    blocks: list[Tensor],
    structure: Structure,
    split: OutputSplit = OutputSplit.NONE,
    generator: torch.Generator | None = None,
    chunk_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """The partitioned value log q_part and the per-block (N/|B_b|)-scaled estimates log q̂_b.

    log q_part = Σ_b (|B_b| / N) log q̂_b, the mean of the estimates when the blocks are equal.
    """
    n = y.shape[0]
    estimates = torch.stack(
        [
            log_marglik(
                problem,
                params,
                hparams,
                inputs[b],
                y[b],
                structure,
                split,
                n,
                generator,
                chunk_size,
            )
            for b in blocks
        ]
    )
    sizes = torch.tensor(
        [len(b) / n for b in blocks], dtype=estimates.dtype, device=estimates.device
    )
    return (sizes * estimates).sum(), estimates


# --- probe mode's exact reference --------------------------------------------------------------
def hypergradient(value: Tensor, hparams: HParams) -> dict[str, Tensor]:
    """d(−value)/d hparams (zeros for hparams the value does not depend on)."""
    grads = torch.autograd.grad(-value, list(hparams.values()), allow_unused=True)
    return {
        k: torch.zeros_like(v) if g is None else g
        for (k, v), g in zip(hparams.items(), grads, strict=True)
    }


def marglik_reference(problem: Problem, hparams: HParams | None = None) -> Reference:
    """The exact full-GGN Laplace log marglik / N and its hypergradient at an L-BFGS MAP.

    State: the minimiser of the full-batch training loss at the initial hparams (the MAP of the
    joint with δ = N exp(log_wd), N = n_train); value: log q / N (higher is better);
    hypergradient: d(−log q / N)/d hparams at fixed θ, for log_wd.* and aug.* alike.
    """
    hparams = problem.init_hparams() if hparams is None else hparams
    params = tight_optimum(problem, hparams)
    d = problem.data
    n = d.y_train.shape[0]
    wrt = laplace_params(params, hparams)
    p = sum(params[k].numel() for k in wrt)
    if min(p, n * problem.task.n_classes) > EXACT_LIMIT:
        raise NotImplementedError(
            f"exact Laplace marglik needs a {min(p, n * problem.task.n_classes)}² matrix: too large"
        )
    grad_norm = float(flatten(torch.func.grad(problem.full_train_loss)(params, hparams)).norm())
    live = {k: v.clone().requires_grad_(True) for k, v in hparams.items()}
    inputs = augmented_inputs(problem, live, d.x_train)
    structure = exact_structure(problem, params, live, n)
    value = log_marglik(problem, params, live, inputs, d.y_train, structure) / n
    hg = {k: g.detach() for k, g in hypergradient(value, live).items()}
    form = "kernel (NC × NC)" if structure == Structure.KERNEL else "parametric (P × P)"
    name = (
        f"exact full-GGN Laplace, {form} form, N={n}, P={p}, at an L-BFGS MAP "
        f"(‖∇L_T‖ = {grad_norm:.1e})"
    )
    return Reference(name, ProbeState(params, hparams), hg, value=float(value.detach()))
