"""hgbench's implicit hypergradient against torchopt's implicit differentiation, side by side.

    pip install torchopt   # benchmark-only: not a dependency of hgbench
    python benchmarks/ift_vs_torchopt.py [--tasks digits_mlp,digits_cnn] [--iterations 20]

(`benchmarks/peers.py` runs the same comparison on its held-out models, in its ratio table.)

Both solve H v = ∂L_V/∂w by conjugate gradient with exactly `iterations` steps (no early stop) on
the same training and validation minibatch at the same state, then apply the mixed derivative.
Rounds alternate; the table gives median seconds per hypergradient (float32), their ratio
(hgbench / torchopt; below 1 is faster), and the cosine and relative error between the two results
computed in float64: a cross-check that both compute the same quantity.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from argparse import Namespace

import torch
from peers_common import (  # benchmarks/ is on sys.path
    Part,
    Row,
    batch_of,
    build,
    compare,
    digits,
    log_wd,
)

from hgbench.contracts.task import TASKS
from hgbench.engine.extras import exit_unless
from hgbench.engine.plugins import load_plugins
from hgbench.engine.timing import synchronize
from hgbench.numerics.functional import cosine_and_rel_err, flatten
from hgbench.numerics.implicit import implicit_hypergradient
from hgbench.numerics.linalg import cg


def setup(task_name: str, device: str, batch: int, dtype: torch.dtype = torch.float32):
    problem = TASKS[task_name].build(0, device, dtype)
    problem.warm_up()
    d = problem.data
    params, hparams = problem.init_params(), problem.init_hparams()
    x, y, xv, yv = d.x_train[:batch], d.y_train[:batch], d.x_val[:batch], d.y_val[:batch]

    def train_loss(w, h):
        return problem.train_loss(w, h, x, y)  # fixed augmentation noise: deterministic

    def val_loss(w, h):
        return problem.val_loss(w, xv, yv)

    return problem, params, hparams, train_loss, val_loss


def hgbench_hypergradient(params, hparams, train_loss, val_loss, iterations: int):
    solver = cg(iterations, tol=0.0, report_residual=False)
    return implicit_hypergradient(train_loss, val_loss, params, hparams, solver).hypergradient


def torchopt_hypergradient(params, hparams, train_loss, val_loss, iterations: int, wrap=None):
    """torchopt's custom_root with solve_cg; `wrap` (peers_counts.py) wraps its solver."""
    import torchopt

    names, hnames = list(params), list(hparams)

    def optimality(w, h):  # ∇_w L_T(w, λ) = 0 at the inner optimum
        hd = dict(zip(hnames, h, strict=True))
        # torchopt calls this inside functorch transforms: torch.func.grad, not autograd.grad
        return torch.func.grad(lambda ww: train_loss(dict(zip(names, ww, strict=True)), hd))(w)

    solve = torchopt.linear_solve.solve_cg(maxiter=iterations, rtol=0.0, atol=0.0)
    solve = wrap(solve) if wrap is not None else solve

    @torchopt.diff.implicit.custom_root(optimality, argnums=1, solve=solve)
    def inner(w, h):
        return w  # the state is taken as the inner solution, as for hgbench

    h = tuple(v.detach().requires_grad_(True) for v in hparams.values())
    w = tuple(v.detach().requires_grad_(True) for v in params.values())
    w_star = inner(w, h)
    loss = val_loss(dict(zip(names, w_star, strict=True)), None)
    grads = torch.autograd.grad(loss, h)
    return dict(zip(hnames, grads, strict=True))


