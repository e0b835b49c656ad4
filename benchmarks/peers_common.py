"""The pieces peers.py and its parts share: the clock, side-by-side timing, the memory figures,
the ratio table's `Row`, `compare`, and the models' data and hparams.

peers.py is the entry point (its command line picks the device and the clock, `set_clock`); its
parts (unroll_vs_higher.py, ift_vs_torchopt.py, laplace_vs_laplace_torch.py,
hypergradient_cost.py) import from here and never from peers.py, so benchmarks/ has no import
cycle. The models are peers_family.py's; the family's summary table is peers_summary.py's.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from peers_family import MODELS  # benchmarks/ is on sys.path
from torch import Tensor, nn

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.schema import StrEnum
from hgbench.engine.memory import PeakRegion, SavedTensors
from hgbench.engine.timing import synchronize

Job = Callable[[], object]


# --- measuring --------------------------------------------------------------------------------
SLOW_S = 10.0  # a job whose warm-up call took longer is not called again
PROFILE_S = 1.0  # nor profiled if its calls take longer


class Clock(StrEnum):
    """What a job's seconds are: the wall clock, the process's CPU time, or CUDA events."""

    WALL = "wall"
    CPU = "cpu"
    CUDA_EVENT = "cuda-event"


# The CPU time of the process (time.process_time, all its threads) is the default on a CPU: on a
# shared machine the wall clock also counts the time other processes hold the core, and more so
# for long calls than for short ones (a 2 ms call often runs within one scheduler slice, a 100 ms
# one is preempted in proportion), which biases every ratio of a long call to a short one (the
# TSE table) upwards. On a quiet machine, with one thread, the two agree.
# On a GPU, CUDA events recorded on the stream before and after the call (the default there):
# the device's own time from the first kernel queued to the last one finished, without the
# host's synchronisation at either end.
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]
use_events = False


def set_clock(chosen: Clock) -> None:
    """What `timed` measures from now on (peers.py sets it from --clock and --device)."""
    global clock, use_events
    use_events = chosen == Clock.CUDA_EVENT
    clock = CLOCK.get(chosen.value, time.perf_counter)


def timed(job: Job, device: torch.device) -> float:
    """Seconds of one call by `clock`, or by CUDA events when `use_events`."""
    if use_events:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        synchronize(device)
        start.record()
        job()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    synchronize(device)
    began = clock()
    job()
    synchronize(device)
    return clock() - began


def side_by_side(jobs: dict[str, Job], rounds: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of every job (by `clock`), `rounds` alternating rounds after one warm-up
    call each. A job whose warm-up took over SLOW_S seconds keeps that one time as its only
    sample."""
    times: dict[str, list[float]] = {}
    for name, job in jobs.items():
        elapsed = timed(job, device)
        times[name] = [elapsed] if elapsed > SLOW_S else []
    for _ in range(rounds):
        for name, job in jobs.items():
            if times[name] and times[name][0] > SLOW_S:
                continue
            times[name].append(timed(job, device))
    return times


def peak_mb(job: Job, device: torch.device) -> float:
    """Peak memory of one call in MB: the allocator's peak on a GPU; on a CPU the peak of the
    running sum of the profiler's allocation and free events (ops' net allocations)."""
    if device.type == "cuda":
        synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        job()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            job()
    events = [
        (
            e.time_range.start,
            e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage,
        )
        for e in prof.events()
    ]
    current = peak = 0
    for _, delta in sorted(events, key=lambda t: t[0]):
        current += delta
        peak = max(peak, current)
    return peak / 2**20


def saved_mb(job: Job) -> float:
    """Peak MB of what autograd saves for backward during one call
    (hgbench.engine.memory.SavedTensors): deterministic, the same on any device, and the figure
    peers.py's summary uses where both sides keep an autograd graph. NaN where the hooks cannot run
    (inside some torch.func transforms)."""
    try:
        with SavedTensors() as saved:
            job()
    except RuntimeError:
        return float("nan")
    return saved.peak_mb


def rss_peak_mb(job: Job, device: torch.device) -> float:
    """On a CPU, a second view of one call's memory: the process's peak resident set size over
    the call minus its RSS before it (hgbench.engine.memory.PeakRegion, as the scaling sweep
    measures). It sees what the profiler's events miss (allocations inside torch.func
    transforms: torchopt's implicit differentiation shows 0.2 MB by events, 1.8 MB by RSS), but
    counts whole pages and not memory the allocator reuses. NaN on a GPU (the first is exact)."""
    if device.type == "cuda":
        return float("nan")
    with PeakRegion(device) as region:
        job()
    assert region.result is not None
    return region.result.peak_mb


@dataclass
class Row:
    """One line of the ratio table: hgbench against one peer on one case."""

    part: str
    case: str
    peer: str
    ours_s: list[float]
    peer_s: list[float]
    ours_mb: float
    peer_mb: float
    agreement: str
    agrees: bool
    ours_rss: float = float("nan")
    peer_rss: float = float("nan")
    ours_saved: float = float("nan")
    peer_saved: float = float("nan")

    def memory_ratio(self, figure: str) -> float:
        """hgbench / peer by one memory figure: saved (tensors), tensor (peak) or rss."""
        ours, peer = {
            "saved": (self.ours_saved, self.peer_saved),
            "tensor": (self.ours_mb, self.peer_mb),
            "rss": (self.ours_rss, self.peer_rss),
        }[figure]
        return ours / peer if peer > 0 else float("nan")

    def ratio(self) -> tuple[float, float, float]:
        """Median ratio and its range over rounds (round by round where both have them)."""
        pairs = [a / b for a, b in zip(self.ours_s, self.peer_s, strict=False)]
        med = statistics.median(self.ours_s) / statistics.median(self.peer_s)
        return med, min(pairs), max(pairs)


