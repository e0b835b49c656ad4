"""Immer et al. (ICML 2021; ICML 2023): the reproduction reports.

- immer2023: probe rows of `laplace_ntk` over block sizes M and partitions (random, grouped) at a
  MAP of `digits_mlp`, each with the exact full-GGN value, and the committed bound Pareto front
  (reports/digits_marglik_probe/).
- immer2021: run rows of the `marglik-selection` suite: the online Laplace loop against
  validation-tuned baselines, and −log q / N across four architectures against their test NLL.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from hgbench.contracts.schema import Mode
from hgbench.report.load import load_rows
from hgbench.report.papers.claims import (
    NOT_RUN,
    Claim,
    Section,
    Verdict,
    fraction,
    gpu_rows,
    image,
    learned,
    ok_final,
    read_rows,
    runtime_note,
    save_figure,
    seed_list,
    setting,
    spread,
    write_paper_report,
)
from hgbench.report.style import figure, log_axis

REPO = Path(__file__).resolve().parents[3]  # an editable install: the checkout
PARETO_DIR = Path("reports/digits_marglik_probe")  # the committed probe of every estimator
PARETO_FIGURE = "figures/probe_digits_mlp_bounds.png"
NTK_SUITE = "ntk-vs-full-gpu"
PARTITION_COLORS = {"random": "tab:red", "grouped": "tab:blue"}


# --- Immer et al. 2023 -------------------------------------------------------------------------
def _tightness(rows: pd.DataFrame, out: Path) -> tuple[list[Claim], Section]:
    probe = ok_final(rows, Mode.PROBE)
    probe = probe[probe["method"] == "laplace_ntk"]
    if probe.empty:
        return [], Section("Bound tightness against M", "No probe rows yet.")
    probe = probe.assign(
        M=setting(probe, "block_size").astype(int),
        partition=setting(probe, "partition").astype(str),
        slack=probe["exact_value"] - probe["value"],  # ≥ 0 for a lower bound on log q / N
    )
    fig = figure(2, height=3.6, width=4.4)
    ax_slack, ax_time = fig.subplots(1, 2)
    for part, g in probe.groupby("partition", sort=False):
        for ax, metric in ((ax_slack, "slack"), (ax_time, "hg_time_s")):
            t = g.pivot_table(index="M", columns="seed", values=metric)
            color = PARTITION_COLORS.get(part, "grey")
            ax.plot(t.index, t.mean(1), "o-", color=color, label=f"{part} partition")
            ax.fill_between(t.index, t.min(1), t.max(1), color=color, alpha=0.2)
    ax_slack.set(xlabel="points per block M", ylabel="log q / N: exact − bound")
    ax_time.set(xlabel="points per block M", ylabel="seconds per hyper-step (one block)")
    for ax in (ax_slack, ax_time):
        log_axis(ax, "x")
        log_axis(ax, "y")
    ax_slack.legend(fontsize="small")
    path = save_figure(fig, out, "tightness")

    below = list(probe["slack"] >= -1e-9)
    by_seed = probe.pivot_table(index=["partition", "seed"], columns="M", values="slack")
    tightening = [bool(np.all(np.diff(r.to_numpy()) < 0)) for _, r in by_seed.iterrows()]
    paired = probe.pivot_table(index=["seed", "M"], columns="partition", values="slack").dropna()
    grouped_tighter = list(paired["grouped"] < paired["random"]) if "grouped" in paired else []
    m_max = int(probe["M"].max())
    rand = probe[probe["partition"] == "random"]
    claims = [
        Claim(
            "every block estimate is a lower bound on the Laplace marginal likelihood",
            "Fischer's inequality on the blocks of I + L P0⁻¹ Lᵀ (§3, the partitioned bound)",
            f"bound ≤ exact on {fraction(below)} (M, partition, seed) probes",
            Verdict.REPRODUCED if all(below) else Verdict.NOT,
            "each probe's value is the partitioned bound over all blocks of one partition",
        ),
        Claim(
            "the bound tightens as the block size M grows",
            "tightness against M (§5, bound-tightness experiments)",
            "slack per datum (random partition): "
            + ", ".join(
                f"M={m}: {spread(g['slack'], 2)}"
                for m, g in rand.groupby("M")
                if m in (10, 100, m_max)
            ),
            Verdict.REPRODUCED if all(tightening) else Verdict.PARTLY,
            f"slack strictly decreasing in M on {fraction(tightening)} (partition, seed) curves",
        ),
        Claim(
            "grouping correlated points (class by class) in a block is tighter than random blocks",
            "grouped against random partitions (§5, bound-tightness experiments)",
            f"grouped slack < random slack at {fraction(grouped_tighter)} (seed, M) pairs",
            Verdict.REPRODUCED
            if grouped_tighter and all(grouped_tighter)
            else Verdict.PARTLY
            if np.mean(grouped_tighter) > 0.5
            else Verdict.NOT,
            "same MAP, same exact value, one fixed partition per probe state",
        ),
    ]
    body = (
        f"Probe mode (float64), seeds {seed_list(probe)}: at an L-BFGS MAP of `digits_mlp` "
        "(N = 1,000, P = "
        "6,310), `laplace_ntk` with the kernel (NTK) structure and no output split, M from 10 "
        "to 500, blocks drawn at random or filled class by class; the exact full-GGN Laplace "
        "value is each row's `exact_value`. Left: the slack of the partitioned bound per datum; "
        "right: the time of one block's value and hypergradient.\n\n" + image(path, "tightness")
    )
    return claims, Section("Bound tightness against M, grouped against random", body)


def _pareto(out: Path) -> tuple[list[Claim], Section]:
    source = REPO / PARETO_DIR
    if not (source / "results.jsonl").exists():
        return [], Section("Bound Pareto front", "The committed probe report is missing.")
    rows = load_rows(source)
    probe = ok_final(rows, Mode.PROBE)
    bounds = probe[setting(probe, "bound").isin(["lower_bound", "lower_bound_in_expectation"])]
    exact = probe[setting(probe, "bound") == "exact"]
    faster = bounds[bounds["hg_time_s"] < exact["hg_time_s"].min()] if len(exact) else bounds
    below = list(bounds["value"] <= bounds["exact_value"] + 1e-9)
    best = bounds.loc[bounds["value"].idxmax()] if len(bounds) else None
    ours = f"{len(faster)}/{len(bounds)} bounds cheaper than the exact full-GGN value"
    if best is not None and len(exact):
        ours += (
            f"; the tightest bound (M = {best['method_params'].get('block_size')}) is "
            f"{exact['hg_time_s'].min() / best['hg_time_s']:.0f}× faster, −log q/N "
            f"{-best['value']:.3f} vs exact {-best['exact_value']:.3f}"
        )
    claim = Claim(
        "stochastic bounds trade tightness for cost: a Pareto front of time per hyper-step "
        "against −log marglik",
        "the bound Pareto figure (§5, their Fig. 1 style)",
        ours,
        Verdict.REPRODUCED if all(below) and len(faster) else Verdict.PARTLY,
        f"every lower bound sits on or above the exact line ({fraction(below)})",
    )
    rel = os.path.relpath(source / PARETO_FIGURE, out.resolve())
    body = (
        "From the committed probe report `reports/digits_marglik_probe/` (every estimator at "
        "one MAP of `digits_mlp`, one seed; regenerate it with `python -m hgbench probe "
        "--tasks digits_mlp --methods 'laplace_*' --full --seeds 0 --out "
        "reports/digits_marglik_probe`).\n\n" + image(str(rel), "bound Pareto front")
    )
    return [claim], Section("Bound Pareto front", body)


def _ntk_vs_full_claim() -> Claim:
    """NTK bound against full-batch Laplace at equal time, from the GPU script's rows if any."""
    claim = (
        "at equal time the stochastic NTK bound trains to a model as good as the full-batch "
        "Laplace loop's on a CIFAR-10 subset"
    )
    paper = "CIFAR-10 subsets, test accuracy and NLL against wall time (§5, CIFAR experiments)"
    where = "suite ntk-vs-full-gpu in the papers part of benchmarks/gpu_reference.sh"
    rows = gpu_rows(NTK_SUITE)
    final = None if rows is None else ok_final(rows, Mode.RUN, NTK_SUITE)
    if final is None or final.empty:
        return Claim(claim, paper, NOT_RUN, Verdict.NOT_RUN, f"CIFAR-scale: {where}")
    ntk, full = (final[final["method"] == m] for m in ("laplace_ntk", "laplace_full"))
    if ntk.empty or full.empty:
        return Claim(claim, paper, "incomplete GPU run", Verdict.NOT_RUN, where)
    if not (learned(ntk["test_acc"]) or learned(full["test_acc"])):
        ours = (
            f"test accuracy: NTK {spread(ntk['test_acc'], 3)}, full {spread(full['test_acc'], 3)}"
        )
        return Claim(
            claim, paper, ours, Verdict.NOT_RUN, "neither model above 2× chance: too short"
        )
    d_acc = float(ntk["test_acc"].mean() - full["test_acc"].mean())
    d_nll = float(ntk["test_nll"].mean() - full["test_nll"].mean())
    return Claim(
        claim,
        paper,
        f"test accuracy: NTK {spread(ntk['test_acc'], 3)}, full {spread(full['test_acc'], 3)}; "
        f"test NLL: NTK {spread(ntk['test_nll'], 3)}, full {spread(full['test_nll'], 3)}",
        Verdict.REPRODUCED
        if d_acc > -0.005 and d_nll < 0.02
        else Verdict.PARTLY
        if d_acc > -0.005 or d_nll < 0.02
        else Verdict.NOT,
        f"NTK − full, seed means: accuracy {d_acc:+.3f}, NLL {d_nll:+.3f} (equal timed seconds)",
    )


