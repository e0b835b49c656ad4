"""`--executor ray`: the same cells and metrics as in-process, retries of killed workers, resuming
after an interruption, and a clear error where Ray is missing.

One local Ray instance (2 CPUs) serves the module: in-process runs use it as it is (an executor
leaves a Ray it did not start running), subprocess drivers join it with `--address`.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import hgbench_command, interruptible

from hgbench.contracts.method import METHODS
from hgbench.engine.store import RESULTS_FILE, ResultStore, read_rows

TESTS = Path(__file__).resolve().parent
RIDGE = ("--tasks", "ridge", "--set", "task.epochs=2", "--no-report")
METRICS = ("test_acc", "test_nll", "objective", "val_loss", "step", "epoch", "hparams")
# what DESIGN.md says every row carries
ROW_FIELDS = {
    "mode", "suite", "task", "method", "method_params", "seed", "status", "error", "time_s",
    "peak_mem_mb", "device", "env", "cell", "attempt", "final",
}  # fmt: skip

Cli = Callable[..., Any]  # conftest's `cli`: returns CliResult(code, out, err)


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test doubles of tests/ray_plugin.py, registered here and in every Ray worker."""
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.chdir(TESTS)  # workers import HGBENCH_PLUGINS modules from the driver's folder
    monkeypatch.setenv("HGBENCH_PLUGINS", "ray_plugin")
    importlib.import_module("ray_plugin")  # this process loaded its plugins long ago
    yield
    for name in ("ray_test_crash_once", "ray_test_wait"):
        METHODS._items.pop(name, None)
    sys.modules.pop("ray_plugin", None)


def _finals(path: Path) -> dict[str, dict]:
    finals: dict[str, dict] = {}
    for row in read_rows(path):
        if row.get("final"):
            assert row["cell"] not in finals, "a cell finished twice"
            finals[row["cell"]] = row
    return finals


def test_ray_runs_the_same_cells_to_the_same_metrics(
    cli: Cli, ray_address: str, tmp_path: Path
) -> None:
    argv = ("run", *RIDGE, "--methods", "fixed,unroll", "--seeds", "0,1")
    # Ray's workers run a 1-CPU cell on 1 thread: so does the local run, which makes CPU results
    # bitwise equal (a float32 reduction split over other thread counts rounds differently).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = cli(*argv, "--out", tmp_path / "local")
    finally:
        torch.set_num_threads(threads)
    assert local.code == 0, local.err
    remote = cli(*argv, "--out", tmp_path / "ray", "--executor", "ray")
    assert remote.code == 0, remote.err
    assert re.search(r"\[cell 4/4\].*4 done, 0 running, 0 failed \| elapsed.*remaining", remote.err)

    ours, theirs = (
        _finals(tmp_path / "ray" / RESULTS_FILE),
        _finals(tmp_path / "local" / RESULTS_FILE),
    )
    assert len(ours) == 4 and ours.keys() == theirs.keys()
    for cell, row in ours.items():
        assert row["status"] == "ok", row["error"]
        assert {m: row[m] for m in METRICS} == {m: theirs[cell][m] for m in METRICS}, cell
        env = row["env"]
        assert env["executor"] == "ray" and env["node_id"] and env["host"]
        assert env["ray_gpu_ids"] == [] and env["cpu_threads"] == 1
        assert "host" in theirs[cell]["env"] and "node_id" not in theirs[cell]["env"]


def test_killed_worker_is_retried_and_the_suite_completes(
    cli: Cli, ray_address: str, plugin: None, tmp_path: Path
) -> None:
    crashes, out = tmp_path / "crashes", tmp_path / "out"
    crashes.mkdir()
    res = cli(
        "run", *RIDGE, "--methods", "fixed,ray_test_crash_once", "--seeds", "0,1",
        "--set", f"crash_dir={crashes}", "--executor", "ray", "--out", out,
    )  # fmt: skip
    assert res.code == 0, res.err
    assert sorted(p.name for p in crashes.iterdir()) == ["0", "1"]  # each crashed once
    rows = read_rows(out / RESULTS_FILE)
    finals = _finals(out / RESULTS_FILE)
    assert len(finals) == 4 and all(r["status"] == "ok" for r in finals.values())
    fixed = {r["seed"]: r for r in finals.values() if r["method"] == "fixed"}
    for row in finals.values():
        # the dead attempt stored nothing: every row of the cell is the retry's
        assert {r["attempt"] for r in rows if r["cell"] == row["cell"]} == {row["attempt"]}
        # the retry started afresh: it trains exactly like `fixed`
        assert row["test_nll"] == fixed[row["seed"]]["test_nll"]


