"""Paper reproduction reports: a claims table (the paper's value and source beside hgbench's,
with a verdict) and figures, written to reports/papers/<paper>/report.md and, the same as one
self-contained page, report.html.

The paper-specific modules (papers_lorraine, papers_maclaurin, papers_immer) read stored rows
(`results.jsonl`) and diagnostics (`diagnostics.json`, traces that rows do not keep) and return
`Section`s and `Claim`s; `write_paper_report` lays them out. Nothing here reruns an experiment.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hgbench.contracts.schema import RESULTS_FILE, Mode, Status, StrEnum
from hgbench.report.html_page import write_html
from hgbench.report.load import cell_outcomes, load_rows
from hgbench.report.markdown import markdown_table

FIGURES = "figures"
DIAGNOSTICS = "diagnostics.json"
NOT_RUN = "not run: no GPU in this session"


class Verdict(StrEnum):
    REPRODUCED = "reproduced"
    PARTLY = "partly"
    NOT = "not reproduced"
    NOT_RUN = "not run"


@dataclass(frozen=True)
class Claim:
    """One row of a paper's claims table."""

    claim: str
    paper: str  # the paper's value, with its source (table, figure or section)
    ours: str  # hgbench's value, with its spread over seeds
    verdict: Verdict
    why: str  # one line: what decided the verdict


@dataclass(frozen=True)
class Section:
    title: str
    body: str  # markdown (figure links relative to the report)


def spread(values: Sequence[float] | np.ndarray, digits: int = 3) -> str:
    """`mean ± sd (n=k)` of the finite values; `mean (n=1)` for one; '–' for none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.{digits}g} (n=1)"
    return f"{v.mean():.{digits}g} ± {v.std(ddof=1):.{digits}g} (n={v.size})"


def claims_table(claims: Sequence[Claim]) -> str:
    header = ["claim", "paper (source)", "hgbench (over seeds)", "verdict", "why"]
    rows = [[c.claim, c.paper, c.ours, f"**{c.verdict.value}**", c.why] for c in claims]
    return markdown_table(header, rows)


def save_figure(fig: Figure, out: Path, name: str) -> str:
    """Write `fig` to out/figures/<name>.png; returns the report-relative path."""
    (out / FIGURES).mkdir(parents=True, exist_ok=True)
    path = out / FIGURES / f"{name}.png"
    fig.savefig(path, dpi=110)
    return f"{FIGURES}/{name}.png"


def image(path: str, alt: str) -> str:
    return f"![{alt}]({path})"


def read_rows(out: Path) -> pd.DataFrame:
    """The rows that count in out/results.jsonl (empty, with every column, if there is none)."""
    if not (out / RESULTS_FILE).exists():
        return load_rows(_empty_results(out))
    return load_rows(out)


def _empty_results(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_FILE).touch()
    return out


# where the papers part of benchmarks/gpu_reference.sh leaves its rows (unpacked into reports/)
GPU_PAPERS = Path(__file__).resolve().parents[3] / "reports" / "cifar10_gpu" / "papers"


def gpu_rows(suite: str) -> pd.DataFrame | None:
    """The GPU script's rows of `suite` (None where it has not run: no such folder)."""
    folder = GPU_PAPERS / suite
    if not (folder / RESULTS_FILE).exists():
        return None
    return load_rows(folder)


CHANCE_MARGIN = 2.0  # a CIFAR-10 model below 2× chance accuracy (0.2) has not learned yet


def learned(acc: pd.Series, classes: int = 10) -> bool:
    """Whether a seed-mean accuracy is clearly above chance (a verdict needs trained models)."""
    return bool(np.nanmean(acc.to_numpy(float)) > CHANCE_MARGIN / classes)


def read_diagnostics(out: Path) -> dict[str, Any]:
    path = out / DIAGNOSTICS
    return json.loads(path.read_text()) if path.exists() else {}


def outcomes(rows: pd.DataFrame, mode: Mode, suite: str | None = None) -> pd.DataFrame:
    """One final row per cell of `mode` (and `suite`), whatever its status."""
    sel = rows[rows["mode"] == mode]
    if suite is not None:
        sel = sel[sel["suite"] == suite]
    return cell_outcomes(sel)


def ok_final(rows: pd.DataFrame, mode: Mode, suite: str | None = None) -> pd.DataFrame:
    out = outcomes(rows, mode, suite)
    return out[out["status"] == Status.OK]


def setting(rows: pd.DataFrame, key: str) -> pd.Series:
    """One method setting per row (None where the method has no such setting)."""
    return rows["method_params"].map(lambda p: p.get(key))


def labelled(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` with a `label` column: the method, with its damping when it has one."""

    def label(method: str, params: dict) -> str:
        damping = params.get("damping") or 0.0
        return f"{method} (damping {damping:g})" if damping else method

    labels = [label(m, p) for m, p in zip(rows["method"], rows["method_params"], strict=True)]
    return rows.assign(label=labels)


def seed_list(rows: pd.DataFrame) -> str:
    """'0, 1, 2': the seeds of `rows`."""
    return ", ".join(str(int(s)) for s in sorted(set(rows["seed"])))


def extra(rows: pd.DataFrame, key: str) -> pd.Series:
    return rows["extra"].map(lambda e: e.get(key) if isinstance(e, dict) else None)


def runtime_note(rows: pd.DataFrame) -> str:
    """Where and how long: the cells' device, threads and timed seconds."""
    if rows.empty:
        return "No rows stored yet."
    final = cell_outcomes(rows)
    envs = [e for e in final["env"] if isinstance(e, dict)]
    host = envs[0].get("device_name", "?") if envs else "?"
    threads = envs[0].get("cpu_threads", "?") if envs else "?"
    seconds = float(np.nansum(final["time_s"].to_numpy(float)))
    counts = final["status"].value_counts().to_dict()
    shown = ", ".join(f"{v} {k}" for k, v in counts.items())
    return (
        f"{len(final)} cells ({shown}) on {', '.join(sorted(set(final['device'].dropna())))} "
        f"({host}, {threads} threads per process), {seconds:.0f} timed seconds in all; "
        "the 2-core machine was shared with other work while they ran."
    )


def write_paper_report(
    out: Path,
    title: str,
    intro: str,
    claims: Sequence[Claim],
    sections: Sequence[Section],
    command: str,
) -> Path:
    """out/report.md: title, what was run, the claims table, then each section; and beside it
    out/report.html, the same text as one page that opens offline (its figures inlined)."""
    parts = [
        f"# {title}",
        "",
        intro.strip(),
        "",
        f"Regenerate: `{command}` (resumes: finished cells are skipped; add `--report-only` to "
        "redraw from the stored rows).",
        "",
        "## Claims",
        "",
        claims_table(claims),
        "",
    ]
    for s in sections:
        parts += [f"## {s.title}", "", s.body.strip(), ""]
    path = out / "report.md"
    text = "\n".join(parts)
    path.write_text(text)
    # No paper figure has an interactive kind (hgbench.report.html_specs draws run and probe
    # figures), so the page inlines each PNG; the header stays open: it is the paper's summary.
    write_html(out, text, {}, f"{title} ({out.name})", fold=None)
    return path


def finite(values: Any) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v[np.isfinite(v)]


def fraction(flags: Sequence[bool]) -> str:
    flags = list(flags)
    return f"{sum(flags)}/{len(flags)}"


def is_close(a: float, b: float, rel: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rel * abs(b)
