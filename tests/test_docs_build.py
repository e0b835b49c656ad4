"""The documentation site builds with `mkdocs build --strict` (broken links, missing pages and
failing generation hooks are errors), from the `docs` extra (the `test` extra carries it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip(
        "mkdocs", reason='the docs extra is not installed: pip install -e ".[docs]"'
    )
    pytest.importorskip(
        "material", reason='the docs extra is not installed: pip install -e ".[docs]"'
    )
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # the theme's end-of-life banner
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (site / "index.html").exists() and (site / "cli" / "index.html").exists()
