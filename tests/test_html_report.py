"""report.html without a browser: the Markdown rendering, that its tables are report.md's, that
the figure data are the summaries report.md's numbers come from, that it loads nothing from the
network, and the sections only it has (methods, ranks per budget)."""

from __future__ import annotations

import json
import math
import re
import sys
import types
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from test_report import probe_rows, run_rows, write_results

from hgbench.report import write_report
from hgbench.report.configs import with_labels
from hgbench.report.html_markdown import inline, render
from hgbench.report.html_page import HTML_FILE, PLOTLY_JS, static_text
from hgbench.report.html_sections import budget_ranks, budget_section
from hgbench.report.load import load_rows
from hgbench.report.style import make_style
from hgbench.report.summary import pareto_front, summarize_run


class Tables(HTMLParser):
    """Every <table>'s cell texts, the <script> bodies and the external references of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []  # {"cls": str, "rows": [[cell text]]}
        self.scripts: list[tuple[dict, str]] = []
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self._cell: list[str] | None = None
        self._script: dict | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if key in a:
                self.refs.append((tag, key, a[key] or ""))
        if tag == "table":
            self.tables.append({"cls": a.get("class") or "", "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "script":
            self._script, self._text = a, []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1]["rows"][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._text)))
            self._script = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._script is not None:
            self._text.append(data)


def parse(text: str) -> Tables:
    p = Tables()
    p.feed(text)
    return p


def markdown_tables(text: str) -> list[list[list[str]]]:
    """report.md's pipe tables as cell texts, inline markup removed (what a reader sees)."""
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
            if re.fullmatch(r"\|(\s*:?-{3,}:?\s*\|)+", line.strip()):
                continue
            if current is None:
                current = []
                tables.append(current)
            current.append([plain(c) for c in cells])
        else:
            current = None
    return tables


def plain(cell: str) -> str:
    cell = cell.strip().replace("\\|", "|").replace("**", "").replace("`", "")
    return " ".join(re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", cell).split())


def page_tables(page: Tables) -> list[list[list[str]]]:
    """The page's tables that render report.md's (the methods table is the page's own)."""
    return [t["rows"] for t in page.tables if "methods" not in t["cls"].split()]


def specs(page: Tables) -> dict:
    data = [body for attrs, body in page.scripts if attrs.get("id") == "hg-data"]
    assert len(data) == 1
    return json.loads(data[0])


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Tables]:
    out = tmp_path_factory.mktemp("html")
    write_results(out, run_rows() + probe_rows(), torn=False)
    md = write_report(out).read_text()
    return out, md, parse((out / HTML_FILE).read_text())


def test_markdown_subset_renders():
    text = (
        "# Title\n\n- **a**: `x<y` and [link](https://e.org)\n  - nested\n- b\n  wrapped\n\n"
        "| h | n |\n|---|---:|\n| a \\| b | 1.5 |\n\n## Title\n\nline one\nline two\n"
    )
    r = render(text)
    assert '<h1 id="title">Title</h1>' in r.body
    assert '<h2 id="title-2">Title</h2>' in r.body  # anchors stay unique
    assert "<li><strong>a</strong>: <code>x&lt;y</code> and " in r.body
    assert '<a href="https://e.org">link</a><ul><li>nested</li></ul></li><li>b wrapped</li>' in (
        r.body
    )
    assert '<td>a | b</td><td class="num">1.5</td>' in r.body
    assert "<p>line one<br>\nline two</p>" in r.body
    assert [h[:2] for h in r.headings] == [(1, "title"), (2, "title-2")]
    assert inline("*separated* when 2 * 3") == "<em>separated</em> when 2 * 3"


def test_tables_are_report_md_tables(report):
    _, md, page = report
    expected = markdown_tables(md)
    assert len(expected) >= 6  # verdict, across tasks, pairs, status, run tables, probe
    assert page_tables(page) == expected


def test_self_contained_and_offline(report):
    out, _, page = report
    # no script, style or image is fetched: every src is inline data; links only to papers
    assert not [r for r in page.refs if r[1] == "src" and not r[2].startswith("data:")]
    assert all(tag == "a" for tag, key, _ in page.refs if key == "href")
    assert not re.search(r"<link\b", (out / HTML_FILE).read_text())
    bodies = [body for attrs, body in page.scripts if "src" not in attrs]
    assert any(static_text(PLOTLY_JS)[:2000] in b for b in bodies)  # plotly.js, inlined


def test_figure_data_are_the_report_summaries(report):
    out, _, page = report
    data = specs(page)
    kinds = sorted(s["kind"] for s in data.values())
    assert kinds == ["anytime", "anytime", "gains", *["pareto"] * 4, "probe", "ranks"]
    # the side-by-side Pareto figures are the task sections' own, without legends
    pareto = [s for s in data.values() if s["kind"] == "pareto" and not s.get("compact")]
    compact = [s for s in data.values() if s["kind"] == "pareto" and s.get("compact")]
    tasks = ("toy_a", "toy-b")
    assert compact == [
        {**s, "compact": True, "title": t} for s, t in zip(pareto, tasks, strict=True)
    ]
    rows = with_labels(load_rows(out))
    style = make_style(rows)
    for spec, task in zip(pareto, tasks, strict=True):
        task_rows = rows[(rows["mode"] == "run") & (rows["task"] == task)]
        summary = summarize_run(task_rows, style.order)
        for c in spec["configs"]:
            rec = summary[summary["label"] == c["label"]].iloc[0]
            # rows written without TSE: the cost axis offers seconds and memory only
            assert [x["key"] for x in spec["costs"]] == ["time_s", "peak_mem_mb"]
            for m in ("test_nll", "test_acc", "time_s", "peak_mem_mb"):
                got, want = c["iqm"][m][0], rec[f"{m}_val"]
                assert (got is None and not math.isfinite(want)) or got == pytest.approx(
                    want, rel=1e-5
                )  # 6 digits
            seeds = [float(v) for v in c["values"]["test_nll"]]
            assert len(seeds) == rec["n_seeds"]
            assert min(seeds) <= rec["test_nll_val"] <= max(seeds)
        ok = summary.dropna(subset=["test_nll_val", "time_s_val"])
        pts = list(zip(ok["time_s_val"], ok["test_nll_val"], strict=True))
        want = [ok["label"].iloc[i] for i in pareto_front(pts, maximize=False)]
        assert spec["fronts"]["test_nll|time_s"] == want


