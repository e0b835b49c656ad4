"""report.md of the budget study (tables from `hgbench.report.budgets`, figures from
`hgbench.report.budgets_plot`)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from hgbench.budgets.kinds import RULES, SEARCHERS, Kind, kind_of
from hgbench.report.budgets import (
    FRAGILE_PLACES,
    OVER_TOLERANCE,
    REPORT,
    best_hypergradient,
    curves,
    final_rows,
    first_match,
    fragile,
    is_hypergradient,
    not_ok,
    point,
    ranks,
    sensitivity,
    setting_label,
    upper,
)
from hgbench.report.budgets_plot import plot_curves, plot_sensitivity
from hgbench.report.load import load_rows
from hgbench.report.markdown import markdown_table

META_STUDIED = "reversible_sgd"  # the closing note asks for its result at 10 and 30 runs
OVER_MARK = "`!`: over budget on at least one task at that B."  # the rank table's legend


def _fmt(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _runs(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def _ci(rec: pd.Series) -> str:
    return f"{rec['nll']:.3f} [{_fmt(rec['low'])}, {_fmt(rec['high'])}]"


def _b(b: int) -> str:
    return f"B = {b}"


def _fixed_upper(c: pd.DataFrame, task: str) -> float:
    fx = c[(c["task"] == task) & (c["method"] == "fixed") & ~c["carried"]]
    return upper(fx.iloc[0]) if not fx.empty else math.nan


def _match(c: pd.DataFrame, task: str, method: str, target: float) -> str:
    b = None if math.isnan(target) else first_match(c, task, method, target)
    if b is None:
        return "not within the budgets run"
    rec = point(c, task, method, b)
    return f"{_b(b)} ({rec['nll']:.3f}, spent {_runs(rec['runs_spent'])} runs)"


def _over_sentence(c: pd.DataFrame, task: str) -> str:
    """Which hypergradient methods overran B = 1, and by how much (the cells measure it)."""
    hg = c["method"].map(is_hypergradient).astype(bool)
    one = c[(c["task"] == task) & (c["budget"] == 1) & hg]
    over = one[one["over"]]
    if over.empty:
        return "Every hypergradient method stayed within B = 1."
    worst = over.loc[over["runs_spent"].idxmax()]
    meta = c[(c["task"] == task) & (c["method"].map(kind_of) == Kind.META)]
    per_iter = (meta["runs_spent"] / meta["budget"]).median() if not meta.empty else math.nan
    text = (
        f"At B = 1, {len(over)} of {len(one)} hypergradient methods spent more than one run "
        f"({_runs(over['runs_spent'].min())}–{_runs(worst['runs_spent'])} runs, most "
        f"{worst['method']}), drawn hollow."
    )
    if not math.isnan(per_iter):
        text += (
            f" A meta-iteration costs about {_runs(per_iter)} runs, so the meta methods' "
            f"nominal B = 30 spent about {_runs(30 * per_iter)}."
        )
    return text


def _verdict(task: str, c: pd.DataFrame, s: pd.DataFrame) -> str:
    g = c[c["task"] == task]
    wins = []
    for b, gb in g.groupby("budget"):
        within = gb[~gb["over"]]
        w = within.loc[within["nll"].idxmin()] if not within.empty else None
        text = f"{_b(b)}: {w['method']} ({w['nll']:.3f})" if w is not None else f"{_b(b)}: none"
        o = gb.loc[gb["nll"].idxmin()]
        if w is None or o["method"] != w["method"]:
            text += f", beaten by {o['method']} over budget ({o['nll']:.3f}, spent "
            text += f"{_runs(o['runs_spent'])} runs)"
        wins.append(text)
    st = s[(s["task"] == task) & (s["settings"] > 1)]
    # a meta method at B = 1 trains once with its initial hparams: its settings cannot act
    st = st[st["method"].map(kind_of) != Kind.META]
    robust = st[st["spread"] <= 0.05 * st["default_nll"]]["method"].tolist()
    moved = fragile(s, task)["method"].tolist()
    return (
        f"**{task}**: best within budget at {'; '.join(wins)}. {_over_sentence(c, task)} "
        f"Robust to ÷3/×3 of their settings (spread ≤ 5% of the default's NLL; meta methods "
        f"left out, their settings cannot act at B = 1): "
        f"{', '.join(robust) or 'none'}. Rank moves by more than {FRAGILE_PLACES} places beyond "
        f"the intervals: {', '.join(moved) or 'none'}."
    )


def _answers(c: pd.DataFrame, s: pd.DataFrame, best: pd.DataFrame) -> list[str]:
    """The issue's closing-note questions, answered from the rows."""
    tasks = sorted(c["task"].unique())
    lines = ["## The closing note's questions", ""]
    lines += [
        "**When do `tpe` and `random_search` match `fixed` and the best hypergradient method?** "
        "A match: the IQM at or below the upper end of the target's 95% interval.",
        "",
    ]
    within = best_hypergradient(c[~c["over"]])  # the best that kept to its budget
    rows, targets = [], []
    for task in tasks:
        b = best.loc[task]
        w = within.loc[task] if task in within.index else None
        for label, rec in (("at any spend", b), ("within budget", w)):
            if rec is not None:
                targets.append(
                    f"- {task}, best hypergradient method {label}: {rec['method']} "
                    f"{_ci(rec)} at {_b(int(rec['budget']))}, spent {_runs(rec['runs_spent'])} runs"
                )
        for m in [x for x in SEARCHERS if x in set(c[c["task"] == task]["method"])]:
            within_match = _match(c, task, m, upper(w)) if w is not None else "–"
            fixed_match = _match(c, task, m, _fixed_upper(c, task))
            rows.append([task, m, fixed_match, _match(c, task, m, upper(b)), within_match])
    lines += targets + [""]
    header = [
        "task",
        "method",
        "matches fixed at",
        "matches the best hypergradient at",
        "matches the best within budget at",
    ]
    lines += [markdown_table(header, rows) if rows else "none", ""]
    meta = c[c["method"] == META_STUDIED]
    lines += [f"**`{META_STUDIED}` at 10 and 30 runs** (IQM test NLL [95% CI]):", ""]
    rows = []
    for task in tasks:
        fx = point(c, task, "fixed", 1)
        for b in (10, 30):
            rec = point(meta, task, META_STUDIED, b)
            if rec is not None and fx is not None:
                if rec["high"] < fx["low"]:  # intervals apart: below fixed beyond doubt
                    beat = "below"
                else:
                    beat = "above" if rec["low"] > fx["high"] else "overlap"
                rows.append([task, _b(b), _ci(rec), _runs(rec["runs_spent"]), beat])
    header = ["task", "budget", "test NLL", "runs spent", "against fixed's 95% CI"]
    lines += [markdown_table(header, rows) if rows else "not run", ""]
    moved = fragile(s)
    naive = s[(s["settings"] > 1) & (s["rank_move"] > FRAGILE_PLACES)]
    lines += [
        f"**Methods whose rank moves by more than {FRAGILE_PLACES} places across their settings**"
        f" (beyond the intervals; by point ranks alone {len(naive)} (task, method) pairs would):",
        "",
    ]
    for task in tasks:
        g = moved[moved["task"] == task]
        items = [f"{r.method} ({r.sure_move})" for r in g.itertuples()]
        lines.append(f"- {task}: {', '.join(items) or 'none'}")
    return lines + [""]


