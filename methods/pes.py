"""Persistent evolution strategies (Vicol, Metz & Sohl-Dickstein, ICML 2021): unbiased
hypergradients of an unrolled objective from antithetic perturbations, no second derivatives.

2N particles, in antithetic pairs, each train with hparams λ ± ε_j, a fresh ε_j ~ N(0, σ²I) for
every truncation window j of `truncation` steps, and keep their own inner state from window to
window (the persistence). Each pair accumulates ξ = Σ_j ε_j, and with L± the objective reached by
the two particles,

    ĝ = 1/(2Nσ²) Σ_i ξ_i (L⁺_i − L⁻_i)

is unbiased for the gradient of the Gaussian-smoothed unrolled objective however many windows
the horizon is cut into (truncated ES, which uses ε_j alone, is biased). All particles step at
once (`vmap` over the particle axis, the augmentation noise shared: common random numbers).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import grad, vmap

from hgbench.contracts.hparams import HParams, Params
from hgbench.contracts.method import (
    Budget,
    Checkpoint,
    Estimate,
    Family,
    Method,
    Objective,
    Periodic,
    ProbeState,
    Reference,
    register_method,
)
from hgbench.contracts.task import Problem
from hgbench.methods._unrolled import OnlineHyperSteps, next_window, unrolled_reference
from hgbench.methods.truncated import plain_steps
from hgbench.numerics.functional import cosine_and_rel_err, detach, flatten
from hgbench.numerics.training import BatchStream, ValBatches, sgd_momentum_step

CHUNK = 64  # particles stepped at once


def rows_to_tree(rows: Tensor, like: HParams) -> HParams:
    """(B, n_h) flat rows as a dict of (B, *shape) tensors."""
    out, i = {}, 0
    for k, v in like.items():
        out[k] = rows[:, i : i + v.numel()].reshape(rows.shape[0], *v.shape)
        i += v.numel()
    return out


class Particles:
    """2N inner states (params, velocity) with their perturbed hparams and accumulated ξ."""

    def __init__(self, params: Params, velocity: Params, hparams: HParams, n_pairs: int) -> None:
        self.hparams = detach(hparams)
        self.n = n_pairs
        self.reset(params, velocity)

    def reset(self, params: Params, velocity: Params) -> None:
        """Every particle restarts from (params, velocity), ξ from zero."""
        rep = 2 * self.n
        self.w = {k: v.detach().expand(rep, *v.shape).clone() for k, v in params.items()}
        self.v = {k: v.detach().expand(rep, *v.shape).clone() for k, v in velocity.items()}
        flat = flatten(self.hparams)
        self.xi = flat.new_zeros(self.n, flat.numel())
        self.perturbed: HParams = {}

    def perturb(self, hparams: HParams, sigma: float, generator: torch.Generator) -> None:
        """A new window: fresh antithetic ε around the current hparams, added to ξ."""
        self.hparams = detach(hparams)
        flat = flatten(self.hparams)
        eps = sigma * torch.randn(
            self.xi.shape, generator=generator, dtype=flat.dtype, device=flat.device
        )
        self.xi = self.xi + eps
        self.perturbed = rows_to_tree(torch.cat([flat + eps, flat - eps]), self.hparams)

    def steps(self, problem: Problem, batches, lr: float, generator=None) -> None:
        momentum = problem.task.momentum

        def step(w, v, h, x, y):
            g = grad(problem.train_loss)(w, h, x, y, generator)
            return sgd_momentum_step(w, v, g, lr, momentum)

        batched = vmap(step, in_dims=(0, 0, 0, None, None), randomness="same")
        rows = 2 * self.n
        for x, y in batches:
            # particles in chunks (a full batch through thousands of copies at once would hold
            # thousands of copies of every activation), each chunk drawing the same
            # augmentation noise: the generator is replayed, so antithetic partners in
            # different chunks still share it
            state = None if generator is None else generator.get_state()
            w_new, v_new = [], []
            for start in range(0, rows, CHUNK):
                if state is not None:
                    generator.set_state(state)
                part = slice(start, start + CHUNK)
                with torch.no_grad():
                    w_c, v_c = batched(
                        {k: t[part] for k, t in self.w.items()},
                        {k: t[part] for k, t in self.v.items()},
                        {k: t[part] for k, t in self.perturbed.items()},
                        x,
                        y,
                    )
                w_new.append(w_c)
                v_new.append(v_c)
            self.w = {k: torch.cat([c[k] for c in w_new]) for k in self.w}
            self.v = {k: torch.cat([c[k] for c in v_new]) for k in self.v}

    def estimate(self, losses: Tensor, sigma: float) -> tuple[HParams, Tensor]:
        """ĝ from the 2N particles' losses, and the per-pair estimates (N, n_h)."""
        per_pair = self.xi * ((losses[: self.n] - losses[self.n :]) / (2 * sigma**2))[:, None]
        flat = per_pair.mean(0)
        return {k: v[0] for k, v in rows_to_tree(flat[None], self.hparams).items()}, per_pair


def particle_losses(problem: Problem, particles: Particles, x=None, y=None) -> Tensor:
    with torch.no_grad():
        return vmap(lambda w: problem.val_loss(w, x, y), chunk_size=64)(particles.w)


