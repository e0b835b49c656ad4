"""Linearised-Laplace log marginal likelihoods: one fit's value, the exact value, and the
partitioned block bound.

At a MAP θ of the training loss (hgbench.numerics.laplace.fitting for hparams → prior) the Laplace
log marginal likelihood (Immer et al. 2021) is

    log q(D | h) = Σ_n log p(y_n | f_n) − ½ θᵀ P0 θ − ½ [log det(P0 + G) − log det P0]
                 = −N · L_T(θ, h) − ½ log-det ratio,

G = Σ_n J_nᵀ Λ_n J_n the GGN. Augmentation hparams enter through the inputs (f is the model on
the augmented, possibly S-fold averaged, inputs), so the value is differentiable in them too.
Hypergradients follow hgbench's convention: gradients of −log q / N (minimised) at fixed θ.
Block bounds and which estimator bounds what: hgbench.numerics.laplace.bounds.

`model` is an nn.Module (with `likelihood`, categorical by default) or a Problem, as in
`fit_laplace`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hgbench.contracts.hparams import HParams, Params
from hgbench.contracts.task import Likelihood
from hgbench.numerics.laplace.bounds import OutputSplit
from hgbench.numerics.laplace.fitting import Model, Network, fit_laplace, laplace_params
from hgbench.numerics.laplace.ggn import Structure


def log_marglik(
    model: Model,
    params: Params,
    hparams: HParams,
    inputs: Tensor,
    y: Tensor,
    structure: Structure | str = Structure.FULL,
    split: OutputSplit | str = OutputSplit.NONE,
    n_data: int | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int = 256,
    likelihood: Likelihood | str | None = None,
) -> Tensor:
    """log q on (inputs, y) with one fit of `structure`, scaled to n_data points (default: all
    of them, the full-batch estimate; fewer points: the single-block estimate log q̂_b)."""
    fit = fit_laplace(
        model,
        params,
        hparams,
        inputs,
        y,
        structure,
        split,
        generator,
        chunk_size,
        likelihood=likelihood,
    )
    return fit.log_marglik(params, hparams, y.shape[0] if n_data is None else n_data)


def exact_structure(n_params: int, n_rows: int) -> Structure:
    """The cheaper exact form for P parameters and N·C factor rows: the kernel (N·C × N·C) or
    the full parametric one (P × P); both give the same number (Sylvester)."""
    return Structure.KERNEL if n_rows < n_params else Structure.FULL


def exact_log_marglik(
    model: Model,
    params: Params,
    hparams: HParams,
    inputs: Tensor,
    y: Tensor,
    chunk_size: int = 256,
    likelihood: Likelihood | str | None = None,
) -> Tensor:
    """log q with the full GGN on all the given points (the exact linearised Laplace)."""
    p = sum(params[k].numel() for k in laplace_params(params, hparams))
    rows = y.shape[0] * Network.of(model, likelihood).outputs(params, inputs)
    structure = exact_structure(p, rows)
    return log_marglik(
        model, params, hparams, inputs, y, structure, chunk_size=chunk_size, likelihood=likelihood
    )


def partitioned_log_marglik(
    model: Model,
    params: Params,
    hparams: HParams,
    inputs: Tensor,
    y: Tensor,
    blocks: list[Tensor],
    structure: Structure | str,
    split: OutputSplit | str = OutputSplit.NONE,
    generator: torch.Generator | None = None,
    chunk_size: int = 256,
    likelihood: Likelihood | str | None = None,
) -> tuple[Tensor, Tensor]:
    """The partitioned value log q_part and the per-block (N/|B_b|)-scaled estimates log q̂_b.

    log q_part = Σ_b (|B_b| / N) log q̂_b, the mean of the estimates when the blocks are equal.
    """
    n = y.shape[0]
    estimates = torch.stack(
        [
            log_marglik(
                model,
                params,
                hparams,
                inputs[b],
                y[b],
                structure,
                split,
                n,
                generator,
                chunk_size,
                likelihood,
            )
            for b in blocks
        ]
    )
    sizes = torch.tensor(
        [len(b) / n for b in blocks], dtype=estimates.dtype, device=estimates.device
    )
    return (sizes * estimates).sum(), estimates


def hypergradient(value: Tensor, hparams: HParams) -> dict[str, Tensor]:
    """d(−value)/d hparams (zeros for hparams the value does not depend on)."""
    grads = torch.autograd.grad(-value, list(hparams.values()), allow_unused=True)
    return {
        k: torch.zeros_like(v) if g is None else g
        for (k, v), g in zip(hparams.items(), grads, strict=True)
    }
