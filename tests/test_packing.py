"""`--pack N`: the same cells give the same quality rows packed as serially, packed rows say so,
and packing with a time budget is refused before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hgbench.engine.store import read_rows

# a small grid: two tasks × three methods × two seeds, two epochs each
GRID = (
    "--tasks", "ridge,digits_cleaning", "--methods", "fixed,ift_neumann,unroll",
    "--seeds", "0,1", "--set", "task.epochs=2", "--no-report",
)  # fmt: skip
QUALITY = ("test_nll", "test_acc", "val_loss", "objective", "hparams", "step", "epoch")


def _finals(out: Path) -> dict[str, dict[str, Any]]:
    rows = [r for r in read_rows(out / "results.jsonl") if r["final"]]
    return {r["cell"]: r for r in rows}


def test_packed_rows_equal_serial_rows_cell_by_cell(cli, tmp_path: Path) -> None:
    serial = cli("run", *GRID, "--out", str(tmp_path / "serial"))
    assert serial.code == 0, serial.err
    packed = cli("run", *GRID, "--pack", "2", "--out", str(tmp_path / "packed"))
    assert packed.code == 0, packed.err
    a, b = _finals(tmp_path / "serial"), _finals(tmp_path / "packed")
    assert len(a) == 12 and a.keys() == b.keys()
    for key, row in a.items():
        assert row["status"] == b[key]["status"] == "ok", (row["error"], b[key]["error"])
        for column in QUALITY:  # identical, not close: packing must not change what is computed
            assert row[column] == b[key][column], (row["task"], row["method"], column)
        assert (row["timing"], row["pack"]) == ("isolated", 1)
        assert (b[key]["timing"], b[key]["pack"]) == ("packed", 2)
        assert b[key]["env"]["executor"] == "packed"
    # the two workers both ran cells (else nothing was packed)
    assert len({r["env"]["worker_pid"] for r in b.values()}) == 2
    # a rerun into the packed folder resumes: every cell is finished already
    again = cli("run", *GRID, "--out", str(tmp_path / "packed"))
    assert again.code == 0 and "12 of 12 cells already finished" in again.err


@pytest.mark.parametrize("extra", [("--budget-s", "1"), ("--suite", "overfit-budget")])
def test_packing_with_a_time_budget_exits_2_before_any_work(cli, tmp_path: Path, extra) -> None:
    if extra[0] == "--suite":
        from hgbench.contracts.suites import SUITES

        budgeted = [n for n, s in SUITES.items() if s.budget_s is not None]
        if not budgeted:
            pytest.skip("no registered suite declares a budget_s")
        extra = ("--suite", budgeted[0])
    out = tmp_path / "out"
    result = cli("run", "--tasks", "ridge", "--pack", "2", *extra, "--out", str(out))
    assert result.code == 2
    assert "packing is for epoch budgets only" in result.err
    assert not out.exists()


def test_pack_must_be_a_count(cli, tmp_path: Path) -> None:
    result = cli("run", "--tasks", "ridge", "--pack", "0", "--out", str(tmp_path / "o"))
    assert result.code == 2 and "--pack must be at least 1" in result.err


def test_ctrl_c_of_a_packed_run_exits_130_and_a_rerun_resumes(cli, cli_process, tmp_path) -> None:
    """SIGINT while packed cells run: the driver stops its workers and exits 130 with the resume
    hint (no traceback), finished cells stay, and the same command finishes the rest."""
    import signal
    import time

    from hgbench.engine.store import ResultStore

    out = tmp_path / "out"
    argv = ("run", "--tasks", "digits_mlp", "--methods", "fixed", "--seeds", "0,1,2,3,4,5",
            "--set", "task.epochs=20", "--pack", "2", "--no-report", "--out", str(out))  # fmt: skip
    proc = cli_process(*argv)
    deadline = time.monotonic() + 240
    while not ResultStore(out).finished_cells():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "rerun the same command to resume" in err, err
    done = ResultStore(out).finished_cells()
    assert 0 < len(done) < 6
    again = cli(*argv)
    assert again.code == 0, again.err
    assert f"{len(done)} of 6 cells already finished" in again.err
    assert len(ResultStore(out).finished_cells()) == 6
