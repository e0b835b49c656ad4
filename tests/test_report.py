"""The report from synthetic stored rows: selection of attempts, table numbers, figures, styles."""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from hgbench.report import load_rows, plots, probe_plots, summary, tables, write_report, writer
from hgbench.report.configs import describe_configs
from hgbench.report.style import make_style, method_colors

TASKS = ("toy_a", "toy-b")
CONFIGS = (  # (method, method_params): unroll has two configs that differ in K only
    ("fixed", {"lr": 0.1}),
    ("unroll", {"K": 5, "hyper_lr": 0.01}),
    ("unroll", {"K": 10, "hyper_lr": 0.01}),
    ("ift", {"solver": "cg", "iters": 20}),
)
SEEDS = (0, 1, 2)
LABELS = {0: "fixed", 1: "unroll (K=5)", 2: "unroll (K=10)", 3: "ift"}
FAILED = ("toy-b", 3, 2)  # (task, config index, seed)
SKIPPED = ("toy-b", 0, 1)
ERROR = "RuntimeError: CG did not converge in 20 iterations (at linalg.py:42)"


def _base(mode: str, task: str, c: int, seed: int) -> dict[str, Any]:
    method, params = CONFIGS[c]
    key = json.dumps([mode, task, method, params, seed], sort_keys=True)
    return {
        "mode": mode,
        "suite": "synthetic",
        "task": task,
        "method": method,
        "method_params": params,
        "seed": seed,
        "device": "cpu",
        "dtype": "float32",
        "env": {"torch": "2.14.0", "git_sha": "abc123"},
        "cell": key,
        "attempt": uuid.uuid4().hex[:12],
        "error": None,
        "peak_mem_mb": None,
    }


def _run_attempt(
    task: str,
    c: int,
    seed: int,
    rng: np.random.Generator,
    *,
    final: bool = True,
    acc_shift: float = 0.0,
) -> list[dict[str, Any]]:
    base = _base("run", task, c, seed)
    rows = []
    for step in range(4):
        rows.append(
            {
                **base,
                "status": "ok",
                "step": step * 10,
                "epoch": step / 2,
                "time_s": (step + 1) * (1.0 + c) * (1 + 0.1 * seed) + rng.uniform(0, 0.1),
                "test_acc": 0.5 + 0.1 * step + 0.02 * c + rng.uniform(0, 0.05) + acc_shift,
                "test_nll": 1.5 - 0.2 * step - 0.03 * c + rng.uniform(0, 0.05),
                "peak_mem_mb": 100.0 * (c + 1) + rng.uniform(0, 10),
                "objective": 0.3,
                "hparams": {"log_wd": -4.0},
                "extra": {},
                "final": False,
            }
        )
    rows[-1]["final"] = final
    return rows


