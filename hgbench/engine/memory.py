"""Peak memory of one measured region, per cell: what `peak_mem_mb` means in rows (the
runner's cells through hgbench.engine.timing.PeakMemory, the scaling sweep's through `PeakRegion`).

On a CPU the number is the peak resident set size (RSS) of the cell's own worker process during
the region, minus its RSS just before it: memory the region itself touched, in a process that ran
nothing else (hgbench.engine.scaling.pool starts one per cell). Two things make that a per-region
figure: free heap memory is handed back to the kernel before the region (`malloc_trim`), so the
region cannot silently reuse pages an earlier allocation left resident; and the kernel's RSS
high-water mark is reset at its start (writing 5 to /proc/self/clear_refs, Linux ≥ 4.0). Where the
reset is unavailable the process's lifetime peak is used instead, an upper bound (`method` says
which).

On a GPU it is `torch.cuda.max_memory_allocated` over the region after a reset, as elsewhere in
hgbench (its base, `memory_allocated` before the region, is kept beside it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

MB = 2**20
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class RegionMemory:
    """A region's memory: `peak_mb` (what rows store), `base_mb` before it, and how measured."""

    peak_mb: float
    base_mb: float
    method: str  # rss-hwm-reset | rss-lifetime-peak | cuda-max-allocated


def _status_kb(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float:
    """This process's resident set size now (MB); its lifetime peak where /proc is missing."""
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else lifetime_peak_mb()


def rss_high_water_mb() -> float | None:
    """The kernel's RSS high-water mark (MB) since its last reset; None where /proc is missing."""
    kb = _status_kb("VmHWM")
    return None if kb is None else kb / 1024


def lifetime_peak_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / MB if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB else


def virtual_mb() -> float | None:
    kb = _status_kb("VmSize")
    return None if kb is None else kb / 1024


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


def release_free_memory(collect: bool = True) -> None:
    """Collect garbage (a full collection: ~0.1 s with torch loaded, so optional) and hand free
    heap pages back to the kernel (glibc's malloc_trim, ~0.1 ms)."""
    if collect:
        gc.collect()
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS; False where unsupported."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


class PeakRegion:
    """`with PeakRegion(device) as region: ...` then `region.result` (a RegionMemory)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.result: RegionMemory | None = None

    def __enter__(self) -> PeakRegion:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device) / MB
            return self
        release_free_memory()
        self._reset = reset_peak_rss()
        self._base = rss_mb()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / MB
            self.result = RegionMemory(peak, self._base, "cuda-max-allocated")
            return
        if self._reset:
            hwm = _status_kb("VmHWM")
            assert hwm is not None
            peak, method = hwm / 1024, "rss-hwm-reset"
        else:
            peak, method = lifetime_peak_mb(), "rss-lifetime-peak"
        self.result = RegionMemory(max(peak - self._base, 0.0), self._base, method)


def limit_address_space(extra_mb: float) -> None:
    """Let this process map at most `extra_mb` more virtual memory than it has now (RLIMIT_AS):
    an allocation beyond fails with an error (torch: "can't allocate memory") instead of pushing
    a shared machine into swap or the OOM killer. No-op where the limit cannot be read or set."""
    now = virtual_mb()
    if now is None or not hasattr(resource, "RLIMIT_AS"):
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = int((now + extra_mb) * MB)
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    except (ValueError, OSError):
        return


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception is an allocation failure (CPU allocator, MemoryError, CUDA OOM)."""
    if isinstance(exc, MemoryError | torch.cuda.OutOfMemoryError):
        return True
    text = str(exc)
    return "can't allocate memory" in text or "out of memory" in text.lower()


class SavedTensors:
    """What autograd saves for backward inside a region, counted by saved-tensor hooks
    (torch.autograd.graph.saved_tensors_hooks): a deterministic memory figure, the same on every
    run and machine, where the profiler's and the kernel's figures vary with the allocator.

    Each distinct storage counts once while any saved tensor on it lives (held by a graph or by
    the caller: a graph freed by its backward stops counting what only it held); `peak_mb` is
    the largest total over the region, `total_mb` what was ever saved, `by_op` that total per
    autograd node name (which op saved it) and `marks` the live total at each `mark()`."""

    def __init__(self) -> None:
        self._live: dict[int, list[int]] = {}  # storage key -> [live saved tensors, bytes]
        self.current = self.peak = self.total = 0
        self.by_op: dict[str, int] = {}
        self.marks: list[int] = []

    def _key(self, t: torch.Tensor) -> tuple[int, int]:
        try:
            storage = t.untyped_storage()
            return storage.data_ptr(), storage.nbytes()
        except (RuntimeError, NotImplementedError):  # a functorch wrapper: no storage of its own
            return id(t), t.numel() * t.element_size()

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        import weakref

        key, nbytes = self._key(t)
        entry = self._live.setdefault(key, [0, nbytes])
        if entry[0] == 0:
            self.current += nbytes
            self.total += nbytes
            self.peak = max(self.peak, self.current)
            # who saves it (the backward node running, in a double backward) and what it is
            node = torch._C._current_autograd_node()
            maker = type(t.grad_fn).__name__ if t.grad_fn is not None else "no graph"
            name = f"{type(node).__name__ if node is not None else 'forward'} <- {maker}"
            self.by_op[name] = self.by_op.get(name, 0) + nbytes
        entry[0] += 1
        weakref.finalize(t, self._release, key)
        return t

    def _release(self, key: int) -> None:
        entry = self._live[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self._live[key]

    def mark(self) -> None:
        self.marks.append(self.current)

    @property
    def peak_mb(self) -> float:
        return self.peak / MB

    @property
    def total_mb(self) -> float:
        return self.total / MB

    def __enter__(self) -> SavedTensors:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)
