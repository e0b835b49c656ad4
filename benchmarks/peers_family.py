"""peers.py's models: a family of generated architectures.

A contest won on the two models a benchmark was tuned on says little; over a family that varies
every axis a user varies (kind, width, depth, activation, bias, batch size) its worst case is the
figure to quote. `FAMILY` holds ten plain `nn.Sequential` models on the 8×8 digits (so every
laplace-torch backend can hook every layer), the first two the benchmark's original MLP
64-128-128-10 (tanh) and CNN (two 3×3 convolutions of width 16, ReLU, 2×2 max-pools); each member
runs every contest with its own batch size (unrolled steps, the IFT batch, the Laplace fit's
chunks). peers_summary.py reduces peers.py's rows over the family.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hgbench.contracts.schema import StrEnum


class Kind(StrEnum):
    MLP = "mlp"
    CNN = "cnn"


class Act(StrEnum):
    TANH = "tanh"
    RELU = "relu"
    GELU = "gelu"


ACTIVATIONS = {Act.TANH: nn.Tanh, Act.RELU: nn.ReLU, Act.GELU: nn.GELU}
SIDE = 8  # the digits are 1 × 8 × 8


@dataclass(frozen=True)
class Arch:
    """One member: hidden widths (an MLP's layers, a CNN's 3×3 convolutions, the first two
    followed by 2×2 max-pools), activation, bias or none, and the batch its contests use."""

    kind: Kind
    widths: tuple[int, ...]
    act: Act
    bias: bool = True
    batch: int = 100

    @property
    def name(self) -> str:
        bias = "" if self.bias else "-nobias"
        return f"{self.kind}-{'x'.join(map(str, self.widths))}-{self.act}{bias}-b{self.batch}"

    def module(self) -> nn.Sequential:
        act, bias = ACTIVATIONS[self.act], self.bias
        layers: list[nn.Module] = []
        if self.kind == Kind.MLP:
            layers.append(nn.Flatten())
            for fan_in, fan_out in zip((SIDE * SIDE, *self.widths[:-1]), self.widths, strict=True):
                layers += [nn.Linear(fan_in, fan_out, bias=bias), act()]
            return nn.Sequential(*layers, nn.Linear(self.widths[-1], 10, bias=bias))
        side = SIDE
        for i, (c_in, c_out) in enumerate(zip((1, *self.widths[:-1]), self.widths, strict=True)):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias), act()]
            if i < 2:
                layers.append(nn.MaxPool2d(2))
                side //= 2
        features = self.widths[-1] * side * side
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(features, 10, bias=bias))


def generate() -> list[Arch]:
    """The family: the benchmark's two models, then eight that vary one or more axes each,
    chosen so that every activation, both biases, both kinds, depths 1 to 3 and batches of 50
    to 500 occur (of similar size: 1k-34k params, so each contest runs in seconds on a CPU)."""
    mlp, cnn = Kind.MLP, Kind.CNN
    return [
        Arch(mlp, (128, 128), Act.TANH),  # peers.py's original MLP
        Arch(cnn, (16, 16), Act.RELU),  # and CNN
        Arch(mlp, (256,), Act.RELU, batch=50),
        Arch(mlp, (64, 64, 64), Act.GELU, bias=False),
        Arch(mlp, (32,), Act.TANH, batch=500),
        Arch(mlp, (96, 96), Act.RELU, bias=False, batch=200),
        Arch(mlp, (200, 100), Act.GELU, batch=100),
        Arch(cnn, (8, 8), Act.TANH, bias=False),
        Arch(cnn, (32, 32), Act.GELU, batch=50),
        Arch(cnn, (8, 16, 16), Act.RELU, bias=False, batch=200),
    ]


FAMILY = generate()
# --models takes member names, `mlp` and `cnn` (the originals) and `family` (every member)
MODELS: dict[str, Arch] = {"mlp": FAMILY[0], "cnn": FAMILY[1]} | {a.name: a for a in FAMILY}


def expand(models: str) -> list[str]:
    names = [a.name for a in FAMILY] if models == "family" else models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"unknown models {unknown}; known: family, {', '.join(MODELS)}")
    return names