def immer2023_report(out: Path) -> Path:
    rows = read_rows(out)
    c1, s1 = _pareto(out)
    c2, s2 = _tightness(rows, out)
    cifar = _ntk_vs_full_claim()
    intro = (
        "Immer, van der Ouderaa, van der Wilk, Rätsch & Schölkopf, *Stochastic Marginal "
        "Likelihood Gradients using Neural Tangent Kernels*, ICML 2023: lower bounds of the "
        "linearised-Laplace marginal likelihood from blocks of M points (`laplace_ntk`). Their "
        "experiments are on CIFAR-10 and its subsets; the bound relations below do not depend "
        "on scale and are checked on 8×8 digits.\n\n" + runtime_note(rows)
    )
    return write_paper_report(
        out,
        "Immer et al. 2023 with hgbench",
        intro,
        [*c1, *c2, cifar],
        [s1, s2],
        "python benchmarks/papers.py immer2023",
    )


# --- Immer et al. 2021 -------------------------------------------------------------------------
ARCH = {
    "digits_logreg_ard": "logistic",
    "digits_mlp": "MLP 2×50",
    "digits_mlp3": "MLP 3×50",
    "digits_cnn": "CNN",
}
METHOD_COLORS = {"fixed": "0.3", "random_search": "tab:orange", "laplace_full": "tab:red"}


