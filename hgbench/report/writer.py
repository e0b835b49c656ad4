"""report.md assembly: header, verdict, status, and per task the tables and figures of each mode."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from hgbench.contracts.schema import RESULTS_FILE, Mode, Status
from hgbench.engine.calibration import NOISE_THRESHOLD
from hgbench.engine.plan import device_kind
from hgbench.report import bounds, plots, probe_plots, schedules, tables
from hgbench.report.cifar_claims import claims_section
from hgbench.report.cifar_grid import grid_sections, grid_view, summary_section
from hgbench.report.configs import ordered_methods, with_labels
from hgbench.report.costs import apply_cost_pass
from hgbench.report.figure_names import FIGURES_DIR, GAINS_TITLE, RANKS_TITLE, figure_name
from hgbench.report.figure_names import safe_name as _safe
from hgbench.report.gain_plot import gain_figure, has_gains
from hgbench.report.load import UNFINISHED, cell_outcomes, load_rows, noisy_cells
from hgbench.report.markdown import MISSING, code, one_line, plural
from hgbench.report.ranks_plot import rank_figure
from hgbench.report.stats import Ranking, rank_configs
from hgbench.report.style import Style, make_style
from hgbench.report.summary import summarize_probe
from hgbench.report.verdict import (
    TaskAnalysis,
    analyse_task,
    nll_matrices,
    ranked_labels,
    verdict_section,
)

REPORT_FILE = "report.md"
DPI = 110
NOISY_LISTED = 12  # noisy cells named in the header; the rest are counted


TITLE = "# hgbench report"


def _title(out_dir: Path) -> str:
    """The report's first line: `# hgbench report`, or the one a person gave an earlier report.md
    (`# hgbench report: CIFAR-10 (JPEG q75 copy)`), so that a redraw keeps what the data are."""
    old = out_dir / REPORT_FILE
    first = old.read_text(encoding="utf-8").split("\n", 1)[0] if old.is_file() else ""
    return first if first.startswith(TITLE + ": ") else TITLE


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


def _seed(seed: object) -> str:
    if isinstance(seed, int | float) and float(seed).is_integer():
        return str(int(seed))
    return str(seed)


def _noisy_lines(outcomes: pd.DataFrame) -> list[str]:
    """How many cells were timed while the machine's speed changed, and which."""
    timed = outcomes[outcomes["status"].isin([Status.OK, *UNFINISHED])]
    if not timed["noisy"].notna().any():
        return ["- Noisy cells: not recorded (rows written before calibration existed)"]
    noisy = noisy_cells(timed)
    head = (
        f"- Noisy cells: {len(noisy)} of {len(timed)} timed cells "
        f"({tables.NOISY_MARK} in tables and figures): their calibration step (one `fixed` "
        f"training step, timed at the cell's start and end) drifted by more than "
        f"{NOISE_THRESHOLD:.0%}, so their times are less trustworthy"
    )
    if noisy.empty:
        return [head]
    lines = [head + "; rerun them with `--rerun-noisy`:"]
    groups = noisy.groupby(["mode", "task", "label"], sort=False)
    for k, ((mode, task, label), g) in enumerate(groups):
        if k == NOISY_LISTED:
            lines.append(f"  - … and {groups.ngroups - NOISY_LISTED} more configs")
            break
        seeds = ", ".join(_seed(s) for s in g["seed"])
        lines.append(f"  - {mode} / {task} / {label}: seed{'s' if len(g) > 1 else ''} {seeds}")
    return lines


# the default suite is the quick start: say what budget it ran at and where the fuller contest is
BUDGET_LINE = (
    "- Budget: one training run per cell (the task's epochs; black-box search shares that one "
    "run among its trials). Every method at 1, 3, 10 and 30 runs, and over its own settings: "
    "the budget study, `python -m hgbench budgets` (docs/budgets.md)"
)


def _device_kinds(rows: pd.DataFrame) -> str:
    """The device kinds (GPU names, or the CPU's) rows ran on, with their row counts: a store
    that grows across GPU runs may hold several, and their timings do not compare."""
    kinds = Counter(device_kind({"env": e if isinstance(e, dict) else {}, "device": d})
                    for e, d in zip(rows["env"], rows["device"], strict=True))  # fmt: skip
    return f" ({', '.join(f'{k}: {n} rows' for k, n in kinds.most_common())})" if kinds else ""


