"""`report DIR --export csv|parquet`: one tidy table, one row per stored row that counts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_report import probe_rows, run_rows, write_results

from hgbench.contracts.errors import UsageError
from hgbench.contracts.schema import COLUMN_NAMES
from hgbench.report import load_rows
from hgbench.report.export import export_rows, tidy


@pytest.fixture
def results(tmp_path: Path) -> Path:
    rows = run_rows() + probe_rows()
    rows[0]["method_params"] = {**rows[0]["method_params"], "schedule": "cosine"}
    for r in rows:  # a setting that is a number for one method and text for another
        if r["method"] == "ift":
            r["method_params"] = {**r["method_params"], "lr": "auto"}
        r["extra"] = {"lr_schedule": {"w": [0.1, 0.2]}} if r["method"] == "unroll" else {}
    write_results(tmp_path, rows)
    return tmp_path


def test_tidy_table_flattens_nested_fields_and_keeps_the_rows_that_count(results):
    rows = load_rows(results)
    table = tidy(rows)
    assert len(table) == len(rows)  # the same selection as the report
    first = [c for c in COLUMN_NAMES if c in table.columns]
    assert list(table.columns[: len(first)]) == first  # the row's columns, schema order
    assert {"label", "family", "method_params.lr", "env.torch"} <= set(table.columns)
    assert not {"method_params", "hparams", "env", "extra"} & set(table.columns)
    assert set(table.loc[table["method"] == "fixed", "family"]) == {"baseline"}
    assert set(table.loc[table["method"] == "kfac", "family"]) == {"other"}  # not registered
    # one type per column: the mixed setting is text; lists are JSON text
    assert set(table["method_params.lr"].dropna().map(type)) == {str}
    schedules = table["extra.lr_schedule"].dropna()
    assert json.loads(schedules.iloc[0]) == {"w": [0.1, 0.2]}
    assert str(table["seed"].dtype) == "Int64" and str(table["step"].dtype) == "Int64"
    assert str(table["final"].dtype) == "boolean"


def test_csv_export_round_trips(results):
    path = export_rows(results, "csv")
    assert path == results / "results.csv"
    back = pd.read_csv(path)
    table = tidy(load_rows(results))
    assert back.shape == table.shape
    assert back["test_nll"].sum() == pytest.approx(table["test_nll"].sum())


def test_parquet_export_round_trips(results):
    pytest.importorskip("pyarrow")
    back = pd.read_parquet(export_rows(results, "parquet"))
    table = tidy(load_rows(results))
    assert list(back.columns) == list(table.columns)
    assert back["label"].tolist() == table["label"].tolist()


def test_parquet_without_pyarrow_is_a_usage_error(results, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(UsageError, match="pyarrow"):
        export_rows(results, "parquet")
    with pytest.raises(UsageError, match="csv"):
        export_rows(results, "xlsx")


def test_export_through_the_cli(results, cli):
    res = cli("report", results, "--export", "csv")
    assert res.code == 0, res.err
    assert "table: " in res.out and (results / "results.csv").exists()
