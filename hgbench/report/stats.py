"""The statistics of a report: intervals over seeds, paired comparisons, ranks across tasks.

Design (the report's "How the numbers are computed" section says the same to its reader):

- Per task, each config's central value is the interquartile mean (IQM: the mean of the middle
  50% of seeds, `scipy.stats.trim_mean(x, 0.25)`; rliable's recommendation, more efficient than
  the median and robust to one diverged seed) with a percentile-bootstrap 95% interval over
  seeds (`scipy.stats.bootstrap`, seeded, so the same rows always give the same report).
- Two configs on one task are compared on the seeds they share: every seed fixes the data
  split, the initialisation and the batch order for all methods, so differences are paired.
  They are *separated* when the 95% interval of the mean paired difference excludes 0. The
  interval is Student's t (`scipy.stats.ttest_rel`): with 5–10 seeds a percentile bootstrap of
  a mean covers well under 95% (its width lacks the t factor), and rank tests cannot separate
  anything at 5 seeds (the smallest two-sided signed-rank or sign-test p is 1/16). The
  Benjamini–Hochberg adjusted p-values (`scipy.stats.false_discovery_control`) say how many
  separations survive the many comparisons of a task.
- P(improve on the baseline) per task is the fraction of shared seeds on which a config's
  metric beats the baseline's, with a Wilson 95% interval (`scipy.stats.binomtest`); across
  tasks, the same over the tasks' seeds pooled (a bootstrap interval of a share collapses to
  [1, 1] when every seed wins; Wilson's does not).
- Across tasks: average ranks over blocks, a block being one (task, seed); Friedman's test
  (`scipy.stats.friedmanchisquare`) and Nemenyi's post-hoc (`scikit_posthocs`), drawn as a
  critical-difference diagram. Blocks are (task, seed) pairs, so the test speaks for this
  suite's tasks, not for tasks in general. A failed cell ranks last in its block.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from hgbench.contracts.schema import Status
from hgbench.report.load import UNFINISHED, cell_outcomes

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
RESAMPLES = 2000
BOOTSTRAP_SEED = 0
NAN = math.nan


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (25% trimmed from each end)."""
    return stats.trim_mean(values, 0.25, axis=axis)


@dataclass(frozen=True)
class Interval:
    """A central value with its 95% interval (NaN where there is none) over n observations."""

    value: float = NAN
    low: float = NAN
    high: float = NAN
    n: int = 0

    def excludes(self, x: float) -> bool:
        finite = math.isfinite(self.low) and math.isfinite(self.high)
        return finite and not self.low <= x <= self.high


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v[np.isfinite(v)]


