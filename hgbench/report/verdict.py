"""The verdict: which method, at what cost, how sure, per task and across tasks.

`analyse_task` computes everything a task's section and the verdict need (one place, so the
numbers agree); `verdict_section` writes the sentences and tables at the top of report.md.
The statistics are those of hgbench.report.stats; the metric is the final test NLL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hgbench.contracts.method import Family
from hgbench.report.markdown import (
    MISSING,
    code,
    fixed,
    fmt_interval,
    markdown_table,
    plural,
    significant,
)
from hgbench.report.stats import (
    Comparison,
    Improvement,
    Ranking,
    compare_pairs,
    final_matrix,
    improvement,
    pooled_improvement,
    time_to_target,
)
from hgbench.report.style import Style
from hgbench.report.summary import summarize_run
from hgbench.report.tables import difference_text

METRIC = "test_nll"
NLL = fixed(3)


@dataclass
class TaskAnalysis:
    """One task's run results: summary, paired comparisons, baseline, targets."""

    task: str
    summary: pd.DataFrame  # summarize_run
    values: pd.DataFrame  # seed × label final test NLL (failed: NaN)
    comparisons: list[Comparison]
    baseline: str | None = None  # label of the floor (family baseline), if it ran here
    target: float = math.nan  # the baseline's final test NLL (IQM)
    ttt: pd.DataFrame | None = None  # time to target per label
    improvements: dict[str, Improvement] = field(default_factory=dict)
    cost: str = "tse"  # the cost column: tse, or time_s on rows without it

    def comparison(self, a: str, b: str) -> Comparison | None:
        """a − b (flipped if stored as b − a)."""
        for c in self.comparisons:
            if (c.a, c.b) == (a, b):
                return c
            if (c.a, c.b) == (b, a):
                return Comparison(
                    a, b, c.n, -c.diff, -c.high, -c.low, c.p, c.p_adjusted
                )  # fmt: skip
        return None

    def value(self, label: str, metric: str = METRIC) -> float:
        hit = self.summary[self.summary["label"] == label] if not self.summary.empty else None
        return math.nan if hit is None or hit.empty else float(hit[f"{metric}_val"].iloc[0])

    @property
    def best(self) -> str | None:
        """The config with the lowest IQM test NLL."""
        if self.summary.empty or not self.summary[f"{METRIC}_val"].notna().any():
            return None
        return str(self.summary.loc[self.summary[f"{METRIC}_val"].idxmin(), "label"])

    def tied_with(self, label: str) -> list[str]:
        """Configs not separated from `label` (that share seeds with it)."""
        out = []
        for other in self.values.columns:
            c = self.comparison(label, other) if other != label else None
            if c is not None and math.isfinite(c.low) and not c.separated:
                out.append(other)
        return out


def analyse_task(task: str, rows: pd.DataFrame, style: Style) -> TaskAnalysis:
    """Everything the report says about one task's run rows (with `label`)."""
    summary = summarize_run(rows, style.order)
    values = final_matrix(rows, METRIC)
    if not values.empty:  # configs with a result, in display order (skipped ones have none)
        values = values[[lab for lab in summary["label"] if lab in values.columns]]
        values = values.loc[:, values.notna().any()]
    a = TaskAnalysis(task, summary, values, compare_pairs(values))
    a.cost = "tse" if rows["tse"].notna().any() else "time_s"
    bases = [lab for lab in values.columns if style.family(lab) == Family.BASELINE]
    bases = [lab for lab in bases if math.isfinite(a.value(lab))]
    if bases:
        a.baseline, a.target = bases[0], a.value(bases[0])
        a.ttt = time_to_target(rows, a.target, a.cost)
        base = values[a.baseline].to_numpy()
        a.improvements = {
            lab: improvement(values[lab].to_numpy(), base)
            for lab in values.columns
            if lab != a.baseline
        }
    return a


def _ttt_text(a: TaskAnalysis, label: str) -> str:
    if a.ttt is None or a.ttt[a.ttt["label"] == label].empty:
        return MISSING
    rec = a.ttt[a.ttt["label"] == label].iloc[0]
    if not math.isfinite(rec["median"]):
        return f"not reached ({int(rec['reached'])}/{int(rec['n'])})"
    return f"{significant(rec['median'])} ({int(rec['reached'])}/{int(rec['n'])})"


def _ratio(a: TaskAnalysis, label: str) -> float:
    if a.baseline is None:
        return math.nan
    base = a.value(a.baseline, a.cost)
    return a.value(label, a.cost) / base if base > 0 else math.nan


