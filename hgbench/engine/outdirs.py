"""Output directories of a command: checked before any work (creating nothing), created when the
work starts, and removed again, if still empty, when the command is refused after all."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from hgbench.contracts.errors import UsageError


def writable_dir(path: Path, flag: str) -> list[Path]:
    """Check, creating nothing, that `path` is or can become a writable directory; return the
    directories that would have to be created (outermost first)."""
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        if probe.is_symlink():
            raise UsageError(f"{flag} {path}: {probe} is a broken symbolic link")
        missing.insert(0, probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        where = "is" if probe == path else f"lies under {probe}, which is"
        raise UsageError(f"{flag} {path} {where} a file, not a directory")
    try:  # os.access says yes to root on read-only mounts: try a write
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise UsageError(
            f"{flag} {path}: cannot write in {probe} ({exc.strerror or exc})"
        ) from None
    return missing


def make_dirs(missing: list[Path]) -> None:
    for d in missing:
        d.mkdir()


def remove_dirs(missing: list[Path]) -> None:
    """Undo `make_dirs` for a command refused after all (only directories still empty)."""
    for d in reversed(missing):
        with contextlib.suppress(OSError):
            d.rmdir()
