"""The CIFAR-10 tasks end to end on small files written in CIFAR-10's own pickle format: every
augmentation setting builds and trains through the command line, and under `learned_affine` the
marginal likelihood's gradient flows into the six magnitudes (against finite differences)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cifar_fakes import write_fake_cifar_pickles

from hgbench.contracts.task import TASKS, LRSchedule
from hgbench.engine.plugins import load_plugins
from hgbench.engine.store import RESULTS_FILE
from hgbench.numerics.augment import AFFINE, AFFINE_NAMES
from hgbench.numerics.laplace import Structure, augmented_inputs, hypergradient, log_marglik
from hgbench.tasks import cifar10 as cifar10_module
from hgbench.tasks.cifar10 import Arch, Augmentation, Cifar10Task
from hgbench.tasks.cifar10_lila import (
    Transform,
    transform_each,
    transform_noise,
)

load_plugins()


@pytest.fixture(scope="module")
def fake_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar_pickles(root, n_train_per_batch=20, n_test=20, seed=0)  # 100 images
    return root


@pytest.mark.parametrize("augmentation", ["none", "flipcrop", "augnet", "learned_affine"])
def test_every_augmentation_setting_trains_through_the_cli(
    cli, fake_cifar: Path, tmp_path: Path, augmentation: str
) -> None:
    out = tmp_path / "out"
    res = cli(
        "run",
        "--tasks",
        f"cifar10_1k_{augmentation}",
        "--methods",
        "fixed",
        "--seeds",
        "0",
        "--set",
        "task.n_labelled=100",
        "--set",
        "task.epochs=1",
        "--set",
        "task.batch_size=10",
        "--data-dir",
        fake_cifar,
        "--out",
        out,
        "--no-report",
    )
    assert res.code == 0, res.err
    final = [json.loads(line) for line in (out / RESULTS_FILE).read_text().splitlines()][-1]
    assert final["status"] == "ok", final["error"]
    assert final["epoch"] == 1 and 0.0 <= final["test_acc"] <= 1.0
    if augmentation == "learned_affine":
        assert final["hparams"]["aug.affine.mean"] == pytest.approx(0.05)


def test_learned_affine_shapes_and_test_time_averaging(fake_cifar: Path, monkeypatch) -> None:
    monkeypatch.setenv("HGBENCH_DATA", str(fake_cifar))
    task = dataclasses.replace(TASKS["cifar10_1k_learned_affine"], n_labelled=20, val_fraction=0.5)
    problem = task.build(0, "cpu", torch.float32)
    hparams = problem.init_hparams()
    x = problem.data.x_train[:5]
    copies = task.augment(x, hparams, torch.Generator().manual_seed(0))
    assert copies.shape == (5, task.n_samples, 3, 32, 32)
    params = problem.init_params()
    assert problem.forward(params, copies).shape == (5, 10)
    # the S copies differ (the magnitudes act), and at η = 0 each copy is the image itself
    assert not torch.allclose(copies[:, 0], copies[:, 1])
    still = task.augment(x, {**hparams, AFFINE: torch.zeros(6)}, torch.Generator())
    torch.testing.assert_close(still, x[:, None].expand_as(still), atol=1e-5, rtol=0)
    # test-time prediction averages over test_samples copies from a fixed stream: repeatable
    a = task.predict(problem, params, hparams, problem.data.x_test)
    b = task.predict(problem, params, hparams, problem.data.x_test)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("structure", [Structure.DIAG, Structure.KRON])
def test_marglik_gradient_reaches_the_affine_magnitudes(
    fake_cifar: Path, monkeypatch: pytest.MonkeyPatch, structure: Structure
) -> None:
    """Fixup ResNet-8, float64: d log q / d η against central differences along a random
    direction (a dropped path through grid_sample, the logit average or the curvature's
    dependence on the inputs would show).

    ReLU is swapped for a steep softplus here: with ReLU the Jacobian, hence the log-determinant,
    jumps wherever a unit flips sign, so a finite difference across a flip means nothing (autograd
    gives the derivative almost everywhere; the factor between the two was 12 with ReLU). The
    step is small because bilinear sampling is only piecewise linear in the magnitudes.
    """
    monkeypatch.setenv("HGBENCH_DATA", str(fake_cifar))
    monkeypatch.setattr(F, "relu", lambda x, inplace=False: F.softplus(x, beta=4.0))
    task = dataclasses.replace(
        TASKS["cifar10_1k_learned_affine"], n_labelled=20, val_fraction=0.5, n_samples=2
    )
    problem = task.build(0, "cpu", torch.float64)
    gen = torch.Generator().manual_seed(3)
    params = {
        k: v + 0.05 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        for k, v in problem.init_params().items()
    }
    hparams = problem.init_hparams()
    hparams[AFFINE] = torch.tensor([0.1, -0.05, 0.3, 0.08, 0.03, -0.06], dtype=torch.float64)
    d = problem.data

    def value(h):
        inputs = augmented_inputs(problem, h, d.x_train, torch.Generator().manual_seed(9))
        return log_marglik(problem, params, h, inputs, d.y_train, structure)

    live = {k: v.clone().requires_grad_(True) for k, v in hparams.items()}
    grad = -hypergradient(value(live), live)[AFFINE]  # of log q
    direction = torch.randn(6, generator=gen, dtype=torch.float64)
    eps = 1e-7
    up = {**hparams, AFFINE: hparams[AFFINE] + eps * direction}
    down = {**hparams, AFFINE: hparams[AFFINE] - eps * direction}
    fd = (value(up) - value(down)) / (2 * eps)
    assert abs(float(fd)) > 1e-3  # the magnitudes matter
    assert float(grad @ direction) == pytest.approx(float(fd), rel=1e-4)


# --- settings: enums, defaults, range checks; bad input exits 2 before any work -------------


def _cifar_tasks() -> list[str]:
    return [n for n, t in TASKS.items() if isinstance(t, Cifar10Task)]


def test_registered_cifar_tasks_train_and_evaluate_as_the_reference() -> None:
    names = _cifar_tasks()
    assert len(names) == 20 + 40  # 5 subsets × 4 augmentations; lila: 4 × 5 × 2
    for name in names:
        task = TASKS[name]
        assert isinstance(task.augmentation, Augmentation) and isinstance(task.arch, Arch)
        assert task.lr_schedule == LRSchedule.COSINE and task.batch_size == 128
        assert task.lr == 0.1 and task.momentum == 0.9
        assert task.eval_test_subset is None and task.eval_every == task.epochs // 10
        assert task.arch == (Arch.FIXUP_WRN16_4 if task.n_labelled == 50000 else Arch.FIXUP_RESNET8)
    assert TASKS["cifar10_50k_none"].split_sizes() == (45000, 5000)
    assert TASKS["cifar10_1k_none"].split_sizes() == (900, 100)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"augmentation": "rotate"}, "not a valid Augmentation"),
        ({"arch": "resnet50"}, "not a valid Arch"),
        ({"n_labelled": 0}, "positive multiple"),
        ({"n_labelled": 1005}, "positive multiple"),
        ({"n_labelled": 60000}, "exceeds CIFAR-10's 50000"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"n_labelled": 20, "val_fraction": 0.9}, "at least one per class"),
        ({"n_samples": 0}, "n_samples"),
        ({"test_samples": 0}, "test_samples"),
        ({"affine_init": -0.1}, "affine_init"),
        ({"n_test": 0}, "n_test"),
        ({"n_test": 15}, "n_test"),
        ({"n_test": 20000}, "n_test"),
        ({"epochs": 0}, "epochs"),  # the base task's checks still run
    ],
)
def test_invalid_settings_are_refused_on_construction(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TASKS["cifar10_1k_none"], **changes)


def _run(cli, data: Path, out: Path, *extra: str):
    return cli(
        "run",
        "--tasks",
        "cifar10_1k_none",
        "--methods",
        "fixed",
        "--seeds",
        "0",
        "--data-dir",
        data,
        "--out",
        out,
        "--no-report",
        *extra,
    )


def _refused(res, match: str) -> None:
    assert res.code == 2, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err
    assert match in lines[0], lines[0]


@pytest.mark.parametrize(
    ("setting", "match"),
    [
        ("task.augmentation=rotate", "one of ['none', 'flipcrop', 'augnet', 'learned_affine']"),
        ("task.arch=resnet50", "one of ['fixup_resnet8', 'fixup_wrn16_4']"),
        ("task.n_labelled=60000", "exceeds CIFAR-10's 50000 training images"),
        # the fake data holds 10 training images per class, 2 test images per class
        ("task.n_labelled=200", "needs 20 training images of every class, but"),
        ("task.n_test=100", "needs 10 test images of every class, but"),
    ],
)
def test_settings_the_data_cannot_meet_exit_2_before_work_starts(
    cli, fake_cifar: Path, tmp_path: Path, setting: str, match: str
) -> None:
    out = tmp_path / "out"
    res = _run(cli, fake_cifar, out, "--set", "task.n_labelled=100", "--set", setting)
    _refused(res, match)
    assert not out.exists()  # no results directory: nothing started


def test_malformed_data_exits_2_with_one_line(cli, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for split in ("train", "test"):
        (data / split / "cat").mkdir(parents=True)
        (data / split / "cat" / "00000.jpg").write_bytes(b"")
    _refused(_run(cli, data, tmp_path / "out"), "is empty (0 bytes)")


def test_missing_data_dir_exits_2_and_leaves_no_directories(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets

    def offline(root: str, train: bool, download: bool) -> None:
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    res = _run(cli, tmp_path / "a" / "b", tmp_path / "out")
    _refused(res, "CIFAR-10 not found in")
    assert list(tmp_path.iterdir()) == []  # neither a/b/cifar10 nor its parents, nor out


# --- data and evaluation --------------------------------------------------------------------


def test_test_subset_is_balanced_and_the_same_for_every_seed(
    fake_cifar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HGBENCH_DATA", str(fake_cifar))
    task = dataclasses.replace(TASKS["cifar10_1k_none"], n_labelled=100, n_test=10)
    a, b = task.load_data(0), task.load_data(1)
    assert torch.bincount(a.y_test, minlength=10).tolist() == [1] * 10
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, b.x_train)  # seeds draw other training subsets
    full = dataclasses.replace(task, n_test=None).load_data(0)
    assert full.y_test.shape == (20,)


@pytest.mark.parametrize("augmentation", ["none", "learned_affine"])
def test_prediction_in_chunks_equals_one_pass(
    fake_cifar: Path, monkeypatch: pytest.MonkeyPatch, augmentation: str
) -> None:
    monkeypatch.setenv("HGBENCH_DATA", str(fake_cifar))
    task = dataclasses.replace(TASKS[f"cifar10_1k_{augmentation}"], n_labelled=100, test_samples=2)
    problem = task.build(0, "cpu", torch.float32)
    gen = torch.Generator().manual_seed(0)
    params = {
        k: v + 0.1 * torch.randn(v.shape, generator=gen) for k, v in problem.init_params().items()
    }
    hparams = problem.init_hparams()
    x = problem.data.x_train[:12]
    monkeypatch.setitem(cifar10_module.EVAL_BATCH, "cpu", 10)  # 5 images × 2 copies a pass
    chunked = task.predict(problem, params, hparams, x)
    again = task.predict(problem, params, hparams, x)
    monkeypatch.setitem(cifar10_module.EVAL_BATCH, "cpu", 10_000)
    whole = task.predict(problem, params, hparams, x)
    assert chunked.shape == (12, 10)
    if augmentation == "none":
        torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(whole, problem.forward(params, x), rtol=1e-5, atol=1e-5)
    else:  # noise is drawn per pass, so copies differ; each pass still averages 2 copies
        assert not torch.allclose(chunked, whole)
        torch.testing.assert_close(chunked, again, rtol=0, atol=0)  # a fixed noise stream


# --- GPU readiness, checked on the CPU: channels-last and compiled training steps -----------


def _trained(problem, steps: int = 3):
    from hgbench.numerics.training import SGDTrainer

    trainer = SGDTrainer(problem, problem.init_params())
    trainer.steps(problem.init_hparams(), steps)
    return {k: v.detach().clone() for k, v in trainer.params.items()}


@pytest.fixture
def small_problem(fake_cifar: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HGBENCH_DATA", str(fake_cifar))
    task = dataclasses.replace(TASKS["cifar10_1k_flipcrop"], n_labelled=100, batch_size=10)
    return lambda: task.build(0, "cpu", torch.float32)


def test_channels_last_training_matches_the_default_layout(small_problem) -> None:
    plain, last = small_problem(), small_problem()
    last.channels_last = True
    a, b = _trained(plain), _trained(last)
    assert any(not torch.equal(a[k], plain.init_params()[k]) for k in a)  # it trained
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # the first torch.compile on a CPU builds C++ kernels: about a minute
def test_compiled_training_matches_and_runs_through_the_cli(
    small_problem, cli, fake_cifar: Path, tmp_path: Path
) -> None:
    plain, compiled = small_problem(), small_problem()
    compiled.compile = compiled.channels_last = True
    a, b = _trained(plain), _trained(compiled)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    out = tmp_path / "out"
    res = _run(
        cli,
        fake_cifar,
        out,
        "--compile",
        "--channels-last",
        "--set",
        "task.n_labelled=100",
        "--set",
        "task.epochs=1",
        "--set",
        "task.batch_size=10",
    )
    assert res.code == 0, res.err
    final = [json.loads(line) for line in (out / RESULTS_FILE).read_text().splitlines()][-1]
    assert final["status"] == "ok", final["error"]


# --- suites -----------------------------------------------------------------------------------


def test_cifar_suites() -> None:
    from hgbench.contracts.method import METHODS
    from hgbench.contracts.suites import SUITES

    smoke = SUITES["cifar10-smoke"]
    assert sorted(smoke.task_names()) == sorted(f"cifar10_1k_{a}" for a in Augmentation)
    assert METHODS.names(list(smoke.methods)) == METHODS.names()  # every method
    assert smoke.budget_s is not None and not smoke.gpu
    lila = SUITES["cifar10-lila"].task_names()
    assert len(lila) == 40 and all(n.startswith("lila_cifar10_") for n in lila)
    # the cifar10 suite is the reference grid: 5 subsets × (3 augmentations + the rotated
    # variants' none and learned_affine); tests/test_cifar10_protocol.py checks it in full
    grid = SUITES["cifar10"].task_names()
    assert len(grid) == 35 and not any(n.endswith("_augnet") for n in grid)


# --- lila's transformed CIFAR-10 (tasks/cifar10_lila.py) --------------------------------------


def _blob(size: int = 32, at: tuple[int, int] = (8, 20)) -> torch.Tensor:
    """One image, (1, 1, H, W), dark but for a bright 2×2 square at pixel (row, col)."""
    x = torch.zeros(1, 1, size, size, dtype=torch.float64)
    x[0, 0, at[0] : at[0] + 2, at[1] : at[1] + 2] = 1.0
    return x


def _centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    """(row, col) of the brightness' centre of mass, relative to the image centre."""
    h, w = x.shape[-2:]
    rows = torch.arange(h, dtype=x.dtype) - (h - 1) / 2
    cols = torch.arange(w, dtype=x.dtype) - (w - 1) / 2
    mass = x[0, 0].sum()
    return torch.stack([(x[0, 0].sum(1) * rows).sum() / mass, (x[0, 0].sum(0) * cols).sum() / mass])


