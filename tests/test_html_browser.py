"""report.html in a real browser: headless Chromium opens the page from disk, runs its scripts,
and the dumped DOM must hold every figure drawn (plotly's SVG), no console message, and tables
that read as report.md's. Skipped where no Chromium is installed (Debian: `apt-get install
chromium`; or set HGBENCH_CHROMIUM to a Chromium or Chrome binary)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from test_html_report import markdown_tables, page_tables, parse, specs
from test_report import probe_rows, run_rows, write_results

from hgbench.report import write_report
from hgbench.report.html_page import HTML_FILE

REPORTS = Path(__file__).resolve().parents[1] / "reports"
# what works headless as root in a container, with nothing fetched in the background
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=30000",  # let the scripts and plotly's deferred work finish
)


def chromium() -> str | None:
    named = os.environ.get("HGBENCH_CHROMIUM")
    if named:
        return named
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if found := shutil.which(name):
            return found
    return None


pytestmark = pytest.mark.skipif(
    chromium() is None,
    reason="no Chromium here to open report.html in (Debian: apt-get install chromium; or set "
    "HGBENCH_CHROMIUM)",
)


def open_page(path: Path) -> tuple[str, list[str]]:
    """(the DOM after the page's scripts ran, the console lines Chromium logged)."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", path.as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [ln for ln in done.stderr.splitlines() if ":CONSOLE" in ln]


def figures(dom: str) -> list[tuple[str, str, str]]:
    """(id, kind, the figure's markup) of every interactive figure in the DOM."""
    return [
        (m.group(1), m.group(2), m.group(0))
        for m in re.finditer(
            r'<figure class="hg-fig" id="(fig\d+)" data-kind="(\w+)"[^>]*>.*?</figure>', dom, re.S
        )
    ]


def check_page(path: Path, markdown: str, extra: list | None = None) -> tuple[int, int]:
    """Open `path`: no console output, every figure drawn, every other image inlined (the page
    needs no file beside it), as many figures as report.md shows at least, the tables
    report.md's (then `extra`, the tables only the page holds); returns the number of figures
    drawn and of PNGs inlined."""
    dom, console = open_page(path)
    assert console == [], "\n".join(console)
    page = parse(dom)
    drawn = figures(dom)
    assert len(drawn) == len(specs(page))
    for fid, kind, markup in drawn:
        head = markup.split(">", 1)[0]
        assert 'data-rendered="true"' in head and "data-error" not in head, (fid, kind, head)
        assert 'class="main-svg"' in markup, (fid, kind)  # plotly drew its SVG
    images = [v for tag, key, v in page.refs if tag == "img" and key == "src"]
    assert all(v.startswith("data:image/png;base64,") for v in images), [v[:80] for v in images]
    inlined = len(re.findall(r'<figure class="hg-png"><img ', dom))
    assert inlined == len(images)
    assert len(drawn) + inlined >= len(re.findall(r"!\[[^\]]*\]\([^)]+\)", markdown))
    assert page_tables(page) == markdown_tables(markdown) + (extra or [])
    return len(drawn), inlined


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("browser")
    write_results(out, run_rows() + probe_rows(), torn=False)
    return out / HTML_FILE, write_report(out).read_text()


def test_fresh_report_in_chromium(fresh):
    path, markdown = fresh
    # gains, ranks, 2 Pareto side by side, 2 Pareto and 2 anytime in the tasks' sections, 1 probe
    assert check_page(path, markdown)[0] == 9


def test_tables_read_with_scripts_off(fresh, tmp_path):
    """The page with its scripts taken out (JavaScript off: --dump-dom itself needs scripts on,
    so the page's own are removed instead) still holds every table of report.md."""
    path, markdown = fresh
    bare = re.sub(r"<script\b.*?</script>", "", path.read_text(), flags=re.S)
    assert "<script" not in bare
    (tmp_path / HTML_FILE).write_text(bare)
    dom, console = open_page(tmp_path / HTML_FILE)
    assert console == []
    assert page_tables(parse(dom)) == markdown_tables(markdown)
    assert 'class="main-svg"' not in dom  # nothing drawn, and nothing needed to read the tables


# every committed page, nested ones too (reports/papers/<paper>/report.html)
PAGES = sorted(p.parent.relative_to(REPORTS).as_posix() for p in REPORTS.rglob(HTML_FILE))


@pytest.mark.parametrize("name", PAGES or ["(none)"])
def test_reference_report_in_chromium(name):
    """Each committed reference report's page, against the committed report.md beside it."""
    if name == "(none)":
        pytest.skip("no committed report.html")
    path = REPORTS / name / HTML_FILE
    assert path.stat().st_size < 10_000_000  # opens quickly anywhere (the bound)
    markdown = (path.parent / "report.md").read_text()
    drawn, _ = check_page(path, markdown, budget_tables(path))
    # a paper's figures have no interactive kind (its page inlines their PNGs), nor has a report
    # without figures (a store of only an earlier slice of the CIFAR grid); the others draw some
    assert drawn == 0 if name.startswith("papers/") or "![" not in markdown else drawn >= 1


def budget_tables(path: Path) -> list:
    """The page's one table beyond report.md's, where it has a `Ranks per budget` section: the
    budget study's own rank table (reports/budgets/report.md), read there without its `!`
    over-budget marks, so the page is checked against the study's report, not its own writer."""
    if ">Ranks per budget</h2>" not in path.read_text():
        return []
    study = (REPORTS / "budgets" / "report.md").read_text()
    section = study.split("## Average rank over tasks at each budget", 1)[1].split("\n## ", 1)[0]
    tables = markdown_tables(section.replace("!", ""))
    assert len(tables) == 1, "the budget study's report should hold one rank table"
    return tables
