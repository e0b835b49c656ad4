"""peers.py's models: a family of generated architectures, and the family's summary table.

A contest won on the two models a benchmark was tuned on says little; over a family that varies
every axis a user varies (kind, width, depth, activation, bias, batch size) its worst case is the
figure to quote. `FAMILY` holds ten plain `nn.Sequential` models on the 8×8 digits (so every
laplace-torch backend can hook every layer), the first two the benchmark's original MLP
64-128-128-10 (tanh) and CNN (two 3×3 convolutions of width 16, ReLU, 2×2 max-pools); each member
runs every contest with its own batch size (unrolled steps, the IFT batch, the Laplace fit's
chunks). `summarize` reduces peers.py's rows to one line per contest: the median and the worst
ratio hgbench / peer over the family, the worst one's range over rounds, and the same for memory.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from hgbench.contracts.schema import StrEnum

if TYPE_CHECKING:
    from peers import Row


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


# --- the family's summary ---------------------------------------------------------------------
@dataclass
class Contest:
    """The ratio hgbench / peer of one contest on one model, with its range over rounds."""

    model: str
    peer: str
    ratio: float
    lo: float
    hi: float
    mem: float  # the contest's memory ratio (see MEMORY)


# which memory figure each part's summary uses: saved tensors where both sides keep an autograd
# graph (deterministic); the profiler's tensor peak for Laplace, whose peers keep their curvature
# in BackPACK's or Curvlinops' own buffers, which no saved-tensor hook sees
MEMORY = {"unroll": "saved", "ift": "saved", "laplace": "tensor"}


def _contests(rows: Sequence[Row]) -> dict[str, list[Contest]]:
    """Per contest, one entry per model: against `higher` and MetaSGD as they are, against the
    fastest laplace-torch backend that agrees for each structure."""
    out: dict[str, list[Contest]] = {}
    for r in rows:
        if not r.agrees or math.isnan(statistics.median(r.peer_s)):
            continue  # a peer that disagrees, or could not run, is no baseline
        model, _, rest = r.case.partition(" ")
        what = rest.split(" ")[0]  # K=20, CG-20, diag, kron, full
        peer = "fastest backend" if r.part == "laplace" else r.peer
        key = f"{r.part} {what} vs {peer}"
        mem = r.memory_ratio(MEMORY.get(r.part, "tensor"))
        entry = Contest(model, r.peer, *r.ratio(), mem)
        entries = out.setdefault(key, [])
        same = [e for e in entries if e.model == model]
        if not same:
            entries.append(entry)
        elif entry.ratio > same[0].ratio:  # a faster backend: a larger ratio hgbench / peer
            entries[entries.index(same[0])] = entry
    return out


def summarize(rows: Sequence[Row]) -> str:
    """The family table (Markdown): per contest the median and worst time ratio over the
    models, the worst one's range over rounds and its model, and the memory ratio's median and
    worst."""
    lines = [
        "| contest | models | median | worst [rounds] | worst model (peer) | mem median "
        "| mem worst |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, entries in _contests(rows).items():
        worst = max(entries, key=lambda e: e.ratio)
        mems = [e.mem for e in entries if e.mem == e.mem]
        mem_med = f"{statistics.median(mems):.2f}" if mems else "n/a"
        mem_worst = f"{max(mems):.2f}" if mems else "n/a"
        part = key.split(" ")[0]
        lines.append(
            f"| {key} | {len(entries)} | {statistics.median(e.ratio for e in entries):.2f} | "
            f"{worst.ratio:.2f} [{worst.lo:.2f}-{worst.hi:.2f}] | {worst.model} ({worst.peer}) | "
            f"{mem_med} | {mem_worst} ({MEMORY.get(part, 'tensor')}) |"
        )
    return "\n".join(lines)
