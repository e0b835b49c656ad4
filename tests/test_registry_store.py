"""The generic registry (names, patterns, errors) and the append-only result store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hgbench.contracts.errors import UnknownNameError, UsageError
from hgbench.contracts.registry import Registry
from hgbench.engine.store import RESULTS_FILE, ResultStore, read_rows

NAMES = ("alpha", "beta_1", "gamma", "beta_2", "delta")


@pytest.fixture
def registry() -> Registry[int]:
    reg: Registry[int] = Registry("widget")
    for i, name in enumerate(NAMES):
        reg.add(name, i)
    return reg


# --- registry --------------------------------------------------------------------------------
def test_lookup_and_registration_order(registry: Registry[int]) -> None:
    assert registry.names() == list(NAMES)
    assert list(registry) == list(NAMES)
    assert [n for n, _ in registry.items()] == list(NAMES)
    assert len(registry) == len(NAMES)
    assert registry["gamma"] == NAMES.index("gamma")
    assert "gamma" in registry and "nope" not in registry


def test_register_decorator_returns_the_object() -> None:
    reg: Registry[type] = Registry("thing")

    @reg.register("mine")
    class Mine:
        pass

    assert reg["mine"] is Mine


def test_duplicate_name_raises_and_keeps_the_first(registry: Registry[int]) -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.add("gamma", 99)
    with pytest.raises(ValueError):
        registry.register("alpha")(123)
    assert registry["gamma"] == NAMES.index("gamma")
    assert registry["alpha"] == 0


@pytest.mark.parametrize("bad", ["", "a*", "a?", "a[b]", "a,b", "a=b", "a b"])
def test_invalid_names_rejected(registry: Registry[int], bad: str) -> None:
    with pytest.raises(ValueError, match="invalid widget name"):
        registry.add(bad, 0)
    assert bad not in registry


def _assert_lists_known(message: str, known: tuple[str, ...]) -> None:
    assert "\n" not in message
    for name in known:
        assert name in message


@pytest.mark.parametrize(
    "lookup",
    [
        lambda r: r["nope"],
        lambda r: r.names("nope"),
        lambda r: r.names("zz*"),
        lambda r: r.names("alpha,zz*"),
        lambda r: r.names(["gamma", "nope"]),
    ],
)
def test_unknown_name_lists_known_names(registry: Registry[int], lookup) -> None:
    with pytest.raises(UnknownNameError) as info:
        lookup(registry)
    # a usage error for the CLI (exit 2), and a KeyError for dict-like callers
    assert isinstance(info.value, UsageError) and isinstance(info.value, KeyError)
    message = str(info.value)
    assert "widget" in message
    _assert_lists_known(message, NAMES)


def test_unknown_name_in_empty_registry() -> None:
    with pytest.raises(UnknownNameError, match="none registered"):
        Registry("widget")["x"]


def test_patterns_and_comma_lists(registry: Registry[int]) -> None:
    assert registry.names("beta_*") == ["beta_1", "beta_2"]
    assert registry.names("beta_?") == ["beta_1", "beta_2"]
    assert registry.names("*a") == ["alpha", "gamma", "delta"]
    assert registry.names("*") == list(NAMES)
    assert registry.names("gamma") == ["gamma"]
    # patterns are taken in the order given, each pattern's hits in registration order
    assert registry.names("delta,beta_*") == ["delta", "beta_1", "beta_2"]
    assert registry.names(" delta , alpha ") == ["delta", "alpha"]
    assert registry.names(["gamma", "alpha"]) == ["gamma", "alpha"]
    # overlapping patterns name each entry once, at its first mention
    assert registry.names("beta_2,beta_*,*") == ["beta_2", "beta_1", "alpha", "gamma", "delta"]
    # patterns are case-sensitive
    with pytest.raises(UnknownNameError):
        registry.names("ALPHA")


# --- result store ----------------------------------------------------------------------------
def _row(cell: str, step: int, final: bool, **extra) -> dict:
    return {
        "mode": "run",
        "task": "t",
        "method": "m",
        "cell": cell,
        "attempt": f"a-{cell}",
        "step": step,
        "final": final,
        "status": "ok",
        **extra,
    }


def test_append_creates_directory_and_reads_back(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "nested" / "out")
    assert not store.dir.exists()
    assert store.finished_cells() == set()
    rows = [_row("c1", 0, False), _row("c1", 1, True, hparams={"log_wd.w": -3.5})]
    for row in rows:
        store.append(row)
    assert store.path == tmp_path / "nested" / "out" / RESULTS_FILE
    assert read_rows(store.path) == rows
    assert store.path.read_text().count("\n") == len(rows)


def test_append_after_torn_last_line_keeps_every_row(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    earlier = [_row("c1", 0, False), _row("c1", 1, True), _row("c2", 0, False)]
    for row in earlier:
        store.append(row)
    torn = json.dumps(_row("c2", 1, True))[:-7]  # a write cut off by a kill: no closing, no \n
    with store.path.open("a") as fh:
        fh.write(torn)
    assert read_rows(store.path) == earlier  # the torn line is skipped, not fatal
    new = _row("c3", 0, True, note="after the tear")
    store.append(new)
    assert read_rows(store.path) == [*earlier, new]
    lines = store.path.read_text().split("\n")
    assert lines[len(earlier)] == torn  # the torn text stays as it was, on a line of its own
    assert json.loads(lines[len(earlier) + 1]) == new
    # the torn attempt of c2 never finished: a rerun repeats it
    assert store.finished_cells() == {"c1", "c3"}


def test_repair_tail_moves_a_torn_last_line_aside(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    earlier = [_row("c1", 0, False), _row("c1", 1, True)]
    for row in earlier:
        store.append(row)
    torn = json.dumps(_row("c2", 1, True))[:-7]
    with store.path.open("a") as fh:
        fh.write(torn)
    aside = store.repair_tail()
    assert aside is not None and aside.read_text() == torn
    store.append(_row("c3", 0, True))
    # every line of the file is strict JSON again: nothing torn is left in the middle
    assert [json.loads(line) for line in store.path.read_text().splitlines()] == [
        *earlier,
        _row("c3", 0, True),
    ]
    assert store.repair_tail() is None  # nothing left to repair


def test_append_after_complete_line_without_newline(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    first = _row("c1", 0, True)
    store.path.write_text(json.dumps(first))  # complete JSON but no trailing newline
    second = _row("c2", 0, True)
    store.append(second)
    assert read_rows(store.path) == [first, second]


def test_finished_cells_counts_only_final_rows(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.append(_row("done", 0, False))
    store.append(_row("done", 1, True))
    store.append(_row("in_flight", 0, False))
    store.append(_row("in_flight", 1, False))
    store.append(_row("failed", 0, True, status="failed", error="RuntimeError: boom"))
    store.append({**_row("x", 0, True), "cell": None, "note": "a row without a cell key"})
    assert store.finished_cells() == {"done", "failed"}


def test_non_finite_floats_stored_as_null(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    nan, inf = float("nan"), float("inf")
    store.append(
        {
            **_row("c", 0, True),
            "objective": nan,
            "time_s": 1.5,
            "hparams": {"log_wd.w": inf, "ok": -2.0},
            "curve": [1.0, -inf, nan],
            "pair": (nan, 3),
        }
    )
    text = store.path.read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON that any reader accepts
    (row,) = read_rows(store.path)
    assert row["objective"] is None
    assert row["time_s"] == 1.5
    assert row["hparams"] == {"log_wd.w": None, "ok": -2.0}
    assert row["curve"] == [1.0, None, None]
    assert row["pair"] == [None, 3]
    assert all(v is None or math.isfinite(v) for v in row["curve"])


def test_read_rows_of_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_rows(tmp_path / "absent.jsonl") == []
