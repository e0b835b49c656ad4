"""Does the scaling sweep's per-cell memory mean something? Measured against known amounts.

    python benchmarks/scaling_memory.py [--horizons 16,64,256] [--width 100]

Each line is one scaling cell in its own worker process (hgbench.engine.scaling.pool), as the sweep
runs it, its `peak_mem_mb` (peak RSS over the RSS just before the hypergradient) set beside an
amount known from outside the measurement:

- `reversible_sgd(exact=False)` stores the trajectory: 2 × (T + 1) × the weights' bytes, which
  the method reports itself (`stored_trajectory_bytes`); the measured increase should grow with
  it at slope 1 and exceed it by the graph of one step at most;
- `reversible_sgd` (exact reversal) holds weights, velocity and the information buffer
  (`memory_bytes`, reported by the method): far less, growing slowly with T.

Both come on top of the working memory of one step (a constant), so the comparison is of growth:
measured(T) − measured(T₀) against known(T) − known(T₀) from the smallest T. A ratio near 1 says
the figure is the cell's own working memory; the process's lifetime peak (what probe rows hold on
a CPU) would instead grow with every cell run before it in the process.
"""

from __future__ import annotations

import argparse

from hgbench.engine.plugins import load_plugins
from hgbench.engine.scaling.pool import run_cell
from hgbench.engine.scaling.sweep import variant
from hgbench.engine.scaling.worker import CellJob
from hgbench.tasks.scaling import Granularity

MB = 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--horizons", default="16,64,256")
    p.add_argument("--width", type=int, default=100)
    args = p.parse_args()
    load_plugins()
    task = variant(args.width, Granularity.TENSOR)
    print(f"{'method':30} {'T':>5} {'measured MB':>12} {'known MB':>10} {'Δ measured':>11} "
          f"{'Δ known':>8} {'ratio':>6}  known")  # fmt: skip
    first: dict[bool, tuple[float, float]] = {}
    for t in (int(v) for v in args.horizons.split(",")):
        for exact, key in ((False, "stored_trajectory_bytes"), (True, "memory_bytes")):
            job = CellJob(task, "reversible_sgd", {"T": t, "exact": exact}, repeats=0)
            out = run_cell(job, limit_s=300.0)
            label = f"reversible_sgd(exact={exact})"
            if out.result is None:
                print(f"{label} T={t}: {out.status} {out.error}")
                continue
            measured = out.result["peak_mem_mb"]
            known = out.result["method_extra"][key] / MB
            m0, k0 = first.setdefault(exact, (measured, known))
            dm, dk = measured - m0, known - k0
            ratio = f"{dm / dk:6.2f}" if dk > 0.5 else "     —"
            print(
                f"{label:30} {t:5d} {measured:12.1f} {known:10.1f} {dm:11.1f} {dk:8.1f} {ratio}  "
                f"{key}",
                flush=True,
            )


if __name__ == "__main__":
    main()
