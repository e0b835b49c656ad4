"""The authors' CIFAR-10 protocol as the tasks' defaults, the reference grid suite, laplace_ntk's
epoch cadence and its last-state result (as ntk-marglik's code), and the grid report's sanity bar
and "not run yet" listing on synthetic rows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from hgbench.contracts.method import METHODS, Budget
from hgbench.contracts.schema import RESULTS_FILE, CheckpointKind
from hgbench.contracts.suites import SUITES
from hgbench.contracts.task import TASKS, LRSchedule
from hgbench.engine.plugins import load_plugins
from hgbench.report.cifar_grid import (
    GRID_SUITE,
    cell_change,
    convergence,
    grid_cells,
    grid_view,
    protocol_of,
)
from hgbench.report.writer import write_report
from hgbench.tasks.cifar10 import Augmentation, Cifar10Task
from hgbench.tasks.cifar10_protocol import (
    EPOCHS,
    Protocol,
    method_configs,
    short_sets,
    subset_epochs,
)

load_plugins()


def test_every_cifar_task_defaults_to_the_authors_protocol() -> None:
    lila = {"1k": 600, "5k": 400, "10k": 300, "20k": 250, "50k": 200}  # LILA's scripts
    assert EPOCHS == lila
    tasks = [t for _, t in TASKS.items() if isinstance(t, Cifar10Task)]
    assert len(tasks) == 60
    for task in tasks:
        size = next(s for s in lila if f"_{s}_" in f"{task.name}_")
        assert task.epochs == lila[size], task.name
        assert task.eval_every == lila[size] // 10  # the last tenth is one step of the curve
        assert task.eval_test_subset is None  # …on the same test images as the final one
        assert (task.batch_size, task.lr, task.momentum) == (128, 0.1, 0.9)
        assert task.lr_schedule == LRSchedule.COSINE
        assert task.n_samples == 20  # learned_affine's copies in training (LILA)


def test_short_protocol_is_a_twentieth_of_the_epochs_with_the_same_shape() -> None:
    assert {s: subset_epochs(s, Protocol.SHORT) for s in EPOCHS} == {
        "1k": 30,
        "5k": 20,
        "10k": 15,
        "20k": 13,
        "50k": 10,
    }
    assert short_sets("1k") == ("task.epochs=30", "task.eval_every=3")
    authors, short = method_configs(Protocol.AUTHORS), method_configs(Protocol.SHORT)
    assert authors["laplace_full"][0] | {} == {
        "structure": "kron",
        "burnin": 10,
        "frequency": 5,
        "hypersteps": 20,
    }
    ntk = authors["laplace_ntk"][0]
    assert (ntk["block_size"], ntk["split"], ntk["frequency"], ntk["hypersteps"]) == (
        150,
        "single",
        1,
        20,
    )
    assert short["laplace_full"][0]["burnin"] == 1 and short["laplace_full"][0]["frequency"] == 1
    assert SUITES["cifar10-smoke"].sets[:2] == short_sets("1k")


def test_the_grid_suite_is_the_issue_grid_in_priority_order() -> None:
    suite = SUITES[GRID_SUITE]
    assert suite.gpu and suite.seeds == (0, 1, 2)
    assert METHODS.names(list(suite.methods)) == [
        "fixed",
        "random_search",
        "ift_neumann",
        "unroll",
        "laplace_ntk",
        "laplace_full",
        "soba",
        "hypergradient_descent",
    ]
    tasks = suite.task_names()
    assert len(tasks) == 5 * (3 + 4)  # subsets × (3 augmentations + rot90/rot180 × 2)
    assert {TASKS[t].augmentation for t in tasks} == {
        Augmentation.NONE,
        Augmentation.FLIPCROP,
        Augmentation.LEARNED_AFFINE,
    }
    cells = grid_cells(suite)
    assert len(cells) == 35 * 8 * 3
    # whole seeds: seed 0's cells before any of seed 1's; within one, 1k, then 5k/10k, then rest
    assert [s for _, _, s in cells] == sorted(s for _, _, s in cells)
    order = [t for t, _, s in cells if s == 0]
    first = {t: order.index(t) for t in order}
    sizes = [t.split("_")[-2] if t.startswith("cifar10_") else t.split("_")[-3] for t in first]
    assert sizes.index("5k") > max(i for i, s in enumerate(sizes) if s == "1k")
    assert sizes.index("20k") > max(i for i, s in enumerate(sizes) if s in ("5k", "10k"))
    configs = {m: c for m, c in suite.configs.items()}
    assert configs["laplace_ntk"] == method_configs(Protocol.AUTHORS)["laplace_ntk"]


def test_laplace_ntk_epoch_cadence_takes_its_hypersteps_after_burn_in() -> None:
    task = dataclasses.replace(TASKS["digits_mlp"], hidden=(8,), n_train=40, n_val=10)
    problem = task.build(0, "cpu", torch.float64)
    method = METHODS["laplace_ntk"](block_size=16, burnin=2, frequency=2, hypersteps=3)
    ckpts = list(method.run(problem, Budget(epochs=6, seconds=None)))
    counts = {round(c.epoch): c.extra.get("hypersteps") for c in ckpts if c.extra}
    # phases after epochs 2, 4 and 6 (e % 2 == 0 and e >= 2, as ntk-marglik counts): 3 each
    assert counts == {1: 0, 2: 3, 3: 3, 4: 6, 5: 6, 6: 9}
    moved = [c.hparams for c in ckpts]
    assert not torch.equal(next(iter(moved[-1].values())), torch.tensor(task.log_wd_init))
    with pytest.raises(ValueError, match="hypersteps"):
        METHODS["laplace_ntk"](hypersteps=0)


def test_laplace_ntk_returns_the_last_state_as_ntk_marglik_does() -> None:
    """ntk-marglik's `marglik_optimization` keeps no best-marglik checkpoint (it returns the
    model and prior of its last epoch), unlike laplace-torch's `marglik_training`, whose
    checkpoint `laplace_full` keeps: `laplace_ntk` reports the last state, on a run whose best
    −log q / N is not its last, and has no setting that would turn a checkpoint on."""
    task = dataclasses.replace(TASKS["digits_mlp"], hidden=(8,), n_train=40, n_val=10)
    problem = task.build(0, "cpu", torch.float64)
    method = METHODS["laplace_ntk"](
        block_size=16, burnin=2, frequency=2, hypersteps=3, hyper_lr=1.0
    )
    assert "best_checkpoint" not in {f.name for f in dataclasses.fields(method)}
    rows = []  # the run trains its tensors in place: each checkpoint is copied as it comes
    copy = lambda d: {k: v.detach().clone() for k, v in d.items()}  # noqa: E731
    for last in method.run(problem, Budget(epochs=8, seconds=None)):
        rows.append(
            (round(last.epoch), last.objective, last.kind, *map(copy, (last.params, last.hparams)))
        )
    objective = {e: o for e, o, *_ in rows if o is not None}
    assert sorted(objective) == [2, 4, 6, 8]  # phases after epochs 2, 4, 6 and 8
    best = min(objective, key=objective.__getitem__)
    assert best != 8, "the run must have its best −log q before its last phase"
    assert all(kind == CheckpointKind.CURRENT for _, _, kind, _, _ in rows)
    epoch, _, _, params, hparams = rows[-1]
    assert epoch == 8  # the last row is the end of training, with the state after its last phase
    for k, v in hparams.items():  # the live tensors, after the run: nothing moved them since
        assert torch.equal(v, last.hparams[k].detach())
    at_best = next(r for r in rows if r[0] == best)
    assert any(not torch.equal(v, at_best[4][k]) for k, v in hparams.items())
    assert any(not torch.equal(v, at_best[3][k]) for k, v in params.items())


# --- the report's sanity bar and grid listing, on synthetic rows ------------------------------


def _cell(task: str, method: str, seed: int, accs: list[float], epochs: int, test_n=10000):
    """Rows of one run cell: evaluations every tenth of `epochs`, the last one final."""
    key = f"run/{task}/{method}/x/{seed}"
    n = len(accs)
    rows = []
    for k, acc in enumerate(accs):
        epoch = epochs * (k + 1 + 10 - n) / 10
        rows.append(
            {
                "mode": "run",
                "suite": GRID_SUITE,
                "task": task,
                "method": method,
                "method_params": {},
                "seed": seed,
                "cell": key,
                "attempt": "a",
                "device": "cuda",
                "dtype": "float32",
                "env": {"device_name": "test GPU"},
                "step": int(epoch * 8),
                "epoch": epoch,
                "test_acc": acc,
                "test_nll": 2.0 - acc,
                "test_n": test_n,
                "val_loss": 2.0 - acc,
                "objective": None,
                "hparams": {},
                "extra": {},
                "status": "ok",
                "error": None,
                "time_s": epoch,
                "tse": epoch * 8,
                "step_time_s": 0.01,
                "peak_mem_mb": 1.0,
                "final": k == n - 1,
            }
        )
    return rows


def test_convergence_is_the_last_tenths_change_on_the_same_test_images() -> None:
    rows = pd.DataFrame(
        _cell("cifar10_1k_none", "fixed", 0, [0.40, 0.43, 0.435], 600)
        + _cell("cifar10_1k_none", "fixed", 1, [0.30, 0.38, 0.41], 600)
    )
    conv = convergence(rows).set_index("seed")
    assert conv.loc[0, "change"] == pytest.approx(0.5)
    assert bool(conv.loc[0, "converged"])
    assert conv.loc[1, "change"] == pytest.approx(3.0) and not bool(conv.loc[1, "converged"])
    # a final evaluation on other test images than the one before it cannot be compared
    mixed = pd.DataFrame(_cell("cifar10_1k_none", "fixed", 0, [0.40, 0.43], 600, test_n=1000))
    mixed.loc[mixed.index[-1], "test_n"] = 10000
    assert cell_change(mixed) is None
    assert protocol_of("cifar10_1k_none", 600.0) == Protocol.AUTHORS
    assert protocol_of("lila_cifar10_rot90_10k_none", 15.0) == Protocol.SHORT
    assert protocol_of("cifar10_1k_none", 20.0) is None


def test_grid_report_withholds_unconverged_tasks_and_lists_cells_not_run(tmp_path: Path) -> None:
    rows = (
        _cell("cifar10_1k_none", "fixed", 0, [0.40, 0.43, 0.435], 600)
        + _cell("cifar10_1k_none", "laplace_ntk", 0, [0.40, 0.44, 0.445], 600)
        + _cell("cifar10_1k_flipcrop", "fixed", 0, [0.30, 0.40, 0.45], 600)  # still climbing
        + _cell("cifar10_10k_none", "fixed", 0, [0.30, 0.40], 5)  # an earlier 5-epoch slice
    )
    (tmp_path / RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    view = grid_view(pd.DataFrame(rows).assign(line=range(len(rows))))
    assert view is not None and view.unconverged_tasks == ["cifar10_1k_flipcrop"]
    assert set(view.earlier["task"]) == {"cifar10_10k_none"}
    assert set(view.result_rows()["task"]) == {"cifar10_1k_none"}
    text = write_report(tmp_path).read_text()
    assert "**The protocol did not converge** on `cifar10_1k_flipcrop`" in text
    assert "## Run: cifar10_1k_none" in text and "## Run: cifar10_1k_flipcrop" not in text
    assert "## Run: cifar10_10k_none" not in text  # the earlier slice is not a result
    assert "## Earlier slice (not the protocol: not results)" in text
    # 3 of 840 cells have protocol rows (the unconverged one ran: it is not "not run yet")
    assert "3 of 840 cells of suite `cifar10`" in text
    assert "- cifar10_1k_none, seed 0: not run yet (random_search, ift_neumann" in text
    assert "- cifar10_1k_none, seeds 1, 2: not run yet (every method)" in text
    assert "- cifar10_50k_none, seeds 0, 1, 2: not run yet (every method)" in text
    assert "laplace_ntk" in text and "| cifar10_1k_none | 35–45% | 43.5% (n=1) | 1/1" in text
    # the summary at the top says how much of the grid ran and what the other cells are
    assert (
        "**CIFAR-10 reference grid: 3 of 840 cells have run under the authors' protocol**" in text
    )
    assert "seeds 0 so far; 837 are not run yet" in text
    assert (
        "The 1 other cell here ran at other epoch counts (10k: 5), 1 seed (0), on test GPU" in text
    )
    assert text.index("CIFAR-10 reference grid:") < text.index("## Verdict")


def test_a_store_of_only_an_earlier_slice_says_it_has_no_results(tmp_path: Path) -> None:
    """As reports/cifar10_gpu/ before its first protocol run: one seed at 20 and 5 epochs."""
    rows = (
        _cell("cifar10_1k_none", "fixed", 0, [0.20, 0.24], 20)
        + _cell("cifar10_1k_none", "laplace_ntk", 0, [0.20, 0.27], 20)
        + _cell("cifar10_10k_none", "fixed", 0, [0.30, 0.40], 5)
    )
    for row in rows:
        row["noisy"] = row["task"] == "cifar10_10k_none" and row["final"]
    (tmp_path / RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = write_report(tmp_path).read_text()
    assert "0 of 840 cells have run under the authors' protocol** (epochs 1k 600" in text
    assert "none yet, so this report has no results" in text
    assert "The 3 cells here ran at other epoch counts (1k: 20, 10k: 5), 1 seed (0)" in text
    assert "## Status" not in text and "## Verdict" not in text and "## Run:" not in text
    assert "--rerun-noisy" not in text  # an earlier slice is not work to redo
    assert "- cifar10_1k_none, seeds 0, 1, 2: not run yet (every method)" in text
    # its own table: epochs, seeds, cost and the device's name; the noisy cell marked
    assert (
        "| cifar10_1k_none | laplace_ntk | 20 | 0 | 27.0% | 1.730 | 20.00 | 160 | test GPU |"
        in text
    )
    assert "| cifar10_10k_none | fixed | 5 | 0 | 40.0% | 1.600 | 5.00† | 40 | test GPU |" in text
