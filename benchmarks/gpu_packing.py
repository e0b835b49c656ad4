"""How many cells at once? The same cell at packing 1, 2, 4, 8 and 12, on one device.

At packing P, P copies of one cell (the same task, method, settings and seed: the same work on
the same images) run at once, each an `hgbench run` process of its own with its own store, as
`--pack P` runs P cells in P processes; at P = 1 the cell runs alone. Per level:

- the aggregate training images/s of all P cells together: Σ images / the longest cell's
  training time (the P processes start together, so they overlap over that span);
- each cell's slowdown: its training seconds against the cell's alone (P = 1);
- cells per device-minute from the cells' wall seconds (set-up, calibration and evaluation
  included: what a grid spends), and its gain over P = 1.

    python benchmarks/gpu_packing.py --device cuda --data-dir DIR [--levels 1,2,4,8,12]
        [--task cifar10_1k_none] [--method fixed] [--epochs 100] [--mps-level 4] --out DIR

One seed for every copy keeps the data one cell's (a slice of the CIFAR-10 pack holding one
seed's images suffices: docs/gpu.md). `--mps-level P` runs that level once more under NVIDIA MPS
and records whether MPS ran. The chosen packing is the level with the most cells per minute whose
median slowdown keeps each cell within 3× of its time alone (a timeout set for an isolated cell
must still hold). The table goes to OUT/packing.md and OUT/packing.json. Quality is not compared
here (packing keeps it bit for bit: tests/test_packing.py); this measures throughput only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hgbench.engine.store import read_rows

MAX_SLOWDOWN = 3.0


def _command(args: argparse.Namespace, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "hgbench", "run", "--tasks", args.task, "--methods", args.method]
    cmd += ["--seeds", str(args.seed), "--threads", str(args.threads), "--device", args.device]
    cmd += ["--set", f"task.epochs={args.epochs}", *args.extra, "--no-report", "--out", str(out)]
    return cmd + (["--data-dir", str(args.data_dir)] if args.data_dir else [])


def run_level(args: argparse.Namespace, pack: int, out: Path, mps: bool = False) -> dict[str, Any]:
    mps_ran, why = False, ""
    if mps:
        from hgbench.engine.packing import start_mps

        mps_ran, why = start_mps()
    start = time.perf_counter()
    procs = [
        subprocess.Popen(_command(args, out / f"copy{k}"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
        for k in range(pack)
    ]  # fmt: skip
    errors = [p.communicate()[1] for p in procs]
    command_s = time.perf_counter() - start
    if mps_ran:
        from hgbench.engine.packing import stop_mps

        stop_mps()
    finals = [
        r
        for k in range(pack)
        if (out / f"copy{k}" / "results.jsonl").exists()
        for r in read_rows(out / f"copy{k}" / "results.jsonl")
        if r.get("final")
    ]
    ok = [r for r in finals if r["status"] == "ok" and r.get("time_s")]
    if len(ok) < pack:
        failed = sorted({str(r.get("error"))[:200] for r in finals if r["status"] != "ok"})
        tails = sorted({e.strip().splitlines()[-1][:200] for e in errors if e.strip()})
        return {"pack": pack, "mps": mps, "error": f"{len(ok)} of {pack} ok: {failed or tails}"}
    return {
        "pack": pack,
        "mps": mps,
        "mps_ran": (mps_ran if mps else None),
        "mps_error": why,
        "train_s": [r["time_s"] for r in ok],
        "wall_s": [r["wall_s"] for r in ok],
        "steps": [r["step"] for r in ok],
        "command_s": command_s,
        "device_name": (ok[0].get("env") or {}).get("device_name"),
    }


def summarise(levels: list[dict[str, Any]], images_per_cell: float) -> list[dict[str, Any]]:
    base = next(lv for lv in levels if lv["pack"] == 1 and not lv["mps"] and "error" not in lv)
    alone_train, alone_wall = base["train_s"][0], base["wall_s"][0]
    table = []
    for lv in levels:
        if "error" in lv:
            table.append({"pack": lv["pack"], "mps": lv["mps"], "error": lv["error"]})
            continue
        p = lv["pack"]
        slow = [t / alone_train for t in lv["train_s"]]
        per_min = p / max(lv["wall_s"]) * 60
        table.append(
            {
                "pack": p,
                "mps": lv["mps"],
                "mps_ran": lv["mps_ran"],
                "images_per_s": p * images_per_cell / max(lv["train_s"]),
                "slowdown_median": statistics.median(slow),
                "slowdown_max": max(slow),
                "cells_per_min": per_min,
                "gain": per_min / (60 / alone_wall),
                "command_s": lv["command_s"],
            }
        )
    return table


def choose(table: list[dict[str, Any]]) -> int:
    fit = [t for t in table if "error" not in t and not t["mps"]]
    fit = [t for t in fit if t["slowdown_median"] <= MAX_SLOWDOWN] or fit
    return max(fit, key=lambda t: t["cells_per_min"])["pack"] if fit else 1


def markdown(table: list[dict[str, Any]], meta: dict[str, Any], chosen: int) -> str:
    lines = [
        f"# Packing on {meta['device_name']}: {meta['task']} × {meta['method']}, "
        f"{meta['epochs']} epochs a cell",
        "",
        "| pack | MPS | images/s (all cells) | slowdown median / max | cells per minute | gain |",
        "|---|---|---|---|---|---|",
    ]
    for t in table:
        mps = "asked, " + ("ran" if t.get("mps_ran") else "did not run") if t["mps"] else "no"
        if "error" in t:
            lines.append(f"| {t['pack']} | {mps} | failed: {t['error'][:120]} | | | |")
            continue
        lines.append(
            f"| {t['pack']} | {mps} | {t['images_per_s']:,.0f} | "
            f"{t['slowdown_median']:.2f} / {t['slowdown_max']:.2f} | {t['cells_per_min']:.1f} | "
            f"{t['gain']:.2f}× |"
        )
    lines += [
        "",
        f"Chosen packing: **{chosen}** (most cells per minute with the median slowdown within "
        f"{MAX_SLOWDOWN:g}×). Images/s: Σ training images over the longest cell's training time; "
        "slowdown: training seconds against the same cell alone; cells per minute from the "
        "cells' wall seconds (set-up, calibration and evaluation included).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--levels", default="1,2,4,8,12")
    parser.add_argument("--task", default="cifar10_1k_none")
    parser.add_argument("--method", default="fixed")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mps-level", type=int)
    parser.add_argument("--set", dest="extra_sets", action="append", default=[])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.extra = [x for s in args.extra_sets for x in ("--set", s)]
    levels = sorted({int(x) for x in args.levels.split(",")} | {1})
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for p in levels:
        results.append(run_level(args, p, args.out / f"pack{p}"))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "error"}), flush=True)
        if "error" in results[-1]:
            print(f"pack {p} failed: {results[-1]['error']}", file=sys.stderr, flush=True)
    if args.mps_level:
        results.append(run_level(args, args.mps_level, args.out / "mps", mps=True))
    base = next((r for r in results if r["pack"] == 1 and "error" not in r), None)
    if base is None:
        sys.exit("the isolated cell (pack 1) failed: nothing to compare against")
    table = summarise(results, _images(args, base))
    chosen = choose(table)
    meta = {"device_name": base["device_name"], "task": args.task, "method": args.method,
            "epochs": args.epochs}  # fmt: skip
    (args.out / "packing.json").write_text(
        json.dumps({"meta": meta, "levels": results, "table": table, "chosen": chosen}, indent=1)
    )
    text = markdown(table, meta, chosen)
    (args.out / "packing.md").write_text(text)
    print(text)


def _images(args: argparse.Namespace, base: dict[str, Any]) -> float:
    """Training images one cell sees: its steps × the task's batch size."""
    from hgbench.contracts.task import TASKS
    from hgbench.engine.plugins import load_plugins

    load_plugins()
    return base["steps"][0] * TASKS[args.task].batch_size


if __name__ == "__main__":
    main()
