"""The family's summary table: peers.py's rows reduced to one line per contest.

Per contest, the median and the worst ratio hgbench / peer over the family's models
(peers_family.py), the worst one's range over rounds, and the same for memory. `summarize` takes
the rows of a run; `parse` reads them back from what peers.py printed (a committed log such as
reports/peers/family_after.txt), and `main` writes the README's speed table from such a log:

    python benchmarks/peers_summary.py reports/peers/family_after.txt \\
        --before reports/peers/family_before.txt \\
        --machine "a shared 2-core x86_64 VM (the log does not name its CPU)"

(the two committed logs predate peers.py's `machine:` line, hence --machine).
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

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


@dataclass(frozen=True)
class Line:
    """What the summary needs of one row: a Row of this run, or one line of a printed table."""

    part: str
    case: str
    peer: str
    ratio: tuple[float, float, float]  # median, and the range over rounds
    mem: dict[str, float]  # hgbench / peer by figure: saved, tensor, rss
    baseline: bool  # the peer agreed and ran

    @classmethod
    def of(cls, r: Row) -> Line:
        ran = not math.isnan(statistics.median(r.peer_s))
        mem = {f: r.memory_ratio(f) for f in ("saved", "tensor", "rss")}
        return cls(r.part, r.case, r.peer, r.ratio(), mem, r.agrees and ran)


def _contests(lines: Sequence[Line]) -> dict[str, list[Contest]]:
    """Per contest, one entry per model: against `higher` and MetaSGD as they are, against the
    fastest laplace-torch backend that agrees for each structure."""
    out: dict[str, list[Contest]] = {}
    for r in lines:
        if not r.baseline:
            continue  # a peer that disagrees, or could not run, is no baseline
        model, _, rest = r.case.partition(" ")
        what = rest.split(" ")[0]  # K=20, CG-20, diag, kron, full
        peer = "fastest backend" if r.part == "laplace" else r.peer
        key = f"{r.part} {what} vs {peer}"
        entry = Contest(model, r.peer, *r.ratio, r.mem[MEMORY.get(r.part, "tensor")])
        entries = out.setdefault(key, [])
        same = [e for e in entries if e.model == model]
        if not same:
            entries.append(entry)
        elif entry.ratio > same[0].ratio:  # a faster backend: a larger ratio hgbench / peer
            entries[entries.index(same[0])] = entry
    return out


def _lines(rows: Sequence[Row | Line]) -> list[Line]:
    return [r if isinstance(r, Line) else Line.of(r) for r in rows]


def summarize(rows: Sequence[Row | Line]) -> str:
    """The family table (Markdown): per contest the median and worst time ratio over the
    models, the worst one's range over rounds and its model, and the memory ratio's median and
    worst."""
    lines = [
        "| contest | models | median | worst [rounds] | worst model (peer) | mem median "
        "| mem worst |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, entries in _contests(_lines(rows)).items():
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


# --- reading a printed run back ----------------------------------------------------------------
_NUM = r"(nan|inf|-?[0-9.]+(?:e[+-]?[0-9]+)?)"
# one line of peers_common.print_table: part, case (model and contest), peer, the medians, the
# time ratio [range], then saved, tensor and RSS figures (hgbench, peer, ratio each), agreement
_ROW = re.compile(
    rf"^(\w+)\s+(\S+ \S+(?: N=\d+)?)\s+(\S+)\s+{_NUM}\s+{_NUM}\s+{_NUM} "
    rf"\[\s*{_NUM}-\s*{_NUM}\]" + rf"\s+{_NUM}" * 9 + r"\s+(.*)$"
)
_START = re.compile(
    r"^torch (\S+), (.+?), (\d+) threads, (\w+), (\d+) alternating rounds, (\S+) clock, "
    r"load average ([0-9.]+) at the start"
)
_END = re.compile(r"^The family: (\d+) models, load average ([0-9.]+) at the end")
_MACHINE = re.compile(r"^machine: (.+)$")  # peers_cli.py's header (later logs)
_DATE = re.compile(r"^\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \w+ \d{4}$")  # `date`'s output


@dataclass(frozen=True)
class Run:
    """A printed run: its rows and what its header and footer say of the machine."""

    lines: list[Line]
    torch: str
    device: str
    threads: int
    dtype: str
    rounds: int
    clock: str
    load_start: float
    load_end: float
    models: int  # the models with rows
    when: str  # the first and last `date` lines, where the log has them
    machine: str | None  # the CPU's name and cores, where the log has them


def parse(text: str) -> Run:
    """Rows and header of what peers.py printed (its progress lines, the table repeats them:
    each (part, case, peer) is kept once)."""
    seen: dict[tuple[str, str, str], Line] = {}
    start = end = machine = None
    dates = []
    for raw in text.splitlines():
        line = raw.strip()
        if m := _ROW.match(line):
            part, case, peer = m.group(1), m.group(2), m.group(3)
            f = [float(v) for v in m.groups()[3:17]]
            agreement = m.group(18)
            ran = not math.isnan(f[1])
            agrees = not agreement.startswith("failed") and "(differs" not in agreement
            mem = {"saved": f[7], "tensor": f[10], "rss": f[13]}
            seen.setdefault(
                (part, case, peer), Line(part, case, peer, (f[2], f[3], f[4]), mem, agrees and ran)
            )
        elif (m := _START.match(line)) and start is None:  # the first pass's header
            start = m
        elif m := _END.match(line):
            end = m
        elif m := _MACHINE.match(line):
            machine = m.group(1)
        elif _DATE.match(line):
            when = datetime.strptime(" ".join(line.split()), "%a %b %d %H:%M:%S %Z %Y")
            dates.append(when.strftime("%Y-%m-%d %H:%M") + " " + line.split()[-2])
    if start is None:
        raise ValueError("not a run of peers.py: no 'torch ...' header line")
    when = f"{dates[0]} – {dates[-1].split(' ')[1]}" if len(dates) >= 2 else "date not recorded"
    return Run(
        list(seen.values()),
        start.group(1),
        start.group(2),
        int(start.group(3)),
        start.group(4),
        int(start.group(5)),
        start.group(6),
        float(start.group(7)),
        float(end.group(2)) if end else float("nan"),  # nan: cut before its end
        len({line.case.split(" ")[0] for line in seen.values()}),
        when,
        machine,
    )


# --- the README's table ------------------------------------------------------------------------
# (label, contest key, figure, goal: the worst-case bound on hgbench / peer)
GOALS = [
    ("unroll K = 20 vs `higher`, time", "unroll K=20 vs higher", "time", 0.9),
    ("unroll K = 20 vs `higher`, saved tensors", "unroll K=20 vs higher", "mem", 1.0),
    (
        "diagonal Laplace vs fastest agreeing backend",
        "laplace diag vs fastest backend",
        "time",
        0.9,
    ),
    ("K-FAC Laplace vs fastest agreeing backend", "laplace kron vs fastest backend", "time", 0.9),
    ("IFT CG-20 vs torchopt", "ift CG-20 vs torchopt.implicit", "time", 0.9),
]
_HEAD = (
    "| contest | models | median | worst [rounds] | worst model (peer) | mem median | mem worst |"
)


def family_table(text: str) -> dict[str, list[str]]:
    """The family tables a run printed (summarize's, from the rows at full precision, where a
    printed row has its ratios to 2 decimals), per contest its cells; a log of several passes
    (benchmarks/gpu_peers.sh) has one table per pass, and a pass cut short none: its contests
    are summarized from its printed rows instead."""
    lines = text.splitlines()
    out = {}
    for line in summarize(parse(text).lines).splitlines()[2:]:  # the fallback, from the rows
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        out[cells[0]] = cells[1:]
    heads = [i for i, line in enumerate(lines) if line.strip() == _HEAD]
    for start in heads:
        for line in lines[start + 2 :]:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            out[cells[0]] = cells[1:]
    return out


def goals_table(table: dict[str, list[str]]) -> str:
    """One row per contest: goal, median and worst over the family, the worst model (for time),
    met or not (the worst case within the goal)."""
    out = [
        "| contest (hgbench / peer) | goal | median | worst [rounds] | worst model | met |",
        "|---|---|---|---|---|---|",
    ]
    for label, key, figure, goal in GOALS:
        if key not in table:  # a pass cut short before this contest ran
            out.append(f"| {label} | ≤ {goal:.1f} | not run | | | |")
            continue
        _, median, worst, model, mem_median, mem_worst = table[key]
        if figure == "time":
            model = "`" + model.split(" (")[0] + "`"
        else:  # the memory figure's worst model is not in the table
            median, worst, model = mem_median, mem_worst.split(" (")[0], "–"
        met = "yes" if float(worst.split(" ")[0]) <= goal else "no"
        out.append(f"| {label} | ≤ {goal:.1f} | {median} | {worst} | {model} | {met} |")
    return "\n".join(out)


def machine_line(run: Run, machine: str | None) -> str:
    """What ran the log: the machine (the log's own line, else `machine`), threads, load."""
    return (
        f"{run.machine or machine or 'machine not recorded'}; {run.device}, torch {run.torch}, "
        f"{run.threads} thread"
        f"{'s' if run.threads != 1 else ''}, {run.dtype}, {run.rounds} alternating rounds, "
        f"{run.clock} clock; {run.when}; load average {run.load_start:.2f} at the start, "
        f"{run.load_end:.2f} at the end; {run.models} models"
    )


def _markdown(table: dict[str, list[str]]) -> list[str]:
    return [
        _HEAD,
        "|---|---|---|---|---|---|---|",
        *(f"| {k} | {' | '.join(v)} |" for k, v in table.items()),
    ]


def write_summary(after: Path, before: Path | None, machine: str | None) -> str:
    """summary.md's text: the README's table and the full family tables, after (and before)."""
    text = after.read_text()
    run = parse(text)
    cmd = f"python benchmarks/peers_summary.py {after}" + (f" --before {before}" if before else "")
    cmd += f' --machine "{machine}"' if machine else ""
    parts = [
        "# peers.py over the family: the summary",
        "",
        f"Written by `{cmd}` from the raw log `{after}` (docs/peers.md); the README quotes the "
        "first table. Ratios hgbench / peer, below 1 hgbench is faster or smaller; the worst "
        "model's range over rounds in brackets.",
        "",
        "<!-- readme-table -->",
        f"Machine: {machine_line(run, machine)}.",
        "",
        goals_table(family_table(text)),
        "<!-- /readme-table -->",
        "",
        "Every contest (memory: saved tensors for unroll and IFT, torchopt's inside torch.func "
        "unmeasurable; the profiler's tensor peak for Laplace):",
        "",
        *_markdown(family_table(text)),
    ]
    if before is not None:
        old_text = before.read_text()
        line = machine_line(parse(old_text), machine)
        parts += ["", f"Before (`{before}`; {line}):", "", *_markdown(family_table(old_text))]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="The README's speed table from a peers.py log.")
    p.add_argument("after", type=Path, help="peers.py's printed output (a family run)")
    p.add_argument("--before", type=Path, default=None, help="an earlier run, for comparison")
    p.add_argument("--out", type=Path, default=Path("reports/peers/summary.md"))
    p.add_argument(
        "--machine",
        default=None,
        help="the machine, for a log whose header lacks peers.py's `machine:` line",
    )
    args = p.parse_args(argv)
    args.out.write_text(write_summary(args.after, args.before, args.machine))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
