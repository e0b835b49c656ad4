"""Maclaurin, Duvenaud & Adams (ICML 2015): the reproduction report.

Reads reports/papers/maclaurin2015/: run rows of the `reversible` suite (learned schedules, in the
final row's extra), of `reversible-ard`, and of the sweeps (suite `papers`: buffer bits against γ,
memory against T), and diagnostics.json (the learned per-weight L2 maps, which rows summarise by
their mean only).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from hgbench.contracts.schema import Mode, Status
from hgbench.report.papers.claims import (
    Claim,
    Section,
    Verdict,
    extra,
    fraction,
    image,
    ok_final,
    read_diagnostics,
    read_rows,
    runtime_note,
    save_figure,
    setting,
    spread,
    write_paper_report,
)
from hgbench.report.style import figure, log_axis

SMOOTH = 9  # steps in the moving average drawn over the learned schedules
FINAL_STEPS = 10  # "the final iterations"


def _meta_rows(rows: pd.DataFrame, suite: str) -> pd.DataFrame:
    sel = rows[(rows["mode"] == Mode.RUN) & (rows["suite"] == suite)]
    return sel[(sel["method"] == "reversible_sgd") & (sel["status"] == Status.OK)]


def _schedules(final: pd.DataFrame, key: str) -> dict[str, np.ndarray]:
    """name -> (seeds, T) learned schedule, from the final rows' extra."""
    per: dict[str, list[list[float]]] = {}
    for e in final["extra"]:
        for name, values in (e or {}).get(key, {}).items():
            per.setdefault(name, []).append(values)
    return {k: np.asarray(v, float) for k, v in per.items()}


def _smooth(x: np.ndarray) -> np.ndarray:
    return pd.Series(x).rolling(SMOOTH, center=True, min_periods=1).mean().to_numpy()


def _layers(names: list[str]) -> list[str]:
    return list(dict.fromkeys(n.rsplit(".", 1)[0] for n in names))


def _seeds(rows: pd.DataFrame) -> str:
    return ", ".join(str(int(x)) for x in sorted(set(rows["seed"])))


def _reaches(ratio_at: dict[int, float], level: float) -> str:
    """Where the ratio first reaches `level`, in words."""
    hit = [t for t, r in sorted(ratio_at.items()) if r >= level]
    return f"from T = {hit[0]}" if hit else f"at none of T ≤ {max(ratio_at)}"


def _first_last(meta: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series]:
    """Per seed: `column` after the first meta-iteration and after each seed's last one."""
    first = meta[meta["epoch"] == 1].set_index("seed")[column]
    last_epoch = meta.groupby("seed")["epoch"].transform("max")
    last = meta[meta["epoch"] == last_epoch].set_index("seed")[column]
    return first, last


