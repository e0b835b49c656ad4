"""Lorraine, Vicol & Duvenaud (AISTATS 2020): the reproduction report.

Reads reports/papers/lorraine2020/: run rows of the `overfit` suite (validation overfitting) and
of the issue's setting (hyper_lr 0.1, suite `papers`), probe rows of the Neumann and CG sweeps,
and diagnostics.json (per-hyper-step traces of the joint loop: largest log decay, solver gain).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hgbench.contracts.schema import Mode, Status
from hgbench.report.papers.claims import (
    NOT_RUN,
    Claim,
    Section,
    Verdict,
    fraction,
    gpu_rows,
    image,
    labelled,
    learned,
    ok_final,
    outcomes,
    read_diagnostics,
    read_rows,
    runtime_note,
    save_figure,
    seed_list,
    spread,
    write_paper_report,
)
from hgbench.report.papers.lorraine_divergence import divergence_section
from hgbench.report.style import figure, log_axis

OVERFIT = "overfit"
AUGNET_SUITE = "augnet-gpu"
AUGNET_WHERE = "suite augnet-gpu in the papers part of benchmarks/gpu_reference.sh"
COLORS = {
    "fixed": "0.2",
    "ift_neumann": "tab:blue",
    "ift_cg": "tab:orange",
    "ift_cg (damping 0.1)": "tab:green",
}


# --- validation overfitting --------------------------------------------------------------------
def _overfit(rows: pd.DataFrame, out: Path) -> tuple[list[Claim], Section]:
    run = labelled(rows[(rows["mode"] == Mode.RUN) & (rows["suite"] == OVERFIT)])
    final = labelled(outcomes(rows, Mode.RUN, OVERFIT))
    fig = figure(2, height=3.6, width=4.6)
    axes = fig.subplots(1, 2)
    for label, g in run[run["status"] == Status.OK].groupby("label", sort=False):
        table = g.pivot_table(index="step", columns="seed", values=["val_loss", "test_nll"])
        for ax, metric in zip(axes, ("val_loss", "test_nll"), strict=True):
            t = table[metric]
            ax.plot(t.index, t.mean(1), color=COLORS.get(label, "grey"), label=label)
            ax.fill_between(t.index, t.min(1), t.max(1), color=COLORS.get(label, "grey"), alpha=0.2)
    for ax, name in zip(
        axes, ("validation loss (50 images)", "test NLL (397 images)"), strict=True
    ):
        ax.set(xlabel="inner SGD step (one hyper-step each)", ylabel=name, yscale="log")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize="small")
    fig.suptitle("mean over seeds, band: min to max")
    path = save_figure(fig, out, "overfit")

    ok = final[final["status"] == Status.OK]
    per = {lab: g.set_index("seed") for lab, g in ok.groupby("label", sort=False)}
    claims: list[Claim] = []
    lines = []
    if "fixed" in per:
        base = per["fixed"]
        gap_fixed = base["test_nll"] - base["val_loss"]
        tuned = [lab for lab in per if lab != "fixed"]
        opened = []
        ours = []
        for lab in tuned:
            g = per[lab]
            gap = g["test_nll"] - g["val_loss"]
            seeds = gap.index.intersection(gap_fixed.index)
            opened += list(
                (gap[seeds] > gap_fixed[seeds] + 0.1)
                & (g.loc[seeds, "val_loss"] < 0.5 * base.loc[seeds, "val_loss"])
            )
            ours.append(
                f"{lab}: val {spread(g['val_loss'], 2)}, test NLL {spread(g['test_nll'], 2)}"
            )
            lines.append(
                f"| {lab} | {spread(g['val_loss'], 3)} | {spread(g['test_nll'], 3)} | "
                f"{spread(g['test_acc'], 3)} |"
            )
        lines.insert(
            0,
            f"| fixed | {spread(base['val_loss'], 3)} | {spread(base['test_nll'], 3)} | "
            f"{spread(base['test_acc'], 3)} |",
        )
        verdict = Verdict.REPRODUCED if opened and all(opened) else Verdict.PARTLY
        claims.append(
            Claim(
                "~6k per-weight decays tuned on 50 validation points overfit the validation set",
                "validation accuracy reaches 100% on 50 CIFAR-10 validation images while test "
                "accuracy does not follow (§5, overfitting a small validation set)",
                f"fixed: val {spread(base['val_loss'], 2)}, test NLL "
                f"{spread(base['test_nll'], 2)}; " + "; ".join(ours),
                verdict,
                f"test − validation gap wider than fixed's by > 0.1 nats with validation loss "
                f"halved, on {fraction(opened)} (method, seed) pairs",
            )
        )
    n_ok = {lab: int((final["label"] == lab).sum()) for lab in COLORS}
    stable = [
        (lab, int(((final["label"] == lab) & (final["status"] == Status.OK)).sum()), n)
        for lab, n in n_ok.items()
        if lab != "fixed" and n
    ]
    if stable:
        all_ok = all(k == n for _, k, n in stable)
        claims.append(
            Claim(
                "every IFT solver stays finite on every seed (the issue's requirement)",
                "the paper's joint loop (Alg. 1) with Neumann or CG",
                ", ".join(f"{lab}: {k}/{n} seeds ok" for lab, k, n in stable),
                Verdict.REPRODUCED if all_ok else Verdict.NOT,
                "at the suite's hyper_lr 0.03 (see 'Why CG diverged' for hyper_lr 0.1)",
            )
        )
    body = (
        "Suite `overfit`: `digits_mlp_smallval` (MLP 64-50-50-10, 50 training and 50 validation "
        "images, one log weight decay per weight: 6,310 hparams), 600 inner SGD steps (lr 0.05, "
        "momentum 0.9, full batch), one hyper-step per inner step (Adam, hyper_lr 0.03) from one "
        "training and one validation batch, Neumann with 5 terms (α = the inner lr) or CG with "
        "10 iterations, plain or damped.\n\n"
        + image(path, "validation and test loss")
        + "\n\nFinal values (mean ± sd over seeds):\n\n"
        "| method | validation loss | test NLL | test accuracy |\n|---|---:|---:|---:|\n"
        + "\n".join(lines)
    )
    return claims, Section("Validation overfitting", body)


# --- fidelity against the exact hypergradient ------------------------------------------------
def _fidelity(rows: pd.DataFrame, out: Path) -> tuple[list[Claim], Section]:
    probe = ok_final(rows, Mode.PROBE)
    probe = probe[probe["method"].isin(["ift_neumann", "ift_cg"])]
    if probe.empty:
        return [], Section("Hypergradient fidelity", "No probe rows yet.")
    probe = probe.assign(
        k=[
            p.get("terms") if m == "ift_neumann" else p.get("iterations")
            for m, p in zip(probe["method"], probe["method_params"], strict=True)
        ]
    )
    tasks = list(dict.fromkeys(probe["task"]))
    fig = figure(len(tasks), 2, height=3.2, width=4.4)
    axes = np.asarray(fig.subplots(2, len(tasks), squeeze=False))
    rising, neumann_wins, neumann_farther = [], [], []
    for j, task in enumerate(tasks):
        t = probe[probe["task"] == task]
        for method, color in (("ift_neumann", "tab:blue"), ("ift_cg", "tab:orange")):
            g = t[t["method"] == method]
            for row, metric in enumerate(("hg_cos", "hg_rel_err")):
                table = g.pivot_table(index="k", columns="seed", values=metric)
                x = np.maximum(table.index.to_numpy(float), 0.5)  # Neumann's 0 terms at 0.5
                axes[row, j].plot(x, table.mean(1), "o-", color=color, label=method, ms=3)
                axes[row, j].fill_between(x, table.min(1), table.max(1), color=color, alpha=0.2)
            cos = g.pivot_table(index="k", columns="seed", values="hg_cos")
            rising += list(cos.iloc[-1] > cos.iloc[0])
        both = t.pivot_table(index=["seed", "k"], columns="method", values=["hg_cos", "hg_rel_err"])
        both = both.dropna()
        neumann_wins += list(both["hg_cos"]["ift_neumann"] > both["hg_cos"]["ift_cg"])
        neumann_farther += list(both["hg_rel_err"]["ift_neumann"] > both["hg_rel_err"]["ift_cg"])
        axes[0, j].set(title=task, ylabel="cosine with the exact hypergradient")
        axes[1, j].set(
            ylabel="relative L2 error", xlabel="Hessian-vector products (terms, iterations)"
        )
        for ax in axes[:, j]:
            log_axis(ax, "x")
        axes[1, j].set_yscale("log")
    axes[0, 0].legend(fontsize="small")
    path = save_figure(fig, out, "fidelity")
    n_hparams = {"digits_logreg_ard": 650, "digits_mlp_smallval": 6310}
    claims = [
        Claim(
            "the approximate hypergradient's cosine with the exact one rises with Neumann "
            "terms and CG iterations",
            "cosine similarity and ℓ2 distance against inversion steps, Neumann and CG "
            "(§5, comparing inverse approximations; their Fig. 5)",
            f"cosine at the largest count > at the smallest on {fraction(rising)} (task, "
            "method, seed) curves",
            Verdict.REPRODUCED if all(rising) else Verdict.PARTLY,
            "exact reference: dense (650 hparams) or CG to residual 1e-10 (6,310) at an "
            "L-BFGS optimum",
        ),
        Claim(
            "Neumann often has a greater cosine than CG at equal steps, but a larger ℓ2 distance",
            "caption of their Fig. 5",
            f"Neumann's cosine higher at {fraction(neumann_wins)} equal step counts; its ℓ2 "
            f"error larger at {fraction(neumann_farther)}",
            Verdict.REPRODUCED
            if np.mean(neumann_wins) > 0.5 and np.mean(neumann_farther) > 0.5
            else Verdict.PARTLY
            if np.mean(neumann_wins) > 0.5 or np.mean(neumann_farther) > 0.5
            else Verdict.NOT,
            f"the larger ℓ2 distance {_holds(neumann_farther)}; the higher cosine "
            f"{_holds(neumann_wins)} (Neumann's step α is the inner lr, as in the paper)",
        ),
    ]
    body = (
        f"Probe mode at a tight inner optimum (float64), seeds {seed_list(probe)}: "
        "`ift_neumann` with "
        "0-200 terms (α = the task's lr) and `ift_cg` with 1-200 iterations, against the exact "
        "implicit hypergradient, on tasks with one decay per weight ("
        + ", ".join(f"`{t}`: {n_hparams.get(t, '?')} hparams" for t in tasks)
        + ").\n\n"
        + image(path, "cosine and error against iterations")
    )
    return claims, Section("Hypergradient fidelity against iterations", body)


def _holds(flags: list[bool]) -> str:
    share = float(np.mean(flags)) if flags else 0.0
    return (
        "holds" if share > 0.5 else "does not hold here" if share < 0.5 else "holds half the time"
    )


def _augnet_claim() -> Claim:
    """The augmentation network against none on CIFAR-10, from the GPU script's rows if any."""
    claim = "a learned data-augmentation network (every weight an hparam) beats no augmentation"
    paper = (
        "CIFAR-10 test accuracy with the learned augmentation network above that without "
        "augmentation (§5, learning data augmentations)"
    )
    rows = gpu_rows(AUGNET_SUITE)
    final = None if rows is None else ok_final(rows, Mode.RUN, AUGNET_SUITE)
    if final is None or final.empty:
        return Claim(claim, paper, NOT_RUN, Verdict.NOT_RUN, f"CIFAR-scale: {AUGNET_WHERE}")
    none = final[(final["method"] == "fixed") & final["task"].str.endswith("_none")]
    aug = final[(final["method"] == "ift_neumann") & final["task"].str.endswith("_augnet")]
    if none.empty or aug.empty:
        return Claim(claim, paper, "incomplete GPU run", Verdict.NOT_RUN, AUGNET_WHERE)
    if not (learned(none["test_acc"]) or learned(aug["test_acc"])):
        ours = (
            f"test accuracy: none {spread(none['test_acc'], 3)}, "
            f"augnet {spread(aug['test_acc'], 3)}"
        )
        return Claim(
            claim, paper, ours, Verdict.NOT_RUN, "neither model above 2× chance: too short"
        )
    gain = float(aug["test_acc"].mean() - none["test_acc"].mean())
    return Claim(
        claim,
        paper,
        f"test accuracy: none {spread(none['test_acc'], 3)}, learned augnet "
        f"{spread(aug['test_acc'], 3)} ({aug['task'].iloc[0]}, equal timed seconds per cell)",
        Verdict.REPRODUCED if gain > 0.005 else Verdict.NOT,
        f"difference of seed means {gain:+.3f} (reproduced above +0.005)",
    )


def lorraine_report(out: Path) -> Path:
    rows = read_rows(out)
    diag = read_diagnostics(out)
    c1, s1 = _overfit(rows, out)
    c2, s2 = _fidelity(rows, out)
    c3, s3 = divergence_section(rows, out, diag)
    augnet = _augnet_claim()
    intro = (
        "Lorraine, Vicol & Duvenaud, *Optimizing Millions of Hyperparameters by Implicit "
        "Differentiation*, AISTATS 2020: implicit differentiation with a Neumann-series inverse "
        "Hessian, joint with training. Sources are the paper's sections and figures as we read "
        "them; their own numbers are on CIFAR-10 and MNIST, ours on 8×8 digits (the claims do "
        "not depend on scale, except the augmentation network, which is left to the GPU part).\n\n"
        + runtime_note(rows)
    )
    return write_paper_report(
        out,
        "Lorraine et al. 2020 with hgbench",
        intro,
        [*c1, *c2, *c3, augnet],
        [s1, s2, s3],
        "python benchmarks/papers.py lorraine2020",
    )
