"""The budget study: each kind spends exactly the budget its rule gives it, the sweep moves one
setting at a time, and the report's figures (first match, ranks, sensitivity) come out right on
rows built by hand and on a tiny real run."""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

from hgbench.budgets.kinds import Kind, kind_of
from hgbench.budgets.plan import plan_budget_cells, sweep_configs, variants
from hgbench.budgets.search import FullTrialSearch, Strategy
from hgbench.budgets.spend import Budgeted
from hgbench.contracts.method import METHODS, Budget
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.engine.store import read_rows
from hgbench.numerics.training import SGDTrainer
from hgbench.report.budgets import (
    OVER_TOLERANCE,
    curves,
    final_rows,
    first_match,
    fragile,
    ranks,
    sensitivity,
    setting_label,
)

load_plugins()


def _problem(name: str = "ridge", epochs: int = 2):
    return dataclasses.replace(TASKS[name], epochs=epochs).build(0, "cpu", torch.float32)


def test_kinds() -> None:
    assert kind_of("fixed") == Kind.SINGLE
    assert kind_of("random_search") == kind_of("hyperband") == Kind.SEARCH
    assert kind_of("reversible_sgd") == kind_of("drmad") == Kind.META
    assert kind_of("ift_neumann") == kind_of("laplace_ntk") == Kind.ONLINE


def test_variants_divide_and_multiply_by_three_and_counts_take_neighbours() -> None:
    assert variants(0.3) == pytest.approx([0.1, 0.9])
    assert variants(10) == [3, 30]
    assert variants(5) == [2, 15]
    assert variants(1) == [2]  # a count of 1 has one neighbour
    assert variants(2) == [1, 3]
    assert variants(True) == [] and variants(None) == []


def test_sweep_moves_one_setting_at_a_time() -> None:
    defaults = METHODS["ift_neumann"]().method_params()
    configs = sweep_configs("ift_neumann", defaults)
    labels = [label for label, _ in configs]
    assert "terms=15" in labels and "period=3" in labels and "hyper_lr=0.01" in labels
    for _, settings in configs:
        assert sum(settings[k] != defaults[k] for k in defaults) == 1


def test_plan_fixed_keeps_one_run_and_search_is_not_swept() -> None:
    cells = plan_budget_cells(["ridge"], ["fixed", "tpe", "ift_neumann"], [0], (1, 3))
    by = {(c.method, c.context["runs"], c.context["setting"]) for c in cells}
    assert ("fixed", 1, "default") in by and ("fixed", 3, "default") not in by
    assert {k for k in by if k[0] == "tpe"} == {("tpe", 1, "default"), ("tpe", 3, "default")}
    assert any(k[0] == "ift_neumann" and k[2] != "default" for k in by)
    assert len({c.key for c in cells}) == len(cells)  # budget and setting make distinct cells
    # the default suite's hyper_lr 0.1 applies here too
    neumann = next(c for c in cells if c.method == "ift_neumann")
    assert neumann.method_params["hyper_lr"] == 0.1


def test_random_search_at_one_run_is_the_fixed_run_and_spends_exactly_b_runs() -> None:
    problem = _problem()
    run_steps = problem.task.epochs * problem.steps_per_epoch
    one = list(FullTrialSearch(Strategy.RANDOM, runs=1).run(problem, Budget(None, None)))
    trainer = SGDTrainer(problem, problem.init_params())
    done = 0
    while done < run_steps:
        done += trainer.steps(problem.init_hparams(), run_steps - done)
    assert one[-1].step == run_steps
    for k, v in trainer.params.items():  # the default hparams first: exactly fixed's run
        torch.testing.assert_close(one[-1].params[k], v)
    three = list(FullTrialSearch(Strategy.RANDOM, runs=3).run(problem, Budget(None, None)))
    assert three[-1].step == 3 * run_steps
    assert three[-1].objective <= one[-1].objective  # the incumbent never gets worse


@pytest.mark.parametrize("strategy", [Strategy.TPE, Strategy.HYPERBAND, Strategy.GP])
def test_optuna_strategies_spend_the_budget(strategy: Strategy) -> None:
    problem = _problem()
    run_steps = problem.task.epochs * problem.steps_per_epoch
    ckpts = list(FullTrialSearch(strategy, runs=2).run(problem, Budget(None, None)))
    assert ckpts[-1].step == 2 * run_steps
    assert math.isfinite(ckpts[-1].objective)


def test_meta_method_takes_b_meta_iterations() -> None:
    problem = _problem("digits_mlp", epochs=1)
    method = Budgeted("reversible_sgd", {"T": 5}, runs=3)
    method.setup(problem)
    ckpts = list(method.run(problem, Budget(1, None)))
    assert ckpts[-1].epoch == 3  # the cap meta_iterations=1 lifted, the budget's 3 taken


