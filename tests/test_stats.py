"""The report's statistics against hand computations, textbook values and simulated coverage."""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from hgbench.report import stats
from hgbench.report.plots import robust_limits, worse_outliers


def test_iqm_is_the_mean_of_the_middle_half():
    x = np.array([100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -50.0])  # n = 8: two trimmed per side
    assert stats.iqm(x) == pytest.approx(np.mean([2.0, 3.0, 4.0, 5.0]))
    five = np.array([9.0, 0.1, 0.2, 0.3, -9.0])  # n = 5: one trimmed per side
    assert stats.iqm(five) == pytest.approx(0.2)


def test_bootstrap_interval_is_deterministic_and_brackets_the_iqm():
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 0.2, size=7)
    a, b = stats.bootstrap_iqm(x), stats.bootstrap_iqm(x)
    assert a == b  # seeded: the same rows always give the same report
    assert x.min() <= a.low <= a.value <= a.high <= x.max()
    assert a.n == 7
    # NaNs (failed seeds) are left out, not propagated
    assert stats.bootstrap_iqm(np.append(x, np.nan)) == a


def test_bootstrap_edge_cases():
    assert math.isnan(stats.bootstrap_iqm([]).value)
    one = stats.bootstrap_iqm([0.3])
    assert one.value == 0.3 and math.isnan(one.low) and one.n == 1
    same = stats.bootstrap_iqm([0.3, 0.3, 0.3])
    assert (same.value, same.low, same.high) == (0.3, 0.3, 0.3)


def test_paired_difference_is_the_textbook_t_interval():
    x = np.array([0.50, 0.61, 0.47, 0.58, 0.55])
    y = np.array([0.52, 0.66, 0.50, 0.59, 0.60])
    n, mean, low, high, p = stats.paired_difference(x, y)
    d = x - y
    half = sps.t.ppf(0.975, df=4) * d.std(ddof=1) / math.sqrt(5)
    assert n == 5
    assert mean == pytest.approx(d.mean())
    assert (low, high) == pytest.approx((d.mean() - half, d.mean() + half))
    t = d.mean() / (d.std(ddof=1) / math.sqrt(5))
    assert p == pytest.approx(2 * sps.t.sf(abs(t), df=4))


def test_paired_difference_uses_shared_seeds_only_and_handles_no_spread():
    x = np.array([1.0, 2.0, np.nan, 4.0])
    y = np.array([0.0, 1.0, 5.0, np.nan])
    assert stats.paired_difference(x, y) == (2, 1.0, 1.0, 1.0, 0.0)  # constant difference 1
    n, mean, low, high, p = stats.paired_difference(x[:1], y[:1])
    assert n == 1 and mean == 1.0 and math.isnan(low) and math.isnan(p)


def test_t_interval_covers_95_percent_at_five_seeds():
    """The claim the report makes: with 5 seeds the paired t-interval covers about 95%."""
    rng = np.random.default_rng(0)
    sims = 4000
    d = rng.normal(0.3, 1.0, size=(sims, 5))
    half = sps.t.ppf(0.975, 4) * d.std(axis=1, ddof=1) / math.sqrt(5)
    covered = np.abs(d.mean(axis=1) - 0.3) <= half
    # and the same check through the function, on a subsample
    for row in d[:200]:
        _, _, low, high, _ = stats.paired_difference(row, np.zeros(5))
        assert (low <= 0.3 <= high) == (abs(row.mean() - 0.3) <= (high - low) / 2 + 1e-12)
    assert 0.935 <= covered.mean() <= 0.965


def test_compare_pairs_separates_a_consistent_shift_and_adjusts_with_bh():
    rng = np.random.default_rng(1)
    base = rng.normal(0.5, 0.05, size=6)  # seed-to-seed variation shared by all configs
    values = pd.DataFrame(
        {
            "a": base,
            "b": base - 0.02 + rng.normal(0, 0.002, 6),  # consistently lower: separated
            "c": base + rng.normal(0, 0.002, 6),  # the same as a up to noise
        }
    )
    comps = {(c.a, c.b): c for c in stats.compare_pairs(values)}
    assert set(comps) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert comps[("a", "b")].separated and comps[("a", "b")].diff > 0
    assert comps[("b", "c")].separated and comps[("b", "c")].diff < 0
    # BH by hand: sort p, p_(i) * m / i, cumulative min from the largest
    ps = np.array([c.p for c in comps.values()])
    order = np.argsort(ps)
    adj = ps[order] * len(ps) / np.arange(1, len(ps) + 1)
    adj = np.minimum.accumulate(adj[::-1])[::-1]
    expected = np.empty_like(adj)
    expected[order] = np.minimum(adj, 1)
    assert [c.p_adjusted for c in comps.values()] == pytest.approx(list(expected))


def test_improvement_counts_wins_with_a_wilson_interval():
    x = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    base = np.array([0.2, 0.3, 0.2, 0.5, 0.5])  # wins on seeds 0, 1, 3; a tie is no win
    imp = stats.improvement(x, base)
    assert (imp.wins, imp.n) == (3, 5)
    z, p, n = sps.norm.ppf(0.975), 0.6, 5
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert (imp.low, imp.high) == pytest.approx((centre - half, centre + half))
    # every seed wins: the interval still has width (a bootstrap's would be [1, 1])
    all_win = stats.improvement(x - 1, x)
    assert all_win.fraction == 1.0 and all_win.low < 0.6
    pooled = stats.pooled_improvement([(x, base), (x - 1, x)])
    assert (pooled.wins, pooled.n) == (8, 10)


