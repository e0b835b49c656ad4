"""benchmarks/laplace_protocol_change.py on synthetic rows: the per-task IQMs, the paired
difference after − before over shared seeds, the seeds that went down, and the figure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import laplace_protocol_change as lpc  # noqa: E402

from hgbench.report.load import load_rows  # noqa: E402

BEFORE = {"a": [0.30, 0.20, 0.25, 0.40], "b": [1.0, 1.1, 0.9, 1.2]}
AFTER = {"a": [0.28, 0.21, 0.22, 0.30], "b": [1.0, 1.15, 0.95, 1.3]}
FIXED = {"a": [0.5, 0.5, 0.6, 0.7], "b": [2.0, 2.0, 2.0, 2.0]}


def _write(path: Path, nll: dict[str, list[float]], best: bool) -> Path:
    rows = []
    for method, values in (("laplace_full", nll), ("fixed", FIXED)):
        for task, seeds in values.items():
            for seed, v in enumerate(seeds):
                cell = f"run/{task}/{method}/x/{seed}"
                # an earlier row that must not count: only the final row of a cell does
                base = {"mode": "run", "suite": "s", "task": task, "method": method, "seed": seed}
                base |= {"cell": cell, "attempt": "1", "status": "ok", "method_params": {}}
                rows.append({**base, "test_nll": 9.0, "final": False, "extra": {}})
                extra = {"best_epoch": 10 + seed} if best and method == "laplace_full" else {}
                rows.append({**base, "test_nll": v, "final": True, "extra": extra})
    path.mkdir()
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_table_and_figure_from_two_row_sets(tmp_path: Path) -> None:
    before = load_rows(_write(tmp_path / "before", BEFORE, best=False))
    after = load_rows(_write(tmp_path / "after", AFTER, best=True))
    items = lpc.changes(before, after)
    assert [c.task for c in items] == ["a", "b"]
    a = items[0]
    n, diff, low, high, _ = a.difference()
    d = np.subtract(AFTER["a"], BEFORE["a"])
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2  # t interval of the mean of 4 differences
    assert (n, diff) == (4, pytest.approx(d.mean()))
    assert (low, high) == (pytest.approx(d.mean() - half), pytest.approx(d.mean() + half))
    assert a.lower_after() == 3 and items[1].lower_after() == 0
    assert a.iqm("after").value == pytest.approx(np.mean(sorted(AFTER["a"])[1:3]))
    assert a.best_epochs == (10, 11, 12, 13)
    text = lpc.table(items)
    assert "| a | 0.275 [" in text and "| 3/4 | 10, 11, 12, 13 | 0.550 |" in text
    assert (
        "| b | 1.050 [" in text
        and "| +0.0500 [" in text
        and "| 0/4 | 10, 11, 12, 13 | 2.000 |" in text
    )
    figure = tmp_path / "fig.png"
    lpc.plot(items, figure)
    assert figure.stat().st_size > 10_000
