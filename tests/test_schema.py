"""One row schema: docs/schema.md's column table names exactly the columns of
hgbench.contracts.schema, and the one reader skips (and counts) what it cannot use."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hgbench.contracts.schema import COLUMN_NAMES, Mode, Status, read_results, row_problem

SCHEMA_PAGE = Path(__file__).resolve().parents[1] / "docs" / "schema.md"


def _documented_columns() -> list[str]:
    text = SCHEMA_PAGE.read_text()
    table = text[text.index("| column | meaning |") :].split("\n\n", 1)[0]
    names = []
    for line in table.splitlines()[2:]:
        first = line.split("|")[1]
        names += re.findall(r"`([a-z_]+)`", first)
    return names


def test_documented_column_table_matches_the_schema() -> None:
    documented = _documented_columns()
    assert len(documented) == len(set(documented)), "a column is documented twice"
    assert set(documented) == set(COLUMN_NAMES)


def test_statuses_and_modes_print_as_their_values() -> None:
    assert f"{Status.OK}" == "ok" and json.dumps(Status.FAILED) == '"failed"'
    assert Mode("probe") is Mode.PROBE and str(Mode.RUN) == "run"


def _row(**changes) -> dict:
    row = {
        "mode": "run",
        "task": "t",
        "method": "m",
        "status": "ok",
        "cell": "run/t/m/abc/0",
        "attempt": "a1",
        "final": True,
        "seed": 0,
        "time_s": 1.0,
    }
    return {**row, **changes}


@pytest.mark.parametrize(
    "damage, reason",
    [
        ({"final": 1}, "final is not bool"),  # truthy is not true: one reading for every reader
        ({"cell": 3}, "cell is not str"),
        ({"mode": "walk"}, "unknown mode 'walk'"),
        ({"status": "fine"}, "unknown status 'fine'"),
        ({"seed": True}, "seed is not int"),
        ({"time_s": "1.0"}, "time_s is not int"),
        ({"method_params": [1]}, "method_params is not dict"),
    ],
)
def test_ill_typed_fields_are_problems(damage: dict, reason: str) -> None:
    assert row_problem(_row()) is None
    assert row_problem(_row(**damage)) == reason


def test_reader_skips_and_counts_damaged_lines(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    good = [_row(cell=f"c{i}") for i in range(3)]
    lines = [json.dumps(good[0]).encode(), b"\xff\xfe not utf-8", b"[1, 2]", b"{torn"]
    lines += [json.dumps(good[1]).encode(), json.dumps(_row(cell=None)).encode()]
    lines += [json.dumps(good[2]).encode()[:-3]]  # a torn last line, no newline
    path.write_bytes(b"\n".join(lines))
    read = read_results(path)
    assert read.rows == good[:2]
    assert read.torn_tail
    assert read.n_skipped == 5
    assert read.skipped == {
        "not UTF-8": 1,
        "not a JSON object": 1,
        "not JSON": 2,
        "missing cell": 1,
    }
    assert "5 damaged lines skipped" in read.summary()


def test_an_archived_run_is_read_by_report_and_check(cli, tmp_path: Path) -> None:
    """A finished run may ship `results.jsonl.gz` (as the committed reference reports do): the
    report and `check` read it where the plain file is absent, and the rows are the same."""
    import gzip

    from hgbench.contracts.schema import ARCHIVED_RESULTS_FILE, RESULTS_FILE, results_path

    out = tmp_path / "out"
    res = cli("run", "--tasks", "ridge", "--methods", "fixed,ift_cg", "--seeds", "0", "--set",
              "task.epochs=2", "--out", out, "--no-report")  # fmt: skip
    assert res.code == 0, res.err
    plain = out / RESULTS_FILE
    # a loaded machine may flag cells noisy, which `check` reports: not this test's concern
    rows = [{**r, "noisy": False} if r.get("noisy") else r for r in read_results(plain).rows]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (out / ARCHIVED_RESULTS_FILE).write_bytes(gzip.compress(text.encode()))
    assert results_path(out) == plain  # the plain file wins while it exists
    plain.unlink()
    assert results_path(out) == out / ARCHIVED_RESULTS_FILE
    assert read_results(results_path(out)).rows == rows
    res = cli("report", out)
    assert res.code == 0, res.err
    assert f"{len(rows)} rows parsed" in (out / "report.md").read_text()
    res = cli("check", out)
    assert res.code == 0 and f"{len(rows)} rows, nothing wrong" in res.out, res.out
    # a damaged archive is a one-line error, not a traceback
    (out / ARCHIVED_RESULTS_FILE).write_bytes(gzip.compress(b"x" * 1000)[:20])
    res = cli("report", out)
    assert res.code == 2 and "truncated" in res.err and "Traceback" not in res.err
