"""The data behind report.html's interactive figures, as JSON-ready dicts ("specs").

Each spec is built from what report.md's tables and figures are built from: a task's
`TaskAnalysis` (its summary, time to target), its stored rows (final values per seed, anytime
curves through `plots.cell_curves` and `summary.step_quantiles`), the `Ranking` across tasks, the
probe summary. Nothing here computes a new statistic; report/static/report.js draws the specs.
Per-seed points are kept, every evaluation row is not: curves are stored as their median and
25–75% band over seeds, thinned to `CURVE_POINTS` (the HTML stays small).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import to_hex

from hgbench.contracts.method import Family
from hgbench.report.load import cell_outcomes, is_true, ok
from hgbench.report.plots import PARETO_PANELS, cell_curves, robust_limits, worse_outliers
from hgbench.report.stats import ALPHA, Ranking
from hgbench.report.style import Style
from hgbench.report.summary import pareto_front, step_quantiles, summarize_probe
from hgbench.report.verdict import TaskAnalysis

Spec = dict[str, Any]
CURVE_POINTS = 120  # points per anytime curve: a step curve over ~100 evaluations reads alike
# matplotlib marker -> plotly symbol, so a config has the same marker in both reports
SYMBOLS = {
    "o": "circle",
    "s": "square",
    "^": "triangle-up",
    "D": "diamond",
    "v": "triangle-down",
    "P": "cross",
    "X": "x",
    "*": "star",
    "<": "triangle-left",
    ">": "triangle-right",
    "h": "hexagon",
    "p": "pentagon",
}
COSTS = (
    ("tse", "cost (training-step equivalents)"),
    ("time_s", "time (s)"),
    ("peak_mem_mb", "peak memory (MB)"),
)


def num(x: Any, digits: int = 6) -> float | None:
    """A finite float rounded to `digits` significant digits, else None (JSON null)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v):
        return None
    return float(f"{v:.{digits}g}")


def nums(values: Sequence[Any] | np.ndarray, digits: int = 6) -> list[float | None]:
    return [num(v, digits) for v in values]


def settings_text(params: Any) -> str:
    """`K=5, lr=0.1`: a config's settings for hover text."""
    if not isinstance(params, dict) or not params:
        return "defaults"
    return ", ".join(
        f"{k}={json.dumps(v, default=str) if isinstance(v, dict | list) else v}"
        for k, v in params.items()
    )


def config_base(label: str, style: Style, params: Any = None) -> Spec:
    """What every figure knows of a config: label, method, family, colour, marker, settings."""
    return {
        "label": label,
        "method": style.methods.get(label, label),
        "family": style.family(label).value,
        "color": to_hex(style.color(label)),
        "symbol": SYMBOLS.get(style.marker(label), "circle"),
        "settings": settings_text(params),
    }


def _params(rows: pd.DataFrame) -> dict[str, Any]:
    return {
        str(lab): p for lab, p in zip(rows["label"], rows["method_params"], strict=True)
    }  # fmt: skip


def _metric_range(summary: pd.DataFrame, style: Style, metric: str, higher: bool) -> list:
    """The initial y range of a metric: that of report.md's Pareto panel (a config far worse
    than the rest off the axis), so one weak baseline never sets the scale; zoom shows all."""
    s = summary[summary[f"{metric}_val"].notna()]
    if s.empty:
        return [None, None]
    y = s[f"{metric}_val"].to_numpy(float)
    base = np.array([style.family(lab) == Family.BASELINE for lab in s["label"]])
    out = worse_outliers(y, worse_high=not higher, protect=base)
    lows, highs = s[f"{metric}_low"].to_numpy(float), s[f"{metric}_high"].to_numpy(float)
    return nums(robust_limits(y[~out], lows[~out], highs[~out]))


