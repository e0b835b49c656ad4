"""`laplace_full`'s run against laplace-torch's `marglik_training`, from the same start.

The same model (a tanh MLP of this file's own, 64-6-10, layerwise prior), the same initial
weights and prior precision, the same minibatches in the same order (a loader that yields
hgbench's batch stream), the same SGD with momentum and the same Adam, in float64 on 80 digits
(60 training + 20 validation: the marglik methods train on both), 4 steps per epoch, 20 epochs.
At every hyper-step the gradient handed to Adam (Adam is nearly scale-invariant, so this is what
catches a missing factor) and the prior after the step are compared, as are the epochs the fits
follow, and at the end the weights and prior of the checkpoint each loop returns.

The reference's backend is BackPACK's exact GGN (its full, KFLR-Kronecker and exact diagonal):
laplace-torch's Curvlinops backend builds its dense full GGN only to ~1e-8 here. laplace-torch
sums its Kronecker factors (not their products) over the minibatches, each rescaled, which is
the one-pass K-FAC hgbench fits: kron agrees as tightly as full and diag.

What `laplace_full` does as laplace-torch does, by choice, is pinned here: Adam on the total
−log q (equal gradients at every step, where −log q / N would differ by N); burn-in and
frequency counted as laplace-torch counts them (equal fit epochs); the best-marglik checkpoint
as the last row (`best_checkpoint`, on by default), its prior the one before the phase's last
Adam step. What it does differently on purpose (docs/reference-loops.md) is pinned too: the
best row stands at the step and epoch where training ended, in place of the last epoch's row
(under an epoch budget and when time is up); with `best_checkpoint` off the last row is the last
state.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import warnings

import pytest
import torch
from torch import nn
from torch.optim import SGD, Adam  # bound before the recording patches below

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.method import METHODS, Budget
from hgbench.contracts.schema import CheckpointKind
from hgbench.contracts.task import TASKS, LRSchedule, Problem
from hgbench.engine.plugins import load_plugins
from hgbench.methods.laplace_online import all_labelled
from hgbench.numerics.training import BatchStream

laplace = pytest.importorskip(
    "laplace", reason="laplace-torch (the `test` or `peers` extra) is the reference loop"
)
from laplace.curvature import BackPackGGN  # noqa: E402

# the module: `laplace.marglik_training` is also the function the package re-exports
marglik_module = importlib.import_module("laplace.marglik_training")

load_plugins()
RTOL = 1e-9  # the loops agree to ~2e-13 after 100 hyper-steps (docs/reference-loops.md)
EPOCHS = 20
PRIOR_INIT = 1.0  # laplace-torch's prior_prec_init


def _problem(batch_size: int = 20) -> Problem:
    """digits with a 64-6-10 tanh MLP of this test's own, float64, constant learning rate."""
    n = 80  # N: train + validation
    task = dataclasses.replace(
        TASKS["digits_mlp"],
        n_train=60,
        n_val=20,
        batch_size=batch_size,
        lr=0.1,
        momentum=0.9,
        lr_schedule=LRSchedule.CONSTANT,
        log_wd_init=math.log(PRIOR_INIT / n),  # δ = N exp(log_wd)
    )
    base = task.build(0, "cpu", torch.float64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.Tanh(), nn.Linear(6, 10))
    model = model.to(torch.float64)
    for p in model.parameters():
        p.requires_grad_(False)
    return Problem(base.task, 0, base.device, base.dtype, base.data, model)


class StepCount:
    """SGD steps taken by the reference loop (its loader reads it), and the weights after the
    last one (the loop's last state: it returns the best)."""

    steps = 0
    last: list[torch.Tensor] = []


class CountingSGD(SGD):
    def step(self, closure=None):
        out = super().step(closure)
        StepCount.steps += 1
        StepCount.last = [p.detach().clone() for g in self.param_groups for p in g["params"]]
        return out


