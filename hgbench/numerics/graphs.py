"""CUDA graphs for static training steps: one capture, then one launch per step instead of dozens.

A small model's step on a GPU is bound by kernel launches and the host (hgbench's Fixup ResNet-8:
about 5 ms a step on an H200 at ~2% of its arithmetic). Replaying a captured graph launches the
whole step at once. A graph replays fixed memory: the batch is copied into static tensors, the
learning rate lives in a device tensor (so a schedule needs no recapture), and everything else the
step touches (params, momentum buffers, generator states) is updated in place.

`sgd_update_` is torch.optim.SGD's foreach update (momentum, no dampening or Nesterov) with the
learning rate as a device tensor: `p.addcmul_(buf, -lr)` rounds once, as SGD's
`_foreach_add_(params, bufs, alpha=-lr)` does, so replayed steps can equal eager ones bit for bit.
Whether they do is measured, not assumed (hgbench.engine.graphcheck), and a capture is kept only
where they do. Nothing here runs on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def sgd_update_(
    params: Sequence[Tensor], bufs: Sequence[Tensor], grads: Sequence[Tensor], momentum: float,
    neg_lr: Tensor,
) -> None:  # fmt: skip
    """buf ← μ buf + g, p ← p − lr buf, in place (torch.optim.SGD's order of operations)."""
    torch._foreach_mul_(list(bufs), momentum)
    torch._foreach_add_(list(bufs), list(grads))
    for p, buf in zip(params, bufs, strict=True):
        p.addcmul_(buf, neg_lr)


class StepGraph:
    """`step` (no arguments, static shapes) captured once: `replay()` runs it again.

    Before the capture `step` runs `warmup` times on a side stream (cuBLAS/cuDNN handles and the
    autograd engine's buffers are created outside the capture, as PyTorch requires); `state` (the
    tensors `step` updates in place) and `generators` are restored afterwards, so capturing
    leaves the training exactly where it was. Generators are registered with the graph, so each
    replay draws fresh numbers from them (where this PyTorch has `register_generator_state`).
    """

    def __init__(
        self,
        step: Callable[[], None],
        state: Sequence[Tensor],
        generators: Sequence[torch.Generator] = (),
        warmup: int = 3,
    ) -> None:
        saved = [t.detach().clone() for t in state]
        rng = [g.get_state() for g in generators]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                step()
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for t, s in zip(state, saved, strict=True):
                t.copy_(s)
        for g, s in zip(generators, rng, strict=True):
            g.set_state(s)
        self.graph = torch.cuda.CUDAGraph()
        if hasattr(self.graph, "register_generator_state"):
            for g in generators:
                self.graph.register_generator_state(g)
        with torch.cuda.graph(self.graph):
            step()

    def replay(self) -> None:
        self.graph.replay()