def _noise(transform: Transform, **u: float) -> torch.Tensor:
    noise = torch.zeros(1, 6, dtype=torch.float64)
    for name, value in u.items():
        noise[0, AFFINE_NAMES.index(name)] = value
    return noise


def test_transform_geometry_matches_lilas_data_sets() -> None:
    x = _blob()
    before = _centre_of_mass(x)
    # ±90° at its extreme is a quarter turn, exactly torch.rot90
    rot = transform_each(x, Transform.ROT90, _noise(Transform.ROT90, rotate=1.0))
    torch.testing.assert_close(rot, torch.rot90(x, 1, dims=(2, 3)), atol=1e-6, rtol=0)
    half = transform_each(x, Transform.ROT180, _noise(Transform.ROT180, rotate=1.0))
    torch.testing.assert_close(half, torch.rot90(x, 2, dims=(2, 3)), atol=1e-6, rtol=0)
    # translation by 8/14 of the half-width: 16 · 8/14 pixels at u = 1
    moved = transform_each(x, Transform.TRANSLATE, _noise(Transform.TRANSLATE, translate_x=1.0))
    shift = _centre_of_mass(moved) - before
    torch.testing.assert_close(
        shift, torch.tensor([0.0, -16 * 8 / 14], dtype=x.dtype), atol=0.3, rtol=0
    )
    # isotropic scaling by 2 at u = 1 (the sampling grid is scaled: the content shrinks by 2)
    scaled = transform_each(x, Transform.SCALE, _noise(Transform.SCALE, scale_x=1.0, scale_y=1.0))
    torch.testing.assert_close(_centre_of_mass(scaled), before / 2, atol=0.3, rtol=0)