def _header(
    out_dir: Path, rows: pd.DataFrame, outcomes: pd.DataFrame, a: dict, timed: pd.DataFrame
) -> str:
    """`timed`: the cells whose noisy timings are listed for a rerun (`outcomes` or fewer)."""
    parsed = a.get("parsed_rows", len(rows))
    source = Path(a.get("source", RESULTS_FILE)).name  # results.jsonl, or its .gz archive
    lines = [
        _title(out_dir),
        "",
        f"- Source: `{out_dir}` ({source}: {parsed} rows parsed, {len(rows)} used; "
        f"{parsed - len(rows)} from {a.get('interrupted_attempts', 0)} interrupted and "
        f"{a.get('superseded_attempts', 0)} superseded attempts ignored)",
        f"- Damaged lines: {a.get('skipped') or 'none skipped'}",
        *(
            [f"- Cells not counted (latest final row unreadable): {a['unreadable_cells']}"]
            if a.get("unreadable_cells")
            else []
        ),
        f"- Cells: {len(outcomes)}"
        + "".join(f", {m}: {n}" for m, n in outcomes["mode"].value_counts().items()),
        *(_noisy_lines(timed) if not timed.empty else []),
        f"- Suites: {', '.join(_distinct(rows['suite'])) or MISSING}",
        f"- Devices: {', '.join(_distinct(rows['device'])) or MISSING}{_device_kinds(rows)}",
        f"- dtype: {', '.join(_distinct(rows['dtype'])) or MISSING}",
    ]
    if "default" in _distinct(rows["suite"]):
        lines.append(BUDGET_LINE)
    env = _env_lines(rows)
    if env:
        lines += ["- Environment:", *env]
    return "\n".join(lines)


def _status_section(outcomes: pd.DataFrame, methods: list[str]) -> str:
    parts = ["## Status", "", "Cells by outcome.", "", tables.status_table(outcomes, methods)]
    failed = outcomes[outcomes["status"].isin(UNFINISHED)]
    if not failed.empty:
        parts += ["", "### Failed cells", ""]
        parts += [
            f"- {r.mode} / {r.task} / {r.label} / seed {_seed(r.seed)}: {r.status}: "
            f"{code(one_line(r.error))}"
            for r in failed.itertuples()
        ]
    skipped = outcomes[outcomes["status"] == Status.SKIPPED]
    if not skipped.empty:
        # a method that does not apply to a task skips every seed: one line per config
        parts += ["", "### Skipped", ""]
        for (mode, task, label), g in skipped.groupby(["mode", "task", "label"], sort=False):
            parts.append(
                f"- {mode} / {task} / {label} ({plural(len(g), 'cell')}): "
                f"{code(one_line(g['error'].iloc[0]))}"
            )
    return "\n".join(parts)


def _image(alt: str, path: Path, out_dir: Path) -> str:
    return f"![{alt}]({path.relative_to(out_dir).as_posix()})"


def _run_section(a: TaskAnalysis, rows: pd.DataFrame, style: Style, out_dir: Path) -> str:
    task = a.task
    target = (
        f"; TSE to target: cost until the test NLL first reaches {code(a.baseline)}'s final "
        f"IQM ({a.target:.3f}), median over seeds (seeds that reached it)"
        if a.baseline
        else ""
    )
    parts = [
        f"## Run: {task}",
        "",
        f"Final evaluation of each cell: IQM [95% bootstrap interval] over seeds{target}.",
        "",
        tables.run_table(a.summary, a.ttt),
    ]
    labels = list(a.values.columns)
    if len(labels) >= 2:
        parts += [
            "",
            "Paired comparisons of final test NLL, row config against column config (numbered): "
            "`<` the row config is lower, `>` higher (the 95% interval of the paired difference "
            "excludes 0; **bold**: also after Benjamini–Hochberg), `·` not separated.",
            "",
            tables.pairs_table(a.comparisons, labels),
        ]
    figures = {
        "pareto": (
            plots.pareto_figure(rows, style, f"{task}: final test metrics vs cost", a.summary),
            "Pareto",
        ),
        "anytime": (
            plots.anytime_figure(
                rows, style, f"{task}: test NLL vs cost", a.target if a.baseline else None
            ),
            "anytime curves",
        ),
        "val_test": (
            plots.generalisation_figure(rows, style, f"{task}: validation vs test loss"),
            "validation vs test",
        ),
    }
    for key, (fig, alt) in figures.items():
        path = out_dir / figure_name(Mode.RUN, task, key)
        _save(fig, path)
        parts += ["", _image(f"{task} {alt}", path, out_dir)]
    # methods that learn per-step schedules (reversible_sgd) carry them in their final rows
    for key, what in (("lr_schedule", "learning-rate"), ("momentum_schedule", "momentum")):
        if schedules.has_schedules(rows, key):
            path = out_dir / figure_name(Mode.RUN, task, key)
            title = f"{task}: learned {what} schedule"
            _save(schedules.schedule_figure(rows, key, title=title), path)
            parts += ["", _image(f"{task} {what} schedule", path, out_dir)]
    return "\n".join(parts)