def _baseline(final: pd.DataFrame, out: Path) -> tuple[list[Claim], Section]:
    tasks = [t for t in ARCH if t in set(final["task"])]
    fig = figure(2, height=3.4, width=4.8)
    axes = fig.subplots(1, 2)
    width = 0.25
    for k, method in enumerate(METHOD_COLORS):
        g = final[final["method"] == method]
        for ax, metric in zip(axes, ("test_acc", "test_nll"), strict=True):
            for i, task in enumerate(tasks):
                v = g[g["task"] == task][metric].to_numpy(float)
                x = i + (k - 1) * width
                ax.bar(
                    x,
                    v.mean() if v.size else np.nan,
                    width,
                    color=METHOD_COLORS[method],
                    label=method if i == 0 else None,
                    alpha=0.7,
                )
                ax.plot(np.full(v.size, x), v, "k.", ms=3)
    for ax, name in zip(axes, ("test accuracy", "test NLL"), strict=True):
        ax.set_xticks(range(len(tasks)), [ARCH[t] for t in tasks])
        ax.set_ylabel(name)
    acc = final[final["method"].isin(list(METHOD_COLORS))]["test_acc"].to_numpy(float)
    if np.isfinite(acc).any():  # bars from just below the lowest accuracy, not from 0
        axes[0].set_ylim(max(0.0, np.nanmin(acc) - 0.05), min(1.0, np.nanmax(acc) + 0.02))
    axes[0].legend(fontsize="small")
    path = save_figure(fig, out, "baseline")
    wins, lines, deltas = [], [], []
    for task in tasks:
        t = final[final["task"] == task].pivot_table(
            index="seed", columns="method", values=["test_acc", "test_nll"]
        )
        if "laplace_full" not in t["test_acc"] or "random_search" not in t["test_acc"]:
            continue
        d_acc = t["test_acc"]["laplace_full"] - t["test_acc"]["random_search"]
        d_nll = t["test_nll"]["laplace_full"] - t["test_nll"]["random_search"]
        wins.append(bool(d_acc.mean() > -0.01 and d_nll.mean() < 0.02))
        deltas.append((ARCH[task], float(d_acc.mean()), float(d_nll.mean())))
        lines.append(
            f"| {ARCH[task]} | {spread(t['test_acc']['laplace_full'], 3)} | "
            f"{spread(t['test_acc']['random_search'], 3)} | {spread(d_acc, 2)} | "
            f"{spread(t['test_nll']['laplace_full'], 3)} | "
            f"{spread(t['test_nll']['random_search'], 3)} | {spread(d_nll, 2)} |"
        )
    claim = Claim(
        "marginal-likelihood training on all data matches or beats a validation-tuned baseline "
        "in test accuracy and NLL, without a validation set",
        "online Laplace (Alg. 1) against cross-validated baselines (§5, their result tables)",
        f"laplace_full at least as good (accuracy within 1 point, NLL within 0.02 nats, seed "
        f"means) on {fraction(wins)} architectures; laplace_full − random_search: "
        + "; ".join(f"{t} acc {a:+.3f}, NLL {n:+.3f}" for t, a, n in deltas),
        Verdict.REPRODUCED
        if wins and all(wins)
        else Verdict.PARTLY
        if sum(wins) >= len(wins) / 2
        else Verdict.NOT,
        "baseline: random search with successive halving over the weight decays, selected by "
        "the 400 validation images, at one training run's budget",
    )
    body = (
        "Suite `marglik-selection`: four architectures on the same digits splits (1,000 "
        "training, 400 validation, 397 test images), 30 epochs of SGD (batch 100) each. "
        "`laplace_full` trains on all 1,400 labelled images and tunes a prior precision per "
        "tensor by the K-FAC Laplace marginal likelihood (a fit and 10 Adam steps every epoch, "
        "laplace-torch's `marglik_training` defaults); `random_search` trains on the 1,000 "
        "and selects by the 400.\n\n"
        + image(path, "accuracy and NLL")
        + "\n\n| architecture | acc laplace_full | acc random_search | Δ acc | NLL laplace_full |"
        " NLL random_search | Δ NLL |\n|---|---:|---:|---:|---:|---:|---:|\n" + "\n".join(lines)
    )
    return [claim], Section("Marginal likelihood against validation tuning", body)


