"""Packing on the CPU: a slice of the default suite serially and at `--pack 2` (one thread a
cell), one after the other in one run: wall times side by side, and each cell's TSE packed
against serial (quality columns must be identical; TSE is a ratio of two packed timings).

    python benchmarks/packing_cpu.py [--seeds 0] [--pack 2] [--out DIR]

Prints the load (`os.getloadavg`) beside each wall time: on a shared machine the ratio, not the
seconds, is the figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hgbench.engine.store import read_rows

QUALITY = ("test_nll", "test_acc", "hparams")


def _run(out: Path, seeds: str, pack: int) -> float:
    cmd = [sys.executable, "-m", "hgbench", "run", "--suite", "default", "--seeds", seeds]
    cmd += ["--threads", "1", "--pack", str(pack), "--no-report", "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--pack", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="packing_cpu_"))
    walls = {}
    for pack in (1, args.pack):
        load = os.getloadavg()[0]
        walls[pack] = _run(root / f"pack{pack}", args.seeds, pack)
        print(f"pack {pack}: wall {walls[pack]:.1f} s (1-min load at its start {load:.2f})")
    finals = {
        p: {r["cell"]: r for r in read_rows(root / f"pack{p}" / "results.jsonl") if r["final"]}
        for p in walls
    }
    serial, packed = finals[1], finals[args.pack]
    same = sum(all(serial[k].get(c) == packed[k].get(c) for c in QUALITY) for k in serial)
    ratios = [
        packed[k]["tse"] / serial[k]["tse"]
        for k in serial
        if serial[k].get("tse") and packed.get(k, {}).get("tse")
    ]
    within = sum(abs(r - 1) <= 0.10 for r in ratios)
    print(f"cells {len(serial)}; quality identical in {same}")
    print(f"wall ratio packed/serial {walls[args.pack] / walls[1]:.2f}")
    print(
        f"TSE packed/serial per cell: median {statistics.median(ratios):.2f}, "
        f"range {min(ratios):.2f}-{max(ratios):.2f}, within 10%: {within}/{len(ratios)}"
    )


if __name__ == "__main__":
    main()
