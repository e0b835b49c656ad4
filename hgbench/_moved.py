"""DEPRECATED import paths, kept for plugins written before the layered layout (0.1.0): the old
flat modules (`hgbench.method`, `hgbench.task`, `hgbench.functional`, ...) resolve to their new
homes with a DeprecationWarning. Nothing in this tree may use them (tests/test_public_api.py
checks); new code imports from `hgbench` or the new paths. Remove this module in 0.2.

There are no files at the old paths on purpose: a stub there would be a second copy of each
module's name for git and for readers alike.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED: dict[str, str] = {
    **{f"hgbench.{m}": f"hgbench.contracts.{m}" for m in (
        "errors", "schema", "registry", "hparams", "seeding", "method", "task", "suites",
    )},
    **{f"hgbench.{m}": f"hgbench.numerics.{m}" for m in (
        "functional", "linalg", "implicit", "unroll", "fixed_point", "info_buffer", "reversible",
        "trajectories", "optimum", "training", "augment", "laplace",
    )},
    **{f"hgbench.{m}": f"hgbench.engine.{m}" for m in (
        "runner", "executors", "planning", "store", "timing", "calibration", "memory", "guards",
        "check", "envinfo", "probe", "estimates", "plugins", "scaling",
    )},
}  # fmt: skip


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name (or a module under an old package) and loads it as the new module."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 (importlib's signature)
        if self._new(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    @staticmethod
    def _new(fullname: str) -> str | None:
        for old, new in MOVED.items():
            if fullname == old or fullname.startswith(old + "."):
                return new + fullname[len(old) :]
        return None

    def create_module(self, spec):  # noqa: ANN001
        new = self._new(spec.name)
        warnings.warn(
            f"{spec.name} moved to {new}; import it from there (or the public names from "
            "`hgbench`)",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module) -> None:  # noqa: ANN001 (already executed under its new name)
        pass


def install() -> None:
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        # first: a submodule of an old package (hgbench.laplace.ggn) would otherwise be found by
        # the path finder in the aliased package's folder and loaded a second time
        sys.meta_path.insert(0, _Alias())