def run_rows(seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for task in TASKS:
        for c in range(len(CONFIGS)):
            for s in SEEDS:
                if (task, c, s) == FAILED:
                    base = _base("run", task, c, s)
                    ok = _run_attempt(task, c, s, rng, final=False)[:1]
                    rows += [
                        *ok,
                        {
                            **base,
                            "attempt": ok[0]["attempt"],
                            "status": "failed",
                            "error": ERROR + "\nsecond line",
                            "time_s": 1.0,
                            "final": True,
                        },
                    ]
                elif (task, c, s) == SKIPPED:
                    rows.append(
                        {
                            **_base("run", task, c, s),
                            "status": "skipped",
                            "error": "fixed needs a validation split",
                            "time_s": None,
                            "final": True,
                        }
                    )
                else:
                    rows += _run_attempt(task, c, s, rng)
    # interrupted attempt of a cell that is complete elsewhere: absurd values must not count
    rows += _run_attempt("toy_a", 1, 1, rng, final=False, acc_shift=-0.5)[:3]
    # interrupted attempt of a cell that never completed: must not add a seed
    rows += _run_attempt("toy_a", 0, 7, rng, final=False, acc_shift=0.4)
    # a cell rerun to completion: the first completed attempt is superseded by the later one
    first = _run_attempt("toy_a", 3, 0, rng, acc_shift=-0.3)
    rows = (
        first
        + [r for r in rows if r["cell"] != first[0]["cell"]]
        + _run_attempt("toy_a", 3, 0, rng)
    )
    return rows


def probe_rows(seed: int = 1) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    configs = [("ift", {"iters": k}) for k in (5, 10, 20)] + [("exact", {}), ("kfac", {})]
    rows = []
    for method, params in configs:
        for s in SEEDS:
            key = json.dumps(["probe", "probe_t", method, params, s], sort_keys=True)
            base = {
                "mode": "probe",
                "suite": "synthetic",
                "task": "probe_t",
                "method": method,
                "method_params": params,
                "seed": s,
                "device": "cpu",
                "dtype": "float64",
                "env": {},
                "cell": key,
                "attempt": uuid.uuid4().hex,
                "error": None,
                "status": "ok",
                "reference": "dense IFT",
                "final": False,
            }
            k = params.get("iters", 40)
            for _ in range(2):  # two measurement rows per attempt, the last one final
                marglik = method == "kfac"
                rows.append(
                    {
                        **base,
                        "time_s": 0.1,
                        "peak_mem_mb": 10.0 * k,
                        "hg_time_s": 1e-3 * k * (1 + rng.uniform(0, 0.2)),
                        "hg_cos": 1 - 1e-3 * rng.uniform(),
                        "hg_rel_err": 0.0 if method == "exact" else 2.0**-k * rng.uniform(1, 2),
                        "value": -0.8 - rng.uniform(0, 0.1) if marglik else None,
                        "exact_value": -0.7 if marglik else None,
                        "extra": {},
                    }
                )
            rows[-1]["final"] = True
    return rows


def write_results(out: Path, rows: list[dict[str, Any]], torn: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if torn:  # a write cut off by a kill: half a JSON object, no newline
        text += json.dumps(rows[0])[:40]
    (out / "results.jsonl").write_text(text)


def _section(report: str, title: str) -> str:
    return report.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _table(section: str) -> list[list[str]]:
    """The first markdown table of a section: header, then body rows (separator left out)."""
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    return [cells[0], *cells[2:]] if cells else []


def _cell(section: str, label: str, column: str) -> str:
    header, *body = _table(section)
    for row in body:
        if row[0] == label:
            return row[header.index(column)]
    raise AssertionError(f"no table row for {label!r} in\n{section}")


def _finals(rows: list[dict], task: str, c: int, metric: str) -> np.ndarray:
    """The final value per seed of the last complete ok attempt of a config, in seed order."""
    method, params = CONFIGS[c]
    last: dict[str, dict] = {}
    for r in rows:
        if (
            (r["mode"], r["task"], r["method"], r["method_params"]) == ("run", task, method, params)
            and r["final"] is True
            and r["status"] == "ok"
        ):
            last[r["cell"]] = r
    return np.array([r[metric] for r in sorted(last.values(), key=lambda r: r["seed"])])


def _iqm(v: np.ndarray) -> float:
    """Interquartile mean by hand: drop floor(n/4) from each end, average the rest."""
    k = len(v) // 4
    return float(np.mean(np.sort(v)[k : len(v) - k]))


def _check_interval(text: str, v: np.ndarray, fmt: str = ".3f") -> None:
    """`text` is `iqm [low, high]` with the IQM of v and an interval inside [min, max] around it."""
    m = re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", text)
    assert m, text
    value, low, high = (float(g) for g in m.groups())
    assert m.group(1) == f"{_iqm(v):{fmt}}"
    step = 10.0 ** -int(fmt[1:-1])
    assert v.min() - step <= low <= value <= high <= v.max() + step


@pytest.fixture(scope="module")
def run_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[dict]]:
    out = tmp_path_factory.mktemp("run")
    rows = run_rows()
    write_results(out, rows)
    path = write_report(out)
    return out, path.read_text(), rows


def test_report_mentions_every_task_and_method(run_report):
    out, report, _ = run_report
    assert (out / "report.md").exists()
    for task in TASKS:
        assert f"## Run: {task}" in report
    for label in LABELS.values():
        assert label in report
    assert "cpu" in report and "float32" in report
    # the torn last line: how many damaged lines were skipped, and why
    assert "- Damaged lines: 1 damaged line skipped (1 not JSON)" in report


def test_run_table_matches_numpy(run_report):
    _, report, rows = run_report
    for task in TASKS:
        section = _section(report, f"Run: {task}")
        for c, label in LABELS.items():
            for column, metric in (("test NLL", "test_nll"), ("test acc", "test_acc")):
                _check_interval(_cell(section, label, column), _finals(rows, task, c, metric))
            mem = _finals(rows, task, c, "peak_mem_mb")
            _check_interval(_cell(section, label, "peak mem (MB)"), mem, ".0f")
            if (task, c) not in {FAILED[:2], SKIPPED[:2]}:
                assert _cell(section, label, "seeds") == "3"
        # rows without `tse` (written before it existed): no cost column, no crash
        assert "cost (TSE)" not in _table(section)[0]


def test_interrupted_and_superseded_attempts_are_ignored(run_report):
    _, report, rows = run_report
    section = _section(report, "Run: toy_a")
    # the interrupted attempt of (unroll K=5, seed 1) has accuracies near 0.0-0.3
    ok_only = [r for r in rows if r.get("test_acc") is not None and r["final"] is True]
    _check_interval(
        _cell(section, "unroll (K=5)", "test acc"), _finals(ok_only, "toy_a", 1, "test_acc")
    )
    accs = [float(x) for x in re.findall(r"[\d.]+", _cell(section, "unroll (K=5)", "test acc"))]
    assert min(accs) > 0.8
    # seed 7 of fixed was never completed: still three seeds
    assert _cell(section, "fixed", "seeds") == "3"
    # ift seed 0 ran twice to completion; only the later attempt (no -0.3 shift) counts
    assert min(float(x) for x in re.findall(r"[\d.]+", _cell(section, "ift", "test acc"))) > 0.8

    df = load_rows(run_report[0])
    assert not (df["seed"] == 7).any()
    assert df.attrs["interrupted_attempts"] == 2 and df.attrs["superseded_attempts"] == 1
    assert df.groupby("cell")["attempt"].nunique().max() == 1


def test_failed_and_skipped_cells_are_reported(run_report):
    _, report, rows = run_report
    assert ERROR in report and "second line" not in report
    assert "fixed needs a validation split" in report
    section = _section(report, "Run: toy-b")
    assert _cell(section, "ift", "seeds") == "2/3 (1 failed)"
    _check_interval(_cell(section, "ift", "test acc"), _finals(rows, "toy-b", 3, "test_acc"))
    status = _section(report, "Status")
    assert _cell(status, "ift", "ok") == "5" and _cell(status, "ift", "failed") == "1"
    assert _cell(status, "fixed", "skipped") == "1"
    assert _cell(section, "fixed", "seeds") == "2/3 (1 skipped)"


def test_verdict_names_the_best_config_with_its_paired_difference(run_report):
    _, report, rows = run_report
    verdict = _section(report, "Verdict")
    for task in TASKS:
        # the lowest IQM test NLL, by hand
        iqms = {lab: _iqm(_finals(rows, task, c, "test_nll")) for c, lab in LABELS.items()}
        best = min(iqms, key=iqms.get)
        assert f"- **{task}**: `{best}` has the lowest test NLL" in verdict
        row = _cell(verdict, task, "lowest test NLL")
        assert row == best
    # every config (ift seed 2 on toy-b failed) is ranked; the diagram is drawn
    assert "![critical-difference diagram](figures/ranks.png)" in verdict
    assert "![gain over the baseline per task](figures/gains.png)" in verdict
    pairs = _section(report, "Verdict").split("### Separated pairs", 1)[1]
    header, *body = _table(pairs)
    assert header[:3] == ["task", "configs", "pairs compared"]
    assert [r[0] for r in body] == list(TASKS)
    # 4 configs: 6 pairs; on toy-b fixed and ift share one seed only (1 skipped, 1 failed)
    assert [r[2] for r in body] == ["6", "5"]


def test_paired_comparisons_agree_with_scipy(run_report):
    from scipy import stats as sps

    _, report, rows = run_report
    section = _section(report, "Run: toy_a")
    pairs = section.split("Paired comparisons", 1)[1]
    header, *body = _table(pairs)
    order = [r[0].split(". ", 1)[1] for r in body]
    by_label = {lab: c for c, lab in LABELS.items()}
    for i, a in enumerate(order):
        for j, b in enumerate(order):
            if i == j:
                continue
            x, y = (_finals(rows, "toy_a", by_label[k], "test_nll") for k in (a, b))
            ci = sps.ttest_rel(x, y).confidence_interval(0.95)
            mark = body[i][j + 1].strip("*")
            separated = ci.low > 0 or ci.high < 0
            assert mark == ((">" if ci.low > 0 else "<") if separated else "·"), (a, b)


def test_time_to_target_column(run_report):
    _, report, rows = run_report
    section = _section(report, "Run: toy_a")
    target = _iqm(_finals(rows, "toy_a", 0, "test_nll"))  # fixed's final IQM
    assert f"final IQM ({target:.3f})" in section
    # the last configs are lower by 0.03 per index: every seed of "ift" gets there first
    assert re.fullmatch(r"\S+ \(3/3\)", _cell(section, "ift", "TSE to target (reached)"))


def test_referenced_figures_exist(run_report):
    out, report, _ = run_report
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    # per run task: Pareto, anytime curves, validation vs test; the verdict: gains, ranks
    assert len(images) == 3 * len(TASKS) + 2
    for rel in images:
        assert not Path(rel).is_absolute()
        assert (out / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_noisy_cells_are_counted_named_and_marked(tmp_path):
    rows = run_rows()
    for r in rows:
        r["noisy"] = False
        if r["task"] == "toy_a" and r["method"] == "ift" and r["seed"] == 1:
            r["noisy"] = True  # one cell timed while the machine's speed changed
    # 24 cells, 1 skipped (not timed): 23 timed
    write_results(tmp_path, rows, torn=False)
    report = write_report(tmp_path).read_text()
    assert "- Noisy cells: 1 of 23 timed cells (†" in report
    assert "  - run / toy_a / ift: seed 1" in report
    section = _section(report, "Run: toy_a")
    assert _cell(section, "ift", "seeds") == "3 (1 noisy†)"
    assert _cell(section, "ift", "time (s)").endswith(" †")
    assert not _cell(section, "fixed", "time (s)").endswith("†")
    fig = plots.pareto_figure(tables.with_labels(load_rows(tmp_path)).query("task == 'toy_a'"))
    marks = [t for ax in fig.axes for t in ax.texts if t.get_text() == "†"]
    assert len(marks) == 2  # the ift point in both panels


def test_pareto_front_hand_example():
    points = [
        (1.0, 0.5),  # 0 front
        (2.0, 0.7),  # 1 front
        (2.0, 0.6),  # 2 dominated by 1 (same time, worse)
        (3.0, 0.7),  # 3 dominated by 1 (slower, same accuracy)
        (0.5, 0.2),  # 4 front (fastest)
        (2.0, 0.7),  # 5 front: exact tie with 1, neither dominates
        (4.0, 0.9),  # 6 front
        (1.0, 0.4),  # 7 dominated by 0
        (5.0, float("nan")),  # 8 never on the front
    ]
    assert summary.pareto_front(points) == [4, 0, 1, 5, 6]
    # lower y is better (NLL): the slowest-and-best point flips
    assert summary.pareto_front(points, maximize=False) == [4]
    assert summary.pareto_front([(1.0, 1.0), (1.0, 2.0), (2.0, 0.5)], maximize=False) == [0, 2]
    assert summary.pareto_front([]) == []


def test_step_quantiles_hold_previous_value_without_extrapolation():
    curves = [(np.array([1.0, 3.0]), np.array([10.0, 30.0])), (np.array([2.0]), np.array([20.0]))]
    grid, med, q25, q75 = summary.step_quantiles(curves)
    assert grid.tolist() == [1.0, 2.0, 3.0]
    # t=1: only curve 1 (curve 2 starts later); t=2: 10 and 20; t=3: curve 2 has ended
    assert med.tolist() == [10.0, 15.0, 30.0]
    assert q25.tolist() == [10.0, 12.5, 30.0] and q75.tolist() == [10.0, 17.5, 30.0]
    # anytime: a finished curve keeps its last value to the end
    _, med, _, _ = summary.step_quantiles(curves, hold=True)
    assert med.tolist() == [10.0, 15.0, 25.0]


def test_config_labels_come_from_differing_params():
    df = load_rows_from(run_rows())
    configs = describe_configs(df)
    assert sorted(configs["label"]) == sorted(LABELS.values())
    # ranked numerically: K=5 before K=10
    unroll = configs[configs["method"] == "unroll"].sort_values("rank")
    assert list(unroll["label"]) == ["unroll (K=5)", "unroll (K=10)"]


def load_rows_from(rows: list[dict]) -> Any:
    with tempfile.TemporaryDirectory() as d:
        write_results(Path(d), rows)
        return load_rows(Path(d))


def _artist_colors(fig: Figure) -> dict[str, set[str]]:
    """Config label -> colours drawn for it: lines, error bars, and (CD diagram) label texts."""
    found: dict[str, set[str]] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if not line.get_label().startswith("_"):
                found.setdefault(line.get_label(), set()).add(to_hex(line.get_color()))
        for cont in ax.containers:
            if hasattr(cont, "lines") and not cont.get_label().startswith("_"):
                found.setdefault(cont.get_label(), set()).add(to_hex(cont.lines[0].get_color()))
        for text in ax.texts:  # "label (2.50)" / "(2.50) label"
            m = re.fullmatch(r"(?:\([\d.]+\) )?(.+?)(?: \([\d.]+\))?", text.get_text())
            if m and m.group(1) in ALL_LABELS:
                found.setdefault(m.group(1), set()).add(to_hex(text.get_color()))
    return found


ALL_LABELS = {*LABELS.values(), "ift (iters=5)", "ift (iters=10)", "ift (iters=20)"}
ALL_LABELS |= {"exact", "kfac", "ift (iters=20, solver=cg)", "ift (solver=cg)"}


def test_method_colours_are_identical_across_figures(tmp_path, monkeypatch):
    write_results(tmp_path, run_rows() + probe_rows())
    saved: list[tuple[str, dict[str, set[str]]]] = []

    def spy(fig: Figure, path: Path) -> None:  # records instead of rendering: PNGs tested above
        saved.append((path.name, _artist_colors(fig)))

    monkeypatch.setattr(writer, "_save", spy)
    order = ["unroll", "ift", "fixed", "exact", "kfac"]
    write_report(tmp_path, method_order=order)
    # 3 run figures per task, gains and ranks, 2 probe figures
    assert len(saved) == 3 * len(TASKS) + 2 + 2
    expected = {
        m: to_hex(c)
        for m, c in make_style(tables.with_labels(load_rows(tmp_path)), order).colors.items()
    }
    assert len(set(expected.values())) == len(order)
    assert expected["fixed"] == to_hex(method_colors(["fixed"])["fixed"])  # the same in any report
    seen = set()
    for name, colors in saved:
        assert colors, name
        for label, cs in colors.items():
            method = label.split(" (")[0]  # labels are "method" or "method (settings)"
            assert cs == {expected[method]}, (name, label, cs)
            seen.add(label)
    # ift's run config (solver, iters=20) and its probe configs (iters only) are all distinct
    assert len(seen) == 9 and {lab.split(" (")[0] for lab in seen} == set(order)


def test_family_hues_group_methods():
    colors = method_colors(["fixed", "ift_cg", "ift_neumann", "unroll", "my_plugin"])
    r, g, b = colors["ift_cg"]
    assert b > r and b > g  # implicit: blues
    r, g, b = colors["unroll"]
    assert g > r and g > b  # unrolled: greens
    assert max(colors["fixed"]) < 0.25  # the baseline is near-black
    assert colors["ift_cg"] != colors["ift_neumann"]
    assert colors["my_plugin"] not in {colors[m] for m in ("fixed", "ift_cg", "unroll")}


def test_probe_report(tmp_path):
    rows = probe_rows()
    write_results(tmp_path, rows, torn=False)
    report = write_report(tmp_path).read_text()
    assert "## Run:" not in report and "## Verdict" not in report
    assert "- Damaged lines: none skipped" in report
    section = _section(report, "Probe: probe_t")
    for k in (5, 10, 20):
        # median over every ok measurement row of the config (two per seed)
        err = np.array([r["hg_rel_err"] for r in rows if r["method_params"].get("iters") == k])
        med, q25, q75 = np.median(err), *np.percentile(err, [25, 75])
        assert _cell(section, f"ift (iters={k})", "rel. err") == f"{med:.2e} [{q25:.2e}, {q75:.2e}]"
        assert _cell(section, f"ift (iters={k})", "n") == str(len(SEEDS) * 2)
    values = np.array([r["value"] for r in rows if r["method"] == "kfac"])
    assert (
        _cell(section, "kfac", "value")
        == f"{np.median(values):.4f} [{np.percentile(values, 25):.4f}, "
        f"{np.percentile(values, 75):.4f}]"
    )
    header = _table(section)[0]
    assert header[1:4] == ["hg time (s)", "cos", "rel. err"] and "exact value" in header
    images = re.findall(r"\]\((figures/[^)]+)\)", section)
    assert images == ["figures/probe_probe_t_error.png", "figures/probe_probe_t_value.png"]
    assert all((tmp_path / p).exists() for p in images)


def test_probe_error_figure_joins_configs_by_cost():
    df = tables.with_labels(load_rows_from(probe_rows()))
    fig = probe_plots.probe_error_figure(df[df["mode"] == "probe"])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    joins = [ln for ln in ax.get_lines() if ln.get_label() == "_join"]
    assert len(joins) == 1  # only ift has several configs
    x = joins[0].get_xdata()
    assert list(x) == sorted(x) and len(x) == 3


def test_empty_and_missing_results(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path)
    (tmp_path / "results.jsonl").write_text('{"mode": "run", "cell": "x", "final": fal')
    report = write_report(tmp_path).read_text()
    assert "No completed cells" in report and "## Run" not in report
    assert "1 damaged line skipped (1 not JSON)" in report


def _bound_rows() -> list[dict[str, Any]]:
    """Marglik probe rows: (structure, M, split, bound kind, time, value); exact value −0.5."""
    points = [
        ("full", None, "none", "exact", 10.0, -0.5),
        ("diag", None, "none", "lower_bound", 1.0, -2.0),
        ("kernel", 50, "none", "lower_bound", 0.05, -0.7),
        ("kernel", 200, "single", "lower_bound_in_expectation", 0.01, -0.9),
        ("kernel", 10, "none", "lower_bound", 0.02, -1.5),  # dominated by M=200 single
        ("kron", 50, "none", "approximation", 0.001, -0.6),  # fast and close, but no bound
    ]
    rows = []
    for i, (structure, m, split, bound, t, v) in enumerate(points):
        params = {"structure": structure, "split": split, "bound": bound}
        if m is not None:
            params["block_size"] = m
        rows.append(
            {
                **_base("probe", "digits", 0, 0),
                "cell": f"probe/digits/{i}",
                "status": "ok",
                "method": "laplace_full" if m is None else "laplace_ntk",
                "method_params": params,
                "final": True,
                "time_s": 3 * t,
                "peak_mem_mb": 1.0,
                "hg_time_s": t,
                "hg_cos": 0.9,
                "hg_rel_err": 0.1,
                "value": v,
                "exact_value": -0.5,
                "reference": "exact",
            }
        )
    return rows


def test_bound_pareto_figure_joins_only_non_dominated_bounds():
    from hgbench.report import bounds

    rows = load_rows_from(_bound_rows())
    assert bounds.has_bounds(rows) and not bounds.has_bounds(load_rows_from(probe_rows()))
    fig = bounds.bound_pareto_figure(rows)
    (ax,) = fig.axes
    (front,) = [line for line in ax.get_lines() if line.get_drawstyle() == "steps-post"]
    # the approximation (kron) and the dominated bounds (M=10, diag) are not on the front
    assert list(front.get_xdata()) == [0.01, 0.05, 10.0]
    assert list(front.get_ydata()) == [0.9, 0.7, 0.5]
    hollow = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "none"]
    assert [(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in hollow] == [(0.001, 0.6)]
