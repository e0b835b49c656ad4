"""Shared fixtures: shortened tasks, the command line run in-process or as a subprocess, and
executors stubbed out for checks that must stop before any work."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hgbench.contracts.task import TASKS, Task
from hgbench.engine.plugins import load_plugins


def short_task(name: str, epochs: int = 2) -> Task:
    """The registered task `name` with its epoch budget cut down (for fast tests)."""
    load_plugins()
    return dataclasses.replace(TASKS[name], epochs=epochs)


@pytest.fixture(name="short_task", scope="session")
def short_task_fixture() -> Callable[..., Task]:
    return short_task


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """`cli("run", "--tasks", ...)`: `hgbench.cli.main(argv)` in-process, with its exit code and
    what it printed to stdout and stderr during this call."""
    from hgbench.cli import main

    def run(*argv: str | Path) -> CliResult:
        capsys.readouterr()  # drop anything printed before this call
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def hgbench_command(*argv: str | Path) -> list[str]:
    return [sys.executable, "-m", "hgbench", *(str(a) for a in argv)]


def interruptible() -> None:
    """A child's SIGINT back to its default (Popen's preexec_fn), so the tests that press Ctrl-C
    reach hgbench's handler even where pytest itself runs with SIGINT ignored (started in the
    background: `cmd &` in a script, nohup), which the child would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def cli_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """`cli_process("run", ...)` starts `python -m hgbench ...` (cwd: a temporary folder) and
    returns the Popen; every process still running at teardown is killed (by its own pid)."""
    started: list[subprocess.Popen[str]] = []
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    def start(*argv: str | Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            hgbench_command(*argv),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=interruptible,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


@pytest.fixture
def register_test_method() -> Iterator[Callable[[type], str]]:
    """`name = register_test_method(cls)` adds a Method class to METHODS under a fresh name
    (so parallel or repeated registrations never clash) and removes it at teardown."""
    from hgbench.contracts.method import METHODS

    added: list[str] = []

    def register(cls: type) -> str:
        name = f"test_{cls.__name__.lower()}_{len(METHODS)}_{os.getpid()}"
        METHODS.add(name, cls)
        added.append(name)
        return name

    yield register
    for name in added:
        METHODS._items.pop(name, None)


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replaces the executors' `run` with a stub that records its calls (the number of cells of
    each), for checks that must stop before any work whatever the engine does (an accepted bad
    value cannot hang or slow the test)."""
    from hgbench.engine.executors import LocalExecutor, RayExecutor

    calls: list[int] = []

    def stub(self, cells) -> dict[str, int]:
        calls.append(len(cells))
        return {"ok": len(cells)}

    for executor in (LocalExecutor, RayExecutor):
        monkeypatch.setattr(executor, "run", stub)
    return calls