RowsFn = Callable[[str, torch.device, torch.dtype, argparse.Namespace], list[Row]]
ReportFn = Callable[[list[str], torch.device, torch.dtype, argparse.Namespace], None]


@dataclass(frozen=True)
class Part:
    """One part of peers.py: the peers' modules it needs (checked before any work), and its rows
    of the ratio table per model, or a report over all the models printed after the table."""

    needs: tuple[str, ...] = ()
    rows: RowsFn | None = None
    report: ReportFn | None = None


def compare(
    part: str,
    case: str,
    ours: Job,
    peers: dict[str, Job],
    agreement: dict[str, tuple[str, bool]],
    rounds: int,
    device: torch.device,
) -> list[Row]:
    """Time hgbench and every peer side by side, measure their memory, one Row per peer; a
    peer in `agreement` but not in `peers` (it failed) gets a row without figures."""
    jobs = {"hgbench": ours, **peers}
    times = side_by_side(jobs, rounds, device)
    slow = {name for name in jobs if times[name][0] > SLOW_S}
    # the profiler's events of a call of seconds fill gigabytes (Curvlinops' diagonal GGN of the
    # MLP, 12 s, ran out of memory under --max-memory-gb): none for such a call
    long = {name for name in jobs if statistics.median(times[name]) > PROFILE_S}
    nan = float("nan")
    mem = {name: nan if name in slow | long else peak_mb(job, device) for name, job in jobs.items()}
    rss = {name: nan if name in slow else rss_peak_mb(job, device) for name, job in jobs.items()}
    saved = {name: nan if name in slow else saved_mb(job) for name, job in jobs.items()}
    rows = [
        Row(
            part,
            case,
            name,
            times["hgbench"],
            times[name],
            mem["hgbench"],
            mem[name],
            *agreement[name],
            rss["hgbench"],
            rss[name],
            saved["hgbench"],
            saved[name],
        )
        for name in peers
    ]
    # peers that could not run (a structure or layer they lack, too much memory): listed, untimed
    rows += [
        Row(part, case, name, times["hgbench"], [nan], mem["hgbench"], nan, *agreement[name])
        for name in agreement
        if name not in peers
    ]
    print_table(rows, header=False)  # progress: the full table comes at the end
    return rows


def print_table(rows: list[Row], header: bool = True) -> None:
    if header:
        print(
            f"\n{'part':8} {'case':22} {'peer':22} {'hgbench s':>10} {'peer s':>9} "
            f"{'time ratio':>18} {'saved MB':>8} {'peer':>7} {'saved':>5} "
            f"{'hgbench MB':>10} {'peer MB':>8} {'mem':>5} "
            f"{'RSS MB':>7} {'peer':>7} {'rss':>5}  agreement"
        )
    for r in rows:
        med, lo, hi = r.ratio()
        mem = r.ours_mb / r.peer_mb if r.peer_mb > 0 else float("nan")
        rss = r.memory_ratio("rss")
        sav = r.memory_ratio("saved")
        mark = "" if r.agrees or r.agreement.startswith("failed") else "  (differs: no baseline)"
        print(
            f"{r.part:8} {r.case:22} {r.peer:22} {statistics.median(r.ours_s):10.4f} "
            f"{statistics.median(r.peer_s):9.4f} {med:6.2f} [{lo:4.2f}-{hi:4.2f}] "
            f"{r.ours_saved:8.2f} {r.peer_saved:7.2f} {sav:5.2f} "
            f"{r.ours_mb:10.1f} {r.peer_mb:8.1f} {mem:5.2f} "
            f"{r.ours_rss:7.1f} {r.peer_rss:7.1f} {rss:5.2f}  {r.agreement}{mark}",
            flush=True,
        )


# --- models, data and hparams -------------------------------------------------------------
def batch_of(name: str) -> int:
    """The batch a model's contests use (peers_family.Arch.batch)."""
    return MODELS[name].batch


def digits(n_train: int, n_val: int, device: torch.device, dtype: torch.dtype):
    from hgbench.tasks.digits import digits_splits

    s = digits_splits(0, n_train, n_val)
    move = lambda t: t.to(device, dtype if t.is_floating_point() else None)  # noqa: E731
    return move(s.x_train), move(s.y_train), move(s.x_val), move(s.y_val)


def build(name: str, device: torch.device, dtype: torch.dtype, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = MODELS[name].module().to(device, dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def trainable(model: nn.Module) -> nn.Module:
    """A copy of a (frozen) held-out model with trainable parameters, as the peers take it."""
    model = copy.deepcopy(model)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def log_wd(model: nn.Module, lo: float = -6.0, hi: float = -3.0) -> dict[str, Tensor]:
    """One log weight decay per tensor, distinct so a mix-up between tensors would show."""
    names = [k for k, _ in model.named_parameters()]
    p = next(model.parameters())
    values = torch.linspace(lo, hi, len(names), dtype=p.dtype, device=p.device)
    return {WD_PREFIX + k: values[i].clone() for i, k in enumerate(names)}
