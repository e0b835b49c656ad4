"""Bad input and damaged stores: a clear error before any work, one tolerant reader, one writer
per results directory, and failed or noisy cells that can be run again."""

from __future__ import annotations

import json
import os
import platform
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import hgbench_command

from hgbench.contracts.schema import RESULTS_FILE
from hgbench.engine.store import LOCK_FILE, DirectoryLock, ResultStore, read_rows

QUICK = ["--tasks", "ridge", "--methods", "fixed", "--seeds", "0", "--set", "task.epochs=1"]


def _finals(path: Path) -> list[dict]:
    return [r for r in read_rows(path) if r["final"]]


# --- output directories ---------------------------------------------------------------------------
def test_out_that_is_a_file_exits_2_before_work(cli, no_work, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    res = cli("run", *QUICK, "--out", target)
    assert res.code == 2 and "is a file" in res.err and "Traceback" not in res.err
    res = cli("run", *QUICK, "--out", target / "below")
    assert res.code == 2 and "lies under" in res.err
    assert no_work == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories anyway")
def test_out_in_a_read_only_directory_exits_2(cli, no_work, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        res = cli("run", *QUICK, "--out", ro / "out")
        assert res.code == 2 and "cannot write" in res.err
    finally:
        ro.chmod(stat.S_IRWXU)
    assert no_work == []


def test_refused_command_leaves_no_directories(cli, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    res = cli("run", *QUICK, "--methods", "nosuch", "--out", out)
    assert res.code == 2
    assert not (tmp_path / "a").exists()


# --- empty selections and exact types -------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--methods", "--tasks"])
@pytest.mark.parametrize("value", ["", ",", " , "])
def test_empty_selection_exits_2(cli, no_work, tmp_path: Path, flag: str, value: str) -> None:
    res = cli("run", *QUICK, flag, value, "--out", tmp_path)
    assert res.code == 2 and f"{flag} names no" in res.err
    assert no_work == []


@pytest.mark.parametrize(
    "item, message",
    [
        ("ift_neumann.terms=True", "must be an integer"),
        ("ift_neumann.terms=2.5", "must be an integer"),
        ("ift_neumann.hyper_lr=True", "must be a number"),
        ("ift_neumann.hyper_lr=1e999", "must be a finite number"),
        ("ift_neumann.hyper_optimizer=sgd", "must be one of"),
        ("task.epochs=-1", "epochs must be at least 1"),
        ("task.batch_size=0", "batch_size must be at least 1"),
        ("task.momentum=1.5", "momentum"),
        ("task.lr_schedule=linear", "must be one of"),
        ("task.eval_test_subset=0", "eval_test_subset"),
    ],
)
def test_setting_types_and_ranges_exit_2(
    cli, no_work, tmp_path: Path, item: str, message: str
) -> None:
    res = cli("run", *QUICK, "--methods", "fixed,ift_neumann", "--set", item, "--out", tmp_path)
    assert res.code == 2, res.err
    assert message in res.err and "Traceback" not in res.err
    assert no_work == []


# --- one reader -----------------------------------------------------------------------------------
def test_resume_over_a_damaged_store_skips_and_counts_and_repairs(cli, tmp_path: Path) -> None:
    assert cli("run", *QUICK, "--out", tmp_path, "--no-report").code == 0
    results = tmp_path / RESULTS_FILE
    good = results.read_bytes()
    damage = b"\xff\xfe\n[1, 2]\n" + json.dumps({"cell": 3, "final": True}).encode() + b"\n"
    results.write_bytes(good + damage + b'{"mode": "run", "cell": "torn')
    res = cli("run", *QUICK, "--out", tmp_path, "--no-report")
    assert res.code == 0, res.err
    assert "3 damaged lines skipped" in res.err
    assert "moved a torn last line" in res.err
    assert "1 of 1 cells already finished" in res.err  # the good rows still count
    # no torn text is left in the middle of the file; the damage stays, counted by every reader
    assert results.read_bytes() == good + damage
    assert list(tmp_path.glob(f"{RESULTS_FILE}.torn-*"))
    res = cli("report", tmp_path)
    assert res.code == 0 and "3 damaged lines skipped" in res.err


def test_final_row_without_status_is_unreadable_and_rerun(cli, tmp_path: Path) -> None:
    """A hand-edited or truncated store: its cell's final row lost its `status`."""
    argv = ["run", *QUICK, "--out", tmp_path, "--no-report"]
    assert cli(*argv).code == 0
    results = tmp_path / RESULTS_FILE
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    del rows[-1]["status"]
    assert rows[-1]["final"]
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = cli("check", tmp_path)
    assert res.code == 1
    assert "1 missing status" in res.out and "1 of them a cell's final row" in res.out
    assert "1 cell(s) whose latest final row is unreadable" in res.out
    assert "interrupted" not in res.out  # the attempt completed; its outcome is what is lost
    res = cli("report", tmp_path)
    assert res.code == 0 and "a cell's final row" in res.err
    report = (tmp_path / "report.md").read_text()
    assert "Cells not counted (latest final row unreadable): 1" in report
    res = cli(*argv)  # the resume runs the cell again, as --retry-failed reruns a failure
    assert res.code == 0 and "already finished" not in res.err and "1 ok" in res.err
    from hgbench.report.load import load_rows

    counted = load_rows(tmp_path)
    assert counted["final"].map(bool).sum() == 1  # one final row counted for the cell
    assert counted.attrs["unreadable_cells"] == 0
    assert len([r for r in read_rows(results) if r["final"]]) == 1  # the damaged one is skipped
    res = cli("check", tmp_path)
    assert "1 unreadable final row(s) replaced by a later attempt" in res.out
    assert "latest final row is unreadable" not in res.out
    assert "1 of 1 cells already finished" in cli(*argv).err


def test_a_damaged_latest_final_row_unfinishes_its_cell(tmp_path: Path) -> None:
    """The latest completed attempt decides, even when an earlier readable one exists."""
    from hgbench.report.load import select_attempts

    row = {"mode": "run", "task": "t", "method": "m", "cell": "c", "final": True}
    lines = [
        {**row, "attempt": "a", "status": "ok"},
        {**row, "attempt": "b"},  # no status
        {**row, "cell": "d", "attempt": "e", "status": "ok"},
    ]
    (tmp_path / RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in lines))
    store = ResultStore(tmp_path)
    assert store.finished_cells() == {"d"}
    read = store.read()
    kept, stats = select_attempts(read.rows, read.unreadable_finals)
    assert [read.rows[i]["cell"] for i in kept] == ["d"]
    assert stats["unreadable_cells"] == 1 and stats["superseded_attempts"] == 1


def test_results_file_that_is_a_directory_exits_2(cli, tmp_path: Path) -> None:
    (tmp_path / RESULTS_FILE).mkdir()
    for argv in (["run", *QUICK, "--out", tmp_path], ["report", tmp_path]):
        res = cli(*argv)
        assert res.code == 2 and "is not a file" in res.err and "Traceback" not in res.err


def test_check_lists_what_is_wrong(cli, tmp_path: Path) -> None:
    assert cli("run", *QUICK, "--out", tmp_path, "--no-report").code == 0
    results = tmp_path / RESULTS_FILE
    # a loaded machine flags the cell noisy, itself a finding: start from a quiet-looking file
    rows = [{**json.loads(line), "noisy": False} for line in results.read_text().splitlines()]
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = cli("check", tmp_path)
    assert res.code == 0 and "nothing wrong" in res.out
    row = _finals(results)[0]
    with results.open("a") as fh:
        fh.write("not json\n")
        fh.write(json.dumps({**row, "attempt": "x", "final": False}) + "\n")
        fh.write(json.dumps({**row, "attempt": "y", "status": "failed", "error": "E"}) + "\n")
    res = cli("check", tmp_path)
    assert res.code == 1
    assert "1 damaged line skipped" in res.out
    assert "1 interrupted attempt" in res.out
    assert "1 cell(s) failed" in res.out
    assert cli("check", tmp_path / "nothing").code == 2


# --- one writer -----------------------------------------------------------------------------------
def test_second_writer_exits_2_naming_the_first(cli, no_work, tmp_path: Path) -> None:
    lock = DirectoryLock(tmp_path)
    lock.acquire()
    try:
        res = cli("run", *QUICK, "--out", tmp_path)
        assert res.code == 2
        assert f"pid {os.getpid()}" in res.err and "another hgbench process" in res.err
    finally:
        lock.release()
    assert no_work == []
    assert not (tmp_path / LOCK_FILE).exists()


def test_stale_lock_is_taken_over(cli, tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (tmp_path / LOCK_FILE).write_text(
        json.dumps({"pid": int(dead.stdout), "host": platform.node(), "since": 0})
    )
    res = cli("run", *QUICK, "--out", tmp_path, "--no-report")
    assert res.code == 0 and "took over a stale lock" in res.err
    assert not (tmp_path / LOCK_FILE).exists()  # released on exit


def test_concurrent_writers_lose_no_rows_and_run_no_cell_twice(tmp_path: Path) -> None:
    argv = [
        "run",
        "--tasks",
        "ridge",
        "--methods",
        "fixed,ift_neumann",
        "--seeds",
        "0,1",
        "--set",
        "task.epochs=2",
        "--out",
        str(tmp_path),
        "--no-report",
    ]
    procs = [
        subprocess.Popen(
            hgbench_command(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    codes = [p.wait(timeout=300) for p in procs]
    errs = [p.stderr.read() for p in procs]
    assert sorted(codes) in ([0, 0], [0, 2]), errs
    if 2 in codes:
        assert "another hgbench process" in errs[codes.index(2)]
    # whoever ran, every cell finished exactly once
    finals = _finals(tmp_path / RESULTS_FILE)
    assert len(finals) == 4 and len({r["cell"] for r in finals}) == 4


# --- reruns ---------------------------------------------------------------------------------------
def test_retry_failed_reruns_failed_cells_only(cli, tmp_path: Path) -> None:
    argv = [
        "run",
        "--tasks",
        "ridge",
        "--methods",
        "fixed,ift_neumann",
        "--seeds",
        "0",
        "--set",
        "task.epochs=1",
        "--out",
        tmp_path,
        "--no-report",
    ]
    assert cli(*argv).code == 0
    results = tmp_path / RESULTS_FILE
    lines = results.read_text().splitlines()
    # turn ift_neumann's final row into a failure, as if it had crashed
    rows = [json.loads(line) for line in lines]
    i = max(i for i, r in enumerate(rows) if r["method"] == "ift_neumann" and r["final"])
    rows[i] = {**rows[i], "status": "failed", "error": "RuntimeError: boom"}
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = cli(*argv)
    assert "2 of 2 cells already finished" in res.err  # a failed cell is finished, by default
    res = cli(*argv, "--retry-failed")
    assert res.code == 0 and "1 of 2 cells already finished" in res.err
    from hgbench.report.tables import load_rows

    counted = load_rows(tmp_path)
    finals = counted[counted["final"].astype(bool)]
    assert sorted(finals["status"]) == ["ok", "ok"]  # the old failure no longer counts
    assert len(read_rows(results)) > len(rows)  # and is still in the file


def test_rerun_noisy_reruns_flagged_cells(cli, tmp_path: Path) -> None:
    argv = ["run", *QUICK, "--out", tmp_path, "--no-report"]
    assert cli(*argv).code == 0
    results = tmp_path / RESULTS_FILE
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert rows[-1]["noisy"] in (True, False) and rows[-1]["calib_drift"] >= 0
    rows[-1]["noisy"] = True
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "1 of 1 cells already finished" in cli(*argv).err
    res = cli(*argv, "--rerun-noisy")
    assert res.code == 0 and "already finished" not in res.err
    assert len(_finals(results)) == 2


def test_rows_carry_their_cost_in_training_steps(cli, tmp_path: Path) -> None:
    assert cli("run", *QUICK, "--out", tmp_path, "--no-report").code == 0
    for row in read_rows(tmp_path / RESULTS_FILE):
        assert row["step_time_s"] > 0
        assert row["tse"] == pytest.approx(row["time_s"] / row["step_time_s"])
    final = _finals(tmp_path / RESULTS_FILE)[0]
    assert final["tse"] > 0 and isinstance(final["noisy"], bool)


# --- Ray ------------------------------------------------------------------------------------------
def test_unreachable_ray_address_exits_2_quickly(cli, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    import time

    start = time.perf_counter()
    res = cli("run", *QUICK, "--executor", "ray", "--address", "127.0.0.1:9", "--out", tmp_path)
    assert res.code == 2 and "127.0.0.1:9" in res.err and "unreachable" in res.err
    assert time.perf_counter() - start < 60
    assert not (tmp_path / RESULTS_FILE).exists()


def test_store_protocol_is_what_the_runner_uses(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    assert store.finished_cells() == set() and store.repair_tail() is None