def test_online_method_retrains_only_when_a_run_is_left() -> None:
    problem = _problem()
    free = Budgeted("ift_neumann", {"period": 1}, runs=3)
    free.setup(problem)
    # no time passes: two runs' worth is left after the joint run, so it retrains once
    ckpts = list(free.run(problem, Budget(2, None, lambda: 0.0)))
    assert ckpts[-1].extra.get("retrained") in (0.0, 1.0)
    assert ckpts[-1].epoch == 2 * problem.task.epochs
    assert free.unused_runs == pytest.approx(2.0)
    spent = Budgeted("ift_neumann", {"period": 1}, runs=3)
    spent.setup(problem)
    # the joint run took the whole budget: no retrain
    last = list(spent.run(problem, Budget(2, None, lambda: 1e9)))[-1]
    assert "retrained" not in last.extra and last.epoch <= problem.task.epochs


@pytest.mark.parametrize("retrain_wins", [False, True])
def test_retrain_row_says_which_checkpoint_it_keeps(retrain_wins: bool, monkeypatch) -> None:
    """laplace_full's joint run ends on its best-marglik checkpoint: where the retrain loses,
    the row that keeps the joint result is still that checkpoint (`checkpoint: best_marglik`),
    with its params; where the retrain wins, the row is the retrain's current state."""
    from hgbench.budgets import spend
    from hgbench.contracts.schema import CheckpointKind

    losses = iter([0.0, 1.0] if retrain_wins else [1.0, 0.0])  # retrained first, then joint
    monkeypatch.setattr(spend, "_val_loss", lambda problem, params: next(losses))
    problem = _problem("digits_mlp", epochs=2)
    method = Budgeted("laplace_full", {"frequency": 1, "hypersteps": 2}, runs=3)
    method.setup(problem)
    ckpts = list(method.run(problem, Budget(2, None, lambda: 0.0)))
    joint, last = ckpts[-2], ckpts[-1]
    assert joint.kind == CheckpointKind.BEST_MARGLIK
    assert last.extra["retrained"] == float(retrain_wins)
    kept_joint = all(torch.equal(v, joint.params[k]) for k, v in last.params.items())
    assert kept_joint is not retrain_wins
    assert last.kind == (CheckpointKind.CURRENT if retrain_wins else CheckpointKind.BEST_MARGLIK)


def _rows(records: list[tuple]) -> pd.DataFrame:
    cols = ["task", "method", "budget_runs", "setting", "seed", "test_nll", "val_loss", "tse"]
    df = pd.DataFrame(records, columns=cols)
    df["final"], df["status"] = True, "ok"
    return df


def test_report_tables_on_synthetic_rows() -> None:
    recs = []
    for seed in range(3):
        recs.append(("t", "fixed", 1, "default", seed, 0.50, 0.5, 100))
        for b, nll in [(1, 0.8), (3, 0.45), (10, 0.30)]:
            recs.append(("t", "tpe", b, "default", seed, nll, nll, 100 * b))
        for b in (1, 3, 10):
            recs.append(("t", "ift_neumann", b, "default", seed, 0.40, 0.4, 300))
        # a setting with better validation but worse test: the choice must follow validation
        recs.append(("t", "ift_neumann", 1, "period=3", seed, 0.90, 0.1, 300))
        recs.append(("t", "ift_neumann", 1, "period=30", seed, 0.35, 0.9, 300))
    c = curves(final_rows(_rows(recs)))
    assert set(c[c["method"] == "fixed"]["budget"]) == {1, 3, 10}  # carried flat
    assert first_match(c, "t", "tpe", 0.50) == 3
    assert first_match(c, "t", "tpe", 0.40) == 10
    assert first_match(c, "t", "fixed", 0.40) is None
    r = ranks(c)
    assert r.loc["ift_neumann", 1] == 1 and r.loc["tpe", 10] == 1
    s = sensitivity(final_rows(_rows(recs))).set_index("method")
    assert s.loc["ift_neumann", "chosen"] == "period=3"  # by validation, never test
    assert s.loc["ift_neumann", "spread"] == pytest.approx(0.55)
    assert s.loc["ift_neumann", "rank_default"] == 1 and s.loc["ift_neumann", "rank_chosen"] == 3


