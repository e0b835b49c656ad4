"""Memory and time of exact reversal (`reversible_sgd`) against storing the trajectory.

    python benchmarks/reversible_memory.py [--task digits_mlp3] [--steps 100,1000] [--rounds 3]

For each T: one hypergradient of `reversible_sgd` with `exact=True` (int64 fixed-point weights
and velocity plus the information buffer) and with `exact=False` (every float (w_t, v_t) kept),
at the same hparams, init and batches, alternating rounds so that drifts in machine load hit
both alike. Memory is the bytes each holds to compute the hypergradient (what the method records
in its rows); time is the median wall-clock seconds of a forward + reverse pass.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hgbench.contracts.method import METHODS, ProbeState
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins


def measure(task: str, steps: int, rounds: int, dtype: torch.dtype) -> dict[str, float]:
    problem = TASKS[task].build(0, "cpu", dtype)
    exact, stored = (METHODS["reversible_sgd"](T=steps, exact=e) for e in (True, False))
    state = ProbeState(problem.init_params(), exact.init_hparams(problem))
    times: dict[bool, list[float]] = {True: [], False: []}
    extras = {}
    for method in (exact, stored):  # warm-up: lazy initialisation off the clock
        method.hypergradient(problem, state)
    for _ in range(rounds):
        for method in (exact, stored):
            start = time.perf_counter()
            est = method.hypergradient(problem, state)
            times[method.exact].append(time.perf_counter() - start)
            extras[method.exact] = est.extra
    exact_bytes = extras[True]["memory_bytes"]
    stored_bytes = extras[False]["memory_bytes"]
    return {
        "T": steps,
        "params": problem.n_params,
        "exact_bytes": exact_bytes,
        "stored_bytes": stored_bytes,
        "memory_ratio": stored_bytes / exact_bytes,
        "bits_per_param_step": extras[True]["buffer_bits_per_param_step"],
        "bit_exact": extras[True]["bit_exact"],
        "exact_s": statistics.median(times[True]),
        "stored_s": statistics.median(times[False]),
        "time_ratio": statistics.median(times[True]) / statistics.median(times[False]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits_mlp3")
    parser.add_argument("--steps", default="100,1000", help="comma-separated T values")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args()
    load_plugins()
    dtype = getattr(torch, args.dtype)
    print(
        f"{args.task}, {args.dtype}, CPU ({torch.get_num_threads()} threads), "
        f"median of {args.rounds} rounds"
    )
    header = (
        f"{'T':>6} {'exact bytes':>12} {'stored bytes':>13} {'memory ×':>9} {'bits/param/step':>16}"
        f" {'bit-exact':>9} {'exact s':>8} {'stored s':>9} {'time ×':>7}"
    )
    print(header)
    for steps in (int(s) for s in args.steps.split(",")):
        r = measure(args.task, steps, args.rounds, dtype)
        print(
            f"{r['T']:>6} {r['exact_bytes']:>12,} {r['stored_bytes']:>13,} "
            f"{r['memory_ratio']:>9.1f} {r['bits_per_param_step']:>16.4f} {r['bit_exact']:>9} "
            f"{r['exact_s']:>8.2f} {r['stored_s']:>9.2f} {r['time_ratio']:>7.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