def _schedule_section(rows: pd.DataFrame, out: Path) -> tuple[list[Claim], Section]:
    final = ok_final(rows, Mode.RUN, "reversible")
    final = final[final["method"] == "reversible_sgd"]
    lr, momentum = _schedules(final, "lr_schedule"), _schedules(final, "momentum_schedule")
    if not lr:
        return [], Section("Learned schedules", "No reversible_sgd rows yet.")
    layers = _layers(list(lr))
    fig = figure(len(layers), 2, height=2.9, width=3.4)
    axes = np.asarray(fig.subplots(2, len(layers), squeeze=False, sharey="row"))
    peaks, ratios, ratio_text = [], {}, []
    for j, layer in enumerate(layers):
        for row, (sched, what) in enumerate(
            ((lr, "learning rate α_t"), (momentum, "momentum γ_t"))
        ):
            ax = axes[row, j]
            for kind, style in (("weight", "-"), ("bias", "--")):
                s = sched.get(f"{layer}.{kind}")
                if s is None:
                    continue
                t = np.arange(1, s.shape[1] + 1)
                color = "tab:blue" if kind == "weight" else "tab:orange"
                ax.plot(t, s.mean(0), color=color, alpha=0.3, lw=0.8)
                ax.plot(t, _smooth(s.mean(0)), color=color, ls=style, lw=1.8, label=kind)
                ax.fill_between(t, s.min(0), s.max(0), color=color, alpha=0.1)
            ax.set(xlabel="step t" if row else None, ylabel=what if j == 0 else None)
        axes[0, j].set_title(f"layer {j + 1}")
        w = lr[f"{layer}.weight"]  # (seeds, T)
        late = w[:, -FINAL_STEPS:].mean(1)
        middle = w[:, FINAL_STEPS:-FINAL_STEPS].mean(1)
        ratios[layer] = late / middle
        ratio_text.append(f"layer {j + 1}: {spread(late / middle, 2)}")
        peaks.append(int(np.argmax(_smooth(w.mean(0)))) + 1)
    axes[0, 0].legend(fontsize="small")
    fig.suptitle(
        f"learned per-layer schedules: mean over {len(final)} seeds (thin), {SMOOTH}-step moving "
        "average (thick), band: min to max"
    )
    path = save_figure(fig, out, "schedules")

    meta = _meta_rows(rows, "reversible")
    first, last = _first_last(meta, "objective")
    test_first, test_last = _first_last(meta, "test_nll")
    improved = list((last < first.reindex(last.index)).dropna())
    small_late = [bool(np.all(np.asarray(r) < 1)) for r in zip(*ratios.values(), strict=True)]
    layer_means = [float(np.mean(r)) for r in ratios.values()]
    distinct = len(set(peaks)) == len(peaks)
    ordered = peaks == sorted(peaks) or peaks == sorted(peaks, reverse=True)
    claims = [
        Claim(
            "meta-learning the schedules lowers the validation loss after T steps",
            "learning curves over meta-iterations (§3, learning-rate schedules)",
            f"val loss after T = 100 steps: first meta-iteration {spread(first, 3)}, last "
            f"{spread(last, 3)} (test NLL {spread(test_first, 3)} → {spread(test_last, 3)})",
            Verdict.REPRODUCED if improved and all(improved) else Verdict.NOT,
            f"lower at the end on {fraction(improved)} seeds",
        ),
        Claim(
            "every layer takes small steps in the final iterations",
            "learned per-layer learning-rate schedules (§3, their schedule figure)",
            "mean α over the last 10 steps / over steps 11-90: " + "; ".join(ratio_text),
            Verdict.REPRODUCED
            if all(m < 1 for m in layer_means) and all(small_late)
            else Verdict.PARTLY
            if sum(m < 1 for m in layer_means) > len(layer_means) / 2
            else Verdict.NOT,
            f"ratio < 1 in every layer on {fraction(small_late)} seeds; seed-mean ratio < 1 in "
            f"{sum(m < 1 for m in layer_means)}/{len(layer_means)} layers",
        ),
        Claim(
            "the layers move in turn",
            "learned per-layer learning-rate schedules (§3, their schedule figure)",
            "step of each layer's largest smoothed α (layers 1..4): "
            + ", ".join(str(p) for p in peaks),
            Verdict.REPRODUCED
            if distinct and ordered
            else Verdict.PARTLY
            if distinct
            else Verdict.NOT,
            "peaks distinct and ordered by depth"
            if distinct and ordered
            else "peaks distinct but not ordered by depth"
            if distinct
            else "peaks coincide",
        ),
    ]
    n_meta = int(meta["epoch"].max()) if len(meta) else 0
    body = (
        "Suite `reversible`: `digits_mlp3` (64-50-50-50-10 tanh, 1,000 training and 400 "
        f"validation digits), T = 100 steps of batch 200, {n_meta} meta-iterations of Adam "
        "(hyper_lr 0.05) on log α_t and logit γ_t per step and per parameter tensor (and the "
        "init scales and per-tensor decays), each meta-iteration from a fresh init draw; "
        "initial schedules α = 0.5, γ = 0.9 at every step.\n\n" + image(path, "schedules")
    )
    return claims, Section("Learned schedules", body)