def pareto_spec(a: TaskAnalysis, rows: pd.DataFrame, style: Style, title: str) -> Spec:
    """Final values per config (IQM [95% CI] and every seed) for each metric and cost, and the
    non-dominated configs of each (metric, cost) pair."""
    summary = a.summary
    finals = ok(cell_outcomes(rows))
    params = _params(rows)
    metrics = [(p.metric, p.name, p.higher_is_better) for p in PARETO_PANELS]
    costs = [(c, name) for c, name in COSTS if rows[c].notna().any()]
    configs = []
    for rec in summary.itertuples(index=False):
        label = rec.label
        seeds = finals[finals["label"] == label].sort_values("seed", kind="stable")
        c = config_base(label, style, params.get(label))
        c["noisy"] = bool(rec.noisy)
        c["iqm"] = {
            m: nums([getattr(rec, f"{m}_val"), getattr(rec, f"{m}_low"), getattr(rec, f"{m}_high")])
            for m in [m for m, _, _ in metrics] + [k for k, _ in costs]
        }
        c["seeds"] = [str(int(s)) if float(s).is_integer() else str(s) for s in seeds["seed"]]
        c["seed_noisy"] = [is_true(v) for v in seeds["noisy"]]
        c["values"] = {
            m: nums(seeds[m].to_numpy(float))
            for m in [m for m, _, _ in metrics] + [k for k, _ in costs]
        }
        configs.append(c)
    fronts = {}
    for m, _, higher in metrics:
        for cost, _ in costs:
            s = summary[summary[[f"{m}_val", f"{cost}_val"]].notna().all(axis=1)]
            pts = list(zip(s[f"{cost}_val"], s[f"{m}_val"], strict=True))
            fronts[f"{m}|{cost}"] = [
                str(s["label"].iloc[i]) for i in pareto_front(pts, maximize=higher)
            ]
    return {
        "kind": "pareto",
        "title": title,
        "metrics": [
            {"key": m, "name": n, "higher": h, "range": _metric_range(summary, style, m, h)}
            for m, n, h in metrics
        ],
        "costs": [{"key": k, "name": n} for k, n in costs],
        "configs": configs,
        "fronts": fronts,
        "baseline": a.baseline,
    }


def _thin(n: int) -> np.ndarray:
    """Indices of at most CURVE_POINTS of n points, denser at the start (log cost axes), the
    last one always kept."""
    if n <= CURVE_POINTS:
        return np.arange(n)
    idx = np.unique(np.round(np.geomspace(1, n, CURVE_POINTS)).astype(int) - 1)
    return np.union1d(idx, [n - 1])


def anytime_spec(a: TaskAnalysis, rows: pd.DataFrame, style: Style, title: str) -> Spec:
    """Test NLL over cost per config: median and 25–75% band over seeds (each seed's curve held
    at its last value, as in report.md's figure), and the time to the baseline's NLL."""
    costs = [(c, name) for c, name in COSTS[:2] if rows[c].notna().any()]
    params = _params(rows)
    curves = {cost: cell_curves(rows, "test_nll", cost) for cost, _ in costs}
    labels = [lab for lab in style.order if any(lab in c for c in curves.values())]
    ttt = a.ttt if a.ttt is not None else pd.DataFrame(columns=["label", "n", "reached", "median"])
    configs = []
    for label in labels:
        c = config_base(label, style, params.get(label))
        c["curves"] = {}
        for cost, _ in costs:
            series = [(t[t > 0], y[t > 0]) for t, y in curves[cost].get(label, [])]
            grid, med, q25, q75 = step_quantiles(series, hold=True)
            keep = _thin(grid.size)
            c["curves"][cost] = {
                "x": nums(grid[keep]),
                "med": nums(med[keep], 5),
                "q25": nums(q25[keep], 5),
                "q75": nums(q75[keep], 5),
                "n": len(series),
            }
        hit = ttt[ttt["label"] == label]
        if not hit.empty and int(hit["n"].iloc[0]):
            c["ttt"] = {
                "median": num(hit["median"].iloc[0]),
                "reached": int(hit["reached"].iloc[0]),
                "n": int(hit["n"].iloc[0]),
                "cost": a.cost,
            }
        configs.append(c)
    return {
        "kind": "anytime",
        "title": title,
        "costs": [{"key": k, "name": n} for k, n in costs],
        "target": num(a.target) if a.baseline else None,
        "baseline": a.baseline,
        "configs": configs,
    }


