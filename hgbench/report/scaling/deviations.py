"""Why a measured cost is off its operation count by more than FLAG_RATIO: a known reason per
series (a small model's fixed per-call costs, pieces the count charges twice, a busy machine, the
method's own extra work), else "no known reason"."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hgbench.report.scaling.data import FLAG_RATIO, _size
from hgbench.report.scaling.figures import series_order

# --- why a measured cost is off its count --------------------------------------------------
SMALL_STEP_S = 2e-3  # a training step this short: fixed per-call costs dominate
# Known reasons, by series label (then method), for a measured TSE above (`above`) or below
# (`below`) its count by more than FLAG_RATIO.
ABOVE = "above"
BELOW = "below"
_FUNC = (
    "each step takes its minibatch gradient by torch.func.grad and the reverse pass its "
    "product by torch.func.vjp of that gradient, which cost about 1.3× and 1.5× the units they "
    "are counted as (plain autograd's gradient; bm + hm) on the 100-wide MLP, about 1.1× on the "
    "1000-wide one (benchmarks/scaling_transforms.py): part of the gap on small models"
)
DEVIATION_NOTES: dict[str, dict[str, str]] = {
    "reversible_sgd": {
        ABOVE: "every step, both ways, also runs the fixed-point arithmetic of the exact "
        "reversal (weights and velocity as int64, the rational momentum, the rANS information "
        "buffer's push and pop: weight-sized int64 kernels; hgbench/numerics/reversible.py), "
        "which no unit counts: the same loop from a stored float trajectory "
        "(reversible_sgd(exact=False)) takes about half the time on the 1000-wide MLP; and "
        + _FUNC,
    },
    "reversible_sgd(exact=False)": {
        ABOVE: "the exact reversal's loop from a stored float trajectory (no int64 "
        "arithmetic): " + _FUNC,
    },
    "drmad": {ABOVE: _FUNC},
    "ift_exact": {
        ABOVE: "it builds the dense P × P Hessian and solves it (O(P³) flops and P² memory): "
        "the count's P products leave the assembly and the dense solve out",
    },
    "ift_nystrom": {
        ABOVE: "its `rank` Hessian columns (20 here) are one vmapped batch of products (all at "
        "once, not the count's separate h) followed by a QR of the P × rank column block and "
        "triangular solves (hgbench.numerics.linalg.nystrom), which the count leaves out",
    },
    "forward_mode": {
        BELOW: "the n_h tangent columns go through one batched JVP per step (vmap), cheaper "
        "than the count's n_h separate products j",
    },
    "hypergradient_descent": {
        ABOVE: "its K full-batch gradients go through torch.func.grad, about 1.3× plain "
        "autograd's (the unit f) on the 100-wide MLP, 1.1× on the 1000-wide one "
        "(benchmarks/scaling_transforms.py): part of the gap on small models",
    },
}


# Generic reasons, by letter: a cell gets every one that applies.
GENERIC_NOTES = {
    "S": "small model: one training step takes under {ms:g} ms, so fixed per-call costs that "
    "the units (each timed alone, warm) leave out (Python dispatch of every tensor op, the "
    "method's dicts of tensors, allocation) are a large share",
    "P": "shared pieces: the count charges each piece on its own (each unit with its own "
    "forward pass and graph); a method that shares a forward pass or a graph between pieces "
    "comes in below it",
    "B": "busy machine: the cell's calibration step drifted by more than 25% between its start "
    "and end",
    "?": "no known reason (timing noise on a shared machine?)",
}


def _side(ratio: float) -> str:
    return ABOVE if ratio > 1 else BELOW


def deviation_reasons(points: pd.DataFrame, axis: str) -> list[str]:
    """The marked deviations of an axis explained: one bullet per series, each marked size with
    its ratio and the letters of the generic reasons that apply (`GENERIC_NOTES`: a small
    model's fixed costs, pieces the count charges twice, a busy machine, or none known), then
    the method's own known reason for that side (`DEVIATION_NOTES`); a key to the letters
    first. Empty when nothing is marked."""
    sub = points[(points["axis"] == axis) & (points["outcome"] == "ok")]
    bullets, used = [], set()
    for series in series_order(sub):
        s = sub[sub["series"] == series].sort_values("size")
        ratio = s["hg_tse"] / s["count_tse"]
        off = s[(ratio > FLAG_RATIO) | (ratio < 1 / FLAG_RATIO)]
        if off.empty:
            continue
        method = off["method"].iloc[0]
        notes = DEVIATION_NOTES.get(series) or DEVIATION_NOTES.get(method, {})
        sizes, known = [], []
        for r in off.itertuples(index=False):
            side = _side(r.hg_tse / r.count_tse)
            letters = []
            if np.isfinite(r.step_s) and r.step_s < SMALL_STEP_S:
                letters.append("S")
            if side == BELOW and side not in notes:
                letters.append("P")
            if isinstance(r.noisy, bool | np.bool_) and r.noisy:
                letters.append("B")
            if side in notes:
                known.append(notes[side])
            elif not letters:
                letters.append("?")
            used.update(letters)
            tag = f", {' '.join(letters)}" if letters else ""
            sizes.append(f"{_size(r.size)} ({r.hg_tse / r.count_tse:.2f}×{tag})")
        text = f"- **{series}** at {', '.join(sizes)}"
        known = list(dict.fromkeys(known))
        bullets.append(text + (f": {'; '.join(known)}." if known else "."))
    if not bullets:
        return []
    ms = SMALL_STEP_S * 1e3
    key = [f"{k}: {text.format(ms=ms)}." for k, text in GENERIC_NOTES.items() if k in used]
    return ["Why the marked cells are off their count (letters, then each method's own reason):",
            "", *(f"- {k}" for k in key), "", *bullets]  # fmt: skip


# --- report.md -------------------------------------------------------------------------------