def test_transform_draws_are_uniform_per_group() -> None:
    gen = torch.Generator().manual_seed(0)
    scale = transform_noise(Transform.SCALE, 5000, gen)
    k = [AFFINE_NAMES.index(n) for n in ("scale_x", "scale_y")]
    assert torch.equal(scale[:, k[0]], scale[:, k[1]])  # one draw: isotropic
    assert scale.abs().max() <= 1 and abs(float(scale[:, k[0]].mean())) < 0.05
    shift = transform_noise(Transform.TRANSLATE, 5000, gen)
    t = [AFFINE_NAMES.index(n) for n in ("translate_x", "translate_y")]
    assert not torch.equal(shift[:, t[0]], shift[:, t[1]])  # two independent draws
    assert (scale.count_nonzero(0) > 0).sum() == 2 and (shift.count_nonzero(0) > 0).sum() == 2


@pytest.mark.parametrize("transform", list(Transform))
def test_transformed_tasks_transform_every_split_by_image(
    fake_cifar: Path, monkeypatch: pytest.MonkeyPatch, transform: Transform
) -> None:
    monkeypatch.setenv("HGBENCH_DATA", str(fake_cifar))
    base = dataclasses.replace(TASKS["cifar10_1k_none"], n_labelled=60)
    task = dataclasses.replace(TASKS[f"lila_cifar10_{transform}_1k_none"], n_labelled=60)
    plain, moved = base.load_data(0), task.load_data(0)
    for split in ("train", "val", "test"):
        x, y = getattr(plain, f"x_{split}"), getattr(plain, f"y_{split}")
        x_t, y_t = getattr(moved, f"x_{split}"), getattr(moved, f"y_{split}")
        assert torch.equal(y, y_t) and x.shape == x_t.shape
        differs = (x - x_t).flatten(1).abs().amax(1) > 1e-3
        assert differs.float().mean() > 0.9, split  # (almost) every image is transformed
    # an image's transform depends on the image, not on the subset it lands in
    bigger = dataclasses.replace(task, n_labelled=80).load_data(0)
    assert torch.equal(bigger.x_test, moved.x_test)
    assert not torch.equal(task.load_data(1).x_test, moved.x_test)  # and on the seed