def _bootstrap(samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray]) -> tuple:
    """Percentile-bootstrap interval of `statistic(*samples, axis=-1)`, each sample resampled
    independently (per task, seeds are resampled within the task: rliable's stratified
    bootstrap restricted to one stratum)."""
    if all(np.ptp(s) == 0 for s in samples):  # nothing varies: the interval is the point
        point = float(statistic(*samples, axis=-1))
        return point, point
    res = stats.bootstrap(
        tuple(samples),
        statistic,
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def bootstrap_iqm(values: Sequence[float] | np.ndarray) -> Interval:
    """IQM of the finite values with its percentile-bootstrap 95% interval (none for n < 2)."""
    v = _finite(values)
    if v.size == 0:
        return Interval()
    point = float(iqm(v))
    if v.size < 2:
        return Interval(point, n=1)
    low, high = _bootstrap([v], iqm)
    return Interval(point, low, high, int(v.size))


def final_matrix(rows: pd.DataFrame, metric: str, failed_as: float = NAN) -> pd.DataFrame:
    """One task's final `metric` per (seed, config label): index seed, columns labels.

    Cells that finished ok give their final value; failed or timed-out cells `failed_as`
    (NaN: left out; +inf: worst); skipped cells NaN. `rows`: one task's run rows with `label`.
    """
    outcomes = cell_outcomes(rows)
    if outcomes.empty:
        return pd.DataFrame()
    value = outcomes[metric].where(outcomes["status"] == Status.OK)
    value = value.mask(outcomes["status"].isin(UNFINISHED), failed_as)
    table = outcomes.assign(_v=value.astype(float)).drop_duplicates(["label", "seed"], keep="last")
    matrix = table.pivot(index="seed", columns="label", values="_v")
    return matrix[list(dict.fromkeys(table["label"]))]


@dataclass(frozen=True)
class Comparison:
    """Config `a` minus config `b` on their shared seeds (negative: `a` lower)."""

    a: str
    b: str
    n: int
    diff: float
    low: float
    high: float
    p: float
    p_adjusted: float = NAN

    @property
    def separated(self) -> bool:
        """The 95% interval of the mean paired difference excludes 0."""
        finite = math.isfinite(self.low) and math.isfinite(self.high)
        return finite and (self.low > 0 or self.high < 0)

    @property
    def separated_adjusted(self) -> bool:
        """Separated, and still significant after Benjamini–Hochberg over the task's pairs."""
        return self.separated and self.p_adjusted < ALPHA


def paired_difference(x: np.ndarray, y: np.ndarray) -> tuple[int, float, float, float, float]:
    """(n, mean of x − y, 95% t-interval low, high, two-sided p) over pairs finite in both."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    n = int(d.size)
    if n == 0:
        return 0, NAN, NAN, NAN, NAN
    mean = float(d.mean())
    if n < 2:
        return n, mean, NAN, NAN, NAN
    if np.ptp(d) == 0:  # no spread: the t statistic is undefined, the difference is exact
        return n, mean, mean, mean, 1.0 if mean == 0 else 0.0
    res = stats.ttest_rel(x[keep], y[keep])
    ci = res.confidence_interval(CONFIDENCE)
    return n, mean, float(ci.low), float(ci.high), float(res.pvalue)


def compare_pairs(values: pd.DataFrame) -> list[Comparison]:
    """Every pair of columns of a (seed × label) matrix, in column order, with BH-adjusted p."""
    pairs = [
        (a, b, *paired_difference(values[a].to_numpy(), values[b].to_numpy()))
        for a, b in combinations(values.columns, 2)
    ]
    ps = np.array([p[-1] for p in pairs], dtype=float)
    adjusted = np.full(ps.shape, NAN)
    finite = np.isfinite(ps)
    if finite.any():
        adjusted[finite] = stats.false_discovery_control(ps[finite], method="bh")
    return [Comparison(*p, p_adjusted=float(q)) for p, q in zip(pairs, adjusted, strict=True)]


@dataclass(frozen=True)
class Improvement:
    """On how many of n shared seeds a config beat the baseline; Wilson 95% interval."""

    wins: int = 0
    n: int = 0
    low: float = NAN
    high: float = NAN

    @property
    def fraction(self) -> float:
        return self.wins / self.n if self.n else NAN


def _win_indicators(x: np.ndarray, base: np.ndarray, lower_is_better: bool) -> np.ndarray:
    x, base = np.asarray(x, dtype=float), np.asarray(base, dtype=float)
    keep = np.isfinite(x) & np.isfinite(base)
    better = x[keep] < base[keep] if lower_is_better else x[keep] > base[keep]
    return better.astype(float)  # a tie is no improvement


def improvement(x: np.ndarray, base: np.ndarray, lower_is_better: bool = True) -> Improvement:
    """P(config beats the baseline on a seed): wins / shared seeds, Wilson 95% interval."""
    wins = _win_indicators(x, base, lower_is_better)
    if wins.size == 0:
        return Improvement()
    k, n = int(wins.sum()), int(wins.size)
    ci = stats.binomtest(k, n).proportion_ci(CONFIDENCE, method="wilson")
    return Improvement(k, n, float(ci.low), float(ci.high))


def pooled_improvement(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], lower_is_better: bool = True
) -> Improvement:
    """P(beat the baseline) over the seeds of several tasks pooled: wins / seeds with a Wilson
    95% interval. (A percentile bootstrap would give [1, 1] whenever every seed wins; Wilson's
    interval stays honest at 0 and 1. With equal seeds per task the pooled share is the mean of
    the per-task shares.) `pairs`: (config, baseline) values per task."""
    if not pairs:
        return Improvement()
    x = np.concatenate([np.asarray(x, dtype=float) for x, _ in pairs])
    base = np.concatenate([np.asarray(b, dtype=float) for _, b in pairs])
    return improvement(x, base, lower_is_better)


@dataclass
class Ranking:
    """Average ranks of configs over (task, seed) blocks, with Friedman's and Nemenyi's tests."""

    ranks: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))  # label -> rank
    blocks: int = 0
    tasks: int = 0
    friedman_p: float = NAN
    nemenyi: pd.DataFrame | None = None  # label × label p-values
    critical_difference: float = NAN
    dropped_labels: list[str] = field(default_factory=list)  # not run on every task
    dropped_blocks: int = 0  # (task, seed) blocks missing some remaining config

    @property
    def usable(self) -> bool:
        """Enough for the test and the diagram: three configs, two blocks, Nemenyi's p-values."""
        return len(self.ranks) >= 3 and self.blocks >= 2 and self.nemenyi is not None


def nemenyi_critical_difference(k: int, n: int) -> float:
    """Nemenyi's critical difference of average ranks: q_α(k, ∞) / √2 · √(k(k+1) / 6n)."""
    q = stats.studentized_range.ppf(CONFIDENCE, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n)))


