"""report.html for the scaling report: time and memory per hypergradient against each swept
size, interactive, from the points the scaling report's tables and figures use
(`scaling_data.scaling_points`), styled as its figures are (`scaling_figures`)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.colors import to_hex

from hgbench.report.configs import method_family
from hgbench.report.html_specs import SYMBOLS, nums
from hgbench.report.scaling.data import AXIS_X, COST_FAILURES, MEM_FLOOR_MB
from hgbench.report.scaling.figures import _series_styles, series_order

DASHES = {"-": "solid", "--": "dash", ":": "dot", "-.": "dashdot"}
SCALING_METRICS = (
    ("hg_time_s", "seconds per hypergradient"),
    ("mem_mb", "peak memory increase (MB)"),
)


def scaling_spec(points: pd.DataFrame, axis: str, title: str) -> dict[str, Any]:
    """One series per line of the scaling figure: its ok points, and the sizes that ran out of
    time or memory (or were not run past one that did) or do not apply, with the reason."""
    sub = points[points["axis"] == axis]
    styles = _series_styles(points)  # every axis's points: a series looks alike on each axis
    series = []
    for name in series_order(sub):
        s = sub[sub["series"] == name]
        color, line, marker = styles[name]
        method = str(s["method"].iloc[0])
        good = s[s["outcome"] == "ok"]
        bad = s[s["outcome"] != "ok"]
        series.append(
            {
                "label": name,
                "method": method,
                "family": method_family(method).value,
                "color": to_hex(color),
                "dash": DASHES.get(line, "solid"),
                "symbol": SYMBOLS.get(marker, "circle"),
                "size": nums(good["size"].to_numpy(float)),
                "hg_time_s": nums(good["hg_time_s"].to_numpy(float)),
                "mem_mb": nums(good["mem_mb"].clip(lower=MEM_FLOOR_MB).to_numpy(float)),
                "bad_size": nums(bad["size"].to_numpy(float)),
                "bad_outcome": [str(o) for o in bad["outcome"]],
            }
        )
    return {
        "kind": "scaling",
        "title": title,
        "xlabel": AXIS_X.get(axis, axis),
        "metrics": [{"key": k, "name": n} for k, n in SCALING_METRICS],
        "cost_failures": list(COST_FAILURES),
        "configs": series,
    }
