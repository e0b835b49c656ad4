"""The reproduced papers' claims, as relations on small budgets (reports/papers/ has the numbers).

- Lorraine et al. 2020: the hypergradient's cosine with the exact one rises with Neumann terms
  and CG iterations; tuning per-weight decays on 50 validation images opens a validation/test
  gap that fixed hparams do not have; CG's damping solves the damped system and leaves the
  undamped solver as it was.
- Maclaurin et al. 2015: the information buffer grows by log2(1/γ) bits per parameter per step
  (within 5%).
- Immer et al. 2023: every block bound of the Laplace marginal likelihood is ≤ the exact value,
  and one block of all N points is the exact value.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from hgbench.contracts.method import METHODS, Budget, ProbeState
from hgbench.contracts.suites import SUITES
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.engine.probe import validation_reference
from hgbench.numerics.laplace.reference import marglik_reference
from hgbench.numerics.linalg import cg

load_plugins()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small matrices: one thread is fastest, and more only contend with other processes on a
    shared CPU (docs/running.md's measurement: 24× slower with 2 threads beside one other
    process)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- Lorraine et al. 2020 ----------------------------------------------------------------------
def _indefinite(n: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    eig = torch.linspace(-0.5, 3.0, n, dtype=torch.float64)
    eig[n // 2] = 1e-7  # a near-null direction, as a Hessian away from the optimum has
    return q @ torch.diag(eig) @ q.T, torch.randn(n, generator=gen, dtype=torch.float64)


def test_damped_cg_solves_the_damped_system():
    a, b = _indefinite()
    damping = 1.0  # above the most negative eigenvalue: A + λI ≻ 0
    sol = cg(iterations=200, tol=1e-12, damping=damping)(lambda v: a @ v, b)
    exact = torch.linalg.solve(a + damping * torch.eye(len(b), dtype=b.dtype), b)
    assert torch.allclose(sol.x, exact, atol=1e-8)
    assert sol.residual < 1e-8
    # λ = 0 is plain CG, unchanged
    plain = cg(iterations=5)(lambda v: a @ v, b)
    same = cg(iterations=5, damping=0.0)(lambda v: a @ v, b)
    assert torch.equal(plain.x, same.x)
    with pytest.raises(ValueError):
        cg(iterations=5, damping=-1.0)
    with pytest.raises(ValueError):
        METHODS["ift_cg"](damping=-0.1)


def test_damping_bounds_cg_on_an_indefinite_nearly_singular_system():
    a, b = _indefinite()
    plain = cg(iterations=30)(lambda v: a @ v, b)
    damped = cg(iterations=30, damping=1.0)(lambda v: a @ v, b)
    # plain CG follows the near-null direction (gain ~1e7 there, or no finite answer at all);
    # with λ above −λ_min, A + λI ≻ 0 has eigenvalues ≥ 0.5 and CG's iterates stay within |x*|
    plain_gain = float(plain.x.norm() / b.norm())
    assert not math.isfinite(plain_gain) or plain_gain > 100
    assert float(damped.x.norm() / b.norm()) <= 1 / 0.5 + 1e-9


@pytest.fixture(scope="module")
def ard_reference():
    task = dataclasses.replace(TASKS["digits_logreg_ard"], n_train=100, n_val=50)
    problem = task.build(0, "cpu", torch.float64)
    return problem, validation_reference(problem)


def _cos(problem, ref, method: str, **settings) -> float:
    est = METHODS[method](**settings).hypergradient(problem, ref.state)
    a = torch.cat([est.hypergradient[k].reshape(-1) for k in ref.hypergradient])
    b = torch.cat([v.reshape(-1) for v in ref.hypergradient.values()])
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize(
    "method, key, counts",
    [("ift_neumann", "terms", (0, 5, 50)), ("ift_cg", "iterations", (1, 3, 20))],
)
def test_cosine_rises_with_iterations(ard_reference, method, key, counts):
    problem, ref = ard_reference
    cosines = [_cos(problem, ref, method, **{key: k}) for k in counts]
    assert cosines[0] < cosines[1] < cosines[2], cosines
    if method == "ift_cg":
        assert cosines[-1] > 0.999  # converged CG is the exact hypergradient


def _final(task, method) -> tuple[float, float]:
    problem = task.build(0)
    last = None
    for ckpt in method.run(problem, Budget(epochs=task.epochs, seconds=None)):
        last = ckpt
    with torch.no_grad():
        val = float(problem.val_loss(last.params))
        test = problem.evaluate(last.params, last.hparams)["test_nll"]
    return val, test


def test_tuning_many_decays_on_a_small_validation_set_opens_a_gap():
    # the overfit suite's setting on seed 0 (600 hyper-steps), evaluated at the end only: ~6 s
    task = dataclasses.replace(TASKS["digits_mlp_smallval"], eval_every=600)
    fixed_val, fixed_test = _final(task, METHODS["fixed"]())
    val, test = _final(task, METHODS["ift_neumann"](period=1, hyper_lr=0.03, terms=5))
    assert val < 0.1 * fixed_val  # the validation set is fitted through the hparams
    assert test - val > (fixed_test - fixed_val) + 0.05  # and the test loss does not follow


def test_overfit_suite_runs_the_stable_settings():
    suite = SUITES["overfit"]
    settings = [c["hyper_lr"] for m in ("ift_neumann", "ift_cg") for c in suite.configs[m]]
    assert settings and all(s <= 0.03 for s in settings)
    assert any(c.get("damping", 0) > 0 for c in suite.configs["ift_cg"])


# --- Maclaurin et al. 2015 ---------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [0.5, 0.9, 0.98])
def test_buffer_bits_match_log2_inverse_gamma(gamma):
    task = dataclasses.replace(TASKS["digits_mlp3"], hidden=(16,), n_train=200)
    problem = task.build(0)
    method = METHODS["reversible_sgd"](T=20, lr_init=0.5, momentum_init=gamma)
    state = ProbeState(problem.init_params(), method.init_hparams(problem))
    est = method.hypergradient(problem, state)
    assert est.extra["bit_exact"] == 1
    theory = math.log2(1 / gamma)
    assert abs(est.extra["buffer_bits_per_param_step"] - theory) < 0.05 * theory


# --- Immer et al. 2023 -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def marglik_problem():
    task = dataclasses.replace(TASKS["digits_mlp"], hidden=(8,), n_train=60, n_val=10)
    problem = task.build(0, "cpu", torch.float64)
    return problem, marglik_reference(problem)


@pytest.mark.parametrize("partition", ["random", "grouped"])
def test_block_bounds_are_below_the_exact_marglik(marglik_problem, partition):
    problem, ref = marglik_problem
    values = []
    for m in (6, 20, 60):
        method = METHODS["laplace_ntk"](block_size=m, partition=partition)
        est = method.hypergradient(problem, ref.state)
        values.append(est.value)
    assert all(v <= ref.value + 1e-9 for v in values), (values, ref.value)
    assert values[-1] == pytest.approx(ref.value, abs=1e-8)  # one block of all N: exact
    assert values[0] < ref.value - 1e-6  # small blocks leave slack


# --- the reports -------------------------------------------------------------------------------
def test_reports_draw_from_stored_rows_only(tmp_path, monkeypatch):
    """With no rows, every report still writes its claims table, and the CIFAR-scale claims say
    they were not run (nothing is recomputed or made up)."""
    import hgbench.report.papers.claims as papers
    from hgbench.report.html_page import PLOTLY_JS, static_text
    from hgbench.report.papers.immer import immer2021_report, immer2023_report
    from hgbench.report.papers.lorraine import lorraine_report
    from hgbench.report.papers.maclaurin import maclaurin_report

    monkeypatch.setattr(papers, "GPU_PAPERS", tmp_path / "no_gpu_run")
    for report, gpu_claims in (
        (lorraine_report, 1),
        (maclaurin_report, 0),
        (immer2023_report, 1),
        (immer2021_report, 0),
    ):
        text = report(tmp_path / report.__name__).read_text()
        assert "## Claims" in text
        page = (tmp_path / report.__name__ / "report.html").read_text()
        assert '<h2 id="claims">Claims</h2>' in page
        assert static_text(PLOTLY_JS)[:2000] not in page  # no interactive figure: no plotly.js
        assert text.count(papers.NOT_RUN) == gpu_claims, report.__name__


def test_reports_read_the_checkouts_reports_folder():
    """The committed folders a paper report reads (the digits probe, the GPU script's rows) are
    looked up from the checkout's root, not from inside the package."""
    from hgbench.report.papers.claims import GPU_PAPERS
    from hgbench.report.papers.immer import PARETO_DIR, REPO

    assert (REPO / "pyproject.toml").is_file() and (REPO / PARETO_DIR / "report.md").is_file()
    assert GPU_PAPERS == REPO / "reports" / "cifar10_gpu" / "papers"