def test_nemenyi_critical_difference_matches_demsar_table():
    # Demšar (2006), Table 5(a): q_0.05 = 2.569 for k = 4, 3.164 for k = 10
    assert stats.nemenyi_critical_difference(4, 10) == pytest.approx(
        2.569 * math.sqrt(4 * 5 / 60), abs=1e-3
    )
    assert stats.nemenyi_critical_difference(10, 20) == pytest.approx(
        3.164 * math.sqrt(10 * 11 / 120), abs=1e-3
    )


def test_rank_configs_ranks_within_blocks_and_drops_incomplete_configs():
    seeds = [0, 1, 2]
    t1 = pd.DataFrame(
        {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 0.5], "c": [np.inf, 3.0, 3.0], "d": [5.0] * 3},
        index=seeds,
    )
    t2 = pd.DataFrame(
        {"a": [0.1, 0.1, np.nan], "b": [0.2, 0.3, 0.1], "c": [0.3, 0.2, 0.2]}, index=seeds
    )
    r = stats.rank_configs({"t1": t1, "t2": t2})
    assert r.dropped_labels == ["d"]  # never ran on t2
    assert r.dropped_blocks == 1  # t2 seed 2: a is missing
    assert r.blocks == 5 and r.tasks == 2
    # block ranks (a, b, c): t1: (1,2,3) (1,2,3) (2,1,3); t2: (1,2,3) (1,3,2)
    assert r.ranks.to_dict() == pytest.approx({"a": 6 / 5, "b": 10 / 5, "c": 14 / 5})
    matrix = np.array([[1, 2, 3], [1, 2, 3], [2, 1, 3], [1, 2, 3], [1, 3, 2]], dtype=float)
    assert r.friedman_p == pytest.approx(sps.friedmanchisquare(*matrix.T).pvalue)
    assert r.nemenyi is not None and set(r.nemenyi.columns) == {"a", "b", "c"}
    assert r.usable
    assert not stats.rank_configs({"t1": t1[["a", "b"]]}).usable  # two configs: no test


def test_time_to_target_takes_the_first_evaluation_at_or_below_target():
    def cell(label: str, seed: int, nll: list[float], status: str = "ok") -> list[dict]:
        return [
            {
                "label": label,
                "cell": f"{label}/{seed}",
                "seed": seed,
                "status": status if i == len(nll) - 1 else "ok",
                "final": i == len(nll) - 1,
                "line": i,
                "tse": 10.0 * (i + 1),
                "test_nll": v,
            }
            for i, v in enumerate(nll)
        ]

    rows = pd.DataFrame(
        cell("a", 0, [0.9, 0.5, 0.4])  # reaches 0.5 at tse 20
        + cell("a", 1, [0.9, 0.7, 0.45])  # at 30
        + cell("a", 2, [0.9, 0.8, 0.6])  # never
        + cell("b", 0, [0.4, 0.9], status="failed")  # reached at 10, then failed
        + cell("b", 1, [0.9, 0.9])
    )
    rows["line"] = range(len(rows))
    out = stats.time_to_target(rows, 0.5).set_index("label")
    assert out.loc["a", ["n", "reached"]].tolist() == [3, 2]
    assert out.loc["a", "median"] == 30.0  # median of 20, 30, inf
    assert out.loc["b", ["n", "reached"]].tolist() == [2, 1]
    assert out.loc["b", "median"] == math.inf  # half did not: "not reached"


def test_axis_limits_clip_far_worse_points_only():
    nll = np.array([0.157, 0.155, 0.156, 0.147, 0.165, 0.554, 0.225, 0.158])
    protect = np.zeros(nll.size, dtype=bool)
    out = worse_outliers(nll, worse_high=True, protect=protect)
    assert out.tolist() == [False] * 5 + [True, True, False]  # the best (0.147) stays
    protect[5] = True  # the baseline is never clipped
    assert not worse_outliers(nll, worse_high=True, protect=protect)[5]
    acc = np.array([0.95, 0.955, 0.96, 0.87, 0.953])
    assert worse_outliers(acc, worse_high=False, protect=np.zeros(5, bool)).tolist() == [
        False, False, False, True, False,
    ]  # fmt: skip
    inl = nll[~out]
    lo, hi = robust_limits(inl, inl - 0.5, inl + 0.5)  # huge intervals reach one range out
    span = inl.max() - inl.min()
    # one range beyond the points, plus an 8% margin of the whole
    assert inl.min() - 1.25 * span <= lo < inl.min() and inl.max() < hi <= inl.max() + 1.25 * span


def test_ranks_survive_without_scikit_posthocs(monkeypatch):
    monkeypatch.setitem(sys.modules, "scikit_posthocs", None)  # its import now fails
    t = pd.DataFrame({"a": [1.0, 1.0], "b": [2.0, 3.0], "c": [3.0, 2.0]}, index=[0, 1])
    r = stats.rank_configs({"t": t})
    assert r.ranks.to_dict() == {"a": 1.0, "b": 2.5, "c": 2.5}
    assert r.nemenyi is None and not r.usable  # no diagram, but the ranks are reported