def test_over_budget_is_measured_spend_over_nominal_b() -> None:
    recs = []
    for seed in range(3):
        recs.append(("t", "fixed", 1, "default", seed, 0.5, 0.5, 100))
        # an online method whose joint run alone costs 2.5 runs, then a retrain at B = 10
        recs.append(("t", "ift_neumann", 1, "default", seed, 0.4, 0.4, 250))
        recs.append(("t", "ift_neumann", 10, "default", seed, 0.3, 0.3, 350))
        recs.append(("t", "tpe", 1, "default", seed, 0.6, 0.6, 100 * OVER_TOLERANCE * 0.99))
    c = curves(final_rows(_rows(recs))).set_index(["method", "budget"])
    assert c.loc[("ift_neumann", 1), "runs_spent"] == pytest.approx(2.5)
    assert c.loc[("ift_neumann", 1), "over"] and not c.loc[("ift_neumann", 10), "over"]
    assert not c.loc[("tpe", 1), "over"]  # within the tolerance for timing noise
    assert not c.loc[("fixed", 10), "over"] and c.loc[("fixed", 10), "runs_spent"] == 1.0


def test_rank_move_ignores_ties_within_intervals() -> None:
    """Six methods tied within noise, and one whose settings move it from first to last beyond
    its intervals: only the second's move counts, though both move by five places in point
    rank."""
    recs = []
    for seed in range(5):
        noise = 0.01 * (seed - 2)  # overlapping intervals around 0.50
        for k in range(5):
            recs.append(("t", f"m{k}", 1, "default", seed, 0.50 + noise + 0.001 * k, 0.5, 1))
        # a near-tied method: its settings shuffle it among the others on noise alone
        recs.append(("t", "tied", 1, "default", seed, 0.4999 + noise, 0.5, 1))
        recs.append(("t", "tied", 1, "hyper_lr=0.3", seed, 0.5051 + noise, 0.5, 1))
        # a method clear of the pack at its default, clear behind it at another setting
        recs.append(("t", "moved", 1, "default", seed, 0.30 + noise, 0.5, 1))
        recs.append(("t", "moved", 1, "period=3", seed, 0.90 + noise, 0.5, 1))
    s = sensitivity(final_rows(_rows(recs))).set_index("method")
    assert s.loc["tied", "rank_move"] == 5 and s.loc["tied", "sure_move"] == 0
    assert s.loc["moved", "rank_move"] == 6 and s.loc["moved", "sure_move"] == 6
    assert fragile(s.reset_index())["method"].tolist() == ["moved"]


def test_setting_labels_are_readable_and_counts_untouched() -> None:
    assert setting_label("hyper_lr=0.30000000000000004") == "hyper_lr=0.3"
    assert setting_label("hyper_lr=0.03333333333333333") == "hyper_lr=0.033"
    assert setting_label("sigma=0.0033333333333333335") == "sigma=0.0033"
    assert setting_label("period=30") == "period=30" and setting_label("default") == "default"


def test_packed_study_rows_equal_serial_rows(cli, tmp_path) -> None:
    """`--pack 2` computes what the serial study does, cell by cell, and its rows carry the
    budget and setting (the packed worker runs the plain Runner). B = 1 never retrains and
    B = 20 leaves an online method far more than a run on ridge, so the timing-dependent retrain
    decision is the same both ways."""
    args = ["--tasks", "ridge", "--seeds", "0", "--budgets", "1,20", "--no-report"]
    args += ["--methods", "fixed,tpe,ift_identity"]
    serial = cli("budgets", "--out", tmp_path / "s", *args)
    packed = cli("budgets", "--out", tmp_path / "p", "--pack", "2", *args)
    assert serial.code == packed.code == 0, (serial.err, packed.err)
    a, b = (
        {r["cell"]: r for r in read_rows(tmp_path / d / "results.jsonl") if r["final"]}
        for d in ("s", "p")
    )
    assert len(a) == 9 and a.keys() == b.keys()
    for key, row in a.items():
        for column in (
            "status",
            "test_nll",
            "val_loss",
            "hparams",
            "step",
            "epoch",
            "extra",
            "budget_runs",
            "setting",
        ):
            assert row[column] == b[key][column], (row["method"], row["setting"], column)
        assert (b[key]["timing"], b[key]["pack"]) == ("packed", 2)
    assert {r["setting"] for r in b.values()} > {"default"}  # the sweep's labels arrived


def test_pack_must_be_a_count(cli, tmp_path) -> None:
    res = cli("budgets", "--out", tmp_path / "x", "--pack", "0")
    assert res.code == 2 and "--pack must be at least 1" in res.err
    assert not (tmp_path / "x").exists()


