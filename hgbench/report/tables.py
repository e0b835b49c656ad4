"""The markdown tables of a report: per-task run and probe tables, statuses, separated pairs.

Each takes the summaries of hgbench.report.summary / hgbench.report.stats and returns markdown;
nothing here computes a statistic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from hgbench.contracts.schema import Mode, Status
from hgbench.report.configs import with_labels
from hgbench.report.load import load_rows
from hgbench.report.markdown import (
    MISSING,
    Formatter,
    fixed,
    fmt_interval,
    fmt_spread,
    markdown_table,
    resolving,
    scientific,
    signed,
    significant,
)
from hgbench.report.stats import Comparison

__all__ = [  # load_rows and with_labels are re-exported for callers of the old single module
    "NOISY_MARK",
    "difference_text",
    "load_rows",
    "pairs_table",
    "probe_table",
    "run_table",
    "status_table",
    "with_labels",
]

NOISY_MARK = "†"  # marks numbers that include a cell timed while the machine's speed changed
TIMED = ("tse", "time_s")  # metrics a noisy cell makes less trustworthy

RUN_TABLE = (
    ("test NLL", "test_nll", fixed(3)),
    ("test acc", "test_acc", fixed(3)),
    ("cost (TSE)", "tse", significant),
    ("time (s)", "time_s", significant),
    ("peak mem (MB)", "peak_mem_mb", fixed(0)),
)
PROBE_TABLE = (
    ("hg time (s)", "hg_time_s", significant),
    ("hg cost (TSE)", "hg_tse", significant),
    ("cos", "hg_cos", fixed(4)),
    ("rel. err", "hg_rel_err", scientific),
    ("peak mem (MB)", "peak_mem_mb", fixed(0)),
    ("value", "value", fixed(4)),
    ("exact value", "exact_value", fixed(4)),
)


def _count_cell(rec: pd.Series, count: str) -> str:
    """`3`, or `2/3 (1 failed)` when some cells of the config did not finish ok; noisy cells
    are counted as `(…, 2 noisy†)`."""
    n, total = int(rec[count]), int(rec["n_cells"])
    others = {s: c for s, c in rec["statuses"].items() if s != Status.OK}
    shown = [f"{c} {s}" for s, c in sorted(others.items())]
    if rec.get("noisy", 0):
        shown.append(f"{int(rec['noisy'])} noisy{NOISY_MARK}")
    if not shown:
        return str(n)
    head = f"{n}/{total}" if count == "n_seeds" and others else str(n)
    return f"{head} ({', '.join(shown)})"


def _present(summary: pd.DataFrame, metric: str, suffix: str) -> bool:
    col = f"{metric}_{suffix}"
    return col in summary.columns and bool(summary[col].notna().any())


def _ttt_cell(ttt: pd.DataFrame | None, label: str) -> str:
    if ttt is None:
        return MISSING
    hit = ttt[ttt["label"] == label]
    if hit.empty or not int(hit["n"].iloc[0]):
        return MISSING
    rec = hit.iloc[0]
    reached = f"{int(rec['reached'])}/{int(rec['n'])}"
    if not math.isfinite(rec["median"]):
        return f"not reached ({reached})"
    return f"{significant(rec['median'])} ({reached})"


def run_table(summary: pd.DataFrame, ttt: pd.DataFrame | None = None) -> str:
    """Per config: IQM [95% CI] of each final metric, time to target, seeds and their outcomes.

    Columns without a value in any row (e.g. `cost (TSE)` on rows written before it existed)
    are left out; `ttt` (from `stats.time_to_target`) adds the time-to-target column.
    """
    cols = [c for c in RUN_TABLE if _present(summary, c[1], "val")]
    if "test_nll_low" in summary.columns:
        nll = resolving((summary["test_nll_high"] - summary["test_nll_low"]).tolist())
        cols = [(h, m, nll if m == "test_nll" else f) for h, m, f in cols]
    header = ["method", *(h for h, _, _ in cols)]
    if ttt is not None:
        header.append("TSE to target (reached)")
    header.append("seeds")
    body = []
    for _, rec in summary.iterrows():
        cells = [rec["label"]]
        for _, m, f in cols:
            text = fmt_interval(rec[f"{m}_val"], rec[f"{m}_low"], rec[f"{m}_high"], f)
            if m in TIMED and rec.get("noisy", 0) and text != MISSING:
                text += f" {NOISY_MARK}"
            cells.append(text)
        if ttt is not None:
            cells.append(_ttt_cell(ttt, rec["label"]))
        cells.append(_count_cell(rec, "n_seeds"))
        body.append(cells)
    return markdown_table(header, body, [False] + [True] * (len(header) - 1))


def probe_table(summary: pd.DataFrame) -> str:
    """Per config: median [25%, 75%] of every measurement; value columns only where some
    method estimates an objective value, the TSE column only where rows carry it."""
    cols = [c for c in PROBE_TABLE if c[1] in ("hg_time_s", "hg_cos", "hg_rel_err")]
    cols = [c for c in PROBE_TABLE if c in cols or _present(summary, c[1], "med")]
    header = ["method", *(h for h, _, _ in cols), "n"]
    body = [
        [rec["label"], *(fmt_spread(rec, m, f) for _, m, f in cols), _count_cell(rec, "n")]
        for _, rec in summary.iterrows()
    ]
    return markdown_table(header, body, [False] + [True] * (len(header) - 1))


def status_table(outcomes: pd.DataFrame, methods: Sequence[str]) -> str:
    """Cells per (method, mode) by outcome status."""
    known = [s.value for s in Status]
    statuses = known + sorted(set(outcomes["status"].dropna()) - set(known))
    body = []
    for method in methods:
        for mode in Mode:
            g = outcomes[(outcomes["method"] == method) & (outcomes["mode"] == mode)]
            if not g.empty:
                counts = g["status"].value_counts()
                body.append([method, str(mode), *(str(int(counts.get(s, 0))) for s in statuses)])
    return markdown_table(
        ["method", "mode", *statuses], body, [False, False] + [True] * len(statuses)
    )


def pairs_table(comparisons: Sequence[Comparison], labels: Sequence[str]) -> str:
    """A matrix of paired comparisons: row config vs column config (numbered).

    `<` / `>`: the row config is lower / higher, and the 95% interval of the paired difference
    excludes 0; bold when it also survives Benjamini–Hochberg over the task's pairs; `·`: not
    separated; `–`: no shared seeds. The last column is the row's number of separations.
    """
    index = {lab: i for i, lab in enumerate(labels)}
    grid = [["" for _ in labels] for _ in labels]
    for c in comparisons:
        if c.a not in index or c.b not in index:
            continue
        i, j = index[c.a], index[c.b]
        if not math.isfinite(c.low):
            grid[i][j] = grid[j][i] = MISSING
            continue
        if not c.separated:
            grid[i][j] = grid[j][i] = "·"
            continue
        lo, hi = ("<", ">") if c.diff < 0 else (">", "<")
        bold = "**" if c.separated_adjusted else ""
        grid[i][j], grid[j][i] = f"{bold}{lo}{bold}", f"{bold}{hi}{bold}"
    header = ["", *(str(k + 1) for k in range(len(labels))), "separated"]
    body = []
    for i, lab in enumerate(labels):
        row = [g if j != i else "" for j, g in enumerate(grid[i])]
        n_sep = sum(1 for g in row if g.strip("*") in ("<", ">"))
        body.append([f"{i + 1}. {lab}", *row, str(n_sep)])
    return markdown_table(header, body, [False] + [True] * (len(header) - 1))


def difference_text(c: Comparison, formatter: Formatter = significant) -> str:
    """`−0.012 [−0.020, −0.004]`: a paired difference with its 95% interval."""
    return fmt_interval(c.diff, c.low, c.high, signed(formatter))