def rank_configs(per_task: Mapping[str, pd.DataFrame], lower_is_better: bool = True) -> Ranking:
    """Rank configs within each (task, seed) block of the (seed × label) matrices `per_task`.

    Failed cells should be ±inf in the matrices (`final_matrix(..., failed_as=inf)`): they rank
    last. A config absent from a task (skipped there, or not run) is dropped and listed; then
    blocks missing a remaining config are dropped and counted.
    """
    frames = {t: m for t, m in per_task.items() if not m.empty}
    if not frames:
        return Ranking()
    blocks = pd.concat(frames, names=["task", "seed"])
    present = blocks.notna().groupby(level="task").any()
    keep = [c for c in blocks.columns if present[c].all()]
    dropped = [c for c in blocks.columns if c not in keep]
    full = blocks[keep].dropna()
    result = Ranking(
        dropped_labels=dropped,
        dropped_blocks=len(blocks) - len(full),
        blocks=len(full),
        tasks=full.index.get_level_values("task").nunique(),
    )
    if len(keep) < 2 or len(full) < 1:
        return result
    sign = 1.0 if lower_is_better else -1.0
    ranks = full.apply(lambda r: pd.Series(stats.rankdata(sign * r.to_numpy()), r.index), axis=1)
    result.ranks = ranks.mean().sort_values()
    if len(keep) >= 3 and len(full) >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-tied blocks: p is NaN
            result.friedman_p = float(stats.friedmanchisquare(*ranks.to_numpy().T).pvalue)
        result.critical_difference = nemenyi_critical_difference(len(keep), len(full))
        try:  # only here: it imports statsmodels (about a second)
            import scikit_posthocs as sp
        except ImportError:  # a base dependency; without it the report still has the ranks
            return result
        result.nemenyi = sp.posthoc_nemenyi_friedman(ranks.reset_index(drop=True))
    return result


def time_to_target(rows: pd.DataFrame, target: float, x: str = "tse") -> pd.DataFrame:
    """Per config: the `x` (cost) at which each cell first reaches test NLL ≤ `target`.

    Columns label, n (cells that ran: ok, failed or timed out), reached, median (over cells,
    a cell that never reached the target counting as +inf, so the median is inf when fewer
    than half reached it). `rows`: one task's run rows with `label`.
    """
    outcomes = cell_outcomes(rows)
    ran = outcomes[outcomes["status"].isin([Status.OK, *UNFINISHED])]
    evals = rows[rows["cell"].isin(set(ran["cell"])) & (rows["status"] == Status.OK)]
    out = []
    for label in dict.fromkeys(ran["label"]):
        cells = ran.loc[ran["label"] == label, "cell"]
        costs = []
        for cell in cells:
            g = evals[(evals["cell"] == cell) & (evals["test_nll"] <= target)]
            costs.append(float(g[x].min()) if g[x].notna().any() else math.inf)
        costs_arr = np.asarray(costs)
        out.append(
            {
                "label": label,
                "n": len(costs),
                "reached": int(np.isfinite(costs_arr).sum()),
                "median": float(np.median(costs_arr)) if costs else NAN,
            }
        )
    return pd.DataFrame(out, columns=["label", "n", "reached", "median"])