def _bits_section(rows: pd.DataFrame, out: Path) -> tuple[list[Claim], Section]:
    sweep = ok_final(rows, Mode.RUN, "papers")
    sweep = sweep[sweep["method"] == "reversible_sgd"]
    gamma = setting(sweep, "momentum_init")
    bits = sweep[gamma.notna()].assign(
        gamma=gamma[gamma.notna()].astype(float),
        bits=extra(sweep[gamma.notna()], "buffer_bits_per_param_step").astype(float),
    )
    mem = sweep[gamma.isna()].assign(
        T=setting(sweep[gamma.isna()], "T").astype(float),
        exact=extra(sweep[gamma.isna()], "memory_bytes").astype(float),
        stored=extra(sweep[gamma.isna()], "stored_trajectory_bytes").astype(float),
    )
    if bits.empty and mem.empty:
        return [], Section("Information buffer and memory", "No sweep rows yet.")
    fig = figure(2, height=3.6, width=4.4)
    ax_bits, ax_mem = fig.subplots(1, 2)
    claims = []
    if not bits.empty:
        g = np.linspace(0.45, 0.995, 200)
        ax_bits.plot(g, np.log2(1 / g), "k-", lw=1, label="log2(1/γ)")
        ax_bits.plot(bits["gamma"], bits["bits"], "o", color="tab:purple", label="measured")
        ax_bits.set(xlabel="momentum γ", ylabel="buffer bits per parameter per step")
        log_axis(ax_bits, "y")
        ax_bits.legend(fontsize="small")
        theory = np.log2(1 / bits["gamma"])
        rel = (bits["bits"] - theory).abs() / theory
        at09 = bits[np.isclose(bits["gamma"], 0.9)]["bits"]
        exact = extra(bits, "bit_exact")
        claims.append(
            Claim(
                "the information buffer grows by log2(1/γ) bits per parameter per step",
                "0.152 bits at γ = 0.9 (§2, exact reversal in finite precision)",
                f"{spread(at09, 4)} bits at γ = 0.9; largest deviation from log2(1/γ) over "
                f"γ ∈ [{bits['gamma'].min():g}, {bits['gamma'].max():g}]: {rel.max():.2%}",
                Verdict.REPRODUCED if rel.max() < 0.05 else Verdict.NOT,
                f"{len(bits)} runs (T = 20, seeds {_seeds(bits)}); the reversed w_1 equal to "
                f"the stored one bit for bit in {fraction(list(exact == 1))}",
            )
        )
    if not mem.empty:
        mem = mem.sort_values("T")
        ratio = mem["stored"] / mem["exact"]
        ax_mem.plot(mem["T"], ratio, "o-", color="tab:purple", label="stored (w, v) / exact")
        ax_mem.plot(mem["T"], ratio / 2, "s--", color="tab:purple", label="stored w / exact")
        b09 = math.log2(1 / 0.9)
        for asym, ls in ((64 / b09, "-"), (32 / b09, "--")):
            ax_mem.axhline(asym, color="grey", ls=ls, lw=0.8)
        for asym, what in ((64 / b09, "64"), (32 / b09, "32")):
            ax_mem.text(
                mem["T"].min(),
                asym,
                f" {what} / log2(1/0.9) = {asym:.0f}",
                va="bottom",
                fontsize="small",
            )
        ax_mem.set(xlabel="T (steps)", ylabel="memory ratio")
        log_axis(ax_mem, "x")
        log_axis(ax_mem, "y")
        ax_mem.legend(fontsize="small")
        at = dict(zip(mem["T"].astype(int), ratio / 2, strict=True))
        tmax = int(mem["T"].max())
        claims.append(
            Claim(
                "exact reversal takes far less memory than storing the trajectory",
                "about 200× less than storing 32-bit weights at every step, at γ = 0.9 (§2)",
                f"stored w / exact: {at.get(100, float('nan')):.0f}× at T = 100, "
                f"{at[tmax]:.0f}× at T = {tmax}; the limit 32 / 0.152 = 210×",
                Verdict.PARTLY if at[tmax] < 0.9 * 32 / b09 else Verdict.REPRODUCED,
                f"within 10% of the limit {_reaches(at, 0.9 * 32 / b09)}: fixed costs (int64 "
                "state, rANS heads, 32-bit words in chunks) weigh until T is large",
            )
        )
    path = save_figure(fig, out, "buffer")
    body = (
        "Bits: `reversible_sgd` for one meta-iteration of T = 20 steps on `digits_mlp3` with "
        "α = 0.5 and γ from 0.5 to 0.99 (the bits measured from the rANS buffer after the "
        "forward pass). Memory: the bytes exact reversal holds at its largest (fixed-point "
        "weights and velocity, buffer heads and words) against those of storing (w_t, v_t) in "
        "float32 for t = 0..T, at γ = 0.9.\n\n" + image(path, "bits and memory")
    )
    return claims, Section("Information buffer and memory", body)