def measure(task_name: str, device: str, iterations: int, repeats: int, batch: int) -> dict:
    problem, params, hparams, tl, vl = setup(task_name, device, batch)
    ours_fn = lambda: hgbench_hypergradient(params, hparams, tl, vl, iterations)  # noqa: E731
    theirs_fn = lambda: torchopt_hypergradient(params, hparams, tl, vl, iterations)  # noqa: E731
    ours_fn(), theirs_fn()  # warm-up
    # the cross-check in float64: at a state where H is indefinite, 20 float32 CG steps amplify
    # rounding differently in any two implementations; in float64 both give the same numbers
    _, p64, h64, tl64, vl64 = setup(task_name, device, batch, torch.float64)
    ours = hgbench_hypergradient(p64, h64, tl64, vl64, iterations)
    theirs = torchopt_hypergradient(p64, h64, tl64, vl64, iterations)
    cos, rel = cosine_and_rel_err(flatten(ours), flatten({k: theirs[k] for k in ours}))
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        for fn, acc in ((ours_fn, t_ours), (theirs_fn, t_theirs)):
            synchronize(problem.device)
            start = time.perf_counter()
            fn()
            synchronize(problem.device)
            acc.append(time.perf_counter() - start)
    a, b = statistics.median(t_ours), statistics.median(t_theirs)
    return {
        "task": task_name,
        "hgbench_s": a,
        "torchopt_s": b,
        "ratio": a / b,
        "cos": cos,
        "rel": rel,
    }


def peer_case(name: str, device: torch.device, dt: torch.dtype, calls=None):
    """One of peers.py's models at its initial params, a training and a validation batch of the
    model's batch size, its losses (hgbench's own penalty in the training loss, as its tasks'
    train_loss adds it); `calls` (a Counter) tallies the losses' calls."""
    import torch.nn.functional as F
    from torch.func import functional_call

    from hgbench.contracts.hparams import l2_penalty

    model = build(name, device, dt)
    x, y, xv, yv = digits(batch_of(name), batch_of(name), device, dt)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}

    def train_loss(w, h):
        if calls is not None:
            calls["training-loss graph"] += 1
        return F.cross_entropy(functional_call(model, w, (x,)), y) + l2_penalty(w, h)

    def val_loss(w, h):
        if calls is not None:
            calls["validation loss"] += 1
        return F.cross_entropy(functional_call(model, w, (xv,)), yv)

    return params, log_wd(model), train_loss, val_loss


def peer_rows(
    name: str, device: torch.device, dtype: torch.dtype, rounds: int, iterations: int = 20
):
    """peers.py's rows: CG-`iterations` on one of its models (`peer_case`)."""
    case = functools.partial(peer_case, name, device)
    p64, h64, tl64, vl64 = case(torch.float64)
    ours = hgbench_hypergradient(p64, h64, tl64, vl64, iterations)
    theirs = torchopt_hypergradient(p64, h64, tl64, vl64, iterations)
    _, rel = cosine_and_rel_err(flatten(ours), flatten({k: theirs[k] for k in ours}))
    agreement = {"torchopt.implicit": (f"hypergradient rel. err {rel:.1e}", rel < 1e-6)}
    params, hparams, tl, vl = case(dtype)
    return compare(
        "ift",
        f"{name} CG-{iterations}",
        lambda: hgbench_hypergradient(params, hparams, tl, vl, iterations),
        {"torchopt.implicit": lambda: torchopt_hypergradient(params, hparams, tl, vl, iterations)},
        agreement,
        rounds,
        device,
    )


def _rows(name: str, device: torch.device, dtype: torch.dtype, args: Namespace) -> list[Row]:
    return peer_rows(name, device, dtype, args.rounds)


PART = Part(needs=("torchopt",), rows=_rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="digits_mlp,digits_cnn")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batch", type=int, default=100)
    args = p.parse_args()
    exit_unless("peers", "benchmarks/ift_vs_torchopt.py", ("torchopt",))
    load_plugins()
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device: {name}; CG {args.iterations} iterations; batch {args.batch}")
    print(
        f"{'task':24s} {'hgbench s':>10s} {'torchopt s':>11s} {'ratio':>6s} {'cos':>9s} {'rel':>8s}"
    )
    for task in args.tasks.split(","):
        m = measure(task, args.device, args.iterations, args.repeats, args.batch)
        print(
            f"{task:24s} {m['hgbench_s']:10.4f} {m['torchopt_s']:11.4f} {m['ratio']:6.2f} "
            f"{m['cos']:9.6f} {m['rel']:8.1e}"
        )


if __name__ == "__main__":
    main()
