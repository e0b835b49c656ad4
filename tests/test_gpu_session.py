"""benchmarks/gpu_session.sh, the prepared GPU measurement session, kept working on the CPU: its
smoke mode runs every part (setup, graphs, GPU-only tests, packing) and packs an archive whose
README names the device and holds the two tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_session.sh"


@pytest.mark.slow
def test_the_smoke_session_runs_every_part_and_packs_its_tables(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "HGBENCH_GPU_SMOKE": "1", "PYTHON": sys.executable}
    cmd = ["bash", str(SCRIPT)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    with tarfile.open(tmp_path / "gpu_session.tar.gz") as tar:
        names = set(tar.getnames())
        tar.extractall(tmp_path / "x", filter="data")
    for name in ("README.md", "graphs.md", "packing.md", "pytest.log", "graphs.json"):
        assert f"gpu_session/{name}" in names, sorted(names)
    readme = (tmp_path / "x" / "gpu_session" / "README.md").read_text()
    assert "Device: no GPU" in readme  # the device is named, here the CPU
    for part in ("setup", "graphs", "tests", "packing"):
        assert f"- {part}: ok" in readme, readme
    assert "| 1 | no |" in readme and "| 2 | no |" in readme  # both packing levels measured
    # without CUDA the GPU-only tests are all skipped, none fails
    log = (tmp_path / "x" / "gpu_session" / "pytest.log").read_text()
    assert "skipped" in log and "failed" not in log and "error" not in log.lower()
    found = json.loads((tmp_path / "x/gpu_session/packing_runs/packing.json").read_text())
    assert [t["pack"] for t in found["table"]] == [1, 2]
    assert found["table"][0]["slowdown_median"] == 1.0


SLICE_MIB = 11.5  # docs/gpu.md's slice (the 1k tasks, seeds 0-2, every test image)
CARRY_LIMIT_MIB = 64  # what a lent GPU machine takes: the checkout's files and the carried paths


def test_the_checkout_and_the_cifar_slice_fit_what_a_lent_machine_takes() -> None:
    """The prepared GPU commands carry the CIFAR-10 slice beside the checkout's tracked files; if
    the reference reports grow past what leaves room for it, the GPU run cannot start."""
    root = SCRIPT.parents[1]
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    files = [root / f for f in listed.stdout.decode().split("\0") if f]
    tracked = sum(f.stat().st_size for f in files if f.is_file()) / 2**20
    assert tracked + SLICE_MIB < CARRY_LIMIT_MIB - 2, (
        f"tracked files {tracked:.1f} MiB + the slice {SLICE_MIB} MiB leave under 2 MiB of the "
        f"{CARRY_LIMIT_MIB} MiB a lent GPU machine takes"
    )
