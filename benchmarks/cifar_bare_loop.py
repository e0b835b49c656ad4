"""The `fixed` method through the runner against an airbench-style bare loop, on a CIFAR task.

    python benchmarks/cifar_bare_loop.py [--task cifar10_1k_flipcrop] [--data-dir DIR]
        [--device cpu|cuda] [--epochs N] [--rounds R] [--compile] [--channels-last]

The bare loop is what a speed-minded user writes (airbench's shape): the whole data set on the
device once, batches by indexing a device-side permutation, flip-crop batched on the device, an
nn.Module with torch.optim.SGD (momentum, weight decay, the task's cosine lr set per step), timed
per epoch with the device synchronised and evaluation outside the timer. It trains the task's own
model from the same init on the same normalised data with the same augmentation function, so
the ratio isolates what the harness adds per step: its batch stream, its loss and weight-decay
plumbing, its budget checks. The harness figure is images per timed second as the runner records
it for a `fixed` cell. Rounds alternate so drifts in machine load hit both alike; the medians'
ratio (harness / bare, 1 = no overhead) is printed, and the median of the rounds' own ratios (each
taken back to back, so it is the steadier figure on a machine whose load drifts).

Without `--data-dir`, random images in CIFAR-10's own format are generated in a temporary folder
(speed does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from harness_overhead import harness_fixed  # noqa: I001 (benchmarks/ is on sys.path)

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.task import TASKS, Problem
from hgbench.engine.plugins import load_plugins
from hgbench.engine.runner import Cell, Runner, RunOptions
from hgbench.engine.store import ResultStore
from hgbench.engine.timing import synchronize


def write_random_cifar(root: Path, per_batch: int = 10000, n_test: int = 10000) -> Path:
    """Random uint8 images in CIFAR-10's python-pickle layout (any pickle protocol reads)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]
    for name, n in names:
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": [j % 10 for j in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    meta = {b"label_names": [f"class{c}".encode() for c in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))
    return root


def bare_loop(problem: Problem, epochs: int, compile_: bool, channels_last: bool) -> float:
    """Images per timed second of the bare loop (see the module docstring)."""
    task = problem.task
    model = copy.deepcopy(problem.model)
    init = problem.init_params()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(init[name])
            p.requires_grad_(True)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    hparams = problem.init_hparams()
    decays = {float(v.exp()) for k, v in hparams.items() if k.startswith(WD_PREFIX)}
    assert len(decays) == 1, "the bare loop assumes one shared weight decay"
    opt = torch.optim.SGD(
        model.parameters(), lr=problem.lr, momentum=task.momentum, weight_decay=decays.pop()
    )
    forward = torch.compile(model) if compile_ else model
    batch_gen, aug_gen = problem.generator("batches"), problem.generator("augment")
    x_all, y_all = problem.data.x_train, problem.data.y_train  # on the device, normalised
    n = len(y_all)
    step, timed = 0, 0.0
    for _ in range(epochs):
        synchronize(problem.device)
        start = time.perf_counter()
        perm = torch.randperm(n, device=problem.device, generator=batch_gen)
        for idx in perm.split(task.batch_size):
            opt.param_groups[0]["lr"] = problem.lr_at(step)
            x = task.augment(x_all[idx], hparams, aug_gen)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(forward(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        synchronize(problem.device)
        timed += time.perf_counter() - start
    # evaluated once at the end, as the runner evaluates a short run (outside both timers)
    problem.evaluate(dict(model.named_parameters()), hparams, "test", subset=True)
    return epochs * n / timed


def measure(args: argparse.Namespace) -> dict[str, float]:
    load_plugins()
    device = torch.device(args.device)
    task = dataclasses.replace(TASKS[args.task], epochs=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data_dir is None:
            os.environ["HGBENCH_DATA"] = str(write_random_cifar(Path(tmp) / "data"))
        else:
            os.environ["HGBENCH_DATA"] = str(args.data_dir)
        store = ResultStore(Path(tmp) / "out")
        options = RunOptions(
            device,
            torch.float32,
            compile=args.compile,
            channels_last=args.channels_last,
        )
        runner = Runner(store, options, log=io.StringIO())
        problem = runner.problem(task, 0)
        cell = Cell("run", "bench", task, "fixed", {}, seed=0)
        bare_loop(problem, 1, args.compile, args.channels_last)  # warm-up (compilation)
        harness_fixed(runner, cell, store)
        bare, harness = [], []
        for r in range(args.rounds):
            pair = [
                ("bare", lambda: bare_loop(problem, args.epochs, args.compile, args.channels_last)),
                ("harness", lambda: harness_fixed(runner, cell, store)),
            ]
            for name, fn in pair if r % 2 == 0 else pair[::-1]:
                (bare if name == "bare" else harness).append(fn())
    b, h = statistics.median(bare), statistics.median(harness)
    # each round's two figures were taken back to back: their ratio cancels slow load drifts
    paired = statistics.median(hr / br for hr, br in zip(harness, bare, strict=True))
    return {
        "bare_img_s": b,
        "harness_img_s": h,
        "ratio": h / b,
        "paired_ratio": paired,
        "bare": bare,
        "harness": harness,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cifar10_1k_flipcrop")
    p.add_argument("--data-dir", type=Path, help="CIFAR-10 (default: random images, generated)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--epochs", type=int, help="epochs per round [cpu: 2, cuda: 20]")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (as the CLI's default)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    args = p.parse_args()
    if args.epochs is None:
        args.epochs = 20 if args.device == "cuda" else 2
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    m = measure(args)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(
        f"{args.task} on {name} ({args.epochs} epochs x {args.rounds} rounds, "
        f"compile={args.compile}, channels_last={args.channels_last})"
    )
    print("  bare loop img/s:", " ".join(f"{v:.0f}" for v in m["bare"]))
    print("  harness   img/s:", " ".join(f"{v:.0f}" for v in m["harness"]))
    print(
        f"  median bare {m['bare_img_s']:.0f} img/s, harness {m['harness_img_s']:.0f} img/s, "
        f"ratio harness/bare {m['ratio']:.3f} (median of the rounds' ratios "
        f"{m['paired_ratio']:.3f})"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