def test_tiny_real_run_end_to_end(cli, tmp_path) -> None:
    out = tmp_path / "b"
    args = ["budgets", "--out", out, "--tasks", "ridge", "--seeds", "0,1", "--budgets", "1,2"]
    res = cli(*args, "--methods", "fixed,random_search,ift_identity")
    assert res.code == 0, res.err
    text = (out / "report.md").read_text()
    assert "## Verdict" in text and "**ridge**" in text
    assert "## The closing note's questions" in text and "beyond the intervals" in text
    assert (out / "figures" / "budget_curves.png").stat().st_size > 0
    assert (out / "figures" / "sensitivity.png").stat().st_size > 0
    again = cli(*args, "--methods", "fixed,random_search,ift_identity")  # resumable
    assert "already finished" in again.err
    page = (out / "report.html").read_text()
    assert 'data-kind="budget_ranks"' in page and page.count('<figure class="hg-png">') == 2
    for made in ("report.md", "report.html", "figures/budget_curves.png"):
        (out / made).unlink()
    redraw = cli("budgets", "--out", out, "--report-only")  # from the rows: nothing planned
    assert redraw.code == 0 and "cells" not in redraw.err, redraw.err
    assert (out / "report.md").read_text() == text and (out / "report.html").read_text() == page
    assert (out / "figures" / "budget_curves.png").stat().st_size > 0
    assert cli("budgets", "--out", tmp_path / "none", "--report-only").code == 2
    from hgbench.report.budgets_readme import main as readme

    (tmp_path / "run.log").write_text(res.err + TIME_V)
    assert readme([str(out), "--run-log", str(tmp_path / "run.log")]) == 0
    made = (out / "README.md").read_text()
    assert "1:40:13 in one process" in made and "Cells: 18 of 18 planned finished (18 ok)" in made
    assert readme([str(tmp_path / "none")]) == 2


def test_unknown_method_exits_2(cli, tmp_path) -> None:
    res = cli("budgets", "--out", tmp_path / "x", "--methods", "nope")
    assert res.code == 2 and "unknown methods" in res.err


TIME_V = """finished in 6012.3s: {'ok': 12}
\tCommand being timed: "python -m hgbench budgets --out reports/budgets"
\tPercent of CPU this job got: 98%
\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:40:12.5
\tMaximum resident set size (kbytes): 2097152
\tExit status: 0
"""


def test_readme_reads_time_v_and_uptime_logs() -> None:
    from hgbench.report.budgets_readme import parse_load_log, parse_run_log, wall_seconds

    run = parse_run_log("hgbench budgets: 12 cells -> reports/budgets\n" + TIME_V)
    assert run["wall_s"] == pytest.approx(3600 + 40 * 60 + 12.5)  # time -v wins over the line
    assert run["command"] == "python -m hgbench budgets --out reports/budgets"
    assert (run["cpu"], run["rss_kb"], run["planned"]) == ("98", "2097152", 12)
    assert parse_run_log("finished in 61.5s: {}")["wall_s"] == 61.5
    assert wall_seconds("2:03.5") == pytest.approx(123.5)
    line = " 13:52:17 up  5:09,  0 user,  load average: 1.09, 0.50, 0.47"
    assert parse_load_log(line + "\n" + line.replace("1.09", "3.50")) == [
        ("13:52:17", 1.09),
        ("13:52:17", 3.5),
    ]


def test_splice_replaces_one_methods_rows_in_place_and_keeps_the_rest_byte_for_byte() -> None:
    from hgbench.budgets.splice import splice
    from hgbench.contracts.errors import UsageError

    def line(method: str, seed: int, runs: int, cell: str, step: int) -> bytes:
        row = {"task": "t", "method": method, "seed": seed, "budget_runs": runs}
        return json.dumps({**row, "setting": "default", "cell": cell, "step": step}).encode()

    study = [
        line("fixed", 0, 1, "f0", 0),
        line("laplace_full", 0, 1, "old0", 0),
        line("laplace_full", 0, 1, "old0", 1),
        line("soba", 0, 1, "s0", 0),
        line("laplace_full", 0, 3, "old3", 0),
        line("fixed", 1, 1, "f1", 0),
    ]
    rerun = [
        line("laplace_full", 0, 3, "new3", 0),
        *(line("laplace_full", 0, 1, "new0", s) for s in range(3)),
    ]
    out, counts = splice(study, rerun, {"laplace_full"})
    assert [json.loads(x)["cell"] for x in out] == [
        "f0",
        "new0",
        "new0",
        "new0",
        "s0",
        "new3",
        "f1",
    ]
    assert [x for x in out if b"laplace_full" not in x] == [study[0], study[3], study[5]]
    assert counts == {
        "dropped_rows": 3,
        "dropped_cells": 2,
        "inserted_rows": 4,
        "inserted_cells": 2,
    }
    with pytest.raises(UsageError, match="no cell"):  # an old cell the rerun lacks: rows lost
        splice(study, rerun[1:], {"laplace_full"})
    with pytest.raises(UsageError, match="lacks"):
        splice(study, [*rerun, line("laplace_full", 2, 1, "new", 0)], {"laplace_full"})
    with pytest.raises(UsageError, match="soba"):
        splice(study, [*rerun, line("soba", 0, 1, "x", 0)], {"laplace_full"})
