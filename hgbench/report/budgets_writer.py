"""Figures and report.md of the budget study (tables from `hgbench.report.budgets`)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hgbench.budgets.kinds import RULES, Kind, kind_of
from hgbench.report.budgets import (
    REPORT,
    best_hypergradient,
    curves,
    final_rows,
    first_match,
    ranks,
    sensitivity,
)
from hgbench.report.load import load_rows
from hgbench.report.markdown import markdown_table


def _colors(methods: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab20")
    return {m: cmap(i % 20) for i, m in enumerate(sorted(methods))}


def plot_curves(c: pd.DataFrame, path: Path) -> None:
    tasks = sorted(c["task"].unique())
    colors = _colors(list(c["method"].unique()))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for method, g in c[c["task"] == task].groupby("method"):
            g = g.sort_values("budget")
            style = "--" if kind_of(method) == Kind.SINGLE else "-"
            ax.plot(
                g["budget"], g["nll"], style, marker="o", ms=3, color=colors[method], label=method
            )
            ax.fill_between(g["budget"], g["low"], g["high"], color=colors[method], alpha=0.12)
        ax.set_xscale("log")
        top = np.nanquantile(c[c["task"] == task]["nll"], 0.9)  # no axis squashed by outliers
        ax.set_ylim(top=top * 1.05)
        ax.set(title=task, xlabel="total budget (× one fixed run)", ylabel="test NLL (IQM)")
    axes[0][-1].legend(fontsize=6, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sensitivity(s: pd.DataFrame, path: Path) -> None:
    tasks = sorted(s["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 5), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        g = s[s["task"] == task].sort_values("default_nll")
        y = np.arange(len(g))
        ax.hlines(y, g["low"], g["high"], color="tab:blue", lw=3)
        ax.plot(g["default_nll"], y, "k|", ms=10, label="default")
        ax.plot(g["chosen_nll"], y, "rx", ms=5, label="chosen on validation")
        ax.set_yticks(y, g["method"], fontsize=7)
        ax.set(title=task, xlabel="test NLL (IQM) over the method's settings, B = 1")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _upper(rec: pd.Series) -> float:
    """A target's upper 95% end (its IQM where one seed gives no interval)."""
    return float(rec["nll"] if math.isnan(rec["high"]) else rec["high"])


def _frame_table(df: pd.DataFrame) -> str:
    return markdown_table([str(c) for c in df.columns], [[str(v) for v in r] for r in df.values])


def _verdict(task: str, c: pd.DataFrame, s: pd.DataFrame) -> str:
    g = c[c["task"] == task]
    wins = []
    for b, gb in g.groupby("budget"):
        w = gb.loc[gb["nll"].idxmin()]
        wins.append(f"{w['method']} at {b} run{'s' * (b > 1)} ({w['nll']:.3f})")
    st = s[(s["task"] == task) & (s["settings"] > 1)]
    robust = st[st["spread"] <= 0.05 * st["default_nll"]]["method"].tolist()
    fragile = st[st["rank_move"] > 3]["method"].tolist()
    return (
        f"**{task}**: best {'; '.join(wins)}. Robust to ÷3/×3 of their settings (spread ≤ 5% of "
        f"the default's NLL): {', '.join(robust) or 'none'}; rank moves by more than three "
        f"places over settings: {', '.join(fragile) or 'none'}."
    )


def write_budget_report(out: Path) -> Path:
    from hgbench.engine.plugins import load_plugins

    load_plugins()  # kinds come from the registered methods' families
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    done = final_rows(load_rows(out))
    c = curves(done)
    s = sensitivity(done)
    plot_curves(c, out / "figures" / "budget_curves.png")
    plot_sensitivity(s, out / "figures" / "sensitivity.png")
    best = best_hypergradient(c)
    lines = ["# hgbench budget study", "", "How each kind spends a total budget of B runs:", ""]
    lines += [f"- **{k}**: {rule}" for k, rule in RULES.items()]
    lines += ["", "![test NLL vs budget](figures/budget_curves.png)", ""]
    lines += ["## Verdict", ""] + [_verdict(t, c, s) for t in sorted(c["task"].unique())]
    lines += [
        "",
        "## Budget at which each method first matches fixed and the best hypergradient method",
        "",
        "A match: the method's IQM test NLL at or below the upper end of the "
        "target's 95% interval (fixed at its one run; the best hypergradient method at its "
        "best budget). `–`: not within the budgets run.",
        "",
    ]
    for task in sorted(c["task"].unique()):
        b = best.loc[task]
        fx = c[(c["task"] == task) & (c["method"] == "fixed")]
        fixed_hi = _upper(fx.iloc[0]) if not fx.empty else math.nan
        lines += [
            f"### {task}",
            "",
            f"Best hypergradient method: {b['method']} at {b['budget']} "
            f"runs, {b['nll']:.3f} [{_fmt(b['low'])}, {_fmt(b['high'])}].",
            "",
            "| method | kind | matches fixed at | matches best at | NLL at each budget "
            "| runs spent at the largest |",
            "|---|---|---|---|---|---|",
        ]
        for method, g in c[c["task"] == task].groupby("method"):
            g = g.sort_values("budget")
            hi = _upper(b)
            f = first_match(c, task, method, fixed_hi) if not math.isnan(fixed_hi) else None
            m = first_match(c, task, method, hi)
            series = ", ".join(
                f"{int(x)}: {y:.3f}" for x, y in zip(g["budget"], g["nll"], strict=True)
            )
            last = g.iloc[-1]
            spent = "one run, kept" if last["carried"] else _fmt(last["runs_spent"])
            lines.append(
                f"| {method} | {kind_of(method)} | {f or '–'} | {m or '–'} | {series} | {spent} |"
            )
        lines.append("")
    r = ranks(c)
    lines += [
        "## Average rank over tasks at each budget (1 best)",
        "",
        _frame_table(r.round(1).reset_index()) if not r.empty else "none",
        "",
    ]
    lines += [
        "## Sensitivity (B = 1): each method's settings at ÷3, ×1, ×3",
        "",
        "![sensitivity](figures/sensitivity.png)",
        "",
        "Ranks against the other methods "
        "at their defaults: at the default setting, at the setting chosen on validation "
        "loss (never test), and the range over all settings.",
        "",
    ]
    cols = [
        "task",
        "method",
        "settings",
        "default_nll",
        "low",
        "high",
        "spread",
        "chosen",
        "rank_default",
        "rank_chosen",
        "rank_move",
    ]
    lines += [_frame_table(s[cols].round(3)) if not s.empty else "none", ""]
    path = out / REPORT
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