def _match_tables(c: pd.DataFrame, best: pd.DataFrame) -> list[str]:
    lines = [
        "## Budget at which each method first matches fixed and the best hypergradient method",
        "",
        "A match: the method's IQM test NLL at or below the upper end of the target's 95% "
        "interval (fixed at its one run; the best hypergradient method at its best budget). "
        f"Each budget's NLL is followed by the runs it really spent; `!`: over budget (spent > "
        f"{OVER_TOLERANCE:g} × B).",
        "",
    ]
    for task in sorted(c["task"].unique()):
        b = best.loc[task]
        fixed_hi = _fixed_upper(c, task)
        lines += [
            f"### {task}",
            "",
            f"Best hypergradient method: {b['method']} at {_b(int(b['budget']))}, {_ci(b)}, "
            f"spent {_runs(b['runs_spent'])} runs.",
            "",
        ]
        rows = []
        for method, g in c[c["task"] == task].groupby("method"):
            g = g.sort_values("budget")
            f = first_match(c, task, method, fixed_hi) if not math.isnan(fixed_hi) else None
            m = first_match(c, task, method, upper(b))
            series = ", ".join(
                f"{int(r.budget)}: {r.nll:.3f} ({'kept' if r.carried else _runs(r.runs_spent)}"
                f"{'!' if r.over else ''})"
                for r in g.itertuples()
            )
            rows.append([method, str(kind_of(method)), f or "–", m or "–", series])
        header = ["method", "kind", "matches fixed at", "matches best at", "B: NLL (runs spent)"]
        lines += [markdown_table(header, rows), ""]
    return lines


def _rank_table(c: pd.DataFrame) -> list[str]:
    r = ranks(c)
    if r.empty:
        return ["none", ""]
    over = c.groupby(["method", "budget"])["over"].any()
    rows = [
        [m] + [f"{r.loc[m, b]:.1f}{'!' if over.get((m, b), False) else ''}" for b in r.columns]
        for m in r.index
    ]
    return [
        "## Average rank over tasks at each budget (1 best)",
        "",
        OVER_MARK,
        "",
        markdown_table(["method", *(_b(int(b)) for b in r.columns)], rows),
        "",
    ]


