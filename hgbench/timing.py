"""Fair timing and memory measurement.

On a GPU every timer boundary synchronises the device, so queued kernels are charged to the region
that launched them. Peak memory on a GPU is `torch.cuda.max_memory_allocated` after a reset at the
start of the measured region; on a CPU it is the process's peak resident set size (ru_maxrss), a
high-water mark of the whole process, not of one cell.
"""

from __future__ import annotations

import resource
import sys
import time

import torch


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
    """Peak memory in MB over a region: GPU allocator peak, or the CPU process's peak RSS."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def read_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB else