@register_method("pes")
@dataclass
class PES(Method):
    """Persistent evolution strategies (Vicol et al. 2021) on the unrolled validation loss.

    Run mode: the unperturbed training (the shared SGD trainer) is what is evaluated; beside it
    2N particles train with perturbed hparams from the same batches. Every `truncation` steps
    each particle's validation loss on one validation minibatch gives ĝ, Adam updates the
    hparams and a new window begins with fresh perturbations; every `horizon` steps the
    particles restart from the trainer's state with ξ = 0 (an unrolled problem of `horizon`
    steps, as the paper's inner problems reset). Probe mode: from the probe state (zero
    velocity), `horizon` full-batch steps in windows of `truncation`; the reference is the
    exact gradient of that unrolled objective (reverse mode through the same steps), and
    `extra` splits the error into the estimator's variance and its bias (error in expectation
    over antithetic samples) using the per-pair estimates.
    """

    n_pairs: int = 4
    sigma: float = 0.01
    truncation: int = 10
    horizon: int = 100
    hyper_lr: float = 0.03
    val_batch_size: int = 200
    probe_horizon: int = 6
    probe_truncation: int = 2

    family = Family.UNROLLED
    objective = Objective.VALIDATION
    probe_grid = ({"n_pairs": 16}, {"n_pairs": 128}, {"n_pairs": 1024})
    probe_quick = ({"n_pairs": 64},)

    def __post_init__(self) -> None:
        if min(self.n_pairs, self.truncation, self.probe_truncation, self.val_batch_size) < 1:
            raise ValueError("n_pairs, truncations and val_batch_size must be >= 1")
        if self.horizon < self.truncation or self.probe_horizon < self.probe_truncation:
            raise ValueError("a horizon must be at least its truncation")
        if self.sigma <= 0 or self.hyper_lr <= 0:
            raise ValueError("sigma and hyper_lr must be positive")
        self._exact: dict[str, Tensor] | None = None

    def periodic_work(self, problem: Problem) -> Periodic | None:
        return Periodic.steps(problem, self.horizon)  # a whole horizon of truncations

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        hparams = {k: v.requires_grad_(True) for k, v in problem.init_hparams().items()}
        hyper = OnlineHyperSteps(hparams, self.hyper_lr)
        params = problem.init_params()
        velocity = _zeros(params)
        particles = Particles(params, velocity, hparams, self.n_pairs)
        stream = BatchStream(problem, problem.task.batch_size)
        noise = torch.Generator(device=problem.device)
        noise.manual_seed(problem.generator("pes-perturbations").initial_seed())
        val, aug_gen = ValBatches(problem, self.val_batch_size), problem.generator("augment")
        since_reset = 0
        yield Checkpoint(params, hparams, step=0, epoch=0.0)
        while not budget.finished(stream.epoch):
            if since_reset >= self.horizon:  # a new unrolled problem from the current state
                particles.reset(params, velocity)
                since_reset = 0
            particles.perturb(hparams, self.sigma, noise)
            lr = problem.lr_at(stream.steps)
            batches = next_window(stream, budget, self.truncation)
            # the augmentation noise of a step is shared by the particles and the mean
            state = aug_gen.get_state()
            params, velocity = plain_steps(
                problem, params, velocity, detach(hparams), batches, lr, aug_gen
            )
            aug_gen.set_state(state)
            particles.steps(problem, batches, lr, aug_gen)
            since_reset += len(batches)
            losses = particle_losses(problem, particles, *val.next())
            hg, _ = particles.estimate(losses, self.sigma)
            hyper.step(hg, losses.mean())
            extra = {"pairs": self.n_pairs}
            if (point := hyper.checkpoint(params, stream, budget, extra)) is not None:
                yield point

    def probe_reference(self, problem: Problem, hparams: HParams | None = None) -> Reference:
        ref = unrolled_reference(problem, hparams, self.probe_horizon)
        self._exact = ref.hypergradient  # for the bias/variance split in `extra`
        return ref

    def hypergradient(self, problem: Problem, state: ProbeState) -> Estimate:
        d = problem.data
        gen = torch.Generator(device=problem.device)
        gen.manual_seed(problem.generator("pes-probe").initial_seed())
        particles = Particles(state.params, _zeros(state.params), state.hparams, self.n_pairs)
        done = 0
        while done < self.probe_horizon:
            steps = min(self.probe_truncation, self.probe_horizon - done)
            particles.perturb(state.hparams, self.sigma, gen)
            particles.steps(problem, [(d.x_train, d.y_train)] * steps, problem.lr)
            done += steps
        hg, per_pair = particles.estimate(particle_losses(problem, particles), self.sigma)
        return Estimate(hg, extra=self._error_split(hg, per_pair))

    def _error_split(self, hg: HParams, per_pair: Tensor) -> dict[str, Any]:
        """Variance of ĝ (trace of its covariance, from the spread of the per-pair estimates)
        and, against the exact gradient, the bias: E‖ĝ − g‖² = ‖E ĝ − g‖² + tr Cov ĝ."""
        variance = float(per_pair.var(0).sum() / per_pair.shape[0])
        extra: dict[str, Any] = {"n_pairs": self.n_pairs, "variance": variance}
        if self._exact is not None:
            exact = flatten({k: self._exact[k] for k in hg})
            sq_err = float((flatten(hg) - exact).square().sum())
            norm2 = float(exact.square().sum())
            extra["std_rel"] = math.sqrt(variance / norm2)
            extra["bias_rel"] = math.sqrt(max(sq_err - variance, 0.0) / norm2)
            extra["cos"] = cosine_and_rel_err(flatten(hg), exact)[0]
        return extra


def _zeros(tree: Params) -> Params:
    return {k: torch.zeros_like(v.detach()) for k, v in tree.items()}
