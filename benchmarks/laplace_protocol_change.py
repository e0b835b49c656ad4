"""laplace_full's default-suite rows before and after laplace-torch's protocol (issue 27).

The protocol change (fits after epochs e % frequency == 0 and e ≥ burnin, the best-marglik
checkpoint as the result) reran laplace_full's cells of `reports/default`; every other method's
rows stayed as they were. This script sets the two row sets side by side, per task: the IQM of
the final test NLL over seeds with its percentile-bootstrap 95% interval (the report's own
`bootstrap_iqm`), and the paired difference after − before over the seeds both share (the
report's `paired_difference`, a Student t interval): every seed fixes the split, the init and
the batch order, so the two rows of one seed differ only by the protocol. `fixed`'s IQM from the
same rows is printed for scale. It reads stored rows only; nothing is rerun.

    python benchmarks/laplace_protocol_change.py \\
        [--before-rev c7e9b7b^ | --before OLD.jsonl.gz] [--after reports/default] \\
        [--figure docs/figures/laplace_full_protocol.png]

prints the markdown table (docs/reference-loops.md quotes it) and writes the figure.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.lines import Line2D

from hgbench.contracts.schema import Mode, Status
from hgbench.report.load import cell_outcomes, load_rows
from hgbench.report.markdown import fixed, fmt_interval, markdown_table, signed
from hgbench.report.stats import Interval, bootstrap_iqm, paired_difference
from hgbench.report.style import figure

METHOD = "laplace_full"
BASELINE = "fixed"
# the commit that replaced laplace_full's rows in reports/default: its parent holds the old ones
CHANGE_COMMIT = "c7e9b7b"
ROWS = "reports/default/results.jsonl.gz"
BEFORE_COLOR, AFTER_COLOR = (0.45, 0.45, 0.45), (0.75, 0.1, 0.1)
NLL, DIFF = fixed(3), signed(fixed(4))  # differences reach 1e-3: four decimals show them


@dataclass(frozen=True)
class TaskChange:
    """One task's final test NLL per seed before and after, and the summaries of both."""

    task: str
    before: pd.Series  # seed -> test NLL
    after: pd.Series
    baseline: Interval  # fixed's IQM in the after rows
    best_epochs: tuple[int, ...]  # the epoch of each seed's best-marglik checkpoint (after)

    @property
    def seeds(self) -> list[int]:
        return sorted(set(self.before.index) & set(self.after.index))

    def iqm(self, which: str) -> Interval:
        return bootstrap_iqm(getattr(self, which).to_numpy())

    def difference(self) -> tuple[int, float, float, float, float]:
        """(n, mean of after − before, 95% t low, high, p) over the shared seeds."""
        s = self.seeds
        return paired_difference(self.after[s].to_numpy(), self.before[s].to_numpy())

    def lower_after(self) -> int:
        s = self.seeds
        return int((self.after[s] < self.before[s]).sum())


def final_nll(rows: pd.DataFrame, method: str) -> dict[str, pd.Series]:
    """Per task, `method`'s final test NLL per seed (cells that finished ok)."""
    run = rows[(rows["mode"] == Mode.RUN) & (rows["method"] == method)]
    out = cell_outcomes(run)
    out = out[out["status"] == Status.OK]
    return {
        task: g.set_index(g["seed"].astype(int))["test_nll"].sort_index()
        for task, g in out.groupby("task", sort=False)
    }


def best_epochs(rows: pd.DataFrame, task: str) -> tuple[int, ...]:
    run = rows[(rows["mode"] == Mode.RUN) & (rows["method"] == METHOD) & (rows["task"] == task)]
    last = cell_outcomes(run).sort_values("seed")
    return tuple(
        int(e["best_epoch"])
        for e in last["extra"]
        if isinstance(e, dict) and e.get("best_epoch") is not None
    )


def changes(before: pd.DataFrame, after: pd.DataFrame) -> list[TaskChange]:
    old, new = final_nll(before, METHOD), final_nll(after, METHOD)
    base = final_nll(after, BASELINE)
    return [
        TaskChange(
            task,
            old[task],
            new[task],
            bootstrap_iqm(base[task].to_numpy()) if task in base else Interval(),
            best_epochs(after, task),
        )
        for task in new
        if task in old
    ]


