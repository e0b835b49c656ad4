"""peers.py's unroll part: `hgbench.numerics.unroll` against `higher` and torchopt's MetaSGD.

K = 20 steps of SGD with momentum on batches of the model's size (peers_family.Arch.batch) and
the validation loss on 400 points, one weight-decay hparam per tensor, on peers.py's held-out
models. `higher` gets one param group per tensor with its weight decay overridden by the
differentiable exp(log_wd) (the decay applied in the step, as torch.optim.SGD does: its fastest
exact use); MetaSGD takes the penalty in the loss, and so does hgbench's second contest.
`python benchmarks/peers.py --parts unroll` prints the rows; `hypergradient_cost.py` uses
`UnrollCase` and `hgbench_unroll` for its TSE figures.
"""

from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from peers_common import (
    Part,
    Row,
    batch_of,
    build,
    compare,
    digits,
    log_wd,
    trainable,
)  # benchmarks/ is on sys.path
from torch import Tensor, nn
from torch.func import functional_call

from hgbench.contracts.hparams import WD_PREFIX, l2_penalty
from hgbench.numerics.functional import cosine_and_rel_err, flatten
from hgbench.numerics.unroll import l2_decay, unrolled_hypergradient


@dataclass
class UnrollCase:
    model: nn.Module
    hparams: dict[str, Tensor]
    batches: list[tuple[Tensor, Tensor]]
    val: tuple[Tensor, Tensor]
    lr: float = 0.05
    momentum: float = 0.9

    @classmethod
    def make(
        cls,
        name: str,
        device: torch.device,
        dtype: torch.dtype,
        k: int = 20,
        batch: int = 100,
        n_val: int = 400,
    ) -> UnrollCase:
        model = build(name, device, dtype)
        x, y, xv, yv = digits(1000, n_val, device, dtype)
        batches = [(x[i * batch % 1000 :][:batch], y[i * batch % 1000 :][:batch]) for i in range(k)]
        return cls(model, log_wd(model), batches, (xv, yv))

    def params(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.model.named_parameters()}


def hgbench_unroll(case: UnrollCase, penalty_in_loss: bool = False) -> dict[str, Tensor]:
    """hgbench's unroll with the weight decay in the step (`l2_decay`, as its methods call it),
    or with hgbench's penalty in the training loss (`l2_penalty`, what a task's train_loss
    adds, as a user would write it)."""

    def data_loss(w, h, x, y):
        loss = F.cross_entropy(functional_call(case.model, w, (x,)), y)
        return loss + l2_penalty(w, h) if penalty_in_loss else loss

    def val_loss(w, h):
        return F.cross_entropy(functional_call(case.model, w, (case.val[0],)), case.val[1])

    params = case.params()
    velocity = {k: torch.zeros_like(v) for k, v in params.items()}
    hg, *_ = unrolled_hypergradient(
        data_loss,
        val_loss,
        params,
        velocity,
        case.hparams,
        case.batches,
        case.lr,
        case.momentum,
        decay=None if penalty_in_loss else l2_decay,
    )
    return hg


def higher_unroll(case: UnrollCase) -> dict[str, Tensor]:
    """higher with one param group per tensor and its weight decay overridden by the
    differentiable exp(log_wd): the decay applied in the step, as torch.optim.SGD does."""
    import higher

    model = trainable(case.model)
    names = [k for k, _ in model.named_parameters()]
    h = {k: v.detach().requires_grad_(True) for k, v in case.hparams.items()}
    opt = torch.optim.SGD(
        [{"params": [p]} for p in model.parameters()], lr=case.lr, momentum=case.momentum
    )
    override = {"weight_decay": [h[WD_PREFIX + k].exp() for k in names]}
    with higher.innerloop_ctx(model, opt, copy_initial_weights=True, override=override) as (
        fmodel,
        diffopt,
    ):
        for x, y in case.batches:
            diffopt.step(F.cross_entropy(fmodel(x), y))
        loss = F.cross_entropy(fmodel(case.val[0]), case.val[1])
        grads = torch.autograd.grad(loss, list(h.values()))
    return dict(zip(h, grads, strict=True))


def torchopt_unroll(case: UnrollCase) -> dict[str, Tensor]:
    """torchopt's MetaSGD (differentiable in-place SGD on the module), penalty in the loss."""
    import torchopt

    model = trainable(case.model)
    h = {k: v.detach().requires_grad_(True) for k, v in case.hparams.items()}
    opt = torchopt.MetaSGD(model, lr=case.lr, momentum=case.momentum)
    for x, y in case.batches:
        penalty = sum(
            0.5 * (h[WD_PREFIX + k].exp() * p.square()).sum() for k, p in model.named_parameters()
        )
        opt.step(F.cross_entropy(model(x), y) + penalty)
    loss = F.cross_entropy(model(case.val[0]), case.val[1])
    grads = torch.autograd.grad(loss, list(h.values()))
    return dict(zip(h, grads, strict=True))


def _rel(ours: dict[str, Tensor], theirs: dict[str, Tensor]) -> tuple[str, bool]:
    _, rel = cosine_and_rel_err(flatten(ours), flatten({k: theirs[k] for k in ours}))
    return f"hypergradient rel. err {rel:.1e}", rel < 1e-6


def unroll_rows(name: str, device: torch.device, dtype: torch.dtype, rounds: int) -> list[Row]:
    """Two contests: hgbench with the decay in the step against `higher` and MetaSGD, and with
    the penalty in the loss (`K=20-penalty`) against `higher`."""
    peers = {"higher": higher_unroll, "torchopt.MetaSGD": torchopt_unroll}
    batch = batch_of(name)
    exact = UnrollCase.make(name, device, torch.float64, batch=batch)
    case = UnrollCase.make(name, device, dtype, batch=batch)
    rows = []
    for penalty, what, contest in ((False, "K=20", peers), (True, "K=20-penalty", ["higher"])):
        ref = hgbench_unroll(exact, penalty)
        agreement = {p: _rel(ref, peers[p](exact)) for p in contest}
        rows += compare(
            "unroll",
            f"{name} {what}",
            lambda penalty=penalty: hgbench_unroll(case, penalty),
            {p: (lambda fn=peers[p]: fn(case)) for p in contest},
            agreement,
            rounds,
            device,
        )
    return rows


def _rows(name: str, device: torch.device, dtype: torch.dtype, args: Namespace) -> list[Row]:
    return unroll_rows(name, device, dtype, args.rounds)


PART = Part(needs=("higher", "torchopt"), rows=_rows)
