"""peers.py's counts part: what each side of the unroll and IFT contests runs and keeps, counted.

    python benchmarks/peers.py --models cnn-8x8-tanh-nobias-b100,mlp --parts counts

Times on a shared machine vary; these counts do not (the same on every run, on a CPU): per
contest and side, the aten ops dispatched (a TorchDispatchMode under every torch.func
transform), the convolution and matmul calls among them, their FLOPs
(torch.utils.flop_counter), the values read back to the host (`_local_scalar_dense`: a
host-device sync each on a GPU), what autograd saves for backward (SavedTensors, by the node
that saved it ← the op that made it; unmeasurable inside torch.func, so not for torchopt's
implicit side), and for IFT the training-loss graphs built, the Hessian-vector products and the
CG iterations. docs/peers.md explains the ratios with them.
"""

from __future__ import annotations

import collections
import re
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass, field

import ift_vs_torchopt as ift  # benchmarks/ is on sys.path
import torch
import unroll_vs_higher as unroll
from peers_common import Part, batch_of
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from hgbench.engine.memory import SavedTensors

MB = 2**20
HEAVY = ("convolution", "convolution_backward", "mm", "addmm", "bmm")  # the ops with FLOPs


class _Ops(TorchDispatchMode):
    """Counts every aten op that reaches the dispatcher, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


@dataclass
class Counts:
    """One side of one contest, counted over one call."""

    ops: collections.Counter[str] = field(default_factory=collections.Counter)
    gflops: float = 0.0
    saved_peak_mb: float = float("nan")
    saved_total_mb: float = float("nan")
    saved_by_op: dict[str, float] = field(default_factory=dict)
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    hvp_gflops: float = 0.0
    heavy_share: float = float("nan")  # timed: the one figure here that varies with load

    @property
    def heavy(self) -> int:
        return sum(self.ops[k] for k in HEAVY)


def count(job: Callable[[], object], calls: collections.Counter[str] | None = None) -> Counts:
    """Ops, FLOPs and saved tensors of one call of `job` (three calls: one per counter, so
    that no counter sees another's work); `calls` is the job's own tally, reset per call."""
    out = Counts()
    if calls is not None:
        calls.clear()
    with _Ops() as mode:
        job()
    out.ops = mode.ops
    if calls is not None:
        out.calls = collections.Counter(calls)
        calls.clear()
    flops = FlopCounterMode(display=False)
    with flops:
        job()
    out.gflops = flops.get_total_flops() / 1e9
    if calls is not None:
        out.hvp_gflops = calls.pop("hvp_flops", 0) / 1e9
        calls.clear()
    out.heavy_share = _heavy_share(job)
    if calls is not None:
        calls.clear()
    try:
        with SavedTensors() as saved:
            job()
    except RuntimeError:  # torch.func transforms refuse saved-tensor hooks
        return out
    finally:
        if calls is not None:
            calls.clear()
    out.saved_peak_mb, out.saved_total_mb = saved.peak_mb, saved.total_mb
    out.saved_by_op = {k: v / MB for k, v in saved.by_op.items()}
    return out


_HEAVY_EVENT = re.compile(r"conv|pool|^aten::(mm|addmm|bmm)$")  # the kernels' events, CPU


def _heavy_share(job: Callable[[], object]) -> float:
    """The share of one call's time spent inside the convolution, pooling and matmul kernels
    (the profiler's self time of their events over the call's wall time, both wall clock, so
    that another process's turns stretch both): a timing, so it varies with the machine's load,
    unlike everything else here."""
    import time

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        began = time.perf_counter()
        job()
        spent = time.perf_counter() - began
    heavy = sum(e.self_cpu_time_total for e in prof.key_averages() if _HEAVY_EVENT.search(e.key))
    return heavy / 1e6 / spent if spent > 0 else float("nan")


def _counting_solver(solver, calls: collections.Counter[str]):  # noqa: ANN001, ANN202
    """`solver` with its matvec counted (calls and, under a FLOP counter, its FLOPs)."""

    def solve(matvec, b):  # noqa: ANN001, ANN202
        def counted(v):  # noqa: ANN001, ANN202
            calls["hvp"] += 1
            inner = FlopCounterMode(display=False)  # nested: the outer counter sees it too
            with inner:
                out = matvec(v)
            calls["hvp_flops"] += inner.get_total_flops()
            return out

        return solver(counted, b)

    return solve


def ift_counts(name: str, device: torch.device, dtype: torch.dtype) -> dict[str, Counts]:
    """Both sides of the CG-20 contest on one model, at its peers.py state and batches."""
    from hgbench.numerics.implicit import implicit_hypergradient
    from hgbench.numerics.linalg import cg

    calls: collections.Counter[str] = collections.Counter()
    params, hparams, train_loss, val_loss = ift.peer_case(name, device, dtype, calls)
    solver = _counting_solver(cg(20, tol=0.0, report_residual=False), calls)

    def ours() -> object:
        return implicit_hypergradient(train_loss, val_loss, params, hparams, solver)

    def theirs() -> object:
        return ift.torchopt_hypergradient(
            params, hparams, train_loss, val_loss, 20, wrap=lambda s: _counting_solver(s, calls)
        )

    ours(), theirs()  # warm-up (lazy imports, caches)
    calls.clear()
    return {"hgbench": count(ours, calls), "torchopt.implicit": count(theirs, calls)}


def unroll_counts(name: str, device: torch.device, dtype: torch.dtype) -> dict[str, Counts]:
    """Both sides of the K = 20 contest (decay in the step) against `higher`."""
    case = unroll.UnrollCase.make(name, device, dtype, batch=batch_of(name))
    jobs = {
        "hgbench": lambda: unroll.hgbench_unroll(case),
        "higher": lambda: unroll.higher_unroll(case),
    }
    for job in jobs.values():
        job()
    return {side: count(job) for side, job in jobs.items()}


def _table(title: str, sides: dict[str, Counts], steps: int | None = None) -> list[str]:
    names = list(sides)
    head = f"| {title} | " + " | ".join(names) + " | ratio |"
    lines = [head, "|---" * (len(names) + 2) + "|"]

    def row(label: str, vals: list[float], fmt: str = "{:.0f}") -> None:
        ratio = vals[0] / vals[1] if vals[1] else float("nan")
        lines.append(
            f"| {label} | " + " | ".join(fmt.format(v) for v in vals) + f" | {ratio:.2f} |"
        )

    c = [sides[n] for n in names]
    for label, key in (("training-loss graphs built", "training-loss graph"), ("HVPs", "hvp")):
        if any(key in s.calls for s in c):
            row(label, [s.calls[key] for s in c])
    row("aten ops", [sum(s.ops.values()) for s in c])
    if steps:
        row("aten ops per step", [sum(s.ops.values()) / steps for s in c], "{:.1f}")
    row("convolution and matmul calls", [s.heavy for s in c])
    for op in ("max_pool2d_with_indices", "max_pool2d_with_indices_backward"):
        if any(s.ops[op] for s in c):
            row(f"  {op} (pooling)", [s.ops[op] for s in c])
    for op in ("convolution", "convolution_backward", "mm", "addmm"):
        if any(s.ops[op] for s in c):
            row(f"  {op}", [s.ops[op] for s in c])
    row("GFLOPs", [s.gflops for s in c], "{:.4f}")
    if any(s.hvp_gflops for s in c):
        row("  of which in HVPs", [s.hvp_gflops for s in c], "{:.4f}")
    row("share of the time in conv, pool, matmul (timed)", [s.heavy_share for s in c], "{:.2f}")
    row("host reads (_local_scalar_dense)", [s.ops["_local_scalar_dense"] for s in c])
    row("saved tensors, peak MB", [s.saved_peak_mb for s in c], "{:.2f}")
    row("saved tensors, total MB", [s.saved_total_mb for s in c], "{:.2f}")
    return lines


def _by_op(sides: dict[str, Counts], top: int = 12) -> list[str]:
    """Saved MB by node ← op, the largest first, for the sides hooks can see."""
    seen = {n: s for n, s in sides.items() if s.saved_by_op}
    keys = sorted(
        {k for s in seen.values() for k in s.saved_by_op},
        key=lambda k: -max(s.saved_by_op.get(k, 0.0) for s in seen.values()),
    )
    lines = [
        "| saved by (node ← op), MB | " + " | ".join(seen) + " |",
        "|---" * (len(seen) + 1) + "|",
    ]
    for k in keys[:top]:
        lines.append(
            f"| {k} | "
            + " | ".join(f"{s.saved_by_op.get(k, 0.0):.2f}" for s in seen.values())
            + " |"
        )
    rest = [sum(v for k, v in s.saved_by_op.items() if k not in keys[:top]) for s in seen.values()]
    lines.append("| the rest | " + " | ".join(f"{v:.2f}" for v in rest) + " |")
    return lines


def report(models: list[str], device: torch.device, dtype: torch.dtype, args: Namespace) -> None:
    for name in models:
        print(f"\n## {name}: counts per hypergradient ({dtype}, {device})\n")
        u = unroll_counts(name, device, dtype)
        print("\n".join(_table("unroll K = 20 (decay in the step)", u, steps=20)))
        print()
        print("\n".join(_by_op(u)))
        i = ift_counts(name, device, dtype)
        print()
        print("\n".join(_table("IFT CG-20", i)))
        print()
        print("\n".join(_by_op(i)))


PART = Part(needs=("higher", "torchopt"), report=report)