def cliques(ranking: Ranking, alpha: float = ALPHA) -> list[list[str]]:
    """Runs of configs, in rank order, that Nemenyi's test does not tell apart pairwise (p ≥
    alpha), maximal ones only: the bars of a critical-difference diagram."""
    if ranking.nemenyi is None:
        return []
    order = list(ranking.ranks.sort_values(kind="stable").index)
    p = ranking.nemenyi
    runs = []
    for i in range(len(order)):
        j = i
        while j + 1 < len(order) and all(
            float(p.loc[order[k], order[j + 1]]) >= alpha for k in range(i, j + 1)
        ):
            j += 1
        if j > i:
            runs.append((i, j))
    maximal = [r for r in runs if not any(o != r and o[0] <= r[0] and r[1] <= o[1] for o in runs)]
    return [order[i : j + 1] for i, j in maximal]


def ranks_spec(ranking: Ranking, style: Style, title: str) -> Spec:
    """Average ranks across (task, seed) blocks, Nemenyi's cliques and critical difference."""
    ranks = ranking.ranks.sort_values(kind="stable")
    return {
        "kind": "ranks",
        "title": title,
        "configs": [
            {**config_base(str(lab), style), "rank": num(r, 4)} for lab, r in ranks.items()
        ],
        "cliques": cliques(ranking),
        "cd": num(ranking.critical_difference, 4),
        "friedman_p": num(ranking.friedman_p, 3),
        "blocks": ranking.blocks,
        "tasks": ranking.tasks,
    }


def gains_spec(analyses: Sequence[TaskAnalysis], style: Style, title: str) -> Spec:
    """Per task, each config's paired difference in final test NLL to the baseline with its
    95% interval (the verdict's `comparison`), whether it is separated, and the x range of
    report.md's panel (a config far worse than the rest at the edge, `far`)."""
    tasks = []
    for a in analyses:
        if a.baseline is None or a.values.shape[1] < 2:
            continue
        comps = [(lab, a.comparison(lab, a.baseline)) for lab in a.values.columns]
        comps = [(lab, c) for lab, c in comps if lab != a.baseline and c and math.isfinite(c.diff)]
        if not comps:
            continue
        d = np.array([c.diff for _, c in comps])
        lows, highs = np.array([c.low for _, c in comps]), np.array([c.high for _, c in comps])
        far = worse_outliers(d, worse_high=True, protect=np.zeros(d.shape, dtype=bool))
        lo, hi = robust_limits(np.append(d[~far], 0.0), lows[~far], highs[~far])
        configs = [
            {
                **config_base(label, style),
                "diff": nums([c.diff, c.low, c.high], 5),
                "separated": bool(c.separated),
                "n": c.n,
                "far": bool(f),
            }
            for (label, c), f in zip(comps, far, strict=True)
        ]
        tasks.append(
            {"task": a.task, "baseline": a.baseline, "range": nums([lo, hi]), "configs": configs}
        )
    seen = {c["label"] for t in tasks for c in t["configs"]}
    labels = [lab for lab in style.order if lab in seen] + sorted(seen - set(style.order))
    return {"kind": "gains", "title": title, "labels": labels, "tasks": tasks}


PROBE_METRICS = (
    ("hg_rel_err", "relative error of hypergradient"),
    ("hg_cos", "cosine to the exact hypergradient"),
)


def probe_spec(rows: pd.DataFrame, style: Style, title: str) -> Spec:
    """Per config: median [25%, 75%] of time per hypergradient and of its error (the probe
    table's numbers), and every measurement for hover."""
    s = summarize_probe(rows, style.order)
    good = ok(rows)
    params = _params(rows)
    configs = []
    for rec in s.itertuples(index=False) if not s.empty else []:
        g = good[good["label"] == rec.label]
        c = config_base(rec.label, style, params.get(rec.label))
        c["summary"] = {
            m: nums([getattr(rec, f"{m}_med"), getattr(rec, f"{m}_q25"), getattr(rec, f"{m}_q75")])
            for m in ("hg_time_s", *(k for k, _ in PROBE_METRICS))
        }
        c["points"] = {
            m: nums(g[m].to_numpy(float)) for m in ("hg_time_s", *(k for k, _ in PROBE_METRICS))
        }
        configs.append(c)
    return {
        "kind": "probe",
        "title": title,
        "metrics": [{"key": k, "name": n} for k, n in PROBE_METRICS],
        "configs": configs,
    }
