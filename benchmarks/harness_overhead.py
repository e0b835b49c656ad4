"""Harness overhead: the `fixed` method's training throughput through the runner against a bare
PyTorch loop on the same model, init, data, batch order and batch size, measured side by side.

    python benchmarks/harness_overhead.py [--tasks digits_mlp,digits_cnn] [--epochs 20]

The harness figure is images per timed second as the runner records it (`time_s` of the final row:
evaluation and set-up excluded, as for every method); the bare loop is timed around its epochs.
Like the runner (and like any textbook loop that reports test accuracy per epoch), the bare loop
evaluates on the test and validation sets after every epoch with its timer stopped: on these
tiny models an epoch lasts milliseconds and the first steps after an evaluation run on cold
caches, which costs several percent of timed throughput whoever runs the loop. The ratio against
a bare loop that never evaluates is printed beside it, so that cost is visible too.
Rounds alternate between the loops so drifts in machine load hit all alike.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.task import TASKS, Problem
from hgbench.engine.plugins import load_plugins
from hgbench.engine.runner import Cell, Runner, RunOptions
from hgbench.engine.store import ResultStore, read_rows


def bare_loop(problem: Problem, epochs: int, evaluate: bool = True) -> float:
    """Images per second of the textbook loop: nn.Module, torch.optim.SGD(weight_decay), CE;
    with `evaluate`, test and validation metrics after every epoch, outside the timer."""
    task = problem.task
    model = copy.deepcopy(problem.model)
    init = problem.init_params()
    hparams = problem.init_hparams()
    for name, p in model.named_parameters():
        with torch.no_grad():
            p.copy_(init[name])
        p.requires_grad_(True)
    # `fixed` trains at the task's default hparams, one weight decay for every tensor: the
    # textbook loop passes it as the optimizer's weight_decay (same gradient as ½ wd ‖θ‖²)
    decays = {float(v.exp()) for k, v in hparams.items() if k.startswith(WD_PREFIX)}
    assert len(decays) == 1, "the bare loop assumes one shared weight decay"
    opt = torch.optim.SGD(
        model.parameters(), lr=problem.lr, momentum=task.momentum, weight_decay=decays.pop()
    )
    batch_gen, aug_gen = problem.generator("batches"), problem.generator("augment")
    x_all, y_all = problem.data.x_train, problem.data.y_train
    timed = 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        for idx in torch.randperm(len(y_all), generator=batch_gen).split(task.batch_size):
            x = task.augment(x_all[idx], hparams, aug_gen)
            loss = F.cross_entropy(model(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        timed += time.perf_counter() - start
        if evaluate:  # the same evaluation the runner does at each checkpoint
            params = dict(model.named_parameters())
            problem.evaluate(params, hparams, "test")
            with torch.no_grad():
                problem.val_loss(params)
    return epochs * len(y_all) / timed


def harness_fixed(runner: Runner, cell: Cell, store: ResultStore) -> float:
    """Images per timed second of one `fixed` cell executed by the runner."""
    runner.execute(cell)
    final = [r for r in read_rows(store.path) if r["cell"] == cell.key and r["final"]][-1]
    assert final["status"] == "ok", final["error"]
    n_train = runner.problem(cell.task, cell.seed).n_train
    return final["epoch"] * n_train / final["time_s"]


def measure(task_name: str, epochs: int, repeats: int) -> dict[str, float]:
    load_plugins()
    task = dataclasses.replace(TASKS[task_name], epochs=epochs)
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp))
        runner = Runner(store, RunOptions(torch.device("cpu"), torch.float32), log=io.StringIO())
        problem = runner.problem(task, 0)
        cell = Cell("run", "bench", task, "fixed", {}, seed=0)
        bare, bare_no_eval, harness = [], [], []
        for _ in range(repeats):
            bare.append(bare_loop(problem, epochs))
            harness.append(harness_fixed(runner, cell, store))
            bare_no_eval.append(bare_loop(problem, epochs, evaluate=False))
    b, h = statistics.median(bare), statistics.median(harness)
    b0 = statistics.median(bare_no_eval)
    return {
        "task": task_name,
        "bare_img_s": b,
        "harness_img_s": h,
        "ratio": h / b,
        "bare_no_eval_img_s": b0,
        "ratio_no_eval": h / b0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="digits_mlp,digits_cnn")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(
        f"{'task':12s} {'bare img/s':>12s} {'harness img/s':>14s} {'ratio':>7s}"
        f" {'bare, no eval':>14s} {'ratio':>7s}"
    )
    for name in args.tasks.split(","):
        m = measure(name, args.epochs, args.repeats)
        print(
            f"{name:12s} {m['bare_img_s']:12.0f} {m['harness_img_s']:14.0f} {m['ratio']:7.3f}"
            f" {m['bare_no_eval_img_s']:14.0f} {m['ratio_no_eval']:7.3f}"
        )


if __name__ == "__main__":
    main()
