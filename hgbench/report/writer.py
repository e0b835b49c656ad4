"""report.md assembly: header, status, and per task the tables and figures of each mode."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from hgbench.report import bounds, plots, schedules, tables

REPORT_FILE = "report.md"
FIGURES_DIR = "figures"
DPI = 110


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(name))


def _save(fig: Figure, path: Path) -> None:
    """Write a figure and release it (figures are not pyplot-managed, so clearing suffices)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    fig.clear()


def _distinct(values: pd.Series) -> list[str]:
    return [str(v) for v in dict.fromkeys(values.dropna())]


def _env_lines(rows: pd.DataFrame) -> list[str]:
    """Each env key with its distinct values: a mix of versions or machines shows up at once."""
    seen: dict[str, list[str]] = {}
    for env in rows["env"]:
        if isinstance(env, dict):
            for key, value in env.items():
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                values = seen.setdefault(str(key), [])
                if text not in values:
                    values.append(text)
    return [f"  - {k}: {', '.join(f'`{v}`' for v in vals)}" for k, vals in seen.items()]


def _header(out_dir: Path, rows: pd.DataFrame, outcomes: pd.DataFrame, a: dict) -> str:
    dropped = a.get("parsed_rows", len(rows)) - len(rows)
    lines = [
        "# hgbench report",
        "",
        f"- Source: `{out_dir}` ({tables.RESULTS_FILE}: {a.get('parsed_rows', len(rows))} rows "
        f"parsed, {len(rows)} used; {dropped} from {a.get('interrupted_attempts', 0)} "
        f"interrupted and {a.get('superseded_attempts', 0)} superseded attempts ignored; "
        f"{a.get('bad_lines', 0)} unreadable lines skipped)",
        f"- Cells: {len(outcomes)}"
        + "".join(f", {m}: {n}" for m, n in outcomes["mode"].value_counts().items()),
        f"- Suites: {', '.join(_distinct(rows['suite'])) or tables.MISSING}",
        f"- Devices: {', '.join(_distinct(rows['device'])) or tables.MISSING}",
        f"- dtype: {', '.join(_distinct(rows['dtype'])) or tables.MISSING}",
    ]
    env = _env_lines(rows)
    if env:
        lines += ["- Environment:", *env]
    return "\n".join(lines)


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def _status_section(outcomes: pd.DataFrame, methods: list[str]) -> str:
    parts = ["## Status", "", "Cells by outcome.", "", tables.status_table(outcomes, methods)]
    failed = outcomes[outcomes["status"].isin(["failed", "timeout"])]
    if not failed.empty:
        parts += ["", "### Failed cells", ""]
        parts += [
            f"- {r.mode} / {r.task} / {r.label} / seed {_seed(r.seed)}: {r.status}: "
            f"{_code(tables.one_line(r.error))}"
            for r in failed.itertuples()
        ]
    skipped = outcomes[outcomes["status"] == "skipped"]
    if not skipped.empty:
        # a method that does not apply to a task skips every seed: one line per config
        parts += ["", "### Skipped", ""]
        for (mode, task, label), g in skipped.groupby(["mode", "task", "label"], sort=False):
            parts.append(
                f"- {mode} / {task} / {label} ({len(g)} cell{'s' if len(g) > 1 else ''}): "
                f"{_code(tables.one_line(g['error'].iloc[0]))}"
            )
    return "\n".join(parts)


def _seed(seed: object) -> str:
    if isinstance(seed, int | float) and float(seed).is_integer():
        return str(int(seed))
    return str(seed)


def _image(alt: str, path: Path, out_dir: Path) -> str:
    return f"![{alt}]({path.relative_to(out_dir).as_posix()})"


