# my_task.py
"""A task on your own tensors and your own nn.Module, with an augmentation hparam.

Replace `my_tensors` with your data (any float inputs, integer class labels) and `MyNet` with
your model; the rest is what hgbench needs to benchmark every method on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hgbench import AUG_PREFIX, HParam, Splits, Task, register_task


def my_tensors() -> tuple[Tensor, Tensor]:
    """Your data: here 3 Gaussian blobs in 16 dimensions, 360 points (fixed, not per seed)."""
    g = torch.Generator().manual_seed(1234)
    centres = 2.0 * torch.randn(3, 16, generator=g)
    y = torch.arange(360) % 3
    x = centres[y] + torch.randn(360, 16, generator=g)
    return x, y


class MyNet(nn.Module):
    """Your model: any nn.Module whose forward maps a batch of inputs to class logits."""

    def __init__(self, d_in: int = 16, width: int = 32, n_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, n_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


@dataclass(frozen=True)
class MyTask(Task):
    """The task: its fields are its settings and default budget (override any with --set)."""

    noise_init: float = 0.1  # the augmentation's starting magnitude

    def load_data(self, seed: int) -> Splits:
        # The same split for the same seed, whichever method asks: 60% train, 20% val, 20% test.
        x, y = my_tensors()
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        a, b = int(0.6 * len(y)), int(0.8 * len(y))
        tr, va, te = order[:a], order[a:b], order[b:]
        return Splits(x[tr], y[tr], x[va], y[va], x[te], y[te])

    def make_model(self) -> nn.Module:
        return MyNet(n_classes=self.n_classes)

    def extra_hparams(self) -> list[HParam]:
        # The hparam space is one log weight decay per parameter tensor (the `weight_decay`
        # field) plus these: the standard deviation of Gaussian input noise, searched in [0, 1].
        return [HParam(AUG_PREFIX + "noise", (), self.noise_init, 0.0, 1.0)]

    def augment(self, x: Tensor, hparams: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        # Training batches only, on x's device, differentiable in the magnitude.
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + hparams[AUG_PREFIX + "noise"] * noise


register_task(
    MyTask(
        name="my_blobs",
        description="3 Gaussian blobs in 16-d (your tensors), a 16-32-3 tanh MLP (your module)",
        n_classes=3,
        epochs=20,
        batch_size=54,
        lr=0.1,
    )
)