def test_without_retries_a_killed_worker_is_a_failed_row(
    cli: Cli, ray_address: str, plugin: None, tmp_path: Path
) -> None:
    crashes, out = tmp_path / "crashes", tmp_path / "out"
    crashes.mkdir()
    argv = (
        "run", *RIDGE, "--methods", "fixed,ray_test_crash_once", "--seeds", "0,1",
        "--set", f"crash_dir={crashes}", "--executor", "ray", "--out", out,
    )  # fmt: skip
    res = cli(*argv, "--retries", "0")
    assert res.code == 0, res.err
    assert re.search(r"\[cell 4/4\].*4 done, 0 running, 2 failed", res.err), res.err
    finals = _finals(out / RESULTS_FILE)
    assert len(finals) == 4
    for row in finals.values():
        assert ROW_FIELDS <= row.keys()
        if row["method"] == "fixed":
            assert row["status"] == "ok", row["error"]
            continue
        assert row["status"] == "failed" and row["final"] is True
        assert row["error"].startswith("worker died (1 attempt): WorkerCrashedError"), row
        assert row["env"]["executor"] == "ray" and row["env"]["torch"]
    # failed is finished, as with the local executor: a rerun retries nothing
    again = cli(*argv)
    assert again.code == 0 and "4 of 4 cells already finished" in again.err, again.err


def test_interrupted_ray_run_exits_130_and_resumes(
    cli: Cli, ray_address: str, plugin: None, tmp_path: Path
) -> None:
    out, release = tmp_path / "out", tmp_path / "release"
    argv = (
        "run", *RIDGE, "--methods", "fixed,ray_test_wait", "--seeds", "0,1",
        "--set", f"release={release}", "--executor", "ray", "--out", out,
    )  # fmt: skip
    # a separate driver joining the module's cluster, as on a real one; ray_test_wait's cells
    # block until `release` exists, so the run is still going once the fixed cells finish
    proc = subprocess.Popen(
        hgbench_command(*argv, "--address", ray_address),
        cwd=TESTS,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    try:
        deadline = time.monotonic() + 120
        while len(ResultStore(out).finished_cells()) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the fixed cells did not finish"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and re.search(r"rerun.*resume", err), err
    before = read_rows(out / RESULTS_FILE)
    assert {r["method"] for r in before} == {"fixed"}  # the blocked cells wrote nothing

    release.touch()
    res = cli(*argv)
    assert res.code == 0, res.err
    assert "2 of 4 cells already finished" in res.err and "[cell 2/2]" in res.err, res.err
    after = read_rows(out / RESULTS_FILE)
    assert after[: len(before)] == before  # appended only
    finals = _finals(out / RESULTS_FILE)
    assert len(finals) == 4 and all(r["status"] == "ok" for r in finals.values())


def test_cuda_cells_need_a_gpu_in_the_cluster(cli: Cli, ray_address: str, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    res = cli("run", *RIDGE, "--methods", "fixed", "--seeds", "0", "--device", "cuda",
              "--executor", "ray", "--out", out)  # fmt: skip
    assert res.code == 2 and "1 GPU" in res.err, res.err
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--executor", "ray"), 'pip install -e ".[ray]"'),
        (("--address", "head:6379"), "--executor ray"),
        (("--retries", "1"), "--executor ray"),
    ],
)
def test_ray_usage_errors_exit_2_before_work(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    out = tmp_path / "out"
    res = cli("run", *RIDGE, "--methods", "fixed", "--seeds", "0", "--out", out, *args)
    assert res.code == 2, res
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], res.err
    assert not out.exists()
