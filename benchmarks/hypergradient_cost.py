"""One hypergradient in training-step equivalents (TSE), beside its operation count.

    python benchmarks/hypergradient_cost.py [--models mlp,cnn] [--rounds 5] [--device cpu]

is `python benchmarks/peers.py --parts tse` (the same options).

One training step (1 TSE) is what every method pays per inner step, written as a user would:
an nn.Module forward and backward on a batch of 100 and a `torch.optim.SGD` step (momentum 0.9,
the weight decays as per-tensor param groups). On the same models as benchmarks/peers.py, rounds
alternate, and the median of every operation is divided by the step's.

Operation counts, from the measured cost of the pieces a hypergradient is made of (in TSE):
g = a validation gradient (forward + backward), b = building the training gradient's graph
(`LinearizedGradient`: forward + backward with create_graph), h = one product through that graph
(a linearised Hessian-vector product, or the mixed derivative):

    IFT, K solver products     g + b + (K + 1) h
    unroll, K steps            K (b + h) + g     (each step builds a gradient graph; the reverse
                                                  pass goes through each once)

A measured/count ratio near 1 says the hypergradient costs what its operations cost, with no
overhead of hgbench's own on top.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
import torch.nn.functional as F
from peers_cli import run  # benchmarks/ is on sys.path
from peers_common import Part, build, digits, log_wd, side_by_side
from torch.func import functional_call

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.numerics.functional import LinearizedGradient, hvp
from hgbench.numerics.implicit import implicit_hypergradient
from hgbench.numerics.linalg import cg, neumann

K_NEUMANN, K_CG, K_UNROLL = 5, 20, 20


def tse_table(name: str, device: torch.device, dtype: torch.dtype, rounds: int) -> dict:
    """Median seconds of every operation and hypergradient on model `name`, and the step's."""
    from unroll_vs_higher import UnrollCase, hgbench_unroll

    model = build(name, device, dtype)
    x, y, xv, yv = digits(100, 100, device, dtype)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    hparams = log_wd(model)
    lr = 0.05

    def train_loss(w, h):
        penalty = sum(0.5 * (h[WD_PREFIX + k].exp() * w[k].square()).sum() for k in w)
        return F.cross_entropy(functional_call(model, w, (x,)), y) + penalty

    def val_loss(w, h):
        return F.cross_entropy(functional_call(model, w, (xv,)), yv)

    # the training step as a user writes it
    net = build(name, device, dtype)
    for p in net.parameters():
        p.requires_grad_(True)
    groups = [
        {"params": [p], "weight_decay": float(hparams[WD_PREFIX + k].exp())}
        for k, p in net.named_parameters()
    ]
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    def val_grad():
        w = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        torch.autograd.grad(val_loss(w, hparams), list(w.values()))

    lin = LinearizedGradient(train_loss, params, hparams)
    v = {k: torch.randn_like(t) for k, t in params.items()}
    case = UnrollCase.make(name, device, dtype, k=K_UNROLL, batch=100, n_val=100)
    jobs = {
        "step": step,
        "g: validation gradient": val_grad,
        "b: gradient graph": lambda: LinearizedGradient(train_loss, params, hparams),
        "h: linearised HVP": lambda: lin.hvp(v),
        "fresh HVP (torch.func)": lambda: hvp(lambda w: train_loss(w, hparams), params, v),
        f"IFT Neumann-{K_NEUMANN}": lambda: implicit_hypergradient(
            train_loss, val_loss, params, hparams, neumann(K_NEUMANN, lr, report_residual=False)
        ),
        f"IFT CG-{K_CG}": lambda: implicit_hypergradient(
            train_loss, val_loss, params, hparams, cg(K_CG, 0.0, report_residual=False)
        ),
        f"unroll K={K_UNROLL}": lambda: hgbench_unroll(case),
    }
    times = side_by_side(jobs, rounds, device)
    return {job: statistics.median(t) for job, t in times.items()}


def counts(tse: dict[str, float]) -> dict[str, float]:
    g, b, h = tse["g: validation gradient"], tse["b: gradient graph"], tse["h: linearised HVP"]
    return {
        f"IFT Neumann-{K_NEUMANN}": g + b + (K_NEUMANN + 1) * h,
        f"IFT CG-{K_CG}": g + b + (K_CG + 1) * h,
        f"unroll K={K_UNROLL}": K_UNROLL * (b + h) + g,
    }


def print_tse(tables: dict[str, dict]) -> None:
    print(f"\n{'model':6} {'operation':26} {'ms':>9} {'TSE':>7} {'count':>7} {'TSE/count':>10}")
    for model, seconds in tables.items():
        tse = {job: s / seconds["step"] for job, s in seconds.items()}
        expected = counts(tse)
        for job, s in seconds.items():
            c = expected.get(job)
            tail = f"{c:7.1f} {tse[job] / c:10.2f}" if c is not None else ""
            print(f"{model:6} {job:26} {s * 1e3:9.2f} {tse[job]:7.1f} {tail}", flush=True)


def _report(
    models: list[str], device: torch.device, dtype: torch.dtype, args: argparse.Namespace
) -> None:
    print_tse({name: tse_table(name, device, dtype, args.rounds) for name in models})


PART = Part(report=_report)


def main(argv: list[str] | None = None) -> None:
    """peers.py's tse part alone (same options: --models, --rounds, --device, --threads)."""
    argv = sys.argv[1:] if argv is None else argv
    run(["--parts", "tse", *argv], {"tse": PART}, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    main()
