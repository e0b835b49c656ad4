"""Probe mode's `--save-estimates`: every estimate and its reference, per cell, on disk.

DIR/estimates/<cell key>.pt holds (torch.save) the cell's key, its method settings, and per probe
state the hparams, the estimated and the exact hypergradient (CPU tensors), the reference's name
and the objective values, so that anyone can compare them with another reference later:

    torch.load("runs/default-probe/estimates/probe_ridge_ift_cg_..._0.pt")["states"][0]["estimate"]
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from hgbench.contracts.method import Estimate, Reference


def _cpu(tree: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in tree.items()}


def estimate_record(k: int, ref: Reference, est: Estimate) -> dict[str, Any]:
    return {
        "probe_state": k,
        "hparams": _cpu(ref.state.hparams),
        "estimate": _cpu(est.hypergradient),
        "reference": _cpu(ref.hypergradient),
        "reference_name": ref.name,
        "value": est.value,
        "exact_value": ref.value,
    }


def estimates_path(directory: Path, cell_key: str) -> Path:
    """Where `--save-estimates` puts a cell's estimates: one file per cell, named by its key."""
    return Path(directory) / (re.sub(r"[^A-Za-z0-9_.-]", "_", cell_key) + ".pt")


def save_estimates(
    directory: Path, cell_key: str, method_params: dict[str, Any], records: list[dict[str, Any]]
) -> None:
    path = estimates_path(directory, cell_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"cell": cell_key, "method_params": method_params, "states": records}, path)