def table(items: list[TaskChange]) -> str:
    header = [
        "task",
        "before: IQM [95% CI]",
        "after: IQM [95% CI]",
        "after − before, mean [95% CI]",
        "seeds lower after",
        "best-marglik epoch per seed",
        f"`{BASELINE}`, IQM",
    ]
    body = []
    for c in items:
        n, diff, low, high, _ = c.difference()
        b, a = c.iqm("before"), c.iqm("after")
        body.append(
            [
                c.task,
                fmt_interval(b.value, b.low, b.high, NLL),
                fmt_interval(a.value, a.low, a.high, NLL),
                fmt_interval(diff, low, high, DIFF),
                f"{c.lower_after()}/{n}",
                ", ".join(map(str, c.best_epochs)) or "–",
                NLL(c.baseline.value),
            ]
        )
    return markdown_table(header, body, [False] + [True] * (len(header) - 1))


def plot(items: list[TaskChange], path: Path) -> None:
    """One panel per task (own y scale: the tasks' NLLs differ by 5×): each seed's before and
    after joined by a thin line, the IQMs with their 95% intervals beside them."""
    fig = figure(len(items), height=3.7, width=3.4)
    axes = fig.subplots(1, len(items), squeeze=False)[0]
    for ax, c in zip(axes, items, strict=True):
        for seed in c.seeds:
            ax.plot([0, 1], [c.before[seed], c.after[seed]], color="0.72", lw=0.9)
        ax.plot([0] * len(c.seeds), c.before[c.seeds], "o", color=BEFORE_COLOR, ms=3.5)
        ax.plot([1] * len(c.seeds), c.after[c.seeds], "o", color=AFTER_COLOR, ms=3.5)
        for x, which, color in ((-0.22, "before", BEFORE_COLOR), (1.22, "after", AFTER_COLOR)):
            iv = c.iqm(which)
            ax.errorbar(
                [x],
                [iv.value],
                yerr=[[iv.value - iv.low], [iv.high - iv.value]],
                fmt="D",
                color=color,
                ms=6,
                capsize=4,
                lw=1.6,
            )
        _, diff, low, high, _ = c.difference()
        ax.set_title(
            f"{c.task}\nafter − before: {fmt_interval(diff, low, high, DIFF)}", fontsize=9.5
        )
        ax.set_xticks([0, 1], ["before\n(last state)", "after\n(best marglik)"], fontsize=9)
        ax.set_xlim(-0.55, 1.55)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("final test NLL")
    fig.legend(
        handles=[
            Line2D([], [], color="0.72", marker="o", mfc=BEFORE_COLOR, mec=BEFORE_COLOR, ms=3.5),
            Line2D([], [], color="k", marker="D", linestyle="none", ms=5),
        ],
        labels=["one seed, before → after", "IQM, 95% bootstrap CI"],
        fontsize=8.5,
        loc="outside lower center",
        ncols=2,
        frameon=False,
    )
    n = statistics.median(len(c.seeds) for c in items)
    fig.suptitle(
        f"{METHOD}, default suite, {n:.0f} seeds: before and after laplace-torch's protocol "
        "(fit epochs, best-marglik checkpoint)\nafter − before: paired mean over seeds, 95% t CI",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def rows_at(rev: str, path: str) -> pd.DataFrame:
    """The rows `path` held at git revision `rev` (history is where the old rows are kept)."""
    blob = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / Path(path).name
        file.write_bytes(blob.stdout)
        return load_rows(file)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, help="the old rows (default: from --before-rev)")
    p.add_argument("--before-rev", default=f"{CHANGE_COMMIT}^")
    p.add_argument("--after", type=Path, default=Path(ROWS).parent)
    p.add_argument("--figure", type=Path, default=Path("docs/figures/laplace_full_protocol.png"))
    args = p.parse_args(argv)
    before = load_rows(args.before) if args.before else rows_at(args.before_rev, ROWS)
    items = changes(before, load_rows(args.after))
    if not items:
        raise SystemExit(f"no task has {METHOD} rows in both row sets")
    print(table(items))
    plot(items, args.figure)
    print(f"\nfigure: {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
