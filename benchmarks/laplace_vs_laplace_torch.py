"""One full-batch marginal-likelihood step, hgbench.laplace vs laplace-torch, side by side.

A step is what `laplace_full` does per curvature fit: fit the GGN structure on all N training
points at the current params, evaluate the log marginal likelihood at layer-wise prior precisions
and differentiate it with respect to them. Both sides get the same model, params, data (the
task's training split, no augmentation: laplace-torch has none) and dtype; rounds alternate and
the medians are compared. laplace-torch uses its default backend (CurvlinopsGGN). Prints a table
and the ratio hgbench / laplace-torch (below 1: hgbench is faster); never asserts on times.

    python benchmarks/laplace_vs_laplace_torch.py [--tasks digits_mlp,digits_cnn]
        [--structures kron,diag,full] [--n-full 300] [--repeats 5] [--dtype float32]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import statistics
import time
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

from hgbench.hparams import WD_PREFIX
from hgbench.laplace import Structure, fit_laplace
from hgbench.plugins import load_plugins
from hgbench.task import TASKS, Problem


def _problem(name: str, n: int, dtype: torch.dtype) -> Problem:
    changes = {"n_train": n}
    if "learn_translate" in {f.name for f in dataclasses.fields(TASKS[name])}:
        changes["learn_translate"] = False
    return dataclasses.replace(TASKS[name], **changes).build(0, "cpu", dtype)


def hgbench_step(problem: Problem, params, log_delta: torch.Tensor, structure: str) -> float:
    n = problem.n_train
    hparams = {
        WD_PREFIX + k: (log_delta[i] - math.log(n)).clone().requires_grad_(True)
        for i, k in enumerate(params)
    }
    d = problem.data
    fit = fit_laplace(
        problem, params, hparams, d.x_train, d.y_train, Structure(structure), chunk_size=n
    )
    value = fit.log_marglik(params, hparams, n)
    torch.autograd.grad(value, list(hparams.values()))
    return float(value.detach())


def laplace_torch_step(problem: Problem, params, log_delta: torch.Tensor, structure: str) -> float:
    import laplace

    model = problem.bind(params)
    la = laplace.Laplace(
        model, "classification", subset_of_weights="all", hessian_structure=structure
    )
    d = problem.data
    la.fit(DataLoader(TensorDataset(d.x_train, d.y_train), batch_size=problem.n_train))
    log_delta = log_delta.clone().requires_grad_(True)
    value = la.log_marginal_likelihood(prior_precision=log_delta.exp())
    torch.autograd.grad(value, log_delta)
    return float(value.detach())


def _time(fn) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="digits_mlp,digits_cnn")
    parser.add_argument("--structures", default="kron,diag,full")
    parser.add_argument("--n", type=int, default=1000, help="training points (kron, diag)")
    parser.add_argument("--n-full", type=int, default=300, help="training points for full")
    # laplace-torch's diagonal GGN of the digits CNN holds ~37 MB per example (7.5 GB at N=200):
    # at N=1000 it exhausts a 24 GB machine, so the CNN's diag row runs at --n-diag-cnn points
    parser.add_argument("--n-diag-cnn", type=int, default=200, help="training points, CNN diag")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    load_plugins()
    warnings.filterwarnings("ignore")
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}")
    print(
        f"{'task':12} {'structure':9} {'N':>5} {'P':>6} {'hgbench s':>10} {'laplace-torch s':>16} "
        f"{'ratio':>6}  values agree"
    )
    for task in args.tasks.split(","):
        for structure in args.structures.split(","):
            n = args.n_full if structure == "full" else args.n
            if structure == "diag" and "cnn" in task:
                n = args.n_diag_cnn
            problem = _problem(task, n, dtype)
            params = problem.init_params()
            log_delta = torch.linspace(-1.0, 2.0, len(params), dtype=dtype)
            ours_fn = functools.partial(hgbench_step, problem, params, log_delta, structure)
            theirs_fn = functools.partial(laplace_torch_step, problem, params, log_delta, structure)
            ours_fn(), theirs_fn()  # warm-up: lazy initialisation, first vmap traces
            ours, theirs = [], []
            for _ in range(args.repeats):
                t, v_ours = _time(ours_fn)
                ours.append(t)
                t, v_theirs = _time(theirs_fn)
                theirs.append(t)
            a, b = statistics.median(ours), statistics.median(theirs)
            agree = abs(v_ours - v_theirs) <= 1e-3 * abs(v_theirs)
            print(
                f"{task:12} {structure:9} {n:>5} {problem.n_params:>6} {a:>10.4f} {b:>16.4f} "
                f"{a / b:>6.2f}  {agree} ({v_ours:.4f} vs {v_theirs:.4f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