def _sensitivity_table(s: pd.DataFrame) -> list[str]:
    lines = [
        "## Sensitivity (B = 1): each method's settings at ÷3, ×1, ×3",
        "",
        "![sensitivity](figures/sensitivity.png)",
        "",
        "Each setting is ranked against the other methods at their defaults. `rank` columns: "
        "by IQM, at the default and at the setting chosen on validation loss (median over "
        "seeds; never test). `move`: the range of those point ranks over all settings. "
        "`sure move`: the places the rank moved beyond doubt: the largest best-case rank minus "
        "the smallest worst-case rank over the settings, where a setting's best case counts as "
        "better only the methods whose 95% interval lies wholly below its own, and its worst "
        "case as worse only those wholly above (0 when the rank intervals overlap). A method "
        f"moves by more than {FRAGILE_PLACES} places when its sure move does. Meta-iteration "
        "methods at B = 1 train once with their initial hparams, so their hyper-step settings "
        "cannot change the result (spread 0).",
        "",
    ]
    header = [
        "task",
        "method",
        "settings",
        "default",
        "low",
        "high",
        "spread",
        "chosen",
        "rank default",
        "rank chosen",
        "move",
        "sure move",
    ]
    rows = [
        [
            r.task,
            r.method,
            r.settings,
            _fmt(r.default_nll),
            _fmt(r.low),
            _fmt(r.high),
            _fmt(r.spread),
            setting_label(r.chosen),
            r.rank_default,
            r.rank_chosen,
            r.rank_move,
            r.sure_move,
        ]
        for r in s.itertuples()
        if r.settings > 1
    ]
    return lines + [markdown_table(header, rows) if rows else "none", ""]


def _not_ok_table(rows: pd.DataFrame) -> list[str]:
    bad = not_ok(rows)
    lines = [
        "## Cells that did not finish ok",
        "",
        "Left out of every table and figure above (a diverged seed does not count against "
        "a setting's IQM): skipped cells (a method that cannot run a task) and failed ones.",
        "",
    ]
    if bad.empty:
        return lines + ["none", ""]
    header = ["task", "method", "B", "setting", "status", "reason", "cells"]
    body = [
        [r.task, r.method, r.budget_runs, setting_label(r.setting), r.status, r.reason, r.cells]
        for r in bad.itertuples()
    ]
    return lines + [markdown_table(header, body), ""]


def write_budget_report(out: Path) -> Path:
    from hgbench.engine.plugins import load_plugins

    load_plugins()  # kinds come from the registered methods' families
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    rows = load_rows(out)
    done = final_rows(rows)
    c = curves(done)
    s = sensitivity(done)
    plot_curves(c, out / "figures" / "budget_curves.png")
    plot_sensitivity(s, out / "figures" / "sensitivity.png")
    best = best_hypergradient(c)
    lines = ["# hgbench budget study", ""]
    lines += [
        f"From {done['cell'].nunique()} finished cells (`results.jsonl`; the command, wall time "
        "and machine are in README.md).",
        "",
        "How each kind spends a total budget of B runs:",
        "",
    ]
    lines += [f"- **{k}**: {rule}" for k, rule in RULES.items()]
    lines += [
        "",
        "What a cell really cost is measured (its median TSE over seeds, divided by that of "
        "`fixed`'s one run), and the figure plots each result at that cost, not at B: the "
        "online methods' joint run alone costs more than one run, and a meta-iteration several. "
        f"A cell is over budget when it spent more than {OVER_TOLERANCE:g} × B (measured "
        "seconds carry about 10% noise); the verdicts name the best method within budget.",
        "",
        "![test NLL vs runs spent](figures/budget_curves.png)",
        "",
        "## Verdict",
        "",
    ]
    lines += [_verdict(t, c, s) + "\n" for t in sorted(c["task"].unique())]
    lines += _answers(c, s, best)
    lines += _match_tables(c, best)
    lines += _rank_table(c)
    lines += _sensitivity_table(s)
    lines += _not_ok_table(rows)
    path = out / REPORT
    text = "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8")
    _write_html(out, text, c)
    return path


def _write_html(out: Path, text: str, c: pd.DataFrame) -> Path:
    """out/report.html: report.md's text as one page that opens offline, its two figures inlined
    as PNGs and, above the rank table, the same ranks (`ranks(c)`) as an interactive figure."""
    from hgbench.report.html_page import write_html
    from hgbench.report.html_sections import BUDGET_FIGURE, budget_spec

    r = ranks(c)
    specs = {}
    if not r.empty:
        figure = f"![average rank over tasks at each budget]({BUDGET_FIGURE})"
        text = text.replace(OVER_MARK + "\n", f"{OVER_MARK}\n\n{figure}\n", 1)
        specs[BUDGET_FIGURE] = budget_spec(r)
    # the header stays open: it holds the rules and the study's main figure, not a run's setup
    return write_html(out, text, specs, f"hgbench budget study ({out.name})", fold=None)
