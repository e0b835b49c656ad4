"""Operation counts: what a hypergradient should cost, from the measured cost of its pieces.

Units are timed on the cell's own problem and state, outside every method's clock, and expressed
in training-step equivalents (TSE: one `fixed` minibatch step of the task is 1):

    f     a full-batch training gradient (forward + backward)
    g     a validation gradient (forward + backward on the validation split)
    b     a full-batch training gradient kept as a graph (`LinearizedGradient`: create_graph)
    h     one product through that graph (a linearised Hessian-vector product, or mixed VJP)
    j     one forward-over-reverse Hessian-vector product (torch.func jvp of grad), full batch
    bm    `b` on one minibatch of the task's batch size
    hm    `h` on one minibatch

The marginal-likelihood methods' cost is per-example Jacobians and log-determinants, not these
pieces: their units (`lfit`, `ldet`, `lgrad`: the curvature fit on the points the estimate
covers, its log-det, the backward to the hparams) are timed per cell, at its settings
(hgbench.engine.scaling.marglik). A method's count combines the units the way its algorithm does
(`COUNTS`, one formula per registered method that has one); the report sets the measured TSE
beside it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hgbench.contracts.method import ProbeState
from hgbench.contracts.task import Problem
from hgbench.engine.scaling.marglik import MARGLIK_METHODS, MARGLIK_UNITS
from hgbench.engine.timing import synchronize
from hgbench.numerics.functional import LinearizedGradient, hvp

UNITS = ("f", "g", "b", "h", "j", "bm", "hm")


def _median_seconds(fn: Callable[[], Any], device: torch.device, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_units(problem: Problem, state: ProbeState, step_s: float) -> dict[str, float]:
    """Every unit of `UNITS` at the state, in TSE (seconds / `step_s`)."""
    d, device = problem.data, problem.device
    params = state.params
    # the task's own hparams (a reversal method's state also carries its schedules)
    hparams = {k: v for k, v in state.hparams.items() if k in problem.space.names}
    n = min(problem.task.batch_size, problem.n_train)
    xm, ym = d.x_train[:n], d.y_train[:n]
    v = {k: torch.randn_like(t) for k, t in params.items()}

    def minibatch_loss(w, h):
        return problem.train_loss(w, h, xm, ym)

    def live() -> dict[str, torch.Tensor]:
        return {k: t.detach().requires_grad_(True) for k, t in params.items()}

    def f() -> None:
        w = live()
        torch.autograd.grad(problem.full_train_loss(w, hparams), list(w.values()))

    def g() -> None:
        w = live()
        torch.autograd.grad(problem.val_loss(w), list(w.values()))

    lin = LinearizedGradient(problem.full_train_loss, params, hparams)
    lin_m = LinearizedGradient(minibatch_loss, params, hparams)
    jobs: dict[str, Callable[[], Any]] = {
        "f": f,
        "g": g,
        "b": lambda: LinearizedGradient(problem.full_train_loss, params, hparams),
        "h": lambda: lin.hvp(v),
        "j": lambda: hvp(lambda w: problem.full_train_loss(w, hparams), params, v),
        "bm": lambda: LinearizedGradient(minibatch_loss, params, hparams),
        "hm": lambda: lin_m.hvp(v),
    }
    return {k: _median_seconds(fn, device) / step_s for k, fn in jobs.items()}


@dataclass(frozen=True)
class Count:
    """A method's operation count in TSE, and the formula (with the numbers put in)."""

    tse: float
    formula: str


Formula = Callable[[dict[str, Any], dict[str, float], dict[str, Any]], Count]


def _implicit(products: int, u: dict[str, float], what: str) -> Count:
    tse = u["g"] + u["b"] + (products + 1) * u["h"]
    return Count(tse, f"g + b + ({what} + 1)·h = g + b + {products + 1}·h")


def _unroll(steps: int, u: dict[str, float], plain: int = 0) -> Count:
    tse = plain * u["f"] + steps * (u["b"] + u["h"]) + u["g"]
    head = f"{plain}·f + " if plain else ""
    return Count(tse, f"{head}{steps}·(b + h) + g")


def _reversal(s: dict[str, Any], u: dict[str, float], c: dict[str, Any]) -> Count:
    t = int(s["T"])
    tse = t * (1.0 + u["bm"] + u["hm"]) + u["g"]
    return Count(tse, f"T·(1 + bm + hm) + g, T = {t} (a forward step is 1 TSE)")


def _forward(s: dict[str, Any], u: dict[str, float], c: dict[str, Any]) -> Count:
    k, n_h = int(s["K"]), int(c["n_hparams_estimated"])
    tse = k * (u["f"] + n_h * u["j"]) + u["g"]
    return Count(tse, f"K·(f + n_h·j) + g, K = {k}, n_h = {n_h}")


