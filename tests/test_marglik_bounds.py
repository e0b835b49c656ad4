"""Block lower bounds (Immer et al. 2023) and the structures' order, on a small problem (float64).

Which estimators are lower bounds of the exact full-GGN Laplace log marglik, and why, is derived in
hgbench.numerics.laplace.marglik's docstring: kernel/full per block (Fischer), blockdiag/diag
(Fischer and Hadamard on top), the `independent` output split (Fischer on the rows of Λ^½); `single`
and `single_iid` are bounds in expectation only; kron is not a bound.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.numerics.laplace import (
    BoundKind,
    OutputSplit,
    Partition,
    Structure,
    bound_kind,
    exact_log_marglik,
    linearize,
    log_marglik,
    partition,
    partitioned_log_marglik,
)
from hgbench.numerics.laplace.logdet import identity_plus_gram_logdet

load_plugins()

N, M = 40, 10
BOUNDS = [Structure.KERNEL, Structure.FULL, Structure.BLOCKDIAG, Structure.DIAG]


@pytest.fixture(scope="module")
def small():
    task = dataclasses.replace(TASKS["digits_mlp"], hidden=(8,), n_train=N, n_val=10)
    problem = task.build(0, "cpu", torch.float64)
    gen = torch.Generator().manual_seed(3)
    params = {
        k: v + 0.3 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        for k, v in problem.init_params().items()
    }
    hparams = {
        k: torch.tensor(-4.0 + 0.5 * i, dtype=torch.float64)
        for i, k in enumerate(problem.init_hparams())
    }
    d = problem.data
    exact = float(exact_log_marglik(problem, params, hparams, d.x_train, d.y_train))
    return problem, params, hparams, exact


def _blocks(problem, kind: Partition, size: int = M) -> list[torch.Tensor]:
    return partition(N, size, torch.Generator().manual_seed(0), problem.data.y_train, kind)


def _bound(problem, params, hparams, blocks, structure, split=OutputSplit.NONE, seed=0):
    d = problem.data
    gen = torch.Generator().manual_seed(seed)
    value, estimates = partitioned_log_marglik(
        problem, params, hparams, d.x_train, d.y_train, blocks, structure, split, gen
    )
    return float(value), estimates


def test_kernel_and_full_are_exact_on_one_block(small) -> None:
    problem, params, hparams, exact = small
    d = problem.data
    for structure in (Structure.KERNEL, Structure.FULL):
        value = float(log_marglik(problem, params, hparams, d.x_train, d.y_train, structure))
        assert value == pytest.approx(exact, rel=1e-10, abs=0)
        one, _ = _bound(problem, params, hparams, [torch.arange(N)], structure)
        assert one == pytest.approx(exact, rel=1e-10, abs=0)


@pytest.mark.parametrize("kind", list(Partition))
@pytest.mark.parametrize("split", [OutputSplit.NONE, OutputSplit.INDEPENDENT])
def test_partitioned_values_are_lower_bounds_in_order(small, kind, split) -> None:
    problem, params, hparams, exact = small
    blocks = _blocks(problem, kind)
    # full = kernel (Sylvester, tested above); skip its K P × P Cholesky per block when split
    structures = BOUNDS if split == OutputSplit.NONE else [s for s in BOUNDS if s != Structure.FULL]
    values = {s: _bound(problem, params, hparams, blocks, s, split)[0] for s in structures}
    values.setdefault(Structure.FULL, values[Structure.KERNEL])
    slack = exact - values[Structure.KERNEL]
    assert slack > 1e-3 * abs(exact), "a block bound strictly below the exact value"
    assert values[Structure.FULL] == pytest.approx(values[Structure.KERNEL], rel=1e-10)
    # exact ≥ kernel = full ≥ blockdiag ≥ diag (Fischer, then Hadamard)
    chain = [exact, values[Structure.FULL], values[Structure.BLOCKDIAG], values[Structure.DIAG]]
    assert all(a >= b - 1e-9 * abs(exact) for a, b in itertools.pairwise(chain)), chain
    for s in BOUNDS:
        assert bound_kind(s, split, all_data_one_block=False) == BoundKind.LOWER


def test_splitting_outputs_and_shrinking_blocks_loosen_the_bound(small) -> None:
    problem, params, hparams, exact = small
    random = _blocks(problem, Partition.RANDOM)
    whole, _ = _bound(problem, params, hparams, random, Structure.KERNEL)
    split, _ = _bound(problem, params, hparams, random, Structure.KERNEL, OutputSplit.INDEPENDENT)
    assert split < whole < exact
    finer = _bound(
        problem, params, hparams, _blocks(problem, Partition.RANDOM, 5), Structure.KERNEL
    )
    assert finer[0] < whole


@pytest.mark.parametrize("structure", [Structure.KERNEL, Structure.DIAG, Structure.KRON])
def test_scaled_block_estimates_average_to_the_partitioned_value(small, structure) -> None:
    problem, params, hparams, _ = small
    d = problem.data
    blocks = _blocks(problem, Partition.RANDOM)
    value, estimates = _bound(problem, params, hparams, blocks, structure)
    assert all(len(b) == M for b in blocks)
    # each estimate on its own: (N/M)[Σ_B log p − ½ logdet_B] − ½ θᵀP0θ
    for b, est in zip(blocks, estimates, strict=True):
        single = log_marglik(
            problem, params, hparams, d.x_train[b], d.y_train[b], structure, n_data=N
        )
        assert float(single) == pytest.approx(float(est), rel=1e-12)
    assert float(estimates.mean()) == pytest.approx(value, rel=1e-12)
    assert float(estimates.std()) > 0  # the blocks differ: the average is not trivial


def test_single_output_splits_are_bounds_in_expectation(small) -> None:
    """`single`: K times one random output's log det, averaged over the K outputs, is the
    `independent` bound exactly. `single_iid` on a 2-point block: enumerate all K² draws."""
    problem, params, hparams, exact = small
    blocks = _blocks(problem, Partition.RANDOM)
    independent, _ = _bound(
        problem, params, hparams, blocks, Structure.KERNEL, OutputSplit.INDEPENDENT
    )
    draws = [
        _bound(problem, params, hparams, blocks, Structure.KERNEL, OutputSplit.SINGLE, seed)[0]
        for seed in range(40)
    ]
    assert min(draws) < independent < max(draws)  # one draw is not a bound of anything
    assert max(draws) > exact or min(draws) < independent
    assert bound_kind(Structure.KERNEL, OutputSplit.SINGLE, False) == BoundKind.LOWER_IN_EXPECTATION

    # exact expectations on a 2-point block, from the factor rows (2, K, P) directly
    d = problem.data
    wrt = list(params)
    rows, _ = linearize(problem.forward, params, d.x_train[:2], problem.task.likelihood, wrt)
    delta = {k: N * hparams[WD_PREFIX + k].exp() for k in wrt}
    white = torch.cat([(rows[k] * delta[k].rsqrt()).flatten(2) for k in wrt], dim=2)  # (2, K, P)
    k = white.shape[1]
    full = float(identity_plus_gram_logdet(white.flatten(0, 1)))
    per_output = [float(identity_plus_gram_logdet(white[:, c])) for c in range(k)]
    single = k * sum(per_output) / k  # E_c[K logdet_c]
    iid = (
        k
        * sum(
            float(identity_plus_gram_logdet(torch.stack([white[0, a], white[1, b]])))
            for a in range(k)
            for b in range(k)
        )
        / k**2
    )
    assert single >= full and iid >= full  # a larger log det: a lower log marglik, in expectation
    assert math.isclose(single, sum(per_output))


def test_kron_is_an_approximation_with_a_measured_error(small) -> None:
    problem, params, hparams, exact = small
    d = problem.data
    kron = float(log_marglik(problem, params, hparams, d.x_train, d.y_train, Structure.KRON))
    assert bound_kind(Structure.KRON, OutputSplit.NONE, True) == BoundKind.APPROXIMATION
    assert kron != pytest.approx(exact, rel=1e-6)
    assert abs(kron - exact) < 0.1 * abs(exact), (kron, exact)


def test_kron_is_exact_for_linear_gaussian_models_with_a_per_feature_prior() -> None:
    """Ridge: one linear layer, unit Gaussian likelihood, prior per input feature. There K-FAC's
    B = N·I and B ⊗ A is the GGN exactly, and the prior varies along the input axis only."""
    problem = TASKS["ridge"].build(0, "cpu", torch.float64)
    d = problem.data
    params = problem.init_params()
    hparams = {WD_PREFIX + "weight": torch.linspace(-6, -1, 64, dtype=torch.float64)}
    exact = float(exact_log_marglik(problem, params, hparams, d.x_train, d.y_train))
    kron = float(log_marglik(problem, params, hparams, d.x_train, d.y_train, Structure.KRON))
    assert kron == pytest.approx(exact, rel=1e-10)


@pytest.fixture(scope="module")
def reference(small):
    from hgbench.numerics.laplace import marglik_reference

    problem = small[0]
    return problem, marglik_reference(problem)


def _flat(hg: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in hg.values()])


@pytest.mark.parametrize(
    ("method", "settings", "kind"),
    [
        ("laplace_full", {"structure": "full"}, BoundKind.EXACT),
        ("laplace_full", {"structure": "diag"}, BoundKind.LOWER),
        ("laplace_ntk", {"block_size": N}, BoundKind.LOWER),  # one block: exact
        ("laplace_ntk", {"block_size": M}, BoundKind.LOWER),
        ("laplace_ntk", {"block_size": M, "partition": "grouped"}, BoundKind.LOWER),
        ("laplace_ntk", {"block_size": M, "structure": "kron"}, BoundKind.APPROXIMATION),
    ],
)
def test_probe_estimates_against_the_exact_reference(reference, method, settings, kind) -> None:
    from hgbench.contracts.method import METHODS

    problem, ref = reference
    estimator = METHODS[method](**settings)
    assert estimator.bound == kind.value  # the row's method_params say what the value is
    est = estimator.hypergradient(problem, ref.state)
    assert est.value is not None and ref.value is not None
    exact_hg = _flat(ref.hypergradient)
    if settings.get("block_size") == N or settings.get("structure") == "full":
        assert est.value == pytest.approx(ref.value, rel=1e-10)
        torch.testing.assert_close(_flat(est.hypergradient), exact_hg, rtol=1e-8, atol=1e-12)
    elif kind == BoundKind.LOWER:
        assert est.value < ref.value
    else:  # K-FAC per block: neither a bound nor close at M = N/4 (its full-batch error: above)
        assert math.isfinite(est.value) and est.value != pytest.approx(ref.value, rel=1e-3)


@pytest.mark.parametrize("split", [OutputSplit.SINGLE, OutputSplit.SINGLE_IID])
@pytest.mark.parametrize("structure", [Structure.KERNEL, Structure.DIAG, Structure.KRON])
def test_single_splits_compute_only_the_drawn_rows_and_match_masking_all_rows(
    small, split, structure
) -> None:
    """A single split computes one factor row per example; the value must equal selecting the
    same rows out of all K (the `split_rows` draw from the same seed) and weighting by K."""
    from hgbench.numerics.laplace import fit_laplace
    from hgbench.numerics.laplace.bounds import split_rows
    from hgbench.numerics.laplace.ggn import SplitCurvature

    problem, params, hparams, _ = small
    d = problem.data
    x, y = d.x_train[:M], d.y_train[:M]
    k = problem.task.n_classes
    got = fit_laplace(
        problem, params, hparams, x, y, structure, split, torch.Generator().manual_seed(4)
    )
    masks, weights = split_rows(split, M, k, torch.Generator().manual_seed(4), x.device)
    full = fit_laplace(problem, params, hparams, x, y, structure)  # all K rows
    assert isinstance(got.curvature, SplitCurvature) and got.curvature.weights == [float(k)]
    delta = {n: N * hparams[WD_PREFIX + n].exp() for n in params}
    # rebuild the masked version through the public split machinery: a 0/1 mask on all rows
    if structure == Structure.KERNEL:
        from hgbench.numerics.laplace.capture import capture

        chunk = capture(problem.model, params, x, problem.task.likelihood, list(params))
        grams = chunk.grams(set(params))
        idx = masks[0].flatten().nonzero().squeeze(1)
        kernel = sum(g[idx][:, idx] / delta[n] for n, g in grams.items())
        ref = k * torch.logdet(torch.eye(len(idx), dtype=kernel.dtype) + kernel)
        torch.testing.assert_close(got.curvature.logdet_ratio(delta), ref, rtol=1e-10, atol=0)
    assert got.log_lik == pytest.approx(float(full.log_lik), rel=1e-12)
    assert float(got.curvature.logdet_ratio(delta)) < float(k * full.curvature.logdet_ratio(delta))
