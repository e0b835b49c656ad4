"""The README's quick start is what CI runs, needs no extra, and runs every reference method;
every other documented command names the extra it needs and exits 2 without it."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from hgbench.contracts.method import METHODS
from hgbench.contracts.suites import SUITES
from hgbench.engine.extras import EXTRAS, install_hint
from hgbench.engine.plugins import load_plugins

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _quickstart_module():
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / ".ci" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ci_runs_the_two_readme_commands_as_written() -> None:
    first, second = _quickstart_module().commands(README)  # exactly two, or this unpack fails
    # the main job: a plain install (no extra) and the default suite
    assert first.startswith("pip install -e . && python -m hgbench"), first
    assert "[" not in first.split("#")[0], f"the first command installs an extra: {first}"
    assert second.startswith('pip install -e ".[test]" && python -m pytest'), second
    ci = (ROOT / ".ci" / "run").read_text()
    # .ci/run takes both from the README (not a copy of its own) and runs each in a fresh venv
    assert "quickstart.py README.md" in ci
    assert ci.count("fresh .ci-venv") == 2 and "QUICKSTART[0]" in ci and "QUICKSTART[1]" in ci
    assert "pip install" not in ci, "CI installs something the README's commands do not"


def _reference_methods() -> set[str]:
    text = gzip.decompress((ROOT / "reports/default/results.jsonl.gz").read_bytes()).decode()
    return {json.loads(line)["method"] for line in text.splitlines() if line.strip()}


def test_the_default_suite_runs_every_reference_method_without_an_extra() -> None:
    load_plugins()
    suite = SUITES["default"]
    methods = set(METHODS.names(list(suite.methods)))
    assert methods >= _reference_methods()
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    core_names = {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0].lower() for d in core}
    for name in sorted(methods):
        # a method's own packages (`requires`) would make the quick start need an extra
        missing = set(METHODS[name].requires) - core_names
        assert not missing, f"{name} needs {missing}, not core dependencies"


def _readme_extras_table() -> dict[str, str]:
    rows = re.findall(
        r"^\| `([^`]+)` \| `pip install -e \"\.\[(\w+)\]\"` \|$", README.read_text(), re.M
    )
    return dict(rows)


def test_the_readme_table_of_extras_is_the_code_table() -> None:
    table = _readme_extras_table()
    code = {cmd: e.name for e in EXTRAS.values() for cmd in e.commands}
    assert table == code
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(EXTRAS) <= set(extras), "an extra the code names is not in pyproject"


# the documented command made complete: the arguments it needs to reach its check
COMPLETE = {
    "python -m hgbench run --executor ray": "--tasks ridge --methods fixed --seeds 0 --out {out}",
    "python -m hgbench report DIR --export parquet": "",
}


def _blocked(tmp_path: Path, modules: tuple[str, ...]) -> dict[str, str]:
    """An environment in which each of `modules` fails to import, as if it were not installed."""
    for module in modules:
        package = tmp_path / "blocked" / module
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(
            f"raise ImportError('{module} blocked by tests/test_quickstart.py')\n"
        )
    path = os.pathsep.join([str(tmp_path / "blocked"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


@pytest.mark.parametrize(
    ("command", "extra"), [(c, e.name) for e in EXTRAS.values() for c in e.commands]
)
def test_each_command_without_its_extra_exits_2_naming_it(
    tmp_path: Path, command: str, extra: str
) -> None:
    out = tmp_path / "out"
    argv = command.replace("DIR", str(tmp_path)).split()
    argv += COMPLETE.get(command, "").format(out=out).split()
    assert argv[0] == "python"
    done = subprocess.run(
        [sys.executable, *argv[1:]],
        cwd=ROOT,
        env=_blocked(tmp_path, EXTRAS[extra].modules),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and install_hint(extra) in last, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not out.exists()
