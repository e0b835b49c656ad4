"""CUDA graphs against eager, per task: kept only where they give the same numbers.

For each task, on the device, hgbench.engine.graphcheck trains two `fixed` trainers from the same
start (one eager, one replaying its captured step) past an epoch's end and compares their params
bit for bit; with `timed=True` it then times a step each way. The table says, per task, whether
the capture is kept (so whether `fixed` and the calibration step replay it), the largest
parameter difference, and the seconds per step eager and captured.

    python benchmarks/gpu_graphs.py [--tasks cifar10_1k_none,digits_mlp,...] [--data-dir DIR]
        [--n-test N] [--device cuda] --out DIR

Writes OUT/graphs.md and OUT/graphs.json. Without CUDA every row says "not a CUDA device".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import torch

from hgbench.contracts.task import TASKS
from hgbench.engine.graphcheck import check_capture
from hgbench.engine.plugins import load_plugins

DEFAULT_TASKS = "cifar10_1k_none,cifar10_1k_flipcrop,digits_mlp,digits_cnn"


def check(name: str, device: str, n_test: int | None = None) -> dict:
    try:
        task = TASKS[name]
        if n_test is not None and hasattr(task, "n_test"):
            task = dataclasses.replace(task, n_test=n_test)
        problem = task.build(0, device, torch.float32)
        found = check_capture(problem, timed=True)
    except Exception as exc:  # noqa: BLE001 - a task that cannot be built is a row, not a crash
        return {"task": name, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"task": name, **dataclasses.asdict(found)}


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x * 1e3:.3f}"


def markdown(rows: list[dict], device_name: str) -> str:
    lines = [
        f"# CUDA graphs against eager on {device_name}: the `fixed` step",
        "",
        "| task | kept | steps compared | max abs diff | eager ms/step | graph ms/step "
        "| speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['task']} | failed: {r['error']} | | | | | |")
            continue
        speed = "–"
        if r["eager_step_s"] and r["graph_step_s"]:
            speed = f"{r['eager_step_s'] / r['graph_step_s']:.2f}×"
        kept = "yes" if r["kept"] else f"no: {r['reason']}"
        diff = "–" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.3g}"
        lines.append(
            f"| {r['task']} | {kept} | {r['steps']} | {diff} | {_ms(r['eager_step_s'])} | "
            f"{_ms(r['graph_step_s'])} | {speed} |"
        )
    lines += [
        "",
        "Kept means bit-identical params after the compared steps; only then do `fixed` and the "
        "calibration step (TSE's unit, the same `fixed` step for every method) replay the graph.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--n-test", type=int, help="the CIFAR tasks' test images (a slice's)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.data_dir:
        os.environ["HGBENCH_DATA"] = str(args.data_dir)
    load_plugins()
    rows = [check(name, args.device, args.n_test) for name in args.tasks.split(",")]
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "graphs.json").write_text(json.dumps({"device": device_name, "rows": rows}))
    text = markdown(rows, device_name)
    (args.out / "graphs.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
