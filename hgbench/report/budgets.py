"""The budget study's report (`hgbench.budgets`): test NLL against total budget per task, the
budget at which each method first matches `fixed` and the best hypergradient method, ranks per
budget, the sensitivity panel and a verdict per task. From stored rows only.

Two rules here are the report's, not the cells': a cell is *over budget* when the runs it
measurably spent exceed its nominal budget B by more than `OVER_TOLERANCE` (timing noise on a
shared machine), and a method's rank *moves* over its settings only by the places its rank
intervals leave no doubt about (`sensitivity`).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from hgbench.budgets.kinds import Kind, kind_of
from hgbench.report.stats import bootstrap_iqm

DEFAULT = "default"
REPORT = "report.md"
OVER_TOLERANCE = 1.1  # spent > 1.1 × B: over budget (measured seconds carry ~10% noise)
FRAGILE_PLACES = 3  # the "rank moves by more than three places"


def _test_nll(g: pd.DataFrame) -> dict[str, float]:
    """A group's test NLL as IQM with its 95% bootstrap interval over seeds."""
    iv = bootstrap_iqm(g["test_nll"].to_numpy(float))
    return dict(nll=iv.value, low=iv.low, high=iv.high, n=iv.n)


def final_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per finished cell (its final, ok row), with `budget_runs` and `setting`."""
    done = rows[(rows["final"] == True) & (rows["status"] == "ok")].copy()  # noqa: E712
    done["budget_runs"] = done["budget_runs"].fillna(1).astype(int)
    done["setting"] = done["setting"].fillna(DEFAULT)
    return done


def not_ok(rows: pd.DataFrame) -> pd.DataFrame:
    """Cells whose final row is not ok (skipped, failed, diverged), counted per (task, method,
    budget, setting, status, reason): the tables leave them out, so the report lists them."""
    bad = rows[(rows["final"] == True) & (rows["status"] != "ok")].copy()  # noqa: E712
    if bad.empty:
        return pd.DataFrame(
            columns=["task", "method", "budget_runs", "setting", "status", "reason", "cells"]
        )
    bad["budget_runs"] = bad["budget_runs"].fillna(1).astype(int)
    bad["setting"] = bad["setting"].fillna(DEFAULT)
    bad["reason"] = bad["error"].fillna("").str.split(":").str[0].str[:60]
    keys = ["task", "method", "budget_runs", "setting", "status", "reason"]
    return bad.groupby(keys).size().rename("cells").reset_index()


def _number(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        return text
    if value == int(value) and "." not in text and "e" not in text.lower():
        return text  # a count stays as it is
    return f"{value:.2g}"


def setting_label(setting: str) -> str:
    """A sweep label for reading: `hyper_lr=0.30000000000000004` → `hyper_lr=0.3` (two
    significant figures; counts unchanged). Stored rows keep their own labels."""
    return re.sub(r"(?<==)[^,;\s]+", lambda m: _number(m.group(0)), str(setting))


def curves(done: pd.DataFrame) -> pd.DataFrame:
    """IQM test NLL and its 95% interval per (task, method, budget) at default settings, the
    runs the cells measurably spent (median TSE over `fixed`'s one run) and whether that is over
    budget; a method that keeps its one run is carried flat to every budget (`carried` True)."""
    axis = done[done["setting"] == DEFAULT]
    budgets = sorted(axis["budget_runs"].unique())
    out = []
    for (task, method, b), g in axis.groupby(["task", "method", "budget_runs"]):
        nll = _test_nll(g)
        spent = float(np.median(g["tse"].to_numpy(float)))
        for bb in budgets if kind_of(method) == Kind.SINGLE else [b]:
            out.append(dict(task=task, method=method, budget=bb, **nll, tse=spent, carried=bb != b))
    c = pd.DataFrame(out)
    if c.empty:
        return c.assign(runs_spent=[], over=[])
    fixed = c[(c["method"] == "fixed") & ~c["carried"]].set_index("task")["tse"]
    c["runs_spent"] = c["tse"] / c["task"].map(fixed)  # cost in fixed runs, measured
    c.loc[c["carried"], "runs_spent"] = 1.0  # a kept run costs nothing more
    c["over"] = c["runs_spent"] > OVER_TOLERANCE * c["budget"]
    return c


def is_hypergradient(method: str) -> bool:
    return kind_of(method) in (Kind.META, Kind.ONLINE)


def best_hypergradient(c: pd.DataFrame) -> pd.DataFrame:
    """Per task, the best hypergradient method's row (lowest IQM at any budget; of equal IQMs,
    as an online method's retrain gives at every budget past it, the smallest budget)."""
    hg = c[c["method"].map(is_hypergradient).astype(bool)]
    return hg.sort_values(["nll", "budget"]).groupby("task").head(1).set_index("task")


def upper(rec: pd.Series) -> float:
    """A target's upper 95% end (its IQM where one seed gives no interval)."""
    return float(rec["nll"] if math.isnan(rec["high"]) else rec["high"])


def first_match(c: pd.DataFrame, task: str, method: str, target: float) -> int | None:
    """The smallest budget at which `method`'s IQM is within `target` (an interval's upper end)."""
    g = c[(c["task"] == task) & (c["method"] == method)].sort_values("budget")
    hit = g[g["nll"] <= target]
    return None if hit.empty else int(hit["budget"].iloc[0])


def point(c: pd.DataFrame, task: str, method: str, budget: int) -> pd.Series | None:
    g = c[(c["task"] == task) & (c["method"] == method) & (c["budget"] == budget)]
    return None if g.empty else g.iloc[0]


def ranks(c: pd.DataFrame) -> pd.DataFrame:
    """Average rank over tasks (1 best) of each method at each budget."""
    c = c.copy()
    c["rank"] = c.groupby(["task", "budget"])["nll"].rank()
    return c.pivot_table(index="method", columns="budget", values="rank", aggfunc="mean")


def _rank_bounds(lo: float, hi: float, v: float, others: pd.DataFrame) -> tuple[int, int, int]:
    """(point, best, worst) rank of an interval [lo, hi] around v among `others`' intervals:
    an other counts as better for the best case only when its interval lies wholly below."""
    lo, hi = (v, v) if math.isnan(lo) else (lo, hi)
    o_lo = others["low"].fillna(others["nll"])
    o_hi = others["high"].fillna(others["nll"])
    best = 1 + int((o_hi < lo).sum())
    worst = 1 + len(others) - int((o_lo > hi).sum())
    return 1 + int((others["nll"] < v).sum()), best, worst


def sensitivity(done: pd.DataFrame) -> pd.DataFrame:
    """Per (task, method) at B = 1: IQM test NLL per setting, its spread, the rank at defaults,
    at the setting chosen on validation loss (median over seeds; never test), and two moves of
    the rank over the settings, each setting ranked against the other methods at defaults:

    - `rank_move`: the range of the point ranks (by IQM); near-ties move it on noise alone;
    - `sure_move`: the places the rank moved beyond doubt, max over settings of the best-case
      rank minus min over settings of the worst-case rank (floored at 0), where a setting's
      best case counts only the methods whose 95% interval lies wholly below its own, and its
      worst case only those wholly above. `FRAGILE_PLACES` applies to this one.
    """
    one = done[done["budget_runs"] == 1]
    recs = []
    for (task, method, setting), g in one.groupby(["task", "method", "setting"]):
        nll = _test_nll(g)
        del nll["n"]
        recs.append(
            dict(
                task=task, method=method, setting=setting, **nll, val=float(g["val_loss"].median())
            )
        )
    agg = pd.DataFrame(recs)
    out = []
    for task, g in agg.groupby("task") if not agg.empty else []:
        base = g[g["setting"] == DEFAULT].set_index("method")
        for method, m in g.groupby("method"):
            others = base.drop(method, errors="ignore")
            bounds = {r.setting: _rank_bounds(r.low, r.high, r.nll, others) for r in m.itertuples()}
            chosen = m.loc[m["val"].idxmin(), "setting"]
            points = [b[0] for b in bounds.values()]
            sure = max(b[1] for b in bounds.values()) - min(b[2] for b in bounds.values())
            default = bounds.get(DEFAULT)
            out.append(
                dict(
                    task=task,
                    method=method,
                    settings=len(m),
                    default_nll=base["nll"].get(method, np.nan),
                    low=m["nll"].min(),
                    high=m["nll"].max(),
                    spread=m["nll"].max() - m["nll"].min(),
                    best_setting=m.loc[m["nll"].idxmin(), "setting"],
                    chosen=chosen,
                    chosen_nll=float(m.loc[m["setting"] == chosen, "nll"].iloc[0]),
                    rank_default=default[0] if default else None,
                    rank_chosen=bounds[chosen][0],
                    rank_move=max(points) - min(points),
                    sure_move=max(0, sure),
                )
            )
    return pd.DataFrame(out)


def fragile(s: pd.DataFrame, task: str | None = None) -> pd.DataFrame:
    """Methods whose rank moves beyond doubt by more than `FRAGILE_PLACES` over settings."""
    g = s if task is None else s[s["task"] == task]
    return g[(g["settings"] > 1) & (g["sure_move"] > FRAGILE_PLACES)]
