"""benchmarks/peers_family.py: the generated family of peer-benchmark models and its summary, and
peers.py's command line (bad input exits 2; the CUDA path, on a GPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peers  # noqa: E402
import peers_common  # noqa: E402
from peers_family import FAMILY, MODELS, Act, Kind, expand  # noqa: E402
from peers_summary import summarize  # noqa: E402


def test_family_covers_every_axis_and_names_are_unique():
    assert len(FAMILY) >= 8
    assert len({a.name for a in FAMILY}) == len(FAMILY)
    assert {a.kind for a in FAMILY} == set(Kind)
    assert {a.act for a in FAMILY} == set(Act)
    assert {a.bias for a in FAMILY} == {True, False}
    assert len({len(a.widths) for a in FAMILY}) >= 3  # depths
    assert len({a.batch for a in FAMILY}) >= 3
    x = torch.randn(5, 1, 8, 8)
    for arch in FAMILY:
        model = arch.module()
        assert model(x).shape == (5, 10)
        has_bias = any(n.endswith("bias") for n, _ in model.named_parameters())
        assert has_bias == arch.bias, arch.name


def _old_mlp() -> nn.Sequential:  # peers.py's models before the family: the same init
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 128),
        nn.Tanh(),
        nn.Linear(128, 128),
        nn.Tanh(),
        nn.Linear(128, 10),
    )


def _old_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


@pytest.mark.parametrize(("name", "old"), [("mlp", _old_mlp), ("cnn", _old_cnn)])
def test_the_first_two_members_are_the_original_models(name, old):
    torch.manual_seed(0)
    ref = old()
    new = peers_common.build(name, torch.device("cpu"), torch.float32)
    assert MODELS[name].batch == 100
    for (k, a), (k2, b) in zip(ref.state_dict().items(), new.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)


def _row(part, case, peer, ours, theirs, agrees=True, saved=(1.0, 1.0), mb=(1.0, 2.0)):
    return peers_common.Row(
        part, case, peer, ours, theirs, mb[0], mb[1], "", agrees, ours_saved=saved[0],
        peer_saved=saved[1],
    )  # fmt: skip


def test_summary_median_worst_and_fastest_agreeing_backend():
    rows = [
        _row("unroll", "a K=20", "higher", [1.0, 1.0], [2.0, 2.0], saved=(1.0, 2.0)),
        _row("unroll", "b K=20", "higher", [3.0, 2.0], [3.0, 4.0], saved=(3.0, 2.0)),
        _row("unroll", "c K=20", "higher", [1.0, 1.0], [2.0, 2.0]),
        # laplace: the fastest backend that agrees is the baseline, per model
        _row("laplace", "a diag N=1000", "slow", [1.0], [10.0]),
        _row("laplace", "a diag N=1000", "fast", [1.0], [2.0]),
        _row("laplace", "a diag N=1000", "wrong", [1.0], [0.1], agrees=False),
        _row("laplace", "b diag N=1000", "failed", [1.0], [float("nan")], agrees=False),
        _row("laplace", "b diag N=1000", "only", [1.0], [4.0], mb=(3.0, 1.0)),
    ]
    table = summarize(rows).splitlines()
    unroll = next(line for line in table if line.startswith("| unroll K=20 vs higher"))
    # ratios 0.5, 2.5/3.5, 0.5: median 0.5, worst b with its rounds 1.00 and 0.50
    assert "| 3 | 0.50 | 0.71 [0.50-1.00] | b (higher) | 1.00 | 1.50 (saved) |" in unroll
    lap = next(line for line in table if line.startswith("| laplace diag"))
    assert "| 2 | 0.38 | 0.50 [0.50-0.50] | a (fast) | 1.75 | 3.00 (tensor) |" in lap


def test_unknown_model_and_cuda_clock_without_cuda_exit_2(capsys):
    with pytest.raises(ValueError, match="unknown models"):
        expand("mlp,resnet")
    with pytest.raises(SystemExit) as exit_:
        peers.main(["--models", "resnet"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:  # a misspelt part ran nothing, silently, before
        peers.main(["--parts", "unrol"])
    assert exit_.value.code == 2
    if not torch.cuda.is_available():
        for argv in (["--device", "cuda"], ["--clock", "cuda-event"]):
            with pytest.raises(SystemExit) as exit_:
                peers.main(argv)
            assert exit_.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_events_time_the_unroll_contest(capsys):
    peers.main(
        ["--device", "cuda", "--parts", "unroll", "--models", "mlp-32-tanh-b500", "--rounds", "1"]
    )
    out = capsys.readouterr().out
    assert "cuda-event clock" in out and "| unroll K=20 vs higher | 1 |" in out
