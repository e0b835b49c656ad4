"""The scaling report's operation counts are built from plain-autograd units; some methods take
the same gradients and products through torch.func transforms. How far apart are they?

    python benchmarks/scaling_transforms.py [--widths 100,1000] [--rounds 15]

On the scaling sweep's MLP (64-w-w-10, one decay per tensor, at the sweep's cost state), one
thread, the four ways are timed side by side in alternating rounds (medians):

- `f`: a full-batch training gradient by torch.autograd.grad (the count's unit f);
- `func.grad`: the same gradient by torch.func.grad (hypergradient descent's K steps);
- `bm + hm`: a minibatch gradient kept as a graph and one product through it
  (`LinearizedGradient`: the count's units bm and hm);
- `func.vjp(grad)`: the same by torch.func.vjp of torch.func.grad (the reversal methods'
  reverse step: reversible_sgd, drmad).

The ratios func.grad / f and func.vjp(grad) / (bm + hm) are quoted in the scaling report's
reasons for measured costs above their count (hgbench.report.scaling.writer.DEVIATION_NOTES).
Measured on the shared 2-core AMD EPYC (load 2.9-3.1, 40 rounds): w=100 1.31 and 1.54; w=1000 1.06
and 1.09 (a 15-round run under load 3.2-3.9 gave 1.29/1.55 and 0.83/1.16).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.func import grad, vjp

from hgbench.engine.plugins import load_plugins
from hgbench.engine.scaling.sweep import variant
from hgbench.engine.scaling.worker import generic_state
from hgbench.numerics.functional import LinearizedGradient
from hgbench.tasks.scaling import Granularity


def ways(width: int) -> dict[str, Callable[[], object]]:
    problem = variant(width, Granularity.TENSOR).build(0, "cpu", torch.float32)
    state = generic_state(problem, 5)
    params, hparams = state.params, state.hparams
    n = problem.task.batch_size
    x, y = problem.data.x_train[:n], problem.data.y_train[:n]
    v = {k: torch.randn_like(t) for k, t in params.items()}

    def minibatch(w, h):
        return problem.train_loss(w, h, x, y)

    def f() -> None:
        w = {k: t.detach().requires_grad_(True) for k, t in params.items()}
        torch.autograd.grad(problem.full_train_loss(w, hparams), list(w.values()))

    def func_vjp() -> None:
        _, pullback = vjp(lambda w, h: grad(minibatch)(w, h), params, hparams)
        pullback(v)

    return {
        "f": f,
        "func.grad": lambda: grad(problem.full_train_loss)(params, hparams),
        "bm + hm": lambda: LinearizedGradient(minibatch, params, hparams).hvp(v),
        "func.vjp(grad)": func_vjp,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="100,1000")
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(1)
    load_plugins()
    for width in (int(w) for w in args.widths.split(",")):
        fns = ways(width)
        for fn in fns.values():
            fn()  # warm-up
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.rounds):  # alternating rounds: a load change hits every way alike
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        med = {k: statistics.median(t) for k, t in times.items()}
        shown = ", ".join(f"{k} {s * 1e3:.2f} ms" for k, s in med.items())
        print(
            f"w={width}: {shown} | func.grad / f {med['func.grad'] / med['f']:.2f}, "
            f"func.vjp(grad) / (bm + hm) {med['func.vjp(grad)'] / med['bm + hm']:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