def _probe_section(task: str, rows: pd.DataFrame, style: Style, out_dir: Path) -> str:
    references = _distinct(rows["reference"])
    parts = [
        f"## Probe: {task}",
        "",
        "Median [25%, 75%] over all measurements"
        + (f"; reference: {', '.join(references)}." if references else "."),
        "",
        tables.probe_table(summarize_probe(rows, style.order)),
    ]
    figs = out_dir / FIGURES_DIR
    error = out_dir / figure_name(Mode.PROBE, task, "error")
    title = f"{task}: hypergradient error vs time"
    _save(probe_plots.probe_error_figure(rows, style, title=title), error)
    parts += ["", _image(f"{task} error vs time", error, out_dir)]
    if bounds.has_bounds(rows):  # marginal-likelihood estimators: the bound Pareto figure
        path = figs / f"probe_{_safe(task)}_bounds.png"
        _save(bounds.bound_pareto_figure(rows, title=f"{task}: marglik estimators"), path)
        parts += ["", bounds.CAPTION, "", _image(f"{task} bounds vs time", path, out_dir)]
    elif probe_plots.has_values(rows):
        value = figs / f"probe_{_safe(task)}_value.png"
        title = f"{task}: objective value vs time"
        _save(probe_plots.probe_value_figure(rows, style, title=title), value)
        parts += ["", _image(f"{task} value vs time", value, out_dir)]
    return "\n".join(parts)


def _tasks(rows: pd.DataFrame, mode: Mode) -> Iterator[tuple[str, pd.DataFrame]]:
    """One mode's rows per task, tasks in order of first appearance (the suite's order)."""
    sub = rows[rows["mode"] == mode]
    for task in dict.fromkeys(sub["task"].dropna()):
        yield str(task), sub[sub["task"] == task]


def _verdict(analyses: list[TaskAnalysis], ranking: Ranking, style: Style, out: Path) -> str:
    images = {}
    if has_gains(analyses, style):
        path = out / FIGURES_DIR / "gains.png"
        _save(gain_figure(analyses, style, GAINS_TITLE), path)
        images["gains"] = _image("gain over the baseline per task", path, out)
    if ranking.usable:
        path = out / FIGURES_DIR / "ranks.png"
        _save(rank_figure(ranking, style, RANKS_TITLE), path)
        images["ranks"] = _image("critical-difference diagram", path, out)
    return verdict_section(analyses, ranking, ranked_labels(analyses, style.order), images)


def write_report(out_dir: Path, method_order: list[str] | None = None) -> Path:
    """Write `out_dir/report.md` and `out_dir/figures/*.png` from `out_dir/results.jsonl`.

    Works from stored rows only, whichever methods, tasks and modes they hold; sections without
    data are left out. `method_order` fixes the order of methods in tables (default: by family,
    then registration order); colours are by family and fixed per method.
    """
    out_dir = Path(out_dir)
    rows = load_rows(out_dir)
    loaded = dict(rows.attrs)
    rows, cost_note = apply_cost_pass(rows, out_dir)  # packed rows' seconds are not their cost
    # labels and styles from all rows, so a config and a method look the same in every figure
    rows = with_labels(rows)
    style = make_style(rows, method_order)
    outcomes = cell_outcomes(rows)
    # the CIFAR-10 reference grid: results only from converged cells of the authors' protocol,
    # what the rows are at the top, and its own sections (sanity bar, claims, cells not run yet,
    # an earlier slice) at the end
    grid = grid_view(rows)
    # cells of an earlier slice are not rerun under today's protocol by --rerun-noisy: their
    # noise is marked in their own table, not listed as work to redo
    timed = outcomes if grid is None else cell_outcomes(grid.rows)
    header = _header(out_dir, rows, outcomes, loaded, timed)
    sections = [header + (f"\n{cost_note}" if cost_note else "")]
    tail: list[str] = []
    if grid is not None:
        sections.append(summary_section(grid))
        tail = grid_sections(grid, [claims_section(grid.result_rows())])
        rows = grid.result_rows()
        outcomes = cell_outcomes(rows)
    if rows.empty:
        if grid is None:  # the grid's summary says why it has no results
            sections.append("No completed cells yet.")
    else:
        present = set(rows["method"].dropna())
        methods = [m for m in ordered_methods(present, method_order) if m in present]
        runs = [(analyse_task(t, r, style), r) for t, r in _tasks(rows, Mode.RUN)]
        analyses = [a for a, _ in runs]
        ranking = rank_configs(nll_matrices(analyses, rows[rows["mode"] == Mode.RUN]))
        verdict = _verdict(analyses, ranking, style, out_dir)
        sections += [verdict] if verdict else []
        sections.append(_status_section(outcomes, methods))
        sections += [_run_section(a, r, style, out_dir) for a, r in runs]
        probes = list(_tasks(rows, Mode.PROBE))
        sections += [_probe_section(t, r, style, out_dir) for t, r in probes]
    sections += tail
    report = out_dir / REPORT_FILE
    text = "\n\n".join(sections) + "\n"
    report.write_text(text, encoding="utf-8")
    if not rows.empty:  # report.html: the same text, its figures interactive, and two sections
        from hgbench.report.html_report import write_html_report

        write_html_report(out_dir, text, rows, style, runs, probes, ranking)
    else:
        from hgbench.report.html_page import write_html

        write_html(out_dir, text, {}, "hgbench report")
    return report
