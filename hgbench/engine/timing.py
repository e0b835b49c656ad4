"""Fair timing and memory measurement.

On a GPU every timer boundary synchronises the device, so queued kernels are charged to the region
that launched them. Peak memory on a GPU is `torch.cuda.max_memory_allocated` after a reset at the
start of the measured region. On a CPU it is the peak resident set size during the region minus
the resident set size at its start: free heap is handed back to the kernel and the kernel's RSS
high-water mark reset when the region starts (hgbench.engine.memory, Linux), so cells run one
after another in one process compare. Where the reset is unavailable it is the process's lifetime
peak (ru_maxrss), an upper bound that no longer tells cells apart.
"""

from __future__ import annotations

import time

import torch

from hgbench.engine.memory import (
    lifetime_peak_mb,
    release_free_memory,
    reset_peak_rss,
    rss_high_water_mb,
    rss_mb,
)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Sums timed seconds over resume()/pause() pairs; `elapsed()` includes a running span."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.total = 0.0
        self._started: float | None = None

    def resume(self) -> None:
        synchronize(self.device)
        self._started = time.perf_counter()

    def pause(self) -> None:
        synchronize(self.device)
        if self._started is not None:
            self.total += time.perf_counter() - self._started
            self._started = None

    def elapsed(self) -> float:
        # Called by methods mid-region to check their budget: no sync, so it may trail the
        # device by the kernels in flight, which only makes a budget stop slightly later.
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self.total + running


class PeakMemory:
    """Peak memory in MB over a region: the GPU allocator's peak, or on a CPU the RSS peak the
    region added to what was resident at its `reset` (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._base: float | None = None  # RSS at reset, when the high-water mark was reset

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        # no full garbage collection (0.1 s a cell): what a finished cell dropped was freed by
        # reference counting, and the trim hands it back
        release_free_memory(collect=False)
        self._base = rss_mb() if reset_peak_rss() else None

    def read_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        hwm = rss_high_water_mb() if self._base is not None else None
        if hwm is not None:
            return max(hwm - self._base, 0.0)
        return lifetime_peak_mb()
