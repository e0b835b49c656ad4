"""The budget study's report (`hgbench.budgets`): test NLL against total budget per task, the
budget at which each method first matches `fixed` and the best hypergradient method, ranks per
budget, the sensitivity panel and a verdict per task. From stored rows only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hgbench.budgets.kinds import Kind, kind_of
from hgbench.report.stats import bootstrap_iqm

DEFAULT = "default"
REPORT = "report.md"


def final_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per finished cell (its final, ok row), with `budget_runs` and `setting`."""
    done = rows[(rows["final"] == True) & (rows["status"] == "ok")].copy()  # noqa: E712
    done["budget_runs"] = done["budget_runs"].fillna(1).astype(int)
    done["setting"] = done["setting"].fillna(DEFAULT)
    return done


def curves(done: pd.DataFrame) -> pd.DataFrame:
    """IQM test NLL and its 95% interval per (task, method, budget) at default settings; a
    method that keeps its one run is carried flat to every budget (`carried` True)."""
    axis = done[done["setting"] == DEFAULT]
    budgets = sorted(axis["budget_runs"].unique())
    out = []
    for (task, method, b), g in axis.groupby(["task", "method", "budget_runs"]):
        iv = bootstrap_iqm(g["test_nll"].to_numpy(float))
        spent = float(np.median(g["tse"].to_numpy(float)))
        for bb in budgets if kind_of(method) == Kind.SINGLE else [b]:
            out.append(
                dict(
                    task=task,
                    method=method,
                    budget=bb,
                    nll=iv.value,
                    low=iv.low,
                    high=iv.high,
                    n=iv.n,
                    tse=spent,
                    carried=bb != b,
                )
            )
    c = pd.DataFrame(out)
    fixed = c[(c["method"] == "fixed") & ~c["carried"]].set_index("task")["tse"]
    c["runs_spent"] = c["tse"] / c["task"].map(fixed)  # cost in fixed runs, measured
    return c


def best_hypergradient(c: pd.DataFrame) -> pd.Series:
    """Per task, the best hypergradient method's row (lowest IQM at any budget)."""
    hg = c[[kind_of(m) in (Kind.META, Kind.ONLINE) for m in c["method"]]]
    return hg.loc[hg.groupby("task")["nll"].idxmin()].set_index("task")


def first_match(c: pd.DataFrame, task: str, method: str, target: float) -> int | None:
    """The smallest budget at which `method`'s IQM is within `target` (an interval's upper end)."""
    g = c[(c["task"] == task) & (c["method"] == method)].sort_values("budget")
    hit = g[g["nll"] <= target]
    return None if hit.empty else int(hit["budget"].iloc[0])


def ranks(c: pd.DataFrame) -> pd.DataFrame:
    """Average rank over tasks (1 best) of each method at each budget."""
    c = c.copy()
    c["rank"] = c.groupby(["task", "budget"])["nll"].rank()
    return c.pivot_table(index="method", columns="budget", values="rank", aggfunc="mean")


def sensitivity(done: pd.DataFrame) -> pd.DataFrame:
    """Per (task, method) at B = 1: IQM test NLL per setting, its spread, the rank at defaults,
    at the setting chosen on validation loss, and the range of ranks over the settings (each
    setting ranked against the other methods at their defaults)."""
    one = done[done["budget_runs"] == 1]
    agg = (
        one.groupby(["task", "method", "setting"])
        .agg(
            nll=("test_nll", lambda v: bootstrap_iqm(v.to_numpy(float)).value),
            val=("val_loss", "median"),
        )
        .reset_index()
    )
    out = []
    for task, g in agg.groupby("task"):
        base = g[g["setting"] == DEFAULT].set_index("method")["nll"]
        for method, m in g.groupby("method"):
            others = base.drop(method, errors="ignore")
            rank_of = {
                s: int((others < v).sum()) + 1 for s, v in zip(m["setting"], m["nll"], strict=True)
            }
            chosen = m.loc[m["val"].idxmin(), "setting"]
            out.append(
                dict(
                    task=task,
                    method=method,
                    settings=len(m),
                    default_nll=base.get(method, np.nan),
                    low=m["nll"].min(),
                    high=m["nll"].max(),
                    spread=m["nll"].max() - m["nll"].min(),
                    chosen=chosen,
                    chosen_nll=float(m.loc[m["setting"] == chosen, "nll"].iloc[0]),
                    rank_default=rank_of.get(DEFAULT),
                    rank_chosen=rank_of[chosen],
                    rank_move=max(rank_of.values()) - min(rank_of.values()),
                )
            )
    return pd.DataFrame(out)