def _sentence(a: TaskAnalysis) -> str:
    best = a.best
    if best is None:
        return f"- **{a.task}**: no config finished ok."
    s = a.summary[a.summary["label"] == best].iloc[0]
    nll = fmt_interval(s[f"{METRIC}_val"], s[f"{METRIC}_low"], s[f"{METRIC}_high"], NLL)
    text = f"- **{a.task}**: {code(best)} has the lowest test NLL, {nll}"
    if a.baseline is None:
        text += " (no baseline ran here to compare with)."
    elif best == a.baseline:
        text += f": no method improves on {code(a.baseline)} here."
    else:
        c, imp = a.comparison(best, a.baseline), a.improvements.get(best, Improvement())
        versus = f"Δ {difference_text(c)}, lower on {imp.wins}/{imp.n} seeds" if c else MISSING
        if c is not None and c.separated:
            text += f"; it is separated from {code(a.baseline)} ({versus})"
        else:
            text += f", but is not separated from {code(a.baseline)} ({versus})"
        ratio = _ratio(a, best)
        unit = "training steps" if a.cost == "tse" else "seconds"
        if math.isfinite(ratio):
            text += f", at {ratio:.2g}× {code(a.baseline)}'s cost in {unit}"
        text += "."
    if a.baseline is not None:
        text += " " + _cheapest_sentence(a)
    tied = [lab for lab in a.tied_with(best) if lab != a.baseline or best == a.baseline]
    if tied:
        text += f" Not separated from it: {_names(tied)}."
    return text


def winners(a: TaskAnalysis) -> list[str]:
    """Configs separated from the baseline on the better side, cheapest first."""
    if a.baseline is None:
        return []
    better = [
        lab
        for lab in a.values.columns
        if lab != a.baseline
        and (c := a.comparison(lab, a.baseline)) is not None
        and c.separated
        and c.diff < 0
    ]
    return sorted(better, key=lambda lab: (a.value(lab, a.cost), lab))


def _cheapest_sentence(a: TaskAnalysis) -> str:
    better = winners(a)
    if not better:
        return f"No config is separated from {code(a.baseline)} on the better side."
    first = better[0]
    more = len(better) - 1
    others = f"; {more} more config{'s do' if more > 1 else ' does'} too" if more else ""
    if first == a.best:
        return f"It is also the cheapest config that beats {code(a.baseline)}{others}."
    c = a.comparison(first, a.baseline)
    ratio = _ratio(a, first)
    cost = f", {ratio:.2g}× the cost" if math.isfinite(ratio) else ""
    return (
        f"The cheapest config that beats {code(a.baseline)} with a separated interval is "
        f"{code(first)} (Δ {difference_text(c)}{cost}){others}."
    )


NAMED = 6  # configs named in a sentence; the rest are counted


def _names(labels: Sequence[str]) -> str:
    shown = ", ".join(code(lab) for lab in labels[:NAMED])
    return shown + (f" and {len(labels) - NAMED} more" if len(labels) > NAMED else "")


def _verdict_table(analyses: Sequence[TaskAnalysis]) -> str:
    header = [
        "task",
        "lowest test NLL",
        "IQM [95% CI]",
        "vs baseline (paired Δ)",
        "P(beats baseline)",
        "cost × baseline",
        "cost to baseline's NLL",
        "separated from",
    ]
    body = []
    for a in analyses:
        best = a.best
        if best is None:
            continue
        s = a.summary[a.summary["label"] == best].iloc[0]
        c = a.comparison(best, a.baseline) if a.baseline and best != a.baseline else None
        imp = a.improvements.get(best)
        others = [lab for lab in a.values.columns if lab != best]
        n_sep = sum(1 for o in others if (k := a.comparison(best, o)) and k.separated)
        body.append(
            [
                a.task,
                best,
                fmt_interval(s[f"{METRIC}_val"], s[f"{METRIC}_low"], s[f"{METRIC}_high"], NLL),
                difference_text(c) if c else MISSING,
                _improvement_text(imp) if imp else MISSING,
                f"{_ratio(a, best):.2g}" if math.isfinite(_ratio(a, best)) else MISSING,
                _ttt_text(a, best),
                f"{n_sep} of {len(others)}",
            ]
        )
    return markdown_table(header, body, [False, False] + [True] * (len(header) - 2))


def _improvement_text(imp: Improvement) -> str:
    if not imp.n:
        return MISSING
    return f"{imp.wins}/{imp.n} [{imp.low:.2f}, {imp.high:.2f}]"


def pairs_summary_table(analyses: Sequence[TaskAnalysis]) -> str:
    """Per task: how many config pairs the paired intervals separate, and after BH."""
    body = []
    for a in analyses:
        compared = [c for c in a.comparisons if math.isfinite(c.low)]
        sep = sum(c.separated for c in compared)
        adj = sum(c.separated_adjusted for c in compared)
        share = f"{sep / len(compared):.0%}" if compared else MISSING
        body.append([a.task, str(a.values.shape[1]), str(len(compared)), str(sep), share, str(adj)])
    header = ["task", "configs", "pairs compared", "separated", "share", "after BH (5% FDR)"]
    return markdown_table(header, body, [False] + [True] * 5)


