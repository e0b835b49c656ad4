"""The cost of one implicit hypergradient as a multiple of one training step, same batch size.

    python benchmarks/hypergradient_cost.py [--tasks digits_cnn] [--batch 100] [--device cuda]

A training step is what every method pays per inner step (forward, backward, SGD update); a
hypergradient is what `ift_*` pays per hyper-step (one training and one validation minibatch, the
linear solve, the mixed derivative). Rounds alternate; medians. Lorraine et al. report "a few
times the cost of training" for their hyper-steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hgbench.functional import detach
from hgbench.implicit import implicit_hypergradient
from hgbench.linalg import cg, neumann
from hgbench.plugins import load_plugins
from hgbench.task import TASKS
from hgbench.timing import synchronize
from hgbench.training import SGDTrainer

SOLVERS = {
    "neumann_5": lambda lr: neumann(5, lr, report_residual=False),
    "neumann_20": lambda lr: neumann(20, lr, report_residual=False),
    "cg_20": lambda lr: cg(20, 0.0, report_residual=False),
}


def measure(task_name: str, device: str, batch: int, repeats: int) -> dict[str, float]:
    problem = TASKS[task_name].build(0, device)
    problem.warm_up()
    trainer = SGDTrainer(problem, problem.init_params(), problem.lr, problem.task.momentum, batch)
    hparams = problem.init_hparams()
    d = problem.data
    x, y, xv, yv = d.x_train[:batch], d.y_train[:batch], d.x_val[:batch], d.y_val[:batch]

    def train_step():
        trainer.steps(hparams, 1)

    def hypergradient(solver):
        implicit_hypergradient(
            lambda w, h: problem.train_loss(w, h, x, y),
            lambda w, h: problem.val_loss(w, xv, yv),
            detach(trainer.params),
            hparams,
            solver,
        )

    jobs = {"train_step": train_step}
    for name, make in SOLVERS.items():
        solver = make(problem.lr)
        jobs[name] = lambda solver=solver: hypergradient(solver)
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for job in jobs.values():
        job()  # warm-up
    for _ in range(repeats):
        for name, job in jobs.items():
            synchronize(problem.device)
            start = time.perf_counter()
            job()
            synchronize(problem.device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="digits_cnn")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args()
    load_plugins()
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device: {name}; batch {args.batch}; medians of {args.repeats} alternating rounds")
    print(f"{'task':24s} {'train step ms':>14s}" + "".join(f" {s + ' (x)':>16s}" for s in SOLVERS))
    for task in args.tasks.split(","):
        m = measure(task, args.device, args.batch, args.repeats)
        step = m["train_step"]
        print(f"{task:24s} {step * 1e3:14.2f}" + "".join(f" {m[s] / step:16.1f}" for s in SOLVERS))


if __name__ == "__main__":
    main()