def _most(picks: list[str]) -> str:
    """'MLP 2×50 (4/5 seeds)': the most frequent pick."""
    if not picks:
        return "–"
    top = max(set(picks), key=picks.count)
    return f"{ARCH.get(top, top)} ({picks.count(top)}/{len(picks)} seeds)"


def _selection(final: pd.DataFrame, out: Path) -> tuple[list[Claim], Section]:
    lap = final[final["method"] == "laplace_full"]
    lap = lap[lap["objective"].notna()]
    fig = figure(1, height=3.8, width=4.6)
    ax = fig.subplots()
    for task, g in lap.groupby("task", sort=False):
        ax.plot(g["objective"], g["test_nll"], "o", label=ARCH.get(task, task))
    ax.set(
        xlabel="−log marginal likelihood / N (K-FAC Laplace, train + validation)", ylabel="test NLL"
    )
    ax.legend(fontsize="small")
    path = save_figure(fig, out, "selection")
    rhos, picks, marglik_picks, test_picks = [], [], [], []
    for _, g in lap.groupby("seed"):
        if g["task"].nunique() < 3:
            continue
        rhos.append(stats.spearmanr(g["objective"], g["test_nll"]).statistic)
        marglik_picks.append(g.loc[g["objective"].idxmin(), "task"])
        test_picks.append(g.loc[g["test_nll"].idxmin(), "task"])
        picks.append(marglik_picks[-1] == test_picks[-1])
    claim = Claim(
        "the marginal likelihood selects architectures as their test performance would",
        "model selection across architectures by marglik (§5, model-selection experiments)",
        f"Spearman ρ(−log q/N, test NLL) over {lap['task'].nunique()} architectures: "
        f"{spread(rhos, 2)}; marglik's choice has the best test NLL on {fraction(picks)} seeds",
        Verdict.REPRODUCED
        if rhos and min(rhos) >= 0.8 and all(picks)
        else Verdict.PARTLY
        if rhos and np.mean(rhos) > 0
        else Verdict.NOT,
        f"per seed, over the architectures' final −log q/N (the last fit's value) and test "
        f"NLL; marglik picks {_most(marglik_picks)}, test NLL {_most(test_picks)}",
    )
    body = (
        "Each point: one architecture and seed after `laplace_full`; the marginal likelihood "
        "is that of the 1,400 labelled images it trains on (training and validation split "
        "merged), no held-out data.\n\n" + image(path, "model selection")
    )
    return [claim], Section("Marginal likelihood for model selection", body)


def immer2021_report(out: Path) -> Path:
    rows = read_rows(out)
    final = ok_final(rows, Mode.RUN, "marglik-selection")
    c1, s1 = _baseline(final, out) if len(final) else ([], Section("Baseline", "No rows yet."))
    c2, s2 = _selection(final, out) if len(final) else ([], Section("Selection", "No rows yet."))
    intro = (
        "Immer, Bauer, Fortuin, Rätsch & Khan, *Scalable Marginal Likelihood Estimation for "
        "Model Selection in Deep Learning*, ICML 2021: hparams (prior precisions) tuned online "
        "by the linearised-Laplace marginal likelihood on all training data (`laplace_full`). "
        "Their experiments are on UCI, MNIST, Fashion-MNIST and CIFAR-10; ours on 8×8 digits.\n\n"
        + runtime_note(rows)
    )
    return write_paper_report(
        out,
        "Immer et al. 2021 with hgbench",
        intro,
        [*c1, *c2],
        [s1, s2],
        "python benchmarks/papers.py immer2021",
    )
