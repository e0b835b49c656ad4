"""benchmarks/gpu_peers.sh: the GPU run of the peer contests brings its peers as wheels from the
git-ignored .wheels/ (the GPU machine has no network). What it installs is the peers extra and
what those need beyond the GPU image, never torch; the offline install works in a fresh venv."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_peers.sh"


def _wheels() -> dict[str, str]:
    text = SCRIPT.read_text()
    block = re.search(r"^WHEELS=\((.*?)\)", text, re.S | re.M).group(1)
    return dict(w.split("==") for w in block.split())


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_wheels_cover_the_peers_extra_and_no_torch():
    extra = re.search(r"^peers = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M)
    peers = {_norm(re.split(r"[<>=!~ ]", req)[0]) for req in re.findall(r'"([^"]+)"', extra[1])}
    assert len(peers) == 5
    wheels = {_norm(n) for n in _wheels()}
    assert peers <= wheels, peers - wheels
    assert not {
        w for w in wheels if w.startswith(("torch-", "nvidia")) or w in {"torch", "torchvision"}
    }
    assert all(re.fullmatch(r"[0-9][0-9a-z.]*", v) for v in _wheels().values())  # pinned
    assert "/.wheels/" in (ROOT / ".gitignore").read_text().split()


def test_the_script_refuses_a_missing_out_and_a_bad_mode():
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    bad = subprocess.run(["bash", str(SCRIPT), "--nope"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "usage" in bad.stderr
    no_out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env)
    assert no_out.returncode != 0 and "OUT" in no_out.stderr


@pytest.mark.slow  # a venv and nine wheels: about half a minute
def test_offline_install_from_wheels_into_a_fresh_venv():
    wheels = ROOT / ".wheels"
    if not wheels.is_dir() or not any(wheels.glob("*.whl")):
        pytest.skip(".wheels/ is absent: bash benchmarks/gpu_peers.sh --fetch fills it (PyPI)")
    env = dict(os.environ, PYTHON=sys.executable)
    run = subprocess.run(
        ["bash", str(SCRIPT), "--check"], capture_output=True, text=True, env=env, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "offline install ok: backpack, curvlinops, higher, laplace, torchopt" in run.stdout
