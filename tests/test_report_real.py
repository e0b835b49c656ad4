"""Reports over rows the runner really wrote: every registered method alone and all together, in
run and probe mode, and rows damaged in the ways real results get damaged (a method whose every
cell failed, a single seed, rows written before optional columns existed). A report never fails
because of which methods, tasks or seeds were selected.

The rows come from the command line once per test session (ridge for one epoch, seeds 0 and 1;
probe on ridge with one repeat), so every method's real row shapes are covered, including
methods added later, without anyone writing a test for them. The damaged variants use a few
methods (the floor, a black-box search, two hypergradient methods) to stay fast.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from hgbench.contracts.method import METHODS
from hgbench.contracts.schema import Mode, Status, row_problem
from hgbench.engine.plugins import load_plugins
from hgbench.report import write_report

load_plugins()
ADD_A_METHOD = Path(__file__).resolve().parents[1] / "docs" / "add-a-method.md"
Rows = list[dict[str, Any]]
RUN_TASKS = ("ridge",)
FEW = ("fixed", "random_search", "unroll", "ift_cg")  # the damaged variants' methods


def _read(path: Path) -> Rows:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def real_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[Mode, Rows]:
    """Run and probe rows written by `python -m hgbench` (in-process), every registered method."""
    from hgbench.cli import main

    root = tmp_path_factory.mktemp("real_rows")
    common = ["--seeds", "0,1", "--no-report"]
    tasks = ",".join(RUN_TASKS)
    run = ["run", "--tasks", tasks, "--set", "task.epochs=1", "--out", str(root / "run")]
    assert main([*run, *common]) == 0
    probe = ["probe", "--tasks", "ridge", "--repeats", "1", "--out", str(root / "probe")]
    assert main([*probe, *common]) == 0
    return {
        Mode.RUN: _read(root / "run" / "results.jsonl"),
        Mode.PROBE: _read(root / "probe" / "results.jsonl"),
    }


def _report(tmp: Path, rows: Rows) -> str:
    """Write `rows` as a results file, build the report, check its figures exist; its text."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. a collapsed layout, singular limits
        text = write_report(tmp).read_text()
    for rel in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (tmp / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", rel
    return text


def _sections(rows: Rows) -> set[str]:
    return {f"## {r['mode'].capitalize()}: {r['task']}" for r in rows}


def _ridge(real_rows: dict[Mode, Rows], probe: bool = True, few: bool = False) -> Rows:
    """The ridge run rows, and (`probe`) the probe rows; of `FEW` methods only (`few`)."""
    rows = real_rows[Mode.RUN] + (real_rows[Mode.PROBE] if probe else [])
    return [r for r in rows if r["task"] == "ridge" and (not few or r["method"] in FEW)]


def test_every_registered_method_wrote_rows(real_rows):
    for mode in (Mode.RUN, Mode.PROBE):
        assert {r["method"] for r in real_rows[mode]} == set(METHODS), mode
        assert all(row_problem(r) is None for r in real_rows[mode])


@pytest.mark.parametrize("method", list(METHODS))
def test_report_of_one_method_alone(real_rows, tmp_path, method):
    rows = [r for r in _ridge(real_rows) if r["method"] == method]
    text = _report(tmp_path, rows)
    for section in _sections(rows):
        assert section in text
    assert f"| {method} |" in text  # its line in the status table


def test_report_of_every_method_together(real_rows, tmp_path):
    rows = real_rows[Mode.RUN] + real_rows[Mode.PROBE]
    text = _report(tmp_path, rows)
    for section in _sections(rows):
        assert section in text
    assert "## Verdict" in text
    for task in RUN_TASKS:
        assert f"- **{task}**:" in text  # a verdict sentence per task
    assert "### Separated pairs" in text


@pytest.mark.parametrize("method", ["fixed", "unroll"])
def test_report_with_a_method_whose_every_cell_failed(real_rows, tmp_path, method):
    rows = copy.deepcopy(_ridge(real_rows, probe=False, few=True))
    for r in rows:
        if r["method"] == method:
            r.update(status=Status.FAILED.value, error="RuntimeError: diverged (synthetic)")
    text = _report(tmp_path, rows)
    # the label names the config (probe rows may add settings that tell configs apart)
    failed = rf"run / ridge / {method}( \([^)]*\))? / seed 0: failed: `RuntimeError: diverged"
    assert re.search(failed, text)
    assert "## Run: ridge" in text


def test_report_of_a_single_seed(real_rows, tmp_path):
    rows = [r for r in _ridge(real_rows, probe=False, few=True) if r["seed"] == 0]
    text = _report(tmp_path, rows)
    assert "## Run: ridge" in text and "## Verdict" in text


NEW_COLUMNS = ("tse", "step_time_s", "noisy", "calib_drift", "test_n", "probe_state", "hg_tse")


@pytest.mark.parametrize("dropped", ["new columns", "every optional column"])
def test_report_of_rows_missing_optional_columns(real_rows, tmp_path, dropped):
    rows = copy.deepcopy(_ridge(real_rows, probe=dropped == "new columns", few=True))
    required = {"mode", "task", "method", "status", "cell", "attempt", "final"}
    for r in rows:
        for key in list(r):
            if key in NEW_COLUMNS if dropped == "new columns" else key not in required:
                del r[key]
    assert all(row_problem(r) is None for r in rows)
    text = _report(tmp_path, rows)
    assert "## Run: ridge" in text
    if dropped == "new columns":
        assert "Noisy cells: not recorded" in text
        assert "cost (TSE)" not in text.split("## Run: ridge", 1)[1]


def _readme_probe_command() -> list[str]:
    lines = [
        ln
        for ln in ADD_A_METHOD.read_text().splitlines()
        if re.match(r"HGBENCH_PLUGINS=\S+ python -m hgbench probe ", ln)
    ]
    assert len(lines) == 1, "docs/add-a-method.md's probe example went missing"
    return shlex.split(lines[0])


def test_readme_probe_example_runs_through_the_cli(tmp_path):
    block = re.findall(r"```python\n(# my_lookahead.py\n.*?)```", ADD_A_METHOD.read_text(), re.S)
    assert len(block) == 1, "docs/add-a-method.md's method example went missing"
    (tmp_path / "my_lookahead.py").write_text(block[0])
    env_item, python, *argv = _readme_probe_command()
    key, value = env_item.split("=", 1)
    assert python == "python"
    env = {**os.environ, key: value}
    done = subprocess.run(
        [sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    report = Path(re.search(r"^report: (.+)$", done.stdout, re.M).group(1))
    report = report if report.is_absolute() else tmp_path / report
    text = report.read_text()
    assert "## Probe: ridge" in text
    assert "| lookahead |" in text and "unroll" in text