def _darts(s: dict[str, Any], u: dict[str, float], c: dict[str, Any]) -> Count:
    if int(s.get("order", 2)) == 1:
        return Count(u["g"], "g (first order)")
    if s.get("finite_difference", True):
        return Count(3 * u["f"] + u["g"], "f + g + 2·f (two finite-difference gradients)")
    return Count(2 * u["f"] + u["g"] + u["h"], "f + g + b (mixed VJP ≈ f + h)")


def _sama(s: dict[str, Any], u: dict[str, float], c: dict[str, Any]) -> Count:
    if s.get("finite_difference", True):
        return Count(u["g"] + 2 * u["f"], "g + 2·f (two finite-difference gradients)")
    return Count(u["g"] + u["f"] + u["h"], "g + f + h (mixed VJP)")


def _cg(s: dict[str, Any], u: dict[str, float], c: dict[str, Any]) -> Count:
    done = c.get("solver_iterations")
    products = int(done) if isinstance(done, int | float) else int(s["iterations"])
    return _implicit(products, u, "iterations run")


def _pes(s: dict[str, Any], u: dict[str, float], c: dict[str, Any]) -> Count:
    pairs, horizon = int(s["n_pairs"]), int(s["probe_horizon"])
    tse = 2 * pairs * (horizon * u["f"] + u["g"] / 2)
    return Count(tse, f"2N·(H·f + g/2), N = {pairs} pairs, H = {horizon} (a forward is g/2)")


def _hd(s: dict[str, Any], u: dict[str, float], c: dict[str, Any]) -> Count:
    k = int(s["K"])
    return Count((k + 1) * u["f"], f"(K + 1)·f, K = {k}")


def _exact(s: dict[str, Any], u: dict[str, float], c: dict[str, Any]) -> Count:
    return _implicit(int(c["n_params"]), u, "P")


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))


def _laplace(what: str, s: dict[str, Any], u: dict[str, float], c: dict[str, Any]) -> Count:
    n, k = int(c["fit_points"]), int(c["outputs"])
    structure = _text(s.get("structure", "kernel"))
    split = _text(s.get("split", "none"))
    shape = f"{structure} on {n} points ({what})"
    if structure == "kernel" and split == "independent":
        shape += f", {k} kernels of {n} × {n}"
    elif structure == "kernel":
        rows = n if split.startswith("single") else n * k
        shape += f", a {rows} × {rows} kernel"
    parts = " + ".join(f"{u[k]:.3g}" for k in MARGLIK_UNITS)
    return Count(sum(u[k] for k in MARGLIK_UNITS), f"lfit + ldet + lgrad = {parts} ({shape})")


COUNTS: dict[str, Formula] = {
    "ift_neumann": lambda s, u, c: _implicit(int(s["terms"]), u, "terms"),
    "ift_identity": lambda s, u, c: _implicit(0, u, "0"),
    "ift_cg": _cg,
    "ift_exact": _exact,
    "ift_nystrom": lambda s, u, c: _implicit(int(s["rank"] or c["n_params"]), u, "rank"),
    "soba": lambda s, u, c: _implicit(int(s["v_steps"]) - 1, u, "v_steps − 1"),
    "amigo": lambda s, u, c: _implicit(int(s["v_steps"]) - 1, u, "v_steps − 1"),
    "darts": _darts,
    "sama": _sama,
    "unroll": lambda s, u, c: _unroll(int(s["K"]), u),
    "truncated_bptt": lambda s, u, c: _unroll(
        int(s["truncation"]), u, int(s["horizon"]) - int(s["truncation"])
    ),
    "forward_mode": _forward,
    "reversible_sgd": _reversal,
    "drmad": _reversal,
    "pes": _pes,
    "hypergradient_descent": _hd,
    "laplace_ntk": lambda s, u, c: _laplace(f"one block, M = {s['block_size']}", s, u, c),
    "laplace_full": lambda s, u, c: _laplace("all N", s, u, c),
}


def operation_count(
    method: str, settings: dict[str, Any], units: dict[str, float] | None, context: dict[str, Any]
) -> Count | None:
    """The method's count at these settings, or None (no formula, or no units measured).
    `context`: n_params, n_hparams_estimated, the estimate's `extra` (solver iterations) and,
    for the marginal-likelihood methods, what their units covered (fit_points, outputs)."""
    formula = COUNTS.get(method)
    if formula is None or not units:
        return None
    if method in MARGLIK_METHODS and not all(k in units for k in MARGLIK_UNITS):
        return None
    return formula(settings, units, context)