def _ard_section(rows: pd.DataFrame, out: Path, diag: dict) -> tuple[list[Claim], Section]:
    maps = diag.get("ard_maps", [])
    meta = _meta_rows(rows, "reversible-ard")
    claims: list[Claim] = []
    parts = [
        "Suite `reversible-ard`: logistic regression on the digits (Linear 64-10), one log L2 "
        "hparam per weight (640 + 10), T = 50 steps of batch 200, α = 1, γ = 0.9, meta-learned "
        "with the schedules and init scale over 50 meta-iterations."
    ]
    if len(meta):
        first, last = _first_last(meta, "objective")
        test_first, test_last = _first_last(meta, "test_nll")
        fixed = ok_final(rows, Mode.RUN, "reversible-ard")
        fixed = fixed[fixed["method"] == "fixed"]
        improved = list((last < first.reindex(last.index)).dropna())
        claims.append(
            Claim(
                "meta-learned per-weight L2 lowers the validation loss",
                "logistic regression with one L2 hparam per weight (§3, regularisation)",
                f"val loss after T = 50 steps: first meta-iteration {spread(first, 3)}, last "
                f"{spread(last, 3)}; test NLL {spread(test_first, 3)} → {spread(test_last, 3)} "
                f"(fixed hparams, 50 epochs: val {spread(fixed['val_loss'], 3)}, test NLL "
                f"{spread(fixed['test_nll'], 3)})",
                Verdict.REPRODUCED if improved and all(improved) else Verdict.NOT,
                f"lower at the end on {fraction(improved)} seeds",
            )
        )
    if maps:
        wd = np.asarray([m["log_wd"] for m in maps])  # (seeds, 10, 64)
        activity = np.asarray([m["pixel_mean_square"] for m in maps])  # (seeds, 64)
        init = maps[0]["init"]
        per_pixel = wd.mean(1)  # (seeds, 64)
        rho = [stats.spearmanr(p, a).statistic for p, a in zip(per_pixel, activity, strict=True)]
        order = np.argsort(activity.mean(0))
        blank = float(per_pixel.mean(0)[order[:10]].mean() - init)
        inked = float(per_pixel.mean(0)[order[-10:]].mean() - init)
        fig = figure(3, height=3.2, width=3.2)
        ax_map, ax_act, ax_sc = fig.subplots(1, 3)
        im = ax_map.imshow(per_pixel.mean(0).reshape(8, 8), cmap="viridis")
        fig.colorbar(im, ax=ax_map, shrink=0.8)
        ax_map.set_title("learned log L2 per pixel\n(mean over classes, seeds)")
        im = ax_act.imshow(activity.mean(0).reshape(8, 8), cmap="gray")
        fig.colorbar(im, ax=ax_act, shrink=0.8)
        ax_act.set_title("pixel mean square\n(training images)")
        for p, a in zip(per_pixel, activity, strict=True):
            ax_sc.plot(a, p, ".", alpha=0.6)
        ax_sc.axhline(init, color="grey", ls="--", lw=0.8)
        ax_sc.set(xlabel="pixel mean square", ylabel="learned log L2", title="per pixel")
        for ax in (ax_map, ax_act):
            ax.set_xticks([])
            ax.set_yticks([])
        path = save_figure(fig, out, "ard")
        classes = wd.mean(0)  # (10, 64)
        fig2 = figure(5, 2, height=1.6, width=1.6)
        axes = np.asarray(fig2.subplots(2, 5)).ravel()
        lo, hi = np.percentile(classes, [2, 98])
        for c, ax in enumerate(axes):
            im = ax.imshow(classes[c].reshape(8, 8), cmap="viridis", vmin=lo, vmax=hi)
            ax.set_title(f"class {c}", fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
        fig2.colorbar(im, ax=axes.tolist(), shrink=0.8, label="learned log L2 (mean over seeds)")
        path2 = save_figure(fig2, out, "ard_classes")
        claims.append(
            Claim(
                "the learned per-weight penalties are structured by the inputs",
                "learned L2 per weight rendered as images, one per class (§3, their ARD figure)",
                f"Spearman ρ(learned log L2 per pixel, pixel mean square) = {spread(rho, 2)}",
                Verdict.REPRODUCED
                if all(r < -0.3 for r in rho)
                else Verdict.PARTLY
                if np.mean(rho) < 0
                else Verdict.NOT,
                f"learned − init log L2, mean over the 10 blankest pixels "
                f"{blank:+.2f}, over the 10 inkiest {inked:+.2f}",
            )
        )
        parts += ["", image(path, "learned L2 per pixel"), "", image(path2, "learned L2 per class")]
    return claims, Section("Per-weight L2 (ARD)", "\n".join(parts))


def maclaurin_report(out: Path) -> Path:
    rows = read_rows(out)
    diag = read_diagnostics(out)
    c1, s1 = _schedule_section(rows, out)
    c2, s2 = _bits_section(rows, out)
    c3, s3 = _ard_section(rows, out, diag)
    intro = (
        "Maclaurin, Duvenaud & Adams, *Gradient-based Hyperparameter Optimization through "
        "Reversible Learning*, ICML 2015: hypergradients of the validation loss after T steps "
        "of SGD with momentum by running the steps backwards exactly (`reversible_sgd`). Their "
        "experiments are on MNIST (784-50-50-50-10, T = 100; logistic regression with 7,840 L2 "
        "hparams); ours on 8×8 digits, at the same T, batch and meta-learning procedure.\n\n"
        + runtime_note(rows)
    )
    return write_paper_report(
        out,
        "Maclaurin et al. 2015 with hgbench",
        intro,
        [*c1, *c2, *c3],
        [s1, s2, s3],
        "python benchmarks/papers.py maclaurin2015",
    )