def test_methods_table_links_papers_and_lists_settings(report):
    _, _, page = report
    (methods,) = [t["rows"] for t in page.tables if "methods" in t["cls"].split()]
    by_method = {row[0]: row for row in methods[1:]}
    assert set(by_method) == {"fixed", "unroll", "ift", "exact", "kfac"}
    assert "unroll (K=5): K=5, hyper_lr=0.01" in by_method["unroll"][4]
    assert ("a", "href", "https://arxiv.org/abs/1703.01785") in page.refs  # unroll's paper


def test_no_budget_section_without_a_budget_study(report, tmp_path):
    out, _, page = report
    assert not any(s["kind"] == "budget_ranks" for s in specs(page).values())
    assert budget_ranks(out, load_rows(out)) is None


def test_ranks_per_budget_where_a_budget_study_exists(tmp_path, monkeypatch):
    """With a budget study beside the report (rows with `budget_runs`), the page shows its
    module's ranks per budget; the module is stood in for, so that only the page is tested."""
    ranks = pd.DataFrame({1: [1.5, 2.0], 10: [2.5, 1.0]}, index=["fixed", "unroll"])
    fake = types.ModuleType("hgbench.report.budgets")
    seen = {}
    fake.final_rows = lambda rows: seen.setdefault("rows", rows)
    fake.curves = lambda done: done
    fake.ranks = lambda curves: ranks
    monkeypatch.setitem(sys.modules, "hgbench.report.budgets", fake)
    study = tmp_path / "budgets"
    rows = run_rows()
    for r in rows:
        r["budget_runs"] = 1
    write_results(study, rows, torn=False)
    write_results(tmp_path / "default", run_rows(), torn=False)
    write_report(tmp_path / "default")
    page = parse((tmp_path / "default" / HTML_FILE).read_text())
    assert len(seen["rows"]) == len(load_rows(study))
    table = [t["rows"] for t in page.tables if t["rows"][0][1:2] == ["B = 1"]]
    assert table == [
        [["method", "B = 1", "B = 10"], ["fixed", "1.5", "2.5"], ["unroll", "2.0", "1.0"]]
    ]
    (spec,) = [s for s in specs(page).values() if s["kind"] == "budget_ranks"]
    assert [c["ranks"] for c in spec["configs"]] == [[1.5, 2.5], [2.0, 1.0]]
    text, figs = budget_section(None)
    assert (text, figs) == ("", {})


def test_scaling_report_html(tmp_path):
    """The scaling report's page: its tables, and one interactive figure per swept axis."""
    from hgbench.report.scaling.writer import write_scaling_report

    src = Path(__file__).resolve().parents[1] / "reports" / "scaling" / "results.jsonl"
    lines = src.read_text().splitlines()
    (tmp_path / "results.jsonl").write_text("\n".join(lines[:80]) + "\n")
    md = write_scaling_report(tmp_path).read_text()
    page = parse((tmp_path / HTML_FILE).read_text())
    assert page_tables(page) == markdown_tables(md)
    figures = specs(page)
    shown = re.findall(r"!\[[^\]]*\]\((figures/scaling_\w+\.png)\)", md)
    assert shown and len(figures) == len(shown)
    for spec in figures.values():
        assert spec["kind"] == "scaling" and spec["configs"]
        for s in spec["configs"]:
            assert len(s["size"]) == len(s["hg_time_s"]) == len(s["mem_mb"])


def test_redraw_keeps_a_title_given_to_report_md(tmp_path):
    """A report.md whose title a person extended (what the data are) keeps it when redrawn, and
    the page shows it; a plain one stays plain."""
    write_results(tmp_path, run_rows(), torn=False)
    path = write_report(tmp_path)
    assert path.read_text().startswith("# hgbench report\n")
    labelled = "# hgbench report: CIFAR-10 (JPEG q75 copy)"
    path.write_text(labelled + path.read_text()[len("# hgbench report") :])
    assert write_report(tmp_path).read_text().startswith(labelled + "\n")
    page = (tmp_path / HTML_FILE).read_text()
    assert '<h1 id="hgbench-report-cifar-10-jpeg-q75-copy">' in page
    assert "<title>hgbench report: CIFAR-10 (JPEG q75 copy) (" in page


def test_a_budget_study_that_cannot_be_ranked_leaves_the_section_out(tmp_path, monkeypatch, capsys):
    fake = types.ModuleType("hgbench.report.budgets")
    fake.final_rows = fake.curves = lambda x: x

    def ranks(_):
        raise KeyError("unknown method 'mine'")

    fake.ranks = ranks
    monkeypatch.setitem(sys.modules, "hgbench.report.budgets", fake)
    rows = run_rows()
    for r in rows:
        r["budget_runs"] = 1
    write_results(tmp_path, rows, torn=False)
    write_report(tmp_path)  # the report is still written, without the section
    assert "Ranks per budget" not in (tmp_path / HTML_FILE).read_text()
    assert "ranks per budget left out: \"unknown method 'mine'\"" in capsys.readouterr().err