class StreamLoader:
    """A DataLoader for `marglik_training` whose every pass is one epoch of hgbench's batch
    stream for the all-labelled problem (the batches `laplace_full` trains on). Which epoch is
    read off the SGD steps taken: a training pass gets the epoch it trains; a Laplace fit's pass
    (it takes no step) gets the next epoch's batches, which hold the same N points."""

    def __init__(self, data: Problem, batch_size: int) -> None:
        self.stream = BatchStream(data, batch_size)
        self.dataset = range(data.n_train)  # marglik_training reads N = len(loader.dataset)
        self.epochs: list[list[tuple[torch.Tensor, torch.Tensor]]] = []

    def __len__(self) -> int:
        return self.stream.steps_per_epoch

    def __iter__(self):
        epoch = StepCount.steps // self.stream.steps_per_epoch
        while len(self.epochs) <= epoch:
            self.epochs.append([self.stream.next() for _ in range(len(self))])
        return iter(self.epochs[epoch])


def _recording_adam(log: list, epoch_of=None):
    class RecordingAdam(Adam):
        """Adam that logs (gradient, hparams after the step, epoch) at every step."""

        def step(self, closure=None):
            params = [p for g in self.param_groups for p in g["params"]]
            grads = torch.cat([p.grad.detach().reshape(-1) for p in params])
            out = super().step(closure)
            after = torch.cat([p.detach().reshape(-1) for p in params])
            log.append((grads.clone(), after.clone(), epoch_of() if epoch_of else None))
            return out

    return RecordingAdam