def across_tasks_table(
    analyses: Sequence[TaskAnalysis], ranking: Ranking, labels: Sequence[str]
) -> str:
    """Per config: average rank, and P(beats the baseline) per task and over all tasks."""
    header = ["config", "avg rank", *(a.task for a in analyses), "P(beats baseline), all tasks"]
    body = []
    for label in labels:
        per_task, pairs = [], []
        for a in analyses:
            imp = a.improvements.get(label)
            per_task.append(f"{imp.wins}/{imp.n}" if imp and imp.n else MISSING)
            if imp and imp.n and a.baseline is not None:
                pairs.append((a.values[label].to_numpy(), a.values[a.baseline].to_numpy()))
        agg = pooled_improvement(pairs)
        rank = ranking.ranks.get(label, math.nan)
        body.append(
            [
                label,
                f"{rank:.2f}" if math.isfinite(rank) else MISSING,
                *per_task,
                _improvement_text(agg),
            ]
        )
    return markdown_table(header, body, [False] + [True] * (len(header) - 1))


GAINS = (
    "Each config against the baseline, seed by seed: mean difference in final test NLL with its "
    "95% interval (left of the dotted line: better). Filled: separated from the baseline; hollow: "
    "not."
)
HOW = """\
How the numbers are computed (all from the stored rows):
- Central values are IQMs over seeds (the mean of the middle half) with percentile-bootstrap 95%
  intervals. Cost is in training-step equivalents (TSE: timed seconds over one `fixed` training
  step of the task on the same device), so it compares across machines.
- Every seed fixes the data split, initialisation and batch order for all methods, so configs
  are compared seed by seed: a pair is *separated* when the 95% Student-t interval of the mean
  paired difference in test NLL excludes 0 (with 5 seeds no rank test can reach p < 0.05);
  "after BH" counts the separations that survive Benjamini–Hochberg control of the false
  discovery rate over a task's pairs.
- P(beats baseline): the share of seeds on which a config's test NLL is below the baseline's
  (Wilson 95% interval; over all tasks, the tasks' seeds pooled).
- Ranks: configs ranked by test NLL within each (task, seed) block (a failed cell ranks last),
  Friedman's test, and Nemenyi's post-hoc for the critical-difference diagram; the blocks are
  this suite's tasks, so the ranks speak for them, not for tasks in general.
- Cost to the baseline's NLL: the median over seeds of the cost at the first evaluation whose
  test NLL is at or below the baseline's final IQM (not reached: fewer than half the seeds got
  there); intermediate evaluations may use a fixed test subset (`test_n`)."""


def verdict_section(
    analyses: Sequence[TaskAnalysis],
    ranking: Ranking,
    labels: Sequence[str],
    figures: dict[str, str] | None = None,
) -> str:
    """The top of report.md: sentences per task, the verdict table, ranks, separated pairs."""
    analyses = [a for a in analyses if not a.summary.empty]
    if not analyses:
        return ""
    baselines = sorted({a.baseline for a in analyses if a.baseline})
    base = ", ".join(code(b) for b in baselines) or "none ran"
    parts = [
        "## Verdict",
        "",
        "Which method, at what cost, and how sure: final test NLL per task (lower is better). "
        f"Baseline: {base}.",
        "",
        *[_sentence(a) for a in analyses],
        "",
        _verdict_table(analyses),
        *(["", GAINS, "", figures["gains"]] if figures and "gains" in figures else []),
        "",
        "### Across tasks",
        "",
    ]
    if ranking.usable:
        parts.append(
            f"Friedman's test over {plural(ranking.blocks, 'block')} gives p = "
            f"{ranking.friedman_p:.2g}"
            + (
                "; configs joined by a bar in the diagram are not separated by Nemenyi's test."
                if ranking.friedman_p < 0.05
                else ": the ranks do not differ significantly, so read the diagram as a summary."
            )
        )
    elif len(ranking.ranks) >= 3 and ranking.blocks >= 2:
        parts.append(
            "Average ranks below; Nemenyi's test and the critical-difference diagram need "
            "scikit-posthocs (`pip install scikit-posthocs`)."
        )
    else:
        parts.append("Too few configs or blocks for ranks across tasks (3 configs, 2 blocks).")
    if ranking.dropped_labels:
        parts.append(f"Not ranked (no result on some task): {', '.join(ranking.dropped_labels)}.")
    if ranking.dropped_blocks:
        parts.append(f"{plural(ranking.dropped_blocks, 'block')} left out (a config missing).")
    parts += ["", across_tasks_table(analyses, ranking, labels)]
    if figures and "ranks" in figures:
        parts += ["", figures["ranks"]]
    parts += ["", "### Separated pairs", "", pairs_summary_table(analyses), "", HOW]
    return "\n".join(parts)


def ranked_labels(analyses: Sequence[TaskAnalysis], order: Sequence[str]) -> list[str]:
    """Configs that ran on some task, in display order."""
    seen = {lab for a in analyses for lab in a.values.columns}
    return [lab for lab in order if lab in seen] + sorted(seen - set(order))


def nll_matrices(analyses: Sequence[TaskAnalysis], rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per task, final test NLL per (seed, label) with failed cells +inf (for ranks)."""
    return {
        a.task: final_matrix(rows[rows["task"] == a.task], METRIC, failed_as=np.inf)
        for a in analyses
    }
