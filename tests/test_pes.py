"""PES: unbiased for the smoothed unrolled objective, where truncated ES is not; probe rows."""

from __future__ import annotations

import dataclasses
import math
import types

import torch

from hgbench.contracts.method import METHODS
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.methods._unrolled import rel_err
from hgbench.methods.pes import CHUNK, Particles

load_plugins()
F64 = torch.float64
A = torch.tensor([1.0, 0.5, 2.0], dtype=F64)
C = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
LR, MOMENTUM, HORIZON, WINDOW = 0.3, 0.5, 6, 2


def _toy():
    """Inner loss ½ Σ a (w − λ)², outer ½ ‖w − c‖²: w_K is affine in λ, so the unrolled
    objective is quadratic in λ and its Gaussian smoothing has the same gradient."""
    return types.SimpleNamespace(
        train_loss=lambda w, h, x, y, gen=None: 0.5 * (A * (w["w"] - h["lam"]) ** 2).sum(),
        val_loss=lambda w, x=None, y=None: 0.5 * ((w["w"] - C) ** 2).sum(),
        task=types.SimpleNamespace(momentum=MOMENTUM),
    )


def _closed_form(lam: torch.Tensor) -> torch.Tensor:
    """w_K = p_K w_0 + q_K λ per coordinate (w_0 = 0): iterate the scalar coefficients of
    v ← μv + a(w − λ), w ← w − α v, then d/dλ ½(w_K − c)² = (w_K − c) q_K."""
    qw, qv = torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64)  # dw/dλ, dv/dλ
    for _ in range(HORIZON):
        qv = MOMENTUM * qv + A * (qw - 1.0)
        qw = qw - LR * qv
    return (qw * lam - C) * qw


def _estimates(persistent: bool, pairs: int = 20000, sigma: float = 0.1):
    problem = _toy()
    lam = {"lam": torch.tensor([0.2, -0.1, 0.4], dtype=F64)}
    w0 = {"w": torch.zeros(3, dtype=F64)}
    particles = Particles(w0, {"w": torch.zeros(3, dtype=F64)}, lam, pairs)
    gen = torch.Generator().manual_seed(0)
    for window in range(HORIZON // WINDOW):
        if not persistent and window == HORIZON // WINDOW - 1:
            particles.xi.zero_()  # truncated ES: only the last window's perturbation counts
        particles.perturb(lam, sigma, gen)
        particles.steps(problem, [(None, None)] * WINDOW, LR)
    losses = torch.func.vmap(lambda w: problem.val_loss(w))(particles.w)
    hg, per_pair = particles.estimate(losses, sigma)
    stderr = per_pair.std(0) / math.sqrt(pairs)
    return hg["lam"], stderr, _closed_form(lam["lam"])


def test_pes_is_unbiased_for_the_unrolled_gradient():
    est, stderr, exact = _estimates(persistent=True)
    assert torch.all((est - exact).abs() < 5 * stderr), (est, exact, stderr)
    assert float(stderr.max()) < 0.05 * float(exact.abs().max())  # a test that can fail


def test_truncated_es_without_persistence_is_biased():
    est, stderr, exact = _estimates(persistent=False)
    assert float(((est - exact).abs() / stderr).max()) > 10


def test_probe_reports_variance_and_bias_and_improves_with_pairs():
    problem = TASKS["ridge"].build(0, "cpu", F64)
    errors = []
    for pairs in (8, 512):
        method = METHODS["pes"](n_pairs=pairs, probe_horizon=4, probe_truncation=2)
        ref = method.probe_reference(problem)
        est = method.hypergradient(problem, ref.state)
        assert {"variance", "std_rel", "bias_rel"} <= est.extra.keys()
        errors.append(rel_err(est.hypergradient, ref.hypergradient))
        # the error is mostly variance: the smoothing bias at σ = 0.01 is small
        assert est.extra["bias_rel"] < 0.5 * max(est.extra["std_rel"], 0.1)
    assert errors[1] < errors[0] / 3, errors


def test_particles_in_different_chunks_share_the_augmentation_noise():
    """With identical hparams every particle must follow the same path, also across chunks:
    the learned translation's noise is replayed for each chunk."""
    task = dataclasses.replace(TASKS["digits_cnn"], n_train=40, n_val=20, learn_translate=True)
    problem = task.build(0, "cpu", F64)
    params, hparams = problem.init_params(), problem.init_hparams()
    pairs = CHUNK  # 2 * CHUNK particles: two chunks
    particles = Particles(
        params, {k: torch.zeros_like(v) for k, v in params.items()}, hparams, pairs
    )
    particles.perturbed = {k: v.expand(2 * pairs, *v.shape) for k, v in hparams.items()}
    d = problem.data
    particles.steps(problem, [(d.x_train, d.y_train)] * 2, 0.05, torch.Generator().manual_seed(1))
    for k, w in particles.w.items():
        assert torch.equal(w[0], w[-1])
        assert not torch.equal(w[0], params[k])  # the particles did move
