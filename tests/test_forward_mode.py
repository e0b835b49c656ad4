"""Forward-mode hypergradients (torch.func.jvp) against reverse mode through the same steps."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hgbench.contracts.method import METHODS
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.methods._unrolled import zeros_like
from hgbench.methods.forward_mode import forward_steps, tangent_hypergradient, zero_tangents
from hgbench.numerics.functional import cosine_and_rel_err, flatten
from hgbench.numerics.unroll import unrolled_hypergradient

load_plugins()


def _problem(name: str, **changes):
    task = dataclasses.replace(TASKS[name], n_train=120, n_val=60, **changes)
    return task.build(0, "cpu", torch.float64)


def _moved(problem):
    """Initial hparams moved apart, so a mix-up between hparam tensors would show."""
    return {k: v + 0.3 * i for i, (k, v) in enumerate(problem.init_hparams().items())}


@pytest.mark.parametrize(
    ("task", "changes"),
    [("digits_mlp", {"hidden": (12,)}), ("digits_cnn", {"learn_translate": False})],
    ids=["mlp", "cnn"],
)
def test_forward_mode_equals_reverse_mode_through_the_same_steps(task, changes):
    problem = _problem(task, **changes)
    d = problem.data
    hparams = _moved(problem)
    params = problem.init_params()
    batches = [
        (d.x_train[i * 30 : (i + 1) * 30], d.y_train[i * 30 : (i + 1) * 30]) for i in range(4)
    ]
    n = sum(v.numel() for v in hparams.values())

    def val(w, h):
        return problem.val_loss(w)

    # two windows of two steps, the tangents carried across (RTHO), against one 4-step unroll
    w, v, tangents = params, zeros_like(params), zero_tangents(params, n)
    gen = torch.Generator().manual_seed(3)
    for window in (batches[:2], batches[2:]):
        w, v, tangents = forward_steps(
            problem.train_loss, w, v, hparams, tangents, window, 0.1, 0.9, gen
        )
    ours, loss = tangent_hypergradient(val, w, hparams, tangents[0])
    ref, ref_loss, _, _ = unrolled_hypergradient(
        problem.train_loss,
        val,
        params,
        zeros_like(params),
        hparams,
        batches,
        0.1,
        0.9,
        torch.Generator().manual_seed(3),
    )
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=0)
    _, rel = cosine_and_rel_err(flatten(ours), flatten(ref))
    assert rel < 1e-6, rel
    assert flatten(ref).abs().max() > 0


def test_probe_agrees_with_unroll_on_the_same_horizon():
    problem = TASKS["ridge"].build(0, "cpu", torch.float64)
    method = METHODS["forward_mode"](K=7)
    ref = method.probe_reference(problem)
    est = method.hypergradient(problem, ref.state).hypergradient
    unroll = METHODS["unroll"](K=7).hypergradient(problem, ref.state).hypergradient
    assert cosine_and_rel_err(flatten(est), flatten(unroll))[1] < 1e-6
    assert cosine_and_rel_err(flatten(est), flatten(ref.hypergradient))[1] < 1e-6
    # a flipped sign or a lost factor of the learning rate would show at this tolerance
    assert cosine_and_rel_err(flatten(est) * 1.01, flatten(ref.hypergradient))[1] > 1e-3


def test_skips_tasks_with_too_many_hparams():
    problem = TASKS["ridge"].build(0, "cpu", torch.float32)
    assert METHODS["forward_mode"](max_hparams=10).skip_reason(problem)
    assert METHODS["forward_mode"]().skip_reason(problem) is None


def test_skips_tasks_whose_training_step_has_no_forward_derivative():
    # grid_sample (the learned translation) has no forward-mode derivative in torch
    reason = METHODS["forward_mode"]().skip_reason(TASKS["digits_cnn"].build(0, "cpu"))
    assert reason and "forward-mode" in reason
