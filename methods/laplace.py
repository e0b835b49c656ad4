"""Marginal-likelihood hparam optimisation: the online Laplace loop (Immer et al. 2021) and its
stochastic NTK lower bounds (Immer et al. 2023).

Both train the params by SGD on the training loss over ALL labelled data (train + validation: a
marginal likelihood needs no held-out split) and take Adam steps on the hparams against
−log q(D | h) (laplace_full: the total, as laplace-torch; laplace_ntk: / N, as ntk-marglik),
N = n_train + n_val, with the prior precision δ_p = N · exp(log_wd.p)
(hgbench.numerics.laplace.fitting). Augmentation hparams (`aug.*`) are learned through the same
objective (invariance learning, Immer et al. 2022). Rows report −log q / N as `objective`.
laplace_full's loop, and what both share, is in hgbench.methods.laplace_online.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from hgbench.contracts.hparams import HParams, WeightDecay
from hgbench.contracts.method import (
    Budget,
    Checkpoint,
    Estimate,
    Family,
    Method,
    Objective,
    Periodic,
    ProbeState,
    register_method,
)
from hgbench.contracts.task import Problem
from hgbench.methods.laplace_online import all_labelled, live, marglik_epoch, run_online
from hgbench.numerics.functional import detach
from hgbench.numerics.laplace import (
    BoundKind,
    OutputSplit,
    Partition,
    Structure,
    augmented_inputs,
    bound_kind,
    fit_laplace,
    hypergradient,
    laplace_params,
    log_marglik,
    partition,
)
from hgbench.numerics.laplace.layers import covered_layers
from hgbench.numerics.training import SGDTrainer


def _derived_bound(given: str, kind: BoundKind) -> str:
    """The `bound` setting is reported, not chosen: it must be empty or match what the other
    settings make of the estimator (so a stored row's label cannot lie)."""
    if given not in ("", kind.value):
        raise ValueError(f"bound is derived from the settings ({kind.value!r}), got {given!r}")
    return kind.value


def _structure_skip(problem: Problem, structure: Structure) -> str | None:
    hparams = problem.init_hparams()
    params = problem.init_params()
    if not laplace_params(params, hparams):
        return "no parameter has a log_wd hparam: there is no prior to marginalise"
    if structure == Structure.KRON:
        covered = covered_layers(problem.model, laplace_params(params, hparams))
        if not covered:
            return "kron covers nn.Linear and nn.Conv2d layers; this model has none"
        if problem.task.weight_decay == WeightDecay.PARAM:
            return (
                "kron needs a prior precision constant along a weight's rows or columns; "
                "this task has one per weight (use structure=diag or full)"
            )
    return None


def _warm_up(problem: Problem, structure: Structure) -> None:
    """One tiny fit, untimed: torch.func's first vmap/jacrev trace costs seconds."""
    hparams = problem.init_hparams()
    d = problem.data
    n = min(4, d.y_train.shape[0])
    inputs = augmented_inputs(problem, hparams, d.x_train[:n])
    fit_laplace(problem, problem.init_params(), hparams, inputs, d.y_train[:n], structure)


@dataclass
class _ProbeCache:
    """A probe state's fixed partition, its partitioned bound and spread over blocks, and how
    many estimates have been taken (the next block, round robin)."""

    state: ProbeState
    blocks: list[torch.Tensor]
    value: float
    spread: float
    calls: int = 0


def _summary(bound: BoundKind) -> dict[str, str]:
    return {"bound": bound.value}


@register_method("laplace_full")
@dataclass
class LaplaceFull(Method):
    """Online Laplace marginal-likelihood hparam optimisation on all data (Immer et al. 2021),
    run as laplace-torch's `marglik_training` runs it (hgbench.methods.laplace_online).

    Each epoch is one epoch of SGD on the training loss; after epoch e (from 1) with
    e % `frequency` == 0 and e ≥ `burnin`, the curvature (`structure`: full, blockdiag, kron or
    diag GGN) is fitted on all N points at the current params, then `hypersteps` Adam steps
    (lr `hyper_lr`) are taken on the hparams against the total −log q, reusing that fit. With
    `best_checkpoint` the last row is the best-marglik checkpoint (`checkpoint: best_marglik`):
    the params and prior of the lowest −log q seen, chosen on training data only. Augmentation
    hparams change the curvature: the first `aug_hypersteps` of those steps refit it
    (differentiably in them) and move every hparam, the rest move the priors only.
    On purpose unlike laplace-torch (docs/reference-loops.md): augmentation hparams (it has
    none); the best row stands where training ended, in place of the last epoch's row; no
    refit of the Laplace at the end (hgbench evaluates the network, not the Laplace
    predictive). Probe mode: the same full-batch estimate on the training split.
    `bound` is derived: what the value is relative to the exact full-GGN Laplace marglik.
    """

    structure: Structure = Structure.KRON
    frequency: int = 2  # the paper fits every epoch (laplace-torch) to every 5 (CIFAR)
    burnin: int = 1  # epochs; the paper burns in 10 of 300, our small tasks train 10-20
    hypersteps: int = 10
    aug_hypersteps: int = 1
    hyper_lr: float = 0.1
    chunk_size: int = 512
    best_checkpoint: bool = True  # report the best-marglik state last (laplace-torch returns it)
    bound: str = ""

    family = Family.MARGLIK
    objective = Objective.MARGLIK
    probe_grid = ({"structure": "full"}, {"structure": "kron"}, {"structure": "diag"})
    # the full structure costs as much as the exact reference: only in the full sweep
    probe_quick = ({"structure": "kron"}, {"structure": "diag"})
    exact_settings = {"structure": "full"}

    def __post_init__(self) -> None:
        self.structure = Structure(self.structure)
        if self.structure == Structure.KERNEL:
            raise ValueError("laplace_full's structure is full, blockdiag, kron or diag")
        if self.frequency < 1 or self.chunk_size < 1:
            raise ValueError("frequency and chunk_size must be ≥ 1")
        if min(self.hypersteps, self.aug_hypersteps, self.burnin) < 0:
            raise ValueError("hypersteps, aug_hypersteps and burnin must be ≥ 0")
        if self.hyper_lr <= 0:
            raise ValueError("hyper_lr must be positive")
        self.bound = _derived_bound(
            self.bound, bound_kind(self.structure, OutputSplit.NONE, all_data_one_block=True)
        )

    def skip_reason(self, problem: Problem) -> str | None:
        return _structure_skip(problem, self.structure)

    def setup(self, problem: Problem) -> None:
        _warm_up(problem, self.structure)

    def periodic_work(self, problem: Problem) -> Periodic | None:
        return Periodic(self.burnin, self.frequency)  # a fit every `frequency` epochs

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        return run_online(self, problem, budget)

    def hypergradient(self, problem: Problem, state: ProbeState) -> Estimate:
        d = problem.data
        n = d.y_train.shape[0]
        hparams = live(state.hparams)
        inputs = augmented_inputs(problem, hparams, d.x_train)
        value = (
            log_marglik(
                problem,
                state.params,
                hparams,
                inputs,
                d.y_train,
                self.structure,
                chunk_size=self.chunk_size,
            )
            / n
        )
        hg = {k: g.detach() for k, g in hypergradient(value, hparams).items()}
        return Estimate(hg, value=float(value.detach()), extra=_summary(BoundKind(self.bound)))


@register_method("laplace_ntk")
@dataclass
class LaplaceNTK(Method):
    """Stochastic lower bounds of the Laplace marginal likelihood via the NTK (Immer et al. 2023).

    Joint with SGD: every `hyper_every` SGD steps (after `burnin` epochs) one Adam step (lr
    `hyper_lr`) on the hparams against the (N/M)-scaled bound of ONE block of M = `block_size`
    points; or, with `frequency` > 0, the authors' CIFAR cadence: after `burnin` epochs, every
    `frequency` epochs `hypersteps` Adam steps, each on the next block (the epochs counted as
    ntk-marglik's code counts them: after epoch e, from 1, with e % frequency == 0 and
    e ≥ burnin; that code keeps no best-marglik checkpoint and returns the last state, and so
    does this method: no `best_checkpoint`, every row `checkpoint: current`;
    tests/test_cifar10_protocol.py pins both). Blocks are evaluated
    with `structure` (`kernel`: the weighted NTK; or full, blockdiag, kron, diag) and output
    split `split` (none, independent, single, single_iid); blocks come from a fresh `partition`
    (random, or grouped by class) of all N points each pass over the data.
    Probe mode times one such block estimate; its `value` is the average over all blocks of one
    partition, i.e. the partitioned bound itself (spread over blocks in `extra`). `bound` is
    derived: what the estimator is relative to the exact full-GGN marglik.
    """

    block_size: int = 64
    structure: Structure = Structure.KERNEL
    split: OutputSplit = OutputSplit.NONE
    partition: Partition = Partition.RANDOM
    hyper_every: int = 10
    burnin: int = 1
    hyper_lr: float = 0.1
    frequency: int = 0  # epochs between phases of `hypersteps`; 0: one every hyper_every steps
    hypersteps: int = 20
    bound: str = ""

    family = Family.MARGLIK
    objective = Objective.MARGLIK
    probe_quick = (
        {"block_size": 10},
        {"block_size": 50},
        {"block_size": 50, "partition": "grouped"},
        {"block_size": 200, "split": "single"},
        {"block_size": 50, "structure": "diag"},
    )
    probe_grid = (
        {"block_size": 10},
        {"block_size": 50},
        {"block_size": 200},
        {"block_size": 50, "split": "independent"},
        {"block_size": 200, "split": "single"},
        {"block_size": 200, "split": "single_iid"},
        {"block_size": 50, "partition": "grouped"},
        {"block_size": 50, "structure": "kron"},
        {"block_size": 200, "structure": "kron"},
        {"block_size": 50, "structure": "diag"},
        {"block_size": 200, "structure": "diag"},
    )

    def __post_init__(self) -> None:
        self.structure = Structure(self.structure)
        self.split = OutputSplit(self.split)
        self.partition = Partition(self.partition)
        if self.block_size < 1 or self.hyper_every < 1 or self.burnin < 0:
            raise ValueError("block_size and hyper_every must be ≥ 1, burnin ≥ 0")
        if self.frequency < 0 or self.hypersteps < 1:
            raise ValueError("frequency must be ≥ 0 and hypersteps ≥ 1")
        if self.hyper_lr <= 0:
            raise ValueError("hyper_lr must be positive")
        self.bound = _derived_bound(
            self.bound, bound_kind(self.structure, self.split, all_data_one_block=False)
        )
        self._probe: _ProbeCache | None = None  # probe mode's per-state cache; not a setting

    def skip_reason(self, problem: Problem) -> str | None:
        return _structure_skip(problem, self.structure)

    def setup(self, problem: Problem) -> None:
        _warm_up(problem, self.structure)

    def _estimate(
        self,
        problem: Problem,
        params,
        hparams: HParams,
        inputs: torch.Tensor,
        y: torch.Tensor,
        n: int,
        split_gen: torch.Generator,
    ) -> torch.Tensor:
        """log q̂_b / N on one block (inputs, y) of the N points."""
        est = log_marglik(
            problem, params, hparams, inputs, y, self.structure, self.split, n, split_gen
        )
        return est / n

    def _blocks(self, n: int, labels: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        return partition(n, self.block_size, gen, labels, self.partition)

    def periodic_work(self, problem: Problem) -> Periodic | None:
        if self.frequency > 0:  # phases of `hypersteps` every `frequency` epochs
            return Periodic(self.burnin, self.frequency)
        spe = problem.steps_per_epoch
        return Periodic(self.burnin, self.hyper_every / spe)

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        data = all_labelled(problem)
        n = data.n_train
        x, y = data.data.x_train, data.data.y_train
        hparams = live(problem.init_hparams())
        hyper_opt = torch.optim.Adam(list(hparams.values()), lr=self.hyper_lr)
        trainer = SGDTrainer(data, data.init_params(), problem.lr)
        block_gen = problem.generator("laplace-blocks")
        split_gen = problem.generator("laplace-split")
        aug_gen = problem.generator("laplace-augment")
        blocks: list[torch.Tensor] = []
        values: list[float] = []
        hypersteps, pending = 0, 0
        yield Checkpoint(trainer.params, hparams, step=0, epoch=0.0)

        def hyperstep() -> None:
            nonlocal blocks, hypersteps
            if not blocks:
                blocks = self._blocks(n, y, block_gen)
            idx = blocks.pop()
            inputs = augmented_inputs(data, hparams, x[idx], aug_gen)
            value = self._estimate(
                data, detach(trainer.params), hparams, inputs, y[idx], n, split_gen
            )
            hyper_opt.zero_grad(set_to_none=True)
            (-value).backward()
            hyper_opt.step()
            values.append(-float(value.detach()))
            hypersteps += 1

        while not budget.finished(trainer.stream.epoch):
            if self.frequency > 0:
                # the phase cadence of laplace_full (and of ntk-marglik's marglik_optimization)
                trainer.epoch(detach(hparams), budget)
                done = round(trainer.stream.epoch)
                if trainer.stream.at_epoch_end and marglik_epoch(done, self.burnin, self.frequency):
                    for _ in range(self.hypersteps):
                        hyperstep()
            else:
                pending += trainer.steps(detach(hparams), self.hyper_every - pending, budget)
                if pending >= self.hyper_every:
                    pending = 0
                if pending == 0 and trainer.stream.epoch >= self.burnin:
                    hyperstep()
            if trainer.stream.at_epoch_end or budget.finished(trainer.stream.epoch):
                objective = sum(values) / len(values) if values else None
                yield Checkpoint(
                    trainer.params,
                    hparams,
                    trainer.stream.steps,
                    trainer.stream.epoch,
                    objective,
                    extra={"hypersteps": hypersteps},
                )
                values = []

    def prepare_probe(self, problem: Problem, state: ProbeState) -> None:
        """Untimed, once per probe state: a fixed partition of the N points and the partitioned
        bound over all its blocks (the `value` every estimate at this state reports)."""
        d = problem.data
        n = d.y_train.shape[0]
        blocks = self._blocks(n, d.y_train, problem.generator("laplace-probe-blocks"))
        # not under no_grad: the per-layer capture differentiates the outputs even at fixed
        # inputs; the values are detached instead
        inputs = augmented_inputs(problem, state.hparams, d.x_train).detach()
        split_gen = problem.generator("laplace-probe-split")
        ests = torch.stack(
            [
                self._estimate(
                    problem, state.params, state.hparams, inputs[b], d.y_train[b], n, split_gen
                ).detach()
                for b in blocks
            ]
        )
        weights = torch.tensor([len(b) / n for b in blocks], dtype=ests.dtype)
        spread = float(ests.std()) if len(blocks) > 1 else 0.0
        self._probe = _ProbeCache(state, blocks, float((weights * ests).sum()), spread)

    def hypergradient(self, problem: Problem, state: ProbeState) -> Estimate:
        """One hyper-step's estimate: the next block of the state's fixed partition (round
        robin), with the partitioned value from `prepare_probe` (called here on first use when
        the caller has not: the harness always has, outside its timer)."""
        if self._probe is None or self._probe.state is not state:
            self.prepare_probe(problem, state)
        assert self._probe is not None
        cache = self._probe
        d = problem.data
        n = d.y_train.shape[0]
        idx = cache.blocks[cache.calls % len(cache.blocks)]
        cache.calls += 1
        hparams = live(state.hparams)
        inputs = augmented_inputs(problem, hparams, d.x_train)
        est = self._estimate(
            problem,
            state.params,
            hparams,
            inputs[idx],
            d.y_train[idx],
            n,
            problem.generator("laplace-probe-split"),
        )
        hg = {k: g.detach() for k, g in hypergradient(est, hparams).items()}
        extra = {
            **_summary(BoundKind(self.bound)),
            "n_blocks": len(cache.blocks),
            "value_std_over_blocks": cache.spread,
            "block_value": float(est.detach()),
        }
        return Estimate(hg, value=cache.value, extra=extra)
