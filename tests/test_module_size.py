"""The 400-line rule: no source module in the tree is longer (STYLE.md: small, focused modules).

Source is what a reader opens to learn the code: hgbench/, methods/, tasks/, benchmarks/ and the
docs' hooks and examples. Tests are left out (a test file grows with the cases it covers).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("hgbench", "methods", "tasks", "benchmarks", "docs/hooks", "docs/examples")
MAX_LINES = 400


def _line_counts() -> dict[str, int]:
    counts = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            counts[path.relative_to(ROOT).as_posix()] = len(path.read_text().splitlines())
    return counts


def test_no_source_module_is_over_400_lines() -> None:
    counts = _line_counts()
    assert len(counts) > 100 and "hgbench/cli.py" in counts, "the tree was not read"
    long = {f: n for f, n in counts.items() if n > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines (split along a seam): {long}"
