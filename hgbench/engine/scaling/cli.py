"""`python -m hgbench scaling`: how each method's cost grows (hgbench.engine.scaling), and its
report.

    python -m hgbench scaling --out reports/scaling          the sweep, then DIR/report.md
    python -m hgbench scaling --out DIR --report-only        redraw the report from DIR

Every check happens before any work starts (a bad value exits 2 with one line).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from hgbench.contracts.errors import UsageError

DEFAULT_OUT = Path("runs") / "scaling"
RUNS_FILE = "runs.json"  # one entry per sweep into the directory: start, wall time, load


def _ints(flag: str):
    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise UsageError(f"{flag} expects comma-separated integers, got {text!r}") from None
        if not values or min(values) < 1:
            raise UsageError(f"{flag} expects positive integers, got {text!r}")
        return tuple(sorted(set(values)))

    return parse


def add_scaling_parser(sub) -> argparse.ArgumentParser:
    """Registers the `scaling` subcommand on the CLI's subparsers."""
    p = sub.add_parser(
        "scaling",
        help="how each method's time and memory per hypergradient grow with the number of "
        "hparams, the width, the horizon and the block size",
    )
    p.add_argument("--out", type=Path, help=f"result directory [{DEFAULT_OUT}]; resumable")
    p.add_argument("--axes", help="comma-separated axes: hparams,width,horizon,block [all]")
    p.add_argument("--methods", help="comma-separated method names or patterns [every method]")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per cell [1]")
    p.add_argument("--limit-s", type=float, default=30.0, help="time limit of one hypergradient")
    p.add_argument(
        "--mem-limit-mb",
        type=float,
        default=4096.0,
        help="CPU: memory a cell may add to its worker before allocations fail [4096]; 0: none",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed calls after a quick cold one")
    p.add_argument("--widths", type=_ints("--widths"), help="width axis [32,100,316,1000]")
    p.add_argument("--horizons", type=_ints("--horizons"), help="horizon axis [1,4,16,64,256]")
    p.add_argument("--blocks", type=_ints("--blocks"), help="block axis [5,16,50,160,500]")
    p.add_argument("--report-only", action="store_true", help="only redraw DIR/report.md")
    return p


def _options(args: argparse.Namespace):
    from hgbench.engine.scaling.run import Options

    if not (math.isfinite(args.limit_s) and args.limit_s > 0):
        raise UsageError("--limit-s must be a positive number of seconds")
    if not (math.isfinite(args.mem_limit_mb) and args.mem_limit_mb >= 0):
        raise UsageError("--mem-limit-mb must be 0 (no limit) or a positive number")
    if args.threads < 1 or args.repeats < 0:
        raise UsageError("--threads must be at least 1 and --repeats at least 0")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here")
    named = os.environ.get("HGBENCH_PLUGINS", "").split(",")
    plugins = tuple(m.strip() for m in named if m.strip())
    return Options(
        plugins=plugins,
        device=args.device,
        dtype=args.dtype,
        threads=args.threads,
        limit_s=args.limit_s,
        mem_limit_mb=args.mem_limit_mb or None,
        repeats=args.repeats,
    )


def _plan(args: argparse.Namespace):
    from hgbench.engine.scaling.sweep import Axis, Plan

    changes = {}
    if args.axes:
        try:
            changes["axes"] = tuple(Axis(a.strip()) for a in args.axes.split(",") if a.strip())
        except ValueError:
            raise UsageError(
                f"--axes: unknown axis in {args.axes!r}; known: {', '.join(a.value for a in Axis)}"
            ) from None
        if not changes["axes"]:
            raise UsageError("--axes names no axis")
    for name in ("widths", "horizons", "blocks"):
        if getattr(args, name):
            changes[name] = getattr(args, name)
    return Plan(**changes)


def _load() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def record_run(out: Path, run: dict) -> None:
    """Appends one sweep's wall time and machine load to DIR/runs.json (the report's header
    quotes them: timings on a shared machine mean little without the load beside them)."""
    path = out / RUNS_FILE
    runs = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*runs, run], indent=1) + "\n")


def scaling_command(args: argparse.Namespace) -> int:
    from hgbench.engine.scaling.run import Sweeper
    from hgbench.engine.scaling.sweep import plan_points
    from hgbench.engine.store import DirectoryLock, ResultStore
    from hgbench.report.scaling.writer import write_scaling_report

    out = args.out or DEFAULT_OUT
    if args.report_only:
        if not (out / "results.jsonl").exists():
            raise UsageError(f"no results.jsonl in {out}")
        print(f"report: {write_scaling_report(out)}")
        return 0
    options = _options(args)
    patterns = [m.strip() for m in args.methods.split(",")] if args.methods else None
    points = plan_points(_plan(args), patterns)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    with DirectoryLock(out):
        store = ResultStore(out)
        print(
            f"hgbench scaling: {len(points)} points on {options.device} ({options.dtype}, "
            f"{options.threads} thread(s), {options.limit_s:g} s per hypergradient) -> {out}",
            file=sys.stderr,
        )
        start, load = time.perf_counter(), _load()
        started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        counts = Sweeper(store, options).run(points)
        wall = time.perf_counter() - start
        done = ", ".join(f"{v} {k}" for k, v in counts.items()) or "nothing to run"
        print(f"finished in {wall:.0f}s: {done}", file=sys.stderr)
        run = {"started": started, "wall_s": round(wall, 1), "load_before": load}
        record_run(out, {**run, "load_after": _load(), "cells": counts, "cpus": os.cpu_count()})
        print(f"results: {store.path}")
        print(f"report: {write_scaling_report(out)}")
    return 0
