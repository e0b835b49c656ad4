"""peers.py's driver: the command line, the checks before any work, the clock, and the loop over
the family's models and the chosen parts.

`run(argv, parts, description)` serves peers.py (every part) and the parts' own scripts
(laplace_vs_laplace_torch.py, hypergradient_cost.py: one part each), so that no part imports
peers.py back.
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings
from collections.abc import Mapping

import torch
from peers_common import Clock, Part, Row, print_table, set_clock  # benchmarks/ is on sys.path
from peers_family import expand
from peers_summary import summarize

from hgbench.engine.extras import exit_unless
from hgbench.engine.memory import limit_address_space


def _cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; platform's guess elsewhere)."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(argv: list[str] | None, parts: Mapping[str, Part], description: str) -> None:
    """Parse `argv`, check it and the parts' peers (exit 2 before any work), then run."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--parts", default=",".join(parts), help=f"of {', '.join(parts)}")
    parser.add_argument(
        "--models", default="family", help="family (all), or names: mlp, cnn, mlp-256-relu-b50, ..."
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch's default)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--structures", default="diag,kron", help="laplace part (and full)")
    parser.add_argument(
        "--max-memory-gb",
        type=float,
        default=12.0,
        help="address space beyond the process's own at the start (CPU): a peer that maps "
        "more fails and is listed so "
        "(Curvlinops' full GGN of the CNN asks for ~22 GB), instead of the machine killing the run",
    )
    parser.add_argument(
        "--clock",
        choices=[c.value for c in Clock],
        default=None,
        help="seconds of the wall clock, the process's CPU time or CUDA events (default: cpu on "
        "a CPU, cuda-event on a GPU)",
    )
    args = parser.parse_args(argv)
    chosen_parts = args.parts.split(",")
    try:  # bad input: a clear message and exit 2 before any work
        unknown = [p for p in chosen_parts if p not in parts]
        if unknown:
            raise ValueError(f"unknown parts {unknown}; known: {', '.join(parts)}")
        models = expand(args.models)
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device here")
        if args.clock == Clock.CUDA_EVENT and device.type != "cuda":
            raise ValueError("--clock cuda-event needs --device cuda")
    except (ValueError, RuntimeError) as err:
        parser.error(str(err))
    # each part's peers, checked before any work (the laplace part lists a backend that is
    # missing as such, so only laplace-torch itself is required)
    needs = tuple(m for p in chosen_parts for m in parts[p].needs)
    exit_unless("peers", "benchmarks/peers.py", needs)
    chosen = Clock(args.clock or ("cpu" if device.type == "cpu" else "cuda-event"))
    set_clock(chosen)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.max_memory_gb > 0 and device.type == "cpu":  # a GPU context maps far more
        limit_address_space(args.max_memory_gb * 1024)
    dtype = getattr(torch, args.dtype)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__}, {where}, {torch.get_num_threads()} threads, {args.dtype}, "
        f"{args.rounds} alternating rounds, {chosen.value} clock, load average "
        f"{os.getloadavg()[0]:.2f} at the start"
    )
    print(f"machine: {_cpu_name()}, {os.cpu_count()} CPU cores")  # peers_summary.py reads it
    rows: list[Row] = []
    for name in models:
        for p in chosen_parts:
            if parts[p].rows is not None:
                rows += parts[p].rows(name, device, dtype, args)
    if rows:
        print_table(rows)
        print(
            f"\nThe family: {len(models)} models, load average {os.getloadavg()[0]:.2f} at the end"
        )
        print(summarize(rows))
    for p in chosen_parts:
        if parts[p].report is not None:
            parts[p].report(models, device, dtype, args)
