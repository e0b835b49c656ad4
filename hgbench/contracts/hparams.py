"""Hyperparameter spaces: named tensors a task offers for tuning, and what they mean.

Convention used by every task and method: the training objective is

    L_T(params, hparams) = mean_n NLL(y_n | f(x_n; params)) + ½ Σ_p exp(log_wd.p) ⊙ params[p]²

so `log_wd.<param name>` is a log weight-decay coefficient (scalar per tensor, or one value per
weight, or any shape that broadcasts against the parameter). In marginal-likelihood terms this is a
Gaussian prior with precision δ_p = N · exp(log_wd.p). `aug.<name>` hparams are augmentation
magnitudes that only enter the training loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor

Params = dict[str, Tensor]
HParams = dict[str, Tensor]

WD_PREFIX = "log_wd."
AUG_PREFIX = "aug."


class WeightDecay(str, Enum):
    """How finely weight decay is tuned: one value per parameter tensor, or per weight."""

    TENSOR = "tensor"
    PARAM = "param"


@dataclass(frozen=True)
class HParam:
    """One named hyperparameter tensor.

    `low`/`high` bound a uniform draw in this parameterisation, used by black-box tuners; a draw
    fills the whole tensor with one value (per-weight spaces are searched per tensor). Tensors
    that need a random start (network weights) give `init_fn(generator, shape)`; those with
    `searchable=False` keep their init under black-box search.
    """

    name: str
    shape: tuple[int, ...]
    init: float
    low: float
    high: float
    init_fn: Callable[[torch.Generator, tuple[int, ...]], Tensor] | None = None
    searchable: bool = True

    @property
    def size(self) -> int:
        return int(torch.Size(self.shape).numel())


class HParamSpace:
    """An ordered collection of HParams; builds, samples and summarises hparam dicts."""

    def __init__(self, hparams: list[HParam]) -> None:
        names = [h.name for h in hparams]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate hparam names in {names}")
        self.hparams = list(hparams)

    def __iter__(self):
        return iter(self.hparams)

    def __len__(self) -> int:
        return len(self.hparams)

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hparams]

    @property
    def numel(self) -> int:
        return sum(h.size for h in self.hparams)

    def init(self, device: torch.device | str, dtype: torch.dtype, seed: int = 0) -> HParams:
        """The initial hparams; random inits (`init_fn`) are drawn from `seed` (on the CPU)."""
        gen = torch.Generator().manual_seed(seed)
        out = {}
        for h in self:
            # a constant init in `dtype` itself: through float32 first, a float64 run would
            # start 1e-7 (relative) off its setting, e.g. log_wd = log(1/80)
            if h.init_fn:
                value = h.init_fn(gen, h.shape)
            else:
                value = torch.full(h.shape, h.init, dtype=dtype)
            out[h.name] = value.to(device=device, dtype=dtype)
        return out

    def sample(
        self, generator: torch.Generator, device, dtype: torch.dtype, seed: int = 0
    ) -> HParams:
        """A uniform draw within each searchable hparam's [low, high]; the rest at their init."""
        out = self.init(device, dtype, seed)
        for h in self:
            if h.searchable:
                u = torch.rand((), generator=generator, dtype=torch.float64).item()
                out[h.name] = torch.full(
                    h.shape, h.low + u * (h.high - h.low), device=device, dtype=dtype
                )
        return out

    @staticmethod
    def summary(hparams: HParams) -> dict[str, float]:
        """Scalars as they are; larger tensors by their mean (the row says which with '.mean')."""
        out: dict[str, float] = {}
        for name, value in hparams.items():
            v = value.detach()
            if v.numel() == 1:
                out[name] = float(v.reshape(()))
            else:
                out[name + ".mean"] = float(v.double().mean())
        return out


def weight_decay_space(
    params: Params, mode: WeightDecay, init: float, low: float = -12.0, high: float = -2.0
) -> list[HParam]:
    """`log_wd.<name>` for every parameter tensor: a scalar each, or one value per weight."""
    return [
        HParam(
            WD_PREFIX + name, () if mode == WeightDecay.TENSOR else tuple(p.shape), init, low, high
        )
        for name, p in params.items()
    ]


def decay_coefficients(params: Params, hparams: HParams) -> dict[str, Tensor]:
    """exp(log_wd.p) for the parameters that have one: ∂(½ c ⊙ p²)/∂p = c ⊙ p."""
    return {
        name: hparams[WD_PREFIX + name].detach().exp()
        for name in params
        if WD_PREFIX + name in hparams
    }


def l2_penalty(params: Params, hparams: HParams) -> Tensor:
    """½ Σ exp(log_wd.p) ⊙ p² over the parameters that have a weight-decay hparam.

    Written so that autograd saves no tensor of the parameters' size beyond p itself (which
    the model's own ops save anyway): p·p as a dot product, scaled by the scalar exp(log_wd)
    afterwards. `exp(log_wd) * p.square()` saved p² for the gradient in log_wd, and its double
    backward (an unrolled step, a Hessian-vector product) two more tensors of p's size: three
    per training step, half as much again as the whole model's graph of an unrolled MLP
    (benchmarks/peers.py, docs/peers.md)."""
    total = None
    for name, p in params.items():
        log_wd = hparams.get(WD_PREFIX + name)
        if log_wd is None:
            continue
        flat = p.reshape(-1)
        if log_wd.numel() == 1:  # one decay for the tensor
            term = 0.5 * log_wd.exp().reshape(()) * torch.dot(flat, flat)
        else:  # one per weight: c ⊙ p is the gradient, saved once
            term = 0.5 * torch.dot((log_wd.exp() * p).reshape(-1), flat)
        total = term if total is None else total + term
    if total is None:
        return next(iter(params.values())).new_zeros(())
    return total