def _reference(problem: Problem, structure: str, monkeypatch):
    """laplace-torch's loop: its Adam steps, the model and prior it returns."""
    data = all_labelled(problem)
    log: list = []
    steps_per_epoch = -(-data.n_train // problem.task.batch_size)
    monkeypatch.setattr(
        marglik_module, "Adam", _recording_adam(log, lambda: StepCount.steps // steps_per_epoch)
    )
    StepCount.steps = 0
    model = problem.bind(problem.init_params())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lap, model, margliks, _ = marglik_module.marglik_training(
            model,
            StreamLoader(data, problem.task.batch_size),
            likelihood="classification",
            hessian_structure=structure,
            backend=BackPackGGN,
            optimizer_cls=CountingSGD,
            optimizer_kwargs={"lr": problem.lr, "momentum": problem.task.momentum},
            n_epochs=EPOCHS,
            lr_hyp=0.1,
            prior_structure="layerwise",
            n_epochs_burnin=1,
            n_hypersteps=10,
            marglik_frequency=2,
            prior_prec_init=PRIOR_INIT,
        )
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    last = dict(zip(params, StepCount.last, strict=True))
    return log, params, lap.prior_precision.detach().clone(), margliks, last


def _ours(problem: Problem, structure: str, monkeypatch, budget=None, **settings):
    """laplace_full's loop with the reference's settings: its Adam steps and checkpoints."""
    log: list = []
    monkeypatch.setattr(torch.optim, "Adam", _recording_adam(log))
    method = METHODS["laplace_full"](
        structure=structure, frequency=2, burnin=1, hypersteps=10, hyper_lr=0.1, **settings
    )
    ckpts = []
    if budget is None:
        budget = Budget(epochs=EPOCHS, seconds=None)
    elif callable(budget):
        budget = budget(log)
    for ckpt in method.run(problem, budget):
        ckpts.append(
            dataclasses.replace(
                ckpt,
                params={k: v.detach().clone() for k, v in ckpt.params.items()},
                hparams={k: v.detach().clone() for k, v in ckpt.hparams.items()},
                extra=dict(ckpt.extra),
            )
        )
    monkeypatch.undo()
    return log, ckpts


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _prior(problem: Problem, hparams) -> torch.Tensor:
    """hgbench's hparams as laplace-torch's layerwise prior precisions δ = N exp(log_wd)."""
    n = all_labelled(problem).n_train
    names = list(problem.init_params())
    return torch.stack([n * hparams[WD_PREFIX + k].exp().reshape(()) for k in names])


def _fit_epochs(ckpts) -> list[int]:
    """The epochs after which laplace_full fitted (its `fits` count went up)."""
    out, fits = [], 0
    for c in ckpts:
        if c.extra.get("fits", 0) > fits:  # the best row counts the last epoch's fit too
            out.append(round(c.epoch))
            fits = c.extra["fits"]
    return out


@pytest.mark.slow  # 20 epochs of both loops: 15-25 s per structure (full: ~90 s, shared CPU)
@pytest.mark.parametrize("structure", ["kron", "full", "diag"])
def test_laplace_full_matches_marglik_training(structure: str, monkeypatch) -> None:
    problem = _problem()
    n = all_labelled(problem).n_train
    ref_log, ref_params, ref_prior, margliks, ref_last = _reference(problem, structure, monkeypatch)
    log, ckpts = _ours(problem, structure, monkeypatch)
    # the fits follow the same epochs: 2, 4, ..., 20 (burn-in and frequency counted alike)
    ref_epochs = sorted({e for _, _, e in ref_log})
    assert _fit_epochs(ckpts) == ref_epochs == list(range(2, EPOCHS + 1, 2))
    assert len(log) == len(ref_log) == 10 * len(ref_epochs)
    worst = 0.0
    for k, ((g, after, _), (ref_g, ref_after, _)) in enumerate(zip(log, ref_log, strict=True)):
        # the same gradient, at the same scale: Adam on the total −log q, as laplace-torch
        assert _rel(g, ref_g) < RTOL, (k, g, ref_g)
        # hgbench's hparam is log_wd = log δ − log N
        assert _rel(after + math.log(n), ref_after) < RTOL, (k, after + math.log(n), ref_after)
        worst = max(worst, _rel(g, ref_g), _rel(after + math.log(n), ref_after))
    # the last row is the best-marglik checkpoint: laplace-torch's returned model and prior
    # (laplace-torch compares each phase's last −log q)
    phase_last = margliks[9::10]
    final = ckpts[-1]
    assert final.kind == CheckpointKind.BEST_MARGLIK
    assert final.epoch == EPOCHS  # the row stands where training ended
    assert abs(final.objective * n - min(phase_last)) < RTOL * abs(min(phase_last))
    for k, v in ref_params.items():
        assert _rel(final.params[k], v) < RTOL, k
    assert _rel(_prior(problem, final.hparams), ref_prior) < RTOL
    assert ref_epochs[phase_last.index(min(phase_last))] == final.extra["best_epoch"]
    # ... kept from before the end here, so the test sees the checkpoint, not the last state
    assert final.extra["best_epoch"] < EPOCHS
    assert _rel(final.params["3.weight"], ref_last["3.weight"]) > 1e-3
    # it stands in for the last epoch's row: one row per step
    assert [c.epoch for c in ckpts] == list(range(EPOCHS + 1))
    assert [c.kind for c in ckpts[:-1]] == [CheckpointKind.CURRENT] * EPOCHS
    print(f"{structure}: largest relative difference over {len(log)} hyper-steps {worst:.1e}")


def test_best_checkpoint_off_and_when_time_is_up(monkeypatch) -> None:
    """Off: the last row is the last state. Out of time: the best row replaces the last
    epoch's too (and the harness would ask for nothing after it)."""
    problem = _problem()
    log, ckpts = _ours(
        problem, "diag", monkeypatch, Budget(epochs=4, seconds=None), best_checkpoint=False
    )
    assert [c.kind for c in ckpts] == [CheckpointKind.CURRENT] * 5
    assert [c.extra.get("fits", 0) for c in ckpts] == [0, 0, 1, 1, 2]

    def out_after_two_phases(log: list) -> Budget:
        return Budget(epochs=None, seconds=1.0, elapsed=lambda: float(len(log) >= 20))

    log, ckpts = _ours(problem, "diag", monkeypatch, out_after_two_phases)
    assert [c.kind for c in ckpts] == [CheckpointKind.CURRENT] * 4 + [CheckpointKind.BEST_MARGLIK]
    assert [c.epoch for c in ckpts] == [0, 1, 2, 3, 4]
    assert ckpts[-1].extra["best_epoch"] in (2, 4)
