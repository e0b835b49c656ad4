"""The README's method example runs as written, and agrees with `unroll` at K = 1."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from hgbench.contracts.method import METHODS
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.engine.probe import validation_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(# my_lookahead.py\n.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "the README's method example went missing"
    return blocks[0]


def test_readme_example_runs_through_the_cli(tmp_path):
    (tmp_path / "my_lookahead.py").write_text(_example())
    env = {**os.environ, "HGBENCH_PLUGINS": "my_lookahead"}
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "hgbench",
        "run",
        "--methods",
        "lookahead",
        "--tasks",
        "ridge",
        "--seeds",
        "0",
        "--set",
        "task.epochs=2",
        "--out",
        str(out),
        "--no-report",
    ]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    final = [r for r in rows if r["final"]]
    assert len(final) == 1 and final[0]["status"] == "ok" and final[0]["epoch"] == 2.0
    assert final[0]["hparams"] != rows[0]["hparams"]  # it tuned something


def test_readme_example_equals_unroll_with_one_step(tmp_path, monkeypatch):
    (tmp_path / "my_lookahead.py").write_text(_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins()
    if "lookahead" not in METHODS:
        importlib.import_module("my_lookahead")
    try:
        problem = TASKS["ridge"].build(0, "cpu", torch.float64)
        state = validation_reference(problem).state
        ours = METHODS["lookahead"]().hypergradient(problem, state).hypergradient
        ref = METHODS["unroll"](K=1).hypergradient(problem, state).hypergradient
        for k in ref:
            torch.testing.assert_close(ours[k], ref[k], rtol=1e-12, atol=0)
    finally:
        METHODS._items.pop("lookahead", None)
        sys.modules.pop("my_lookahead", None)
