"""The papers' CIFAR-scale claims read from the reference grid's rows (report/cifar_grid.py):
Lorraine et al. 2020's augmentation network against none, Immer et al. 2023's NTK block bound
against full-batch Laplace at equal time, and LILA's invariance learned on rotated data. Each says
"not run" where the grid holds no converged cells for it; nothing here reruns an experiment.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hgbench.contracts.schema import Mode, Status
from hgbench.report.papers.claims import (
    GPU_PAPERS,
    Claim,
    Verdict,
    claims_table,
    learned,
    spread,
)

NOT_IN_GRID = "not run yet: no converged grid cells for it"
TIE = 0.005  # accuracy differences within half a point count as equal
_AUGNET = GPU_PAPERS / "augnet-gpu"  # where a GPU run of suite augnet-gpu puts its rows


def _finals(rows: pd.DataFrame) -> pd.DataFrame:
    runs = rows[(rows["mode"] == Mode.RUN) & (rows["status"] == Status.OK)]
    return runs[runs["final"].map(lambda v: v is True or v == 1.0)]


def augnet_claim(rows: pd.DataFrame) -> Claim:
    """ift_neumann on `*_augnet` against `fixed` on `*_none` of the same subset."""
    claim = "a learned data-augmentation network (every weight an hparam) beats no augmentation"
    paper = "CIFAR-10 test accuracy, augmentation network above none (Lorraine et al. 2020, §5)"
    f = _finals(rows)
    aug = f[(f["method"] == "ift_neumann") & f["task"].str.endswith("_augnet")]
    if aug.empty:
        return Claim(
            claim,
            paper,
            "not in the grid",
            Verdict.NOT_RUN,
            "the grid has no augnet task: suite `augnet-gpu` runs it, "
            + (
                f"its rows in {_AUGNET.relative_to(GPU_PAPERS.parents[2]).as_posix()}/"
                if _AUGNET.is_dir()
                else "not run on a GPU yet"
            ),
        )
    task = str(aug["task"].iloc[0])
    none = f[(f["method"] == "fixed") & (f["task"] == task.replace("_augnet", "_none"))]
    if none.empty:
        return Claim(claim, paper, NOT_IN_GRID, Verdict.NOT_RUN, f"no `fixed` on {task} none")
    gain = float(aug["test_acc"].mean() - none["test_acc"].mean())
    return Claim(
        claim,
        paper,
        f"none {spread(none['test_acc'])}, augnet {spread(aug['test_acc'])} ({task})",
        Verdict.REPRODUCED if gain > TIE else Verdict.NOT,
        f"difference of seed means {gain:+.3f}",
    )


def _acc_at_cost(rows: pd.DataFrame, cell: str, cost: float) -> float:
    """A cell's test accuracy at its last evaluation within `cost` training-step equivalents."""
    g = rows[(rows["cell"] == cell) & (rows["tse"] <= cost + 1e-9)].sort_values("tse")
    return float(g["test_acc"].iloc[-1]) if not g.empty else np.nan


def ntk_vs_full_claim(rows: pd.DataFrame) -> Claim:
    """Per plain task and seed, both methods' accuracy at the cost where the cheaper one ended."""
    claim = "at equal time the stochastic NTK bound trains a model as good as full-batch Laplace"
    paper = "CIFAR-10 subsets, test accuracy against wall time (Immer et al. 2023, §5)"
    f = _finals(rows)
    f = f[f["task"].str.startswith("cifar10_")]
    diffs, where = [], set()
    for (task, _seed), g in f.groupby(["task", "seed"]):
        ntk, full = g[g["method"] == "laplace_ntk"], g[g["method"] == "laplace_full"]
        if ntk.empty or full.empty:
            continue
        cost = float(min(ntk["tse"].iloc[0], full["tse"].iloc[0]))
        a = _acc_at_cost(rows, str(ntk["cell"].iloc[0]), cost)
        b = _acc_at_cost(rows, str(full["cell"].iloc[0]), cost)
        if np.isfinite(a) and np.isfinite(b) and (learned(pd.Series([a, b]))):
            diffs.append(a - b)
            where.add(str(task))
    if not diffs:
        return Claim(claim, paper, NOT_IN_GRID, Verdict.NOT_RUN, "needs both methods on a task")
    d = np.asarray(diffs)
    return Claim(
        claim,
        paper,
        f"NTK − full accuracy at equal cost {spread(d)} over {len(where)} tasks × seeds",
        Verdict.REPRODUCED if d.mean() > -TIE else Verdict.NOT,
        f"mean {d.mean():+.3f} (reproduced above −{TIE})",
    )


def lila_claim(rows: pd.DataFrame) -> Claim:
    """On rotated data, a marginal-likelihood method with learned_affine against without."""
    claim = "on rotated data, learned affine invariance (marglik) beats no invariance"
    paper = "rotated CIFAR-10 subsets, test accuracy (Immer et al. 2022, LILA, §6)"
    f = _finals(rows)
    rot = f[f["task"].str.startswith("lila_cifar10_rot")]
    gains, grew = [], []
    for method in ("laplace_full", "laplace_ntk"):
        m = rot[rot["method"] == method]
        for _, r in m[m["task"].str.endswith("_learned_affine")].iterrows():
            base = m[
                (m["task"] == r["task"].replace("_learned_affine", "_none"))
                & (m["seed"] == r["seed"])
            ]
            if base.empty:
                continue
            gains.append(float(r["test_acc"] - base["test_acc"].iloc[0]))
            h = r["hparams"] if isinstance(r["hparams"], dict) else {}
            if "aug.affine.mean" in h:
                grew.append(h["aug.affine.mean"])
    if not gains:
        return Claim(claim, paper, NOT_IN_GRID, Verdict.NOT_RUN, "needs rotated none and affine")
    g = np.asarray(gains)
    magnitude = f"; learned mean magnitude {spread(grew)}" if grew else ""
    return Claim(
        claim,
        paper,
        f"accuracy gain {spread(g)} (laplace_full, laplace_ntk × seeds){magnitude}",
        Verdict.REPRODUCED if g.mean() > TIE else Verdict.NOT,
        f"mean gain {g.mean():+.3f} (reproduced above +{TIE})",
    )


def claims_section(rows: pd.DataFrame) -> str:
    claims = [augnet_claim(rows), ntk_vs_full_claim(rows), lila_claim(rows)]
    return "\n".join(
        [
            "## The papers' CIFAR-scale claims, from the grid",
            "",
            "From the converged cells of the authors' protocol only.",
            "",
            claims_table(claims),
        ]
    )
