"""Fitting a Laplace curvature to data: one chunk loop for every structure and output split.

Hparams → prior. hgbench's training loss is mean NLL + ½ Σ_p exp(log_wd.p) ⊙ p²
(hgbench.contracts.hparams), so N times it is the negative log joint under a Gaussian prior of
precision

    δ_p = N · exp(log_wd.p)      (broadcast to the parameter's shape)

with N the number of points the marginal likelihood covers: the training split in probe mode,
train + validation in the marglik methods' run mode (they need no validation split). A parameter
without a `log_wd` hparam has no prior; the Laplace approximation conditions on it (holds it at
its MAP value, which is δ → ∞ in the kernel view), so it enters neither the prior nor the GGN.

The model is any nn.Module whose examples do not interact (no BatchNorm), called as
`functional_call(model, params, (inputs,))`; or a hgbench Problem, whose model and likelihood
are used. Augmentation hparams enter through the inputs (see `augmented_inputs`): inputs that
carry an autograd graph give a fit, and a value, differentiable in them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from hgbench.contracts.hparams import WD_PREFIX, HParams, Params, l2_penalty
from hgbench.contracts.task import Likelihood, Problem
from hgbench.numerics.functional import detach
from hgbench.numerics.laplace.bounds import OutputSplit, split_rows
from hgbench.numerics.laplace.capture import Capture, capture
from hgbench.numerics.laplace.ggn import (
    BlockDiagCurvature,
    Curvature,
    DiagCurvature,
    FullCurvature,
    KernelCurvature,
    KronCurvature,
    SplitCurvature,
    Structure,
)
from hgbench.numerics.laplace.jacobians import Rows
from hgbench.numerics.laplace.kron import KronBlock
from hgbench.numerics.laplace.layers import Mask

Model = nn.Module | Problem


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


# --- the model ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Network:
    """The network and likelihood a fit is taken of (from an nn.Module or a Problem)."""

    module: nn.Module
    likelihood: Likelihood
    n_outputs: int | None = None  # C, where known without a forward pass

    @classmethod
    def of(cls, model: Model, likelihood: Likelihood | str | None = None) -> Network:
        if isinstance(model, Problem):
            return cls(model.model, model.task.likelihood, model.task.n_classes)
        return cls(model, Likelihood(likelihood or Likelihood.CATEGORICAL))

    def outputs(self, params: Params, inputs: Tensor) -> int:
        """C, from one example's forward pass where it is not known."""
        if self.n_outputs is not None:
            return self.n_outputs
        with torch.no_grad():
            return functional_call(self.module, params, (inputs[:1],)).shape[-1]

    def log_likelihood(self, f: Tensor, y: Tensor) -> Tensor:
        """Σ_n log p(y_n | f_n): categorical (softmax) or unit-variance Gaussian on one-hot y."""
        if self.likelihood == Likelihood.CATEGORICAL:
            return -F.cross_entropy(f, y, reduction="sum")
        target = F.one_hot(y, f.shape[-1]).to(f.dtype)
        c = f.shape[-1]
        return -0.5 * (f - target).square().sum() - 0.5 * y.shape[0] * c * math.log(2 * math.pi)


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


def _select(rows: Rows, mask: Mask) -> Rows:
    """(n, K, *shape) rows -> (r, *shape): every row (a view), or the masked ones."""
    return {t: r.flatten(0, 1) if mask is None else r[mask] for t, r in rows.items()}


class _Accumulator(Protocol):
    """Sums one structure's pieces over chunks, one curvature per group of factor rows."""

    def add(self, chunk: Capture, masks: list[Mask]) -> None: ...

    def curvatures(self) -> list[Curvature]: ...


@dataclass
class _Rows:
    """full and blockdiag: the rows themselves."""

    groups: list[FullCurvature] | list[BlockDiagCurvature]

    def add(self, chunk: Capture, masks: list[Mask]) -> None:
        rows = chunk.rows()
        for acc, mask in zip(self.groups, masks, strict=True):
            acc.add(_select(rows, mask))

    def curvatures(self) -> list[Curvature]:
        return list(self.groups)


@dataclass
class _Diag:
    """diag: per-layer contractions (hgbench.numerics.laplace.layers), no row formed where
    avoidable."""

    groups: list[DiagCurvature]

    def add(self, chunk: Capture, masks: list[Mask]) -> None:
        for acc, diag in zip(self.groups, chunk.diag(masks), strict=True):
            acc.add(diag)

    def curvatures(self) -> list[Curvature]:
        return list(self.groups)


@dataclass
class _Kron:
    """kron: K-FAC sums per Linear/Conv2d layer; exact per-tensor blocks for the other tensors."""

    n_groups: int
    b: list[dict[str, Tensor]] = field(default_factory=list)
    a: dict[str, Tensor] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    layers: dict[str, tuple[str | None, str | None, tuple[int, ...] | None]] = field(
        default_factory=dict
    )
    rest: list[BlockDiagCurvature] = field(default_factory=list)

    def add(self, chunk: Capture, masks: list[Mask]) -> None:
        if not self.b:
            self.b = [{} for _ in range(self.n_groups)]
        for name, layer in chunk.layers.items():
            self.layers[name] = (layer.weight, layer.bias, layer.weight_shape)
            for group, term in zip(self.b, layer.kron_b(masks), strict=True):
                group[name] = group[name] + term if name in group else term
            if chunk.columns.start in (None, 0):  # the inputs once per chunk, not per column
                a, count = layer.kron_a()
                self.a[name] = self.a[name] + a if name in self.a else a
                self.count[name] = self.count.get(name, 0) + count
        rows = chunk.other.rows()
        if rows:
            if not self.rest:
                shapes = {t: r.shape[2:] for t, r in rows.items()}
                self.rest = [BlockDiagCurvature(shapes) for _ in range(self.n_groups)]
            for acc, mask in zip(self.rest, masks, strict=True):
                acc.add(_select(rows, mask))

    def curvatures(self) -> list[Curvature]:
        out: list[Curvature] = []
        for g in range(self.n_groups):
            blocks = {
                # A: the mean over examples, copies and positions, Σ a aᵀ / (N R)
                name: KronBlock(w, b, shape, self.b[g][name], self.a[name] / self.count[name])
                for name, (w, b, shape) in self.layers.items()
            }
            out.append(KronCurvature(blocks, self.rest[g] if self.rest else None))
        return out


