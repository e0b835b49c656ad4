"""`unroll` against `higher` (an independent differentiable-optimizer implementation), and its
long-horizon limit against the closed-form ridge hypergradient. Both ways of applying weight
decay (through the loss, or in the step with `decay`) are compared with the same reference."""

from __future__ import annotations

import copy
import dataclasses

import higher
import torch
import torch.nn.functional as F

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.method import METHODS, ProbeState
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.numerics.augment import translate
from hgbench.numerics.unroll import l2_decay, unrolled_hypergradient

load_plugins()


def _problem(name: str, **changes):
    task = dataclasses.replace(TASKS[name], n_train=200, n_val=100, **changes)
    return task.build(0, "cpu", torch.float64)


def _higher_hypergradient(problem, hparams, batches, val, lr, momentum, seed):
    """The same K steps written the classic way: nn.Module, torch.optim.SGD, higher."""
    model = copy.deepcopy(problem.model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(problem.init_params()[name])
            p.requires_grad_(True)
    hp = {k: v.clone().requires_grad_(True) for k, v in hparams.items()}
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    names = [n for n, _ in model.named_parameters()]
    with higher.innerloop_ctx(model, opt, copy_initial_weights=True) as (fmodel, diffopt):
        for x, y in batches:
            if "aug.translate" in hp:
                x = translate(x, hp["aug.translate"], gen)
            fast = dict(zip(names, fmodel.parameters(), strict=True))
            penalty = sum(0.5 * (hp[WD_PREFIX + n].exp() * w**2).sum() for n, w in fast.items())
            diffopt.step(F.cross_entropy(fmodel(x), y) + penalty)
        loss = F.cross_entropy(fmodel(val[0]), val[1])
        grads = torch.autograd.grad(loss, list(hp.values()))
    return dict(zip(hp, grads, strict=True)), loss.detach()


def _compare(problem, n_steps: int):
    d = problem.data
    batches = [
        (d.x_train[i * 40 : (i + 1) * 40], d.y_train[i * 40 : (i + 1) * 40]) for i in range(n_steps)
    ]
    val = (d.x_val, d.y_val)
    hparams = problem.init_hparams()
    # move hparams off their shared init so a mix-up between tensors would show
    hparams = {k: v + 0.3 * i for i, (k, v) in enumerate(hparams.items())}
    params = problem.init_params()
    velocity = {k: torch.zeros_like(v) for k, v in params.items()}
    ref, ref_loss = _higher_hypergradient(problem, hparams, batches, val, 0.1, 0.9, seed=7)
    for loss_fn, decay in ((problem.train_loss, None), (problem.data_loss, l2_decay)):
        ours, loss, _, _ = unrolled_hypergradient(
            loss_fn,
            lambda w, h: problem.val_loss(w, *val),
            params,
            velocity,
            hparams,
            batches,
            lr=0.1,
            momentum=0.9,
            generator=torch.Generator().manual_seed(7),
            decay=decay,
        )
        torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=0)
        for k in hparams:
            torch.testing.assert_close(ours[k], ref[k], rtol=1e-6, atol=1e-12)
            assert ref[k].abs().max() > 0  # a hypergradient that is all zeros would prove nothing


def test_train_loss_without_a_generator_argument():
    """Without a generator, train_loss is called as train_loss(w, h, x, y): a user's own loss
    needs no fifth argument. A missing factor in the decay would show against the penalty."""
    problem = _problem("digits_mlp", hidden=(8,))
    d = problem.data
    batches = [(d.x_train[:50], d.y_train[:50]), (d.x_train[50:100], d.y_train[50:100])]
    params = problem.init_params()
    velocity = {k: torch.zeros_like(v) for k, v in params.items()}
    hparams = {k: v + 0.5 * i for i, (k, v) in enumerate(problem.init_hparams().items())}

    def penalised(w, h, x, y):
        return problem.train_loss(w, h, x, y)

    def data_only(w, h, x, y):
        return problem.data_loss(w, h, x, y)

    def run(loss_fn, decay):
        return unrolled_hypergradient(
            loss_fn,
            lambda w, h: problem.val_loss(w),
            params,
            velocity,
            hparams,
            batches,
            0.1,
            0.9,
            decay=decay,
        )

    a, loss_a, w_a, v_a = run(penalised, None)
    b, loss_b, w_b, v_b = run(data_only, l2_decay)
    for k in hparams:
        torch.testing.assert_close(a[k], b[k], rtol=1e-9, atol=1e-14)
    for k in params:
        torch.testing.assert_close(w_a[k], w_b[k], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(v_a[k], v_b[k], rtol=1e-12, atol=1e-14)
    # a decay off by a factor of 2 changes every hypergradient: the comparison above can fail
    c, *_ = run(data_only, lambda w, h: {k: 0.5 * v for k, v in l2_decay(w, h).items()})
    assert all(not torch.allclose(c[k], a[k], rtol=1e-3) for k in hparams)


def test_unroll_matches_higher_on_the_mlp():
    _compare(_problem("digits_mlp", hidden=(16,)), n_steps=5)


def test_unroll_matches_higher_with_learned_augmentation_on_the_cnn():
    _compare(_problem("digits_cnn"), n_steps=3)


def test_long_unrolls_approach_the_exact_ridge_hypergradient():
    problem = TASKS["ridge"].build(0, "cpu", torch.float64)
    task = problem.task
    hparams = problem.init_hparams()
    hparams[WD_PREFIX + "weight"] = torch.full((64,), -2.0, dtype=torch.float64)
    state = ProbeState(task.optimum(problem, hparams), hparams)
    exact = task.exact_hypergradient(problem, hparams)[WD_PREFIX + "weight"]
    errors = []
    for k in (1, 10, 50, 400):
        est = METHODS["unroll"](K=k).hypergradient(problem, state).hypergradient
        errors.append(float((est[WD_PREFIX + "weight"] - exact).norm() / exact.norm()))
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-4, errors
