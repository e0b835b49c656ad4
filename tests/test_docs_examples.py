"""The documentation's examples run as written: the method example (docs/add-a-method.md) through
the command line and against `unroll` at K = 1, the task example (docs/examples/my_task.py)
through `run` and `probe` and under the task contract tests; and the README stays a first read."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from hgbench.contracts.method import METHODS
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.engine.probe import validation_reference

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ADD_A_METHOD = ROOT / "docs" / "add-a-method.md"
ADD_A_TASK = ROOT / "docs" / "add-a-task.md"
TASK_EXAMPLE = ROOT / "docs" / "examples" / "my_task.py"


def _example() -> str:
    blocks = re.findall(r"```python\n(# my_lookahead.py\n.*?)```", ADD_A_METHOD.read_text(), re.S)
    assert len(blocks) == 1, "the method example of docs/add-a-method.md went missing"
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


def _task_commands() -> list[list[str]]:
    lines = [
        ln
        for ln in ADD_A_TASK.read_text().splitlines()
        if re.match(r"HGBENCH_PLUGINS=my_task python -m hgbench (run|probe) ", ln)
    ]
    assert len(lines) == 2, "docs/add-a-task.md's run and probe commands went missing"
    return [shlex.split(ln) for ln in lines]


def test_the_task_page_includes_the_example_file() -> None:
    """The page shows the file itself (MkDocs' snippets include it at build time)."""
    include = '```{.python}\n--8<-- "docs/examples/my_task.py"\n```'
    assert include in ADD_A_TASK.read_text()


def test_task_example_runs_through_run_and_probe(tmp_path):
    (tmp_path / "my_task.py").write_text(TASK_EXAMPLE.read_text())
    for env_item, python, *argv in _task_commands():
        key, value = env_item.split("=", 1)
        assert python == "python"
        out = tmp_path / argv[argv.index("--out") + 1]
        # the page's command, shortened: one seed, two epochs, no report
        argv += ["--seeds", "0", "--set", "task.epochs=2", "--no-report"]
        done = subprocess.run(
            [sys.executable, *argv],
            cwd=tmp_path,
            env={**os.environ, key: value},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        final = [r for r in rows if r["final"]]
        assert final and all(r["status"] == "ok" and r["task"] == "my_blobs" for r in final)
        if argv[2] == "probe":
            unroll = [r for r in final if r["method"] == "unroll"]
            assert unroll and all(0 <= r["hg_rel_err"] < 2 for r in unroll)  # a measured error
        else:  # the augmentation hparam is part of the space every method tunes
            assert all("aug.noise" in r["hparams"] for r in final), final[0]["hparams"]


def test_task_contract_tests_cover_the_example() -> None:
    """The contract tests parametrise over every registered task: a plugin's task is covered by
    the existing tests, selected here by its name."""
    env = {**os.environ, "HGBENCH_PLUGINS": "my_task", "PYTHONPATH": str(TASK_EXAMPLE.parent)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_task_contract.py", "-k", "my_blobs", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) >= 2, done.stdout


def test_readme_is_a_first_read() -> None:
    text = README.read_text()
    assert len(text) <= 10_000, f"README.md has {len(text)} characters"
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert (ROOT / target).exists(), f"README.md links to missing {target}"
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) == 1, "the README shows one figure"
