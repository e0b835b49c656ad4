"""benchmarks/peers_counts.py: the deterministic counts behind docs/peers.md's explanations (IFT
against torchopt, unrolling against higher), on the family's smallest MLP."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

pytest.importorskip("torchopt")
pytest.importorskip("higher")

import peers_counts  # noqa: E402

CPU = torch.device("cpu")
MODEL = "mlp-32-tanh-b500"


def test_ift_counts_graphs_hvps_and_host_reads():
    sides = peers_counts.ift_counts(MODEL, CPU, torch.float32)
    ours, theirs = sides["hgbench"], sides["torchopt.implicit"]
    # hgbench: one training-loss graph for all 20 products and the mixed derivative; torchopt
    # builds one for its products and another for the mixed derivative, and its CG starts with
    # r0 = b - A x0 (one product more)
    assert (ours.calls["training-loss graph"], ours.calls["hvp"]) == (1, 20)
    assert (theirs.calls["training-loss graph"], theirs.calls["hvp"]) == (2, 21)
    assert ours.calls["validation loss"] == theirs.calls["validation loss"] == 1
    assert ours.ops["_local_scalar_dense"] <= 2 < 20 <= theirs.ops["_local_scalar_dense"]
    assert 0 < ours.hvp_gflops < ours.gflops < theirs.gflops
    assert ours.saved_peak_mb > 0 and theirs.saved_peak_mb != theirs.saved_peak_mb  # torch.func


def test_unroll_counts_the_same_matmuls_on_both_sides():
    sides = peers_counts.unroll_counts(MODEL, CPU, torch.float32)
    ours, theirs = sides["hgbench"], sides["higher"]
    assert ours.heavy == theirs.heavy > 0 and ours.gflops == pytest.approx(theirs.gflops)
    assert sum(ours.ops.values()) < sum(theirs.ops.values())
    assert 0 < ours.saved_peak_mb <= theirs.saved_peak_mb
    by_op = peers_counts._by_op(sides)
    assert by_op[0].startswith("| saved by") and len(by_op) > 3
