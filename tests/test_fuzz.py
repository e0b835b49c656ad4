"""Fuzzing the command line with generated bad input: every refusal is exit status 2 with one
line and no traceback, before any work, and stored rows are never changed by it.

Generated (hypothesis): flags with ill-typed or out-of-range values, `--set` items with values of
the wrong type for their field, damaged results files (bytes flipped, lines cut, JSON of the wrong
shape, a final row without its status) under `report`, `check` and a resumed `run`, damaged
CIFAR-10 data directories, and hostile learning rates that train to garbage while every number
stays finite (each must end a `failed` row, diverged, never an `ok` result).
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hgbench.cli import main  # noqa: E402
from hgbench.contracts.schema import RESULTS_FILE  # noqa: E402
from hgbench.engine.store import read_rows  # noqa: E402
from hgbench.report.load import load_rows  # noqa: E402

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same inputs on every run: a failure reproduces
)
BASE = ["--tasks", "ridge", "--methods", "fixed", "--seeds", "0", "--no-report"]
BAD_NUMBERS = ["-1", "0", "nan", "inf", "-inf", "1e999", "abc", "", " ", "1,2", "0x", "--"]


class Outcome:
    def __init__(self, code: int, err: str, out: str = "") -> None:
        self.code, self.err, self.out = code, err, out


def _call(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Outcome:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's --help and the like
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return Outcome(code, captured.err, captured.out)


# --- flags ----------------------------------------------------------------------------------------
NUMERIC_FLAGS = {
    "run": ["--budget-s", "--timeout-s", "--threads", "--seeds", "--retries"],
    "probe": ["--repeats", "--probe-states", "--timeout-s", "--threads", "--seeds"],
}
NAME_FLAGS = ["--tasks", "--methods", "--suite", "--device", "--dtype", "--executor"]
BAD_NAMES = ["", ",", "nosuch", "*nosuch*", "fixed,,nosuch", "[", "cuda:99", "float16"]


@FUZZ
@given(
    mode=st.sampled_from(["run", "probe"]),
    data=st.data(),
)
def test_bad_flag_values_exit_2(capsys, no_work, tmp_path_factory, mode: str, data) -> None:
    no_work.clear()  # one fixture for every generated example
    out = tmp_path_factory.mktemp("out")
    if data.draw(st.booleans()):
        flag = data.draw(st.sampled_from(NUMERIC_FLAGS[mode]))
        value = data.draw(st.sampled_from(BAD_NUMBERS))
    else:
        flag = data.draw(st.sampled_from(NAME_FLAGS))
        value = data.draw(st.sampled_from(BAD_NAMES))
    # the few draws that are valid after all: seeds may be any integers, a list among them;
    # zero extra probe states is the default
    if flag == "--seeds" and value in ("-1", "0", "1,2"):
        return
    if flag == "--probe-states" and value == "0":
        return
    argv = [mode, *BASE, flag, value, "--out", str(out)]
    res = _call(capsys, argv)
    assert res.code == 2, (argv, res.err)
    assert res.err.count("\n") == 1 and res.err.startswith("error: "), res.err
    assert no_work == []
    assert not (out / RESULTS_FILE).exists()


SET_ITEMS = st.sampled_from(
    [
        "ift_neumann.terms",
        "ift_neumann.hyper_lr",
        "ift_neumann.period",
        "ift_neumann.hyper_optimizer",
        "unroll.K",
        "laplace_ntk.block_size",
        "laplace_ntk.structure",
        "task.epochs",
        "task.batch_size",
        "task.lr",
        "task.momentum",
        "task.lr_schedule",
        "task.eval_every",
        "task.eval_test_subset",
        "task.nosuch",
        "nosuch.K",
        "K.nosuch",
    ]
)
BAD_VALUES = st.sampled_from(
    [
        "True",
        "False",
        "-1",
        "0",
        "-0.5",
        "1e999",
        "nan",
        "'x'",
        "[1]",
        "{}",
        "(1, 2)",
        "None",
        "",
        "=",
        "1.5e-400",
        "-inf",
        "10**10**10",
    ]
)


@FUZZ
@given(key=SET_ITEMS, value=BAD_VALUES)
def test_bad_set_items_exit_2_or_are_valid(capsys, no_work, tmp_path_factory, key, value) -> None:
    no_work.clear()
    out = tmp_path_factory.mktemp("out")
    argv = [
        "run",
        *BASE,
        "--methods",
        "fixed,ift_neumann,unroll,laplace_ntk",
        "--set",
        f"{key}={value}",
        "--out",
        str(out),
    ]
    res = _call(capsys, argv)
    if res.code == 0:
        # accepted: then it must be a valid value of the right type (e.g. eval_test_subset=None)
        assert no_work, "accepted but nothing planned"
        return
    assert res.code == 2, res.err
    assert res.err.startswith("error: ") and res.err.count("\n") == 1, res.err
    assert no_work == []


# --- damaged results files ------------------------------------------------------------------------
# the run the damaged stores hold (four cells), without its --out
STORED_RUN = [
    "run",
    *BASE,
    "--methods",
    "fixed,ift_neumann",
    "--seeds",
    "0,1",
    "--set",
    "task.epochs=1",
]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stored")
    code = main([*STORED_RUN, "--out", str(out)])
    assert code == 0
    return out


DAMAGE = st.sampled_from(["flip", "cut", "insert", "shape", "truncate", "no_status"])


def _damage(data: bytes, how: str, at: int, byte: int) -> bytes:
    at = at % max(len(data), 1)
    if how == "flip":
        return data[:at] + bytes([byte]) + data[at + 1 :]
    if how == "cut":
        return data[:at] + data[at + 7 :]
    if how == "insert":
        return data[:at] + b"\n" + bytes([byte]) * 3 + b"\n" + data[at:]
    if how == "truncate":
        return data[:at]
    if how == "no_status":  # a final row loses its status (hand-edited, or cut mid-field)
        rows = data.split(b"\n")
        finals = [i for i, line in enumerate(rows) if b'"final": true' in line]
        i = finals[at % len(finals)]
        row = json.loads(rows[i])
        if byte % 2:
            del row["status"]
        else:
            row["status"] = None
        rows[i] = json.dumps(row).encode()
        return b"\n".join(rows)
    lines = data.split(b"\n")
    shapes = [
        b"[]",
        b"null",
        b"42",
        b'"row"',
        json.dumps({"cell": 1, "final": "yes"}).encode(),
        json.dumps({"mode": "run", "final": True}).encode(),
    ]
    lines.insert(at % len(lines), shapes[byte % len(shapes)])
    return b"\n".join(lines)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(how=DAMAGE, at=st.integers(0, 10**6), byte=st.integers(0, 255))
def test_damaged_results_never_crash_a_reader(
    capsys, stored: Path, tmp_path_factory, how: str, at: int, byte: int
) -> None:
    event(f"damage: {how}")  # --hypothesis-show-statistics counts each kind
    out = tmp_path_factory.mktemp("damaged")
    shutil.copytree(stored, out, dirs_exist_ok=True)
    results = out / RESULTS_FILE
    planned = {r["cell"] for r in read_rows(results) if r["final"]}
    damaged = _damage(results.read_bytes(), how, at, byte)
    results.write_bytes(damaged)
    for argv in (["check", str(out)], ["report", str(out)]):
        res = _call(capsys, argv)
        assert res.code in (0, 1, 2), res.err
        assert results.read_bytes() == damaged  # readers change nothing
        if how == "no_status":
            assert "a cell's final row" in res.out + res.err  # counted as unreadable
    if how == "no_status":
        assert "final row is unreadable" in _call(capsys, ["check", str(out)]).out
    res = _call(capsys, [*STORED_RUN, "--out", str(out)])  # the stored run again: a resume
    assert res.code == 0, res.err
    after = results.read_bytes()
    # a resume appends (and moves a torn last line aside): what was stored stays as it was
    kept = (
        damaged if damaged.endswith(b"\n") or not damaged else damaged[: damaged.rfind(b"\n") + 1]
    )
    assert after.startswith(kept)
    # every planned cell is counted once: a cell whose final row was lost ran again, and its
    # second final row replaces the unreadable one instead of adding to it
    counted = load_rows(out)
    finals = counted[counted["final"].map(bool)]
    ours = finals[finals["cell"].isin(planned)]
    assert sorted(ours["cell"]) == sorted(planned), (how, list(ours["cell"]))


# --- damaged CIFAR-10 data ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cifar_fakes import write_fake_cifar_pickles

    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar_pickles(root, n_train_per_batch=60, n_test=50, seed=0)
    return root


CIFAR_DAMAGE = st.sampled_from(
    ["empty", "garbage", "not_dict", "wrong_types", "missing_key", "bad_shape", "dir_for_file"]
)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(how=CIFAR_DAMAGE, which=st.sampled_from(["data_batch_1", "test_batch", "batches.meta"]))
def test_damaged_cifar_data_exits_2(
    capsys, no_work, fake_cifar: Path, tmp_path_factory, how: str, which: str
) -> None:
    import hgbench.tasks.cifar10 as cifar10

    no_work.clear()
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(fake_cifar, root, dirs_exist_ok=True)
    target = root / "cifar-10-batches-py" / which
    if how == "empty":
        target.write_bytes(b"")
    elif how == "garbage":
        target.write_bytes(b"\x80\x04garbage")
    elif how == "not_dict":
        target.write_bytes(pickle.dumps([1, 2, 3]))
    elif how == "wrong_types":
        target.write_bytes(pickle.dumps({b"data": "text", b"labels": 3.5, b"label_names": 7}))
    elif how == "missing_key":
        target.write_bytes(pickle.dumps({b"batch_label": b"x"}))
    elif how == "bad_shape":
        target.write_bytes(pickle.dumps({b"data": [[1, 2]], b"labels": [0]}))
    else:
        target.unlink()
        target.mkdir()
    if hasattr(cifar10, "_arrays"):
        cifar10._arrays.cache_clear()
    res = _call(
        capsys,
        [
            "run",
            "--tasks",
            "cifar10_1k_none",
            "--methods",
            "fixed",
            "--data-dir",
            str(root),
            "--out",
            str(root / "out"),
            "--no-report",
        ],
    )
    assert res.code == 2, res.err
    assert res.err.startswith("error: ") and res.err.count("\n") == 1, res.err
    assert no_work == []


# --- hostile settings that train to garbage ------------------------------------------------------
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lr=st.sampled_from(["30", "100", "1000", "1e5"]),
    method=st.sampled_from(["fixed", "ift_neumann"]),
)
def test_diverging_settings_end_failed_not_ok(capsys, tmp_path_factory, lr: str, method: str):
    event(f"lr={lr} {method}")
    out = tmp_path_factory.mktemp("diverged")
    argv = ["run", "--tasks", "digits_mlp", "--methods", method, "--seeds", "0", "--no-report"]
    res = _call(
        capsys, [*argv, "--set", f"task.lr={lr}", "--set", "task.epochs=2", "--out", str(out)]
    )
    assert res.code == 0, res.err
    (final,) = [r for r in read_rows(out / RESULTS_FILE) if r["final"]]
    assert final["status"] == "failed", (lr, method, final.get("test_nll"))
    assert "DivergedError" in final["error"], final["error"]
    # the error names what grew (a loss) or what overflowed
    assert any(w in final["error"] for w in ("val_loss", "objective", "non-finite")), final["error"]
