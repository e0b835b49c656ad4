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
