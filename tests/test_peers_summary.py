"""The README's speed table: reports/peers/summary.md is what benchmarks/peers_summary.py writes
from the committed logs, the README quotes its table word for word, and the log's own family
table agrees with its rows."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from peers_summary import family_table, goals_table, parse, summarize, write_summary  # noqa: E402

LOGS = ROOT / "reports" / "peers"
MARK = re.compile(r"<!-- readme-table -->.*?<!-- /readme-table -->", re.S)


def _command_args(summary: str) -> tuple[Path, Path | None, str | None]:
    """The command summary.md says wrote it, as arguments."""
    cmd = re.search(r"Written by `python benchmarks/peers_summary.py ([^`]+)`", summary).group(1)
    after = Path(cmd.split()[0])
    before = re.search(r"--before (\S+)", cmd)
    machine = re.search(r'--machine "([^"]+)"', cmd)
    return after, Path(before.group(1)) if before else None, machine.group(1) if machine else None


def test_summary_is_what_its_command_writes_from_the_logs(monkeypatch):
    monkeypatch.chdir(ROOT)  # the command's paths are relative to the repository
    committed = (LOGS / "summary.md").read_text()
    after, before, machine = _command_args(committed)
    assert write_summary(after, before, machine) == committed


def test_readme_quotes_the_summary_table():
    block = MARK.search((LOGS / "summary.md").read_text()).group(0)
    readme = (ROOT / "README.md").read_text()
    assert MARK.search(readme).group(0) == block
    # its numbers: the log's family table, worst cases as printed there
    table = family_table((LOGS / "family_after.txt").read_text())
    assert f"| {table['ift CG-20 vs torchopt.implicit'][2]} |" in block
    assert "| 0.90 [0.87-0.92] |" in block and "load average 0.40 at the start" in block


def test_goals_table_reads_median_worst_and_goal():
    cells = ["10", "0.80", "0.91 [0.8-0.95]", "m1 (p)", "0.96", "1.01 (saved)"]
    keys = [
        "unroll K=20 vs higher",
        "laplace diag vs fastest backend",
        "laplace kron vs fastest backend",
        "ift CG-20 vs torchopt.implicit",
    ]
    rows = goals_table(dict.fromkeys(keys, cells)).splitlines()[2:]
    assert rows[0].endswith("| ≤ 0.9 | 0.80 | 0.91 [0.8-0.95] | `m1` | no |")
    assert rows[1].endswith("| ≤ 1.0 | 0.96 | 1.01 | – | no |")  # memory: its own columns
    cells[2], cells[5] = "0.90 [0.8-0.95]", "1.00 (saved)"
    rows = goals_table(dict.fromkeys(keys, cells)).splitlines()[2:]
    assert rows[0].endswith("| yes |") and rows[1].endswith("| yes |")  # within the goal: met


@pytest.mark.parametrize("log", ["family_after.txt", "family_before.txt"])
def test_the_logs_family_table_agrees_with_its_rows(log):
    """Rows read back (ratios to 2 decimals) give the printed table to within rounding."""
    text = (LOGS / log).read_text()
    run = parse(text)
    assert run.models == 10 and run.threads == 1 and run.rounds == 5
    assert len({line.case.split(" ")[0] for line in run.lines}) == 10
    printed = family_table(text)
    again = {
        c[0]: c[1:]
        for c in (
            [x.strip() for x in line.strip("|").split("|")]
            for line in summarize(run.lines).splitlines()[2:]
        )
    }
    assert printed.keys() == again.keys()
    for key, cells in printed.items():
        assert cells[0] == again[key][0] and cells[2:] == again[key][2:], key  # worst, model, mem
        assert abs(float(cells[1]) - float(again[key][1])) <= 0.011, key  # a median of rounded
