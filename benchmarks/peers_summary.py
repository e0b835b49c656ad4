"""The family's summary table: peers.py's rows reduced to one line per contest.

Per contest, the median and the worst ratio hgbench / peer over the family's models
(peers_family.py), the worst one's range over rounds, and the same for memory.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from peers_common import Row  # benchmarks/ is on sys.path


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