def _run_section(task: str, rows: pd.DataFrame, style: plots.Style, out_dir: Path) -> str:
    parts = [
        f"## Run: {task}",
        "",
        "Final evaluation of each cell; median [25%, 75%] over seeds.",
        "",
        tables.run_table(tables.summarize_run(rows, style.order)),
    ]
    figs = out_dir / FIGURES_DIR
    pareto = figs / f"run_{_safe(task)}_pareto.png"
    _save(plots.pareto_figure(rows, style, title=f"{task}: final metric vs time"), pareto)
    curves = figs / f"run_{_safe(task)}_curves.png"
    _save(plots.curves_figure(rows, style, title=f"{task}: test metrics vs time"), curves)
    general = figs / f"run_{_safe(task)}_val_test.png"
    _save(
        plots.generalisation_figure(rows, style, title=f"{task}: validation vs test loss"), general
    )
    parts += [
        "",
        _image(f"{task} Pareto", pareto, out_dir),
        "",
        _image(f"{task} curves", curves, out_dir),
        "",
        _image(f"{task} validation vs test", general, out_dir),
    ]
    # methods that learn per-step schedules (reversible_sgd) carry them in their final rows
    for key, what in (("lr_schedule", "learning-rate"), ("momentum_schedule", "momentum")):
        if schedules.has_schedules(rows, key):
            path = figs / f"run_{_safe(task)}_{key}.png"
            title = f"{task}: learned {what} schedule"
            _save(schedules.schedule_figure(rows, key, title=title), path)
            parts += ["", _image(f"{task} {what} schedule", path, out_dir)]
    return "\n".join(parts)


def _probe_section(task: str, rows: pd.DataFrame, style: plots.Style, out_dir: Path) -> str:
    references = _distinct(rows["reference"])
    parts = [
        f"## Probe: {task}",
        "",
        "Median [25%, 75%] over all measurements"
        + (f"; reference: {', '.join(references)}." if references else "."),
        "",
        tables.probe_table(tables.summarize_probe(rows, style.order)),
    ]
    figs = out_dir / FIGURES_DIR
    error = figs / f"probe_{_safe(task)}_error.png"
    _save(
        plots.probe_error_figure(rows, style, title=f"{task}: hypergradient error vs time"), error
    )
    parts += ["", _image(f"{task} error vs time", error, out_dir)]
    if bounds.has_bounds(rows):  # marginal-likelihood estimators: the bound Pareto figure
        path = figs / f"probe_{_safe(task)}_bounds.png"
        _save(bounds.bound_pareto_figure(rows, title=f"{task}: marglik estimators"), path)
        parts += [
            "",
            "Each estimator's −log marglik / N against its time per hyper-step (one value and "
            "hypergradient); colour: structure, marker: output split, M: points per block (N: "
            "the full batch). Filled points are lower bounds on log q (single splits: in "
            "expectation), so they sit on or above the exact line; the grey line joins the "
            "non-dominated bounds.",
            "",
            _image(f"{task} bounds vs time", path, out_dir),
        ]
    elif plots.has_values(rows):
        value = figs / f"probe_{_safe(task)}_value.png"
        _save(
            plots.probe_value_figure(rows, style, title=f"{task}: objective value vs time"), value
        )
        parts += ["", _image(f"{task} value vs time", value, out_dir)]
    return "\n".join(parts)


def _tasks(rows: pd.DataFrame, mode: str) -> Iterator[tuple[str, pd.DataFrame]]:
    """One mode's rows per task, tasks in order of first appearance (the suite's order)."""
    sub = rows[rows["mode"] == mode]
    for task in dict.fromkeys(sub["task"].dropna()):
        yield str(task), sub[sub["task"] == task]


def write_report(out_dir: Path, method_order: list[str] | None = None) -> Path:
    """Write `out_dir/report.md` and `out_dir/figures/*.png` from `out_dir/results.jsonl`.

    Works from stored rows only; sections without data are left out. `method_order` fixes the
    order of methods in tables and of their colours (default: sorted names).
    """
    out_dir = Path(out_dir)
    rows = tables.load_rows(out_dir)
    loaded = dict(rows.attrs)
    # labels and styles from all rows, so a config and a method look the same in every figure
    rows = tables.with_labels(rows)
    style = plots.make_style(rows, method_order)
    outcomes = tables.cell_outcomes(rows)
    sections = [_header(out_dir, rows, outcomes, loaded)]
    if rows.empty:
        sections.append("No completed cells yet.")
    else:
        methods = [
            m
            for m in tables.ordered_methods(rows["method"].dropna(), method_order)
            if m in set(rows["method"])
        ]
        sections.append(_status_section(outcomes, methods))
        sections += [_run_section(t, r, style, out_dir) for t, r in _tasks(rows, "run")]
        sections += [_probe_section(t, r, style, out_dir) for t, r in _tasks(rows, "probe")]
    report = out_dir / REPORT_FILE
    report.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return report
