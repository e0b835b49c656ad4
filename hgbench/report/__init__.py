"""Reports from stored results: `load_rows` reads results.jsonl, `write_report` writes report.md."""

from __future__ import annotations

from hgbench.report.load import load_rows
from hgbench.report.writer import write_report

__all__ = ["load_rows", "write_report"]
