"""MkDocs hooks: the pages' generated parts, rendered from the code at build time.

A page holds a marker such as `<!-- hgbench:cli -->`; `on_page_markdown` replaces it with what
the code says now: the argument parser's help (cli.md), the result columns of hgbench's schema
(schema.md), the registered methods with their settings and probe results from the reference
report (methods.md), the registered tasks (tasks.md) and suites (suites.md). `on_files`
publishes reports/ with the site, so the pages link to the reference reports as committed.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
from enum import Enum
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
PROBE_REPORT = ROOT / "reports" / "probe_methods" / "report.md"
REPORT_SUFFIXES = {".md", ".png", ".html"}  # report.html: the interactive pages, as they are


def _registries() -> dict[str, object]:
    """The method, task and suite registries with every plugin loaded (HGBENCH_PLUGINS too)."""
    from hgbench import METHODS, SUITES, TASKS
    from hgbench.engine.plugins import load_plugins

    load_plugins()
    return {"METHODS": METHODS, "TASKS": TASKS, "SUITES": SUITES}


def cli_reference() -> str:
    from hgbench.cli_parser import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal: one width for every build
    parser = build_parser()
    out = ["```text", parser.format_help().rstrip(), "```"]
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        out += ["", f"## `{name}`", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(out)


def schema_table() -> str:
    from hgbench.contracts.schema import COLUMNS

    rows = [[f"`{c.name}`", ", ".join(map(str, c.modes)), c.doc] for c in COLUMNS]
    return _table(["column", "modes", "meaning"], rows)


def _probe_rows() -> dict[str, list[tuple[str, str, str]]]:
    """Per task of the probe reference report, its rows: (config, cost in TSE, rel. err)."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    if not PROBE_REPORT.exists():
        return out
    for section in PROBE_REPORT.read_text().split("\n## Probe: ")[1:]:
        task = section.split("\n", 1)[0].strip()
        for line in section.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) > 5 and cells[0] not in ("method", "") and not cells[0].startswith("-"):
                out.setdefault(task, []).append((cells[0], cells[2], cells[4]))
    return out


def _median(cell: str) -> str:
    return cell.split(" [", 1)[0]


def methods_catalogue() -> str:
    METHODS = _registries()["METHODS"]
    probe = _probe_rows()
    out = []
    for name in sorted(METHODS):
        cls = METHODS[name]
        doc = inspect.cleandoc(cls.__doc__ or "").split("\n\n", 1)[0].replace("\n", " ")
        out += [
            f"### `{name}`",
            "",
            doc,
            "",
            f"Family: `{cls.family.value}`. "
            f"Objective: `{cls.objective.value}`. Defined in `{cls.__module__}`.",
            "",
        ]
        fields = (
            [f for f in dataclasses.fields(cls) if f.init] if dataclasses.is_dataclass(cls) else []
        )
        if fields:
            out += ["| setting | default |", "|---|---|"]
            for f in fields:
                default = (
                    f.default
                    if f.default is not dataclasses.MISSING
                    else (
                        f.default_factory() if f.default_factory is not dataclasses.MISSING else "—"
                    )
                )
                shown = default.value if isinstance(default, Enum) else default
                out.append(f"| `{f.name}` | `{shown!r}` |")
            out.append("")
        found = [
            (task, cfg, tse, err)
            for task, rows in probe.items()
            for cfg, tse, err in rows
            if cfg == name or cfg.startswith(name + " (")
        ]
        if found:
            out += [
                "Probe result (reference report, median): ",
                "",
                "| task | config | cost (TSE) | rel. err |",
                "|---|---|---:|---:|",
            ]
            out += [f"| {t} | {c} | {_median(s)} | {_median(e)} |" for t, c, s, e in found]
        else:
            out.append(
                "Probe result: not in the probe reference report (no hypergradient to "
                "probe, or not run there)."
            )
        out.append("")
    return "\n".join(out)


def _table(header: list[str], rows: list[list[object]], right: int = 0) -> str:
    """A markdown table; the last `right` columns right-aligned (numbers)."""
    rule = ["---"] * (len(header) - right) + ["---:"] * right
    lines = [header, rule, *([str(c) for c in row] for row in rows)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def tasks_catalogue() -> str:
    tasks = sorted(_registries()["TASKS"].items())
    rows = [[f"`{n}`", t.description, t.epochs, t.batch_size] for n, t in tasks]
    return _table(["task", "what it is", "epochs", "batch"], rows, right=2)


def suites_catalogue() -> str:
    rows = [
        [
            f"`{name}`",
            s.description,
            ", ".join(f"`{t}`" for t in s.task_names()),
            ", ".join(map(str, s.seeds)),
            "yes" if s.gpu else "",
        ]
        for name, s in sorted(_registries()["SUITES"].items())
    ]
    return _table(["suite", "what it runs", "tasks", "seeds", "GPU"], rows)


MARKERS = {
    "suites": suites_catalogue,
    "cli": cli_reference,
    "schema": schema_table,
    "methods": methods_catalogue,
    "tasks": tasks_catalogue,
}


def render(markdown: str) -> str:
    def sub(match: re.Match[str]) -> str:
        return MARKERS[match[1]]()

    return re.sub(r"<!-- hgbench:(\w+) -->", sub, markdown)


def on_page_markdown(markdown, page, config, files):  # noqa: ANN001, ARG001 (MkDocs' signature)
    return render(markdown)


def on_files(files, config):  # noqa: ANN001 (MkDocs' signature)
    """The committed reference reports (markdown and figures) become pages of the site."""
    for path in sorted((ROOT / "reports").rglob("*")):
        if path.suffix in REPORT_SUFFIXES and path.is_file():
            rel = path.relative_to(ROOT).as_posix()
            if files.get_file_from_path(rel) is None:
                files.append(
                    File(
                        rel,
                        src_dir=str(ROOT),
                        dest_dir=config["site_dir"],
                        use_directory_urls=config["use_directory_urls"],
                    )
                )
    return files