@dataclass
class _Kernel:
    """kernel: per-tensor NTK Grams for tensors with a scalar prior, rows for the others (all
    points in one chunk: the kernel couples them)."""

    n_groups: int
    scalar: set[str]
    groups: list[KernelCurvature] = field(default_factory=list)

    def add(self, chunk: Capture, masks: list[Mask]) -> None:
        if self.groups:
            raise ValueError("the kernel structure takes all its points in one chunk")
        grams = chunk.grams(self.scalar)
        rows = chunk.rows(exclude=set(grams))
        for mask in masks:
            if mask is None:
                self.groups.append(KernelCurvature(grams, _select(rows, None)))
                continue
            idx = mask.flatten().nonzero().squeeze(1)  # rows are ordered (n, k)
            self.groups.append(
                KernelCurvature({t: g[idx][:, idx] for t, g in grams.items()}, _select(rows, mask))
            )

    def curvatures(self) -> list[Curvature]:
        return list(self.groups)


def _accumulator(
    structure: Structure, shapes: dict[str, torch.Size], n_groups: int, scalar: set[str]
) -> _Accumulator:
    if structure == Structure.FULL:
        return _Rows([FullCurvature(shapes) for _ in range(n_groups)])
    if structure == Structure.BLOCKDIAG:
        return _Rows([BlockDiagCurvature(shapes) for _ in range(n_groups)])
    if structure == Structure.DIAG:
        return _Diag([DiagCurvature(shapes) for _ in range(n_groups)])
    if structure == Structure.KRON:
        return _Kron(n_groups)
    return _Kernel(n_groups, scalar)


def fit_laplace(
    model: Model,
    params: Params,
    hparams: HParams,
    inputs: Tensor,
    y: Tensor,
    structure: Structure | str,
    split: OutputSplit | str = OutputSplit.NONE,
    generator: torch.Generator | None = None,
    chunk_size: int = 256,
    layerwise: bool = True,
    likelihood: Likelihood | str | None = None,
) -> LaplaceFit:
    """Fit `structure` with output split `split` on the points (inputs, y) at params θ.

    `model`: an nn.Module (with `likelihood`, categorical by default) or a Problem. The Laplace
    approximation covers the params that have a `log_wd.<name>` hparam (`laplace_params`);
    `hparams` decides only that, and which priors are scalars, until `LaplaceFit.log_marglik`.
    `inputs` are model inputs (see `augmented_inputs`); if they carry a graph back to
    augmentation hparams, so does the fit. `generator` draws the classes of single splits.
    `kernel` processes all points at once; the other structures `chunk_size` at a time, each
    chunk one forward and K backward passes (`layerwise=False`: per-example Jacobians of the
    whole network instead, the slow reference).
    """
    net = Network.of(model, likelihood)
    structure, split = Structure(structure), OutputSplit(split)
    params = detach(params)
    wrt = laplace_params(params, hparams)
    if not wrt:
        raise ValueError("no parameter has a log_wd hparam: there is no prior to marginalise")
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    n = y.shape[0]
    k = net.outputs(params, inputs)
    masks, weights = split_rows(split, n, k, generator, inputs.device)
    columns = None
    if split in (OutputSplit.SINGLE, OutputSplit.SINGLE_IID):
        # one factor row per example: compute only that one (one backward pass, not K)
        mask = masks[0]
        assert mask is not None
        columns = mask.to(torch.int64).argmax(1)
        masks = [None]
    shapes = {name: params[name].shape for name in wrt}
    scalar = {t for t in wrt if hparams[WD_PREFIX + t].numel() == 1}
    acc = _accumulator(structure, shapes, len(masks), scalar)
    step = n if structure == Structure.KERNEL else chunk_size
    # diag and kron are sums over factor columns: they take them a group at a time (memory)
    streams = structure in (Structure.DIAG, Structure.KRON)
    outs = []
    for start in range(0, n, step):
        part = slice(start, start + step)
        part_masks = [None if m is None else m[part] for m in masks]

        def sink(c: Capture, part_masks: list[Mask] = part_masks) -> None:
            acc.add(c, [None if m is None else m[:, c.columns] for m in part_masks])

        chunk = capture(
            net.module,
            params,
            inputs[part],
            net.likelihood,
            wrt,
            None if columns is None else columns[part],
            layerwise,
            sink=sink if streams else None,
        )
        if not streams:
            acc.add(chunk, part_masks)
        outs.append(chunk.f)
    groups = acc.curvatures()
    if len(groups) == 1 and weights[0] == 1.0:
        curvature = groups[0]
    else:
        curvature = SplitCurvature(groups, weights)
    return LaplaceFit(net.log_likelihood(torch.cat(outs), y), n, curvature)
