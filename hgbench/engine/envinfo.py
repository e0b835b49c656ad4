"""The environment recorded in every row: versions, git sha, host, device name and which GPU.

Executors add where a cell ran (`hgbench.engine.executors`: the Ray node id and the GPU ids Ray
assigned); what is recorded here is the same for every executor.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

import numpy
import torch


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    """git in the package's own checkout (not the caller's working directory)."""
    return subprocess.run(
        ["git", *args],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        timeout=5,
    )


@functools.cache
def git_sha() -> str | None:
    try:
        out = _git("rev-parse", "--short", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    if out.returncode != 0 or not sha:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return sha + ("-dirty" if dirty else "")


def device_name(device: torch.device) -> str | None:
    if device.type == "cuda":
        # None where this process sees no GPU (a Ray driver on a CPU-only login node)
        return torch.cuda.get_device_name(device) if torch.cuda.is_available() else None
    return platform.processor() or platform.machine() or "cpu"


@functools.cache
def software_env() -> dict[str, object]:
    """Versions and git sha: the same in every process of one installation."""
    import hgbench

    return {
        "hgbench": getattr(hgbench, "__version__", None),
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
    }


def gpu_placement(device: torch.device) -> dict[str, object]:
    """Which GPU a cuda device is: the index this process sees, its UUID (stable across
    processes and renumbering), and CUDA_VISIBLE_DEVICES (how the index maps to the machine's)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return {}
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return {
        "gpu_index": index,
        "gpu_uuid": None if uuid is None else f"GPU-{uuid}",
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def placement(device: torch.device) -> dict[str, object]:
    """Where this process runs: host, CPU threads (read live: an executor may set them after
    the first row), device name and which GPU."""
    return {
        "host": platform.node(),
        "cpu_threads": torch.get_num_threads(),
        "device_name": device_name(device),
        **gpu_placement(device),
    }


def environment(device: torch.device) -> dict[str, object]:
    return {**software_env(), **placement(device)}
