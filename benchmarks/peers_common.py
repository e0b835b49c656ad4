"""What benchmarks/peers.py and its parts share: measuring (alternating rounds, peak memory, the
clock), the ratio rows and their table, the held-out models and data, and the options and setup
of a run. The parts (unroll_vs_higher.py, ift_vs_torchopt.py, laplace_vs_laplace_torch.py,
hypergradient_cost.py) import this module, and peers.py imports them: no part imports peers.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.schema import StrEnum
from hgbench.engine.memory import PeakRegion, limit_address_space
from hgbench.engine.timing import synchronize

Job = Callable[[], object]
ALL_PARTS = "unroll,ift,laplace,tse"


# --- measuring --------------------------------------------------------------------------------
SLOW_S = 10.0  # a job whose warm-up call took longer is not called again


class Clock(StrEnum):
    """What a job's seconds are: the wall clock, or the process's CPU time."""

    WALL = "wall"
    CPU = "cpu"


# The CPU time of the process (time.process_time, all its threads) is the default on a CPU: on a
# shared machine the wall clock also counts the time other processes hold the core, and more so
# for long calls than for short ones (a 2 ms call often runs within one scheduler slice, a 100 ms
# one is preempted in proportion), which biases every ratio of a long call to a short one (the
# TSE table) upwards. On a quiet machine, with one thread, the two agree.
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]


def side_by_side(jobs: dict[str, Job], rounds: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of every job (by `clock`), `rounds` alternating rounds after one warm-up
    call each. A job whose warm-up took over SLOW_S seconds keeps that one time as its only
    sample."""
    times: dict[str, list[float]] = {}
    for name, job in jobs.items():
        synchronize(device)
        start = clock()
        job()
        synchronize(device)
        elapsed = clock() - start
        times[name] = [elapsed] if elapsed > SLOW_S else []
    for _ in range(rounds):
        for name, job in jobs.items():
            if times[name] and times[name][0] > SLOW_S:
                continue
            synchronize(device)
            start = clock()
            job()
            synchronize(device)
            times[name].append(clock() - start)
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

    def ratio(self) -> tuple[float, float, float]:
        """Median ratio and its range over rounds (round by round where both have them)."""
        pairs = [a / b for a, b in zip(self.ours_s, self.peer_s, strict=False)]
        med = statistics.median(self.ours_s) / statistics.median(self.peer_s)
        return med, min(pairs), max(pairs)


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
    nan = float("nan")
    mem = {name: nan if name in slow else peak_mb(job, device) for name, job in jobs.items()}
    rss = {name: nan if name in slow else rss_peak_mb(job, device) for name, job in jobs.items()}
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
            f"{'time ratio':>18} {'hgbench MB':>10} {'peer MB':>8} {'mem':>5} "
            f"{'RSS MB':>7} {'peer':>7} {'rss':>5}  agreement"
        )
    for r in rows:
        med, lo, hi = r.ratio()
        mem = r.ours_mb / r.peer_mb if r.peer_mb > 0 else float("nan")
        rss = r.ours_rss / r.peer_rss if r.peer_rss > 0 else float("nan")
        mark = "" if r.agrees or r.agreement.startswith("failed") else "  (differs: no baseline)"
        print(
            f"{r.part:8} {r.case:22} {r.peer:22} {statistics.median(r.ours_s):10.4f} "
            f"{statistics.median(r.peer_s):9.4f} {med:6.2f} [{lo:4.2f}-{hi:4.2f}] "
            f"{r.ours_mb:10.1f} {r.peer_mb:8.1f} {mem:5.2f} "
            f"{r.ours_rss:7.1f} {r.peer_rss:7.1f} {rss:5.2f}  {r.agreement}{mark}",
            flush=True,
        )


# --- models and data --------------------------------------------------------------------------
def mlp(widths: tuple[int, ...] = (128, 128)) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in, fan_out in zip((64, *widths[:-1]), widths, strict=True):
        layers += [nn.Linear(fan_in, fan_out), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], 10))


def cnn(width: int = 16) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * width, 10),
    )


MODELS: dict[str, Callable[[], nn.Module]] = {"mlp": mlp, "cnn": cnn}


def digits(n_train: int, n_val: int, device: torch.device, dtype: torch.dtype):
    from hgbench.tasks.digits import digits_splits

    s = digits_splits(0, n_train, n_val)
    move = lambda t: t.to(device, dtype if t.is_floating_point() else None)  # noqa: E731
    return move(s.x_train), move(s.y_train), move(s.x_val), move(s.y_val)


def build(name: str, device: torch.device, dtype: torch.dtype, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = MODELS[name]().to(device, dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def log_wd(model: nn.Module, lo: float = -6.0, hi: float = -3.0) -> dict[str, Tensor]:
    """One log weight decay per tensor, distinct so a mix-up between tensors would show."""
    names = [k for k, _ in model.named_parameters()]
    p = next(model.parameters())
    values = torch.linspace(lo, hi, len(names), dtype=p.dtype, device=p.device)
    return {WD_PREFIX + k: values[i].clone() for i, k in enumerate(names)}


def parse_options(
    argv: list[str] | None, parts: str = "unroll,ift,laplace,tse"
) -> argparse.Namespace:
    """peers.py's options (a part run alone takes the same, with its own `--parts` default)."""
    parser = argparse.ArgumentParser(description="hgbench against its peers, side by side")
    parser.add_argument("--parts", default=parts)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch's default)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--structures", default="diag,kron,full", help="laplace part")
    parser.add_argument(
        "--max-memory-gb",
        type=float,
        default=12.0,
        help="address space beyond the process's own at the start (CPU): a peer that maps "
        "more fails and is listed so "
        "(Curvlinops' full GGN of the CNN asks for ~22 GB), instead of the machine killing the run",
    )
    parser.add_argument(
        "--clock",
        choices=[c.value for c in Clock],
        default=None,
        help="seconds of the wall clock or of the process's CPU time (default: cpu on a CPU)",
    )
    return parser.parse_args(argv)


def configure(args: argparse.Namespace) -> tuple[torch.device, torch.dtype]:
    """The clock, threads and memory limit the options ask for; prints the run's header line."""
    global clock
    chosen = Clock(args.clock or ("cpu" if args.device == "cpu" else "wall"))
    clock = CLOCK[chosen.value]
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.max_memory_gb > 0 and args.device == "cpu":  # a GPU context maps far more
        limit_address_space(args.max_memory_gb * 1024)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__}, {where}, {torch.get_num_threads()} threads, {args.dtype}, "
        f"{args.rounds} alternating rounds, {chosen.value} clock, load average "
        f"{os.getloadavg()[0]:.2f} at the start"
    )
    return device, dtype
