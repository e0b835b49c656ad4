"""README.md of a budget-study folder: the command, its wall time, the machine and its load, and
the commit the cells ran on, from the run's own logs and rows.

    python -m hgbench.report.budgets_readme reports/budgets \\
        --run-log budgets_run.log --load-log budgets_load.log

`--run-log`: the study's stderr with `/usr/bin/time -v`'s report at its end (the wall time,
CPU share and peak memory come from there; else from the study's own "finished in" line).
`--load-log`: `uptime` lines written every few minutes while it ran. The commit and software
come from the rows' `env`; the CPU from this machine, so write the README where the study ran.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
from collections import Counter
from pathlib import Path

from hgbench.contracts.schema import results_path
from hgbench.engine.store import read_rows

DEFAULT_COMMAND = "python -m hgbench budgets --out reports/budgets"
TIME_FIELDS = {
    "command": r'Command being timed: "(.*)"',
    "wall": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)",
    "cpu": r"Percent of CPU this job got: (\d+)%",
    "rss_kb": r"Maximum resident set size \(kbytes\): (\d+)",
    "exit": r"Exit status: (\d+)",
}
LOAD = re.compile(r"(\d\d:\d\d:\d\d) up .*load average: ([\d.]+), ([\d.]+), ([\d.]+)")


def wall_seconds(text: str) -> float:
    """`/usr/bin/time`'s h:mm:ss or m:ss(.ss) as seconds."""
    parts = [float(p) for p in text.split(":")]
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds


def parse_run_log(text: str) -> dict[str, str | float]:
    found: dict[str, str | float] = {}
    for key, pattern in TIME_FIELDS.items():
        m = re.findall(pattern, text)
        if m:
            found[key] = m[-1]
    if "wall" in found:
        found["wall_s"] = wall_seconds(str(found["wall"]))
    else:
        m = re.findall(r"finished in ([\d.]+)s", text)
        if m:
            found["wall_s"] = float(m[-1])
    m = re.findall(r"hgbench budgets: (\d+) cells", text)
    if m:
        found["planned"] = float(m[0])
    return found


def parse_load_log(text: str) -> list[tuple[str, float]]:
    """(time, 1-minute load average) per `uptime` line."""
    return [(m.group(1), float(m.group(2))) for m in LOAD.finditer(text)]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _hms(seconds: float) -> str:
    h, rest = divmod(int(seconds + 0.5), 3600)  # half up, not to even
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def readme_text(out: Path, run_log: str, load_log: str) -> str:
    rows = list(read_rows(results_path(out)))  # the plain file or its .gz archive
    finals = [r for r in rows if r.get("final")]
    status = Counter(r["status"] for r in finals)
    shas = Counter(str(r["env"].get("git_sha")) for r in rows if r.get("env"))
    env = finals[0]["env"] if finals else {}
    run = parse_run_log(run_log)
    load = parse_load_log(load_log)
    command = str(run.get("command", DEFAULT_COMMAND))
    lines = ["# The budget study's reference run", ""]
    lines += [
        "The report is [report.md](report.md) (its rules and figures: docs/budgets.md); the rows "
        "are `results.jsonl`. To reproduce, from a checkout of the commit below:",
        "",
        "```",
        command,
        "```",
        "",
        "## What ran",
        "",
    ]
    sha = ", ".join(f"{s} ({n} rows)" for s, n in shas.most_common()) or "unknown"
    lines.append(f"- Commit: {sha}.")
    done = ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
    planned = f" of {int(run['planned'])} planned" if "planned" in run else ""
    lines.append(f"- Cells: {len(finals)}{planned} finished ({done}).")
    if "wall_s" in run:
        extra = []
        if "cpu" in run:
            extra.append(f"{run['cpu']}% of a CPU")
        if "rss_kb" in run:
            extra.append(f"peak memory {int(run['rss_kb']) / 1024**2:.1f} GiB")
        if "exit" in run:
            extra.append(f"exit status {run['exit']}")
        tail = f" ({', '.join(extra)})" if extra else ""
        lines.append(f"- Wall time: {_hms(float(run['wall_s']))} in one process{tail}.")
    else:
        lines.append("- Wall time: not in the run log (it had not finished when this was written).")
    lines.append(
        f"- Machine: {os.cpu_count()} × {_cpu_model()}, host `{env.get('host', '?')}`; Python "
        f"{env.get('python', '?')}, torch {env.get('torch', '?')}, one thread per cell, CPU."
    )
    if load:
        values = [v for _, v in load]
        cores = os.cpu_count() or 1
        busy = sum(v > cores for v in values)
        lines.append(
            f"- Load (1-minute average, `uptime` every few minutes, {len(load)} samples from "
            f"{load[0][0]} to {load[-1][0]} UTC): median {statistics.median(values):.2f}, "
            f"range {min(values):.2f}–{max(values):.2f}, {busy} of the samples above "
            f"{cores} (the cores). The study itself holds about 1; other work shared the "
            "machine where it is higher, and above the core count the study's process waited "
            "for a core, which stretches the wall time and the measured seconds (so the "
            "report's 'runs spent') of the cells then running."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hgbench.report.budgets_readme")
    p.add_argument("out", type=Path, help="the study's folder (with results.jsonl)")
    p.add_argument("--run-log", type=Path, help="the study's stderr with /usr/bin/time -v")
    p.add_argument("--load-log", type=Path, help="uptime lines written while it ran")
    args = p.parse_args(argv)
    if not results_path(args.out).is_file():
        print(f"error: no results.jsonl(.gz) in {args.out}", file=sys.stderr)
        return 2
    for path in (args.run_log, args.load_log):
        if path is not None and not path.is_file():
            print(f"error: {path} is not a file", file=sys.stderr)
            return 2
    read = lambda p: p.read_text(errors="replace") if p else ""  # noqa: E731
    text = readme_text(args.out, read(args.run_log), read(args.load_log))
    (args.out / "README.md").write_text(text, encoding="utf-8")
    print(args.out / "README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
