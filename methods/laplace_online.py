"""The online Laplace loop as laplace-torch's `marglik_training` runs it (Immer et al. 2021,
Algorithm 1), and what the marglik methods share: the data they train on, when a marglik phase
follows an epoch, and the best-marglik checkpoint.

The reference is laplace-torch 0.3's laplace/marglik_training.py. tests/test_reference_laplace.py
runs `laplace_full` beside it from the same start; docs/reference-loops.md says where the two
differ on purpose. In short, per epoch e = 1, 2, ...:

1. one epoch of minibatch SGD on mean NLL + ½ Σ_p δ_p ‖θ_p‖² / N;
2. if e % frequency == 0 and e ≥ burnin: fit the curvature on all N points at the current θ,
   then `hypersteps` Adam steps on −log q(D | δ) (the total, not divided by N) reusing that fit;
3. keep the best-marglik checkpoint: if the −log q of the phase's last Adam step (computed
   before that step) is the lowest so far, keep θ and the prior it was computed at.

At the end the best checkpoint is the result (laplace-torch also refits the Laplace there, for
its predictive: hgbench evaluates the network at θ, so nothing needs the refit).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from hgbench.contracts.hparams import AUG_PREFIX, HParams, Params
from hgbench.contracts.method import Budget, Checkpoint
from hgbench.contracts.schema import CheckpointKind
from hgbench.contracts.task import Problem, Splits
from hgbench.numerics.functional import detach
from hgbench.numerics.laplace import LaplaceFit, Structure, augmented_inputs, fit_laplace
from hgbench.numerics.training import SGDTrainer


def all_labelled(problem: Problem) -> Problem:
    """The same task and seed with train + validation as its training split (same model, init,
    test split and random streams)."""
    d = problem.data
    merged = Splits(
        torch.cat([d.x_train, d.x_val]),
        torch.cat([d.y_train, d.y_val]),
        d.x_val,
        d.y_val,
        d.x_test,
        d.y_test,
    )
    return Problem(problem.task, problem.seed, problem.device, problem.dtype, merged, problem.model)


def live(hparams: HParams) -> HParams:
    """Leaf copies that Adam can step."""
    return {k: v.detach().clone().requires_grad_(True) for k, v in hparams.items()}


def marglik_epoch(epoch: int, burnin: int, frequency: int) -> bool:
    """Whether a marglik phase follows epoch `epoch` (counted from 1): laplace-torch's rule,
    `epoch % frequency == 0 and epoch >= burnin` (ntk-marglik's code counts the same way).
    burnin 1, frequency 2: after epochs 2, 4, ...; burnin 10, frequency 5: after 10, 15, ..."""
    return epoch % frequency == 0 and epoch >= burnin


@dataclass
class BestMarglik:
    """The best-marglik checkpoint, kept as `marglik_training` keeps `best_model_dict` and
    `best_precision`: after a phase whose last −log q is strictly the lowest so far, the params
    after that epoch and the hparams that −log q was computed at (before the phase's last Adam
    step). Only training data enters −log q, so no held-out split chooses the checkpoint."""

    value: float = math.inf  # −log q (total)
    params: Params | None = None
    hparams: HParams | None = None
    epoch: float = 0.0

    def offer(self, value: float, params: Params, hparams: HParams, epoch: float) -> None:
        if value < self.value:
            self.value, self.epoch = value, epoch
            self.params = {k: v.detach().clone() for k, v in params.items()}
            self.hparams = {k: v.detach().clone() for k, v in hparams.items()}

    def checkpoint(self, step: int, epoch: float, n: int, extra: dict) -> Checkpoint | None:
        """The kept state as a row at (step, epoch): how far training went, not where it was."""
        if self.params is None or self.hparams is None:
            return None
        extra = {**extra, "best_epoch": self.epoch}
        kind = CheckpointKind.BEST_MARGLIK
        return Checkpoint(self.params, self.hparams, step, epoch, self.value / n, extra, kind)


class OnlineSettings(Protocol):
    """What the loop reads from `laplace_full`'s settings."""

    structure: Structure
    frequency: int
    burnin: int
    hypersteps: int
    aug_hypersteps: int
    hyper_lr: float
    chunk_size: int
    best_checkpoint: bool


def marglik_phase(
    settings: OnlineSettings,
    data: Problem,
    params: Params,
    hparams: HParams,
    hyper_opt: torch.optim.Optimizer,
    aug_gen: torch.Generator,
) -> tuple[float, HParams] | None:
    """One fit at `params` and `settings.hypersteps` Adam steps on −log q; returns the last
    step's −log q (computed before that step) and the hparams it was computed at (None without
    hyper-steps). Augmentation hparams change the curvature: the first `aug_hypersteps` steps
    refit it (differentiably in them) and move every hparam, the rest move the priors only."""
    n = data.n_train
    x, y = data.data.x_train, data.data.y_train
    learns_aug = any(k.startswith(AUG_PREFIX) for k in hparams)
    fit: LaplaceFit | None = None
    last = None
    for step in range(settings.hypersteps):
        refit = learns_aug and step < settings.aug_hypersteps
        if fit is not None and learns_aug and step == settings.aug_hypersteps:
            fit = fit.detached()
        elif fit is None or refit:
            at = hparams if refit else detach(hparams)
            inputs = augmented_inputs(data, at, x, aug_gen)
            fit = fit_laplace(
                data, params, at, inputs, y, settings.structure, chunk_size=settings.chunk_size
            )
        # the total −log q, as marglik_training steps Adam on it: Adam's ε (1e-8) is relative
        # to the gradient's scale, so −log q / N would move a small gradient less
        loss = -fit.log_marglik(params, hparams, n)
        hyper_opt.zero_grad(set_to_none=True)
        loss.backward()
        if step == settings.hypersteps - 1:  # a copy: Adam steps the hparams in place
            last = (float(loss.detach()), {k: v.detach().clone() for k, v in hparams.items()})
        hyper_opt.step()
    return last


def run_online(settings: OnlineSettings, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
    """`laplace_full`'s run: a checkpoint before training and after every epoch; with
    `best_checkpoint`, the best-marglik checkpoint in place of the last epoch's (the steps of a
    run's rows increase, and the harness asks for nothing once time is up)."""
    data = all_labelled(problem)
    n = data.n_train
    hparams = live(problem.init_hparams())
    hyper_opt = torch.optim.Adam(list(hparams.values()), lr=settings.hyper_lr)
    trainer = SGDTrainer(data, data.init_params(), problem.lr)
    aug_gen = problem.generator("laplace-augment")
    best = BestMarglik()
    objective, fits = None, 0
    yield Checkpoint(trainer.params, hparams, step=0, epoch=0.0)
    for epoch in budget.epoch_range():
        trainer.epoch(detach(hparams), budget)
        # a phase follows whole epochs only (a time budget may stop one part-way)
        if trainer.stream.at_epoch_end and marglik_epoch(
            epoch + 1, settings.burnin, settings.frequency
        ):
            phase = marglik_phase(
                settings, data, detach(trainer.params), hparams, hyper_opt, aug_gen
            )
            fits += 1
            if phase is not None:
                objective = phase[0] / n
                best.offer(phase[0], trainer.params, phase[1], trainer.stream.epoch)
        last = budget.over() or (budget.epochs is not None and epoch + 1 >= budget.epochs)
        if last and settings.best_checkpoint and best.params is not None:
            break  # the best row stands in for the last epoch's: one row per step
        yield Checkpoint(
            trainer.params,
            hparams,
            trainer.stream.steps,
            trainer.stream.epoch,
            objective,
            extra={"fits": fits},
        )
    if settings.best_checkpoint:
        ckpt = best.checkpoint(trainer.stream.steps, trainer.stream.epoch, n, {"fits": fits})
        if ckpt is not None:
            yield ckpt
