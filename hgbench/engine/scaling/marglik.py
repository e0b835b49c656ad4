"""The marginal-likelihood methods' units: a Laplace bound's hypergradient is a curvature fit,
its log-determinant and a backward pass, not the gradients and Hessian products of
hgbench.engine.scaling.counts.

Timed on the cell's own problem, state and settings, after the method's own calls (outside its
clock), from hgbench.numerics.laplace's public pieces, in TSE (seconds / the task's `fixed` step):

    lfit   `fit_laplace` on the points the method's estimate covers, with its structure, output
           split and chunking: the per-example factor rows (Jacobians) and what the structure
           sums of them (the kernel's NTK Grams, K-FAC factors, the diagonal)
    ldet   `LaplaceFit.log_marglik` of that fit: the prior and the log-det ratio (for the kernel
           the M·C × M·C matrix's Cholesky; for kron the factors' eigendecompositions)
    lgrad  the backward of that value to the hparams (`hgbench.numerics.laplace.hypergradient`)

laplace_ntk's estimate covers one block of M = `block_size` points (the first block of a
partition drawn like the method's), laplace_full's all N training points. A round is the three
pieces in the method's order on a fresh fit (kron caches its eigenvalues, a backward frees its
graph); the units are the medians of `repeats` rounds after a first one, or the first round's
own times when it took `single_call_s` or longer (as the worker times the method itself).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from hgbench.contracts.method import Method, ProbeState
from hgbench.contracts.task import Problem
from hgbench.engine.timing import synchronize
from hgbench.numerics.laplace import augmented_inputs, fit_laplace, hypergradient, partition

MARGLIK_UNITS = ("lfit", "ldet", "lgrad")
MARGLIK_METHODS = ("laplace_ntk", "laplace_full")
DEFAULT_CHUNK = 256  # laplace_ntk's estimate fits with hgbench.numerics.laplace's default chunking


def _fit_plan(name: str, method: Method, problem: Problem) -> dict[str, Any]:
    """Which points the method's estimate fits, and how (structure, split, chunking)."""
    d = problem.data
    n = d.y_train.shape[0]
    if name == "laplace_ntk":
        blocks = partition(
            n, method.block_size, problem.generator("scaling-units-blocks"), d.y_train,
            method.partition,
        )  # fmt: skip
        return {"idx": blocks[0], "split": method.split, "chunk": DEFAULT_CHUNK, "n": n}
    return {"idx": None, "split": "none", "chunk": method.chunk_size, "n": n}


def measure_marglik_units(
    name: str,
    method: Method,
    problem: Problem,
    state: ProbeState,
    step_s: float,
    repeats: int = 3,
    single_call_s: float = 2.0,
) -> tuple[dict[str, float], dict[str, Any]] | None:
    """(units in TSE, what they covered: fit_points, outputs), or None for another method."""
    if name not in MARGLIK_METHODS:
        return None
    plan = _fit_plan(name, method, problem)
    d, device = problem.data, problem.device
    idx = plan["idx"]
    x, y = (d.x_train, d.y_train) if idx is None else (d.x_train[idx], d.y_train[idx])
    split_gen = problem.generator("scaling-units-split")

    def clock(fn):
        synchronize(device)
        start = time.perf_counter()
        out = fn()
        synchronize(device)
        return out, time.perf_counter() - start

    def one_round() -> dict[str, float]:
        hparams = {k: v.detach().clone().requires_grad_(True) for k, v in state.hparams.items()}

        def fit():
            inputs = augmented_inputs(problem, hparams, x)
            return fit_laplace(
                problem, state.params, hparams, inputs, y, method.structure, plan["split"],
                split_gen, plan["chunk"],
            )  # fmt: skip

        laplace, t_fit = clock(fit)
        value, t_det = clock(lambda: laplace.log_marglik(state.params, hparams, plan["n"]))
        _, t_grad = clock(lambda: hypergradient(value / plan["n"], hparams))
        return {"lfit": t_fit, "ldet": t_det, "lgrad": t_grad}

    first = one_round()
    rounds = [one_round() for _ in range(repeats)] if sum(first.values()) < single_call_s else []
    rounds = rounds or [first]
    units = {k: statistics.median(r[k] for r in rounds) / step_s for k in MARGLIK_UNITS}
    covered = {"fit_points": int(y.shape[0]), "outputs": int(problem.task.n_classes or 0)}
    return units, covered
