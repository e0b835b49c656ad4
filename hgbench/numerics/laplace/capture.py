"""One forward and K backward passes over a chunk of examples, from module hooks: what every
curvature structure is built from (the contractions themselves: hgbench.numerics.laplace.layers).

With Λ_n = M_n M_nᵀ (hgbench.numerics.laplace.jacobians), backward pass k carries column k of M_n
from the outputs to every hooked module's output, for all examples at once. Linear and Conv2d layers
keep their inputs and these gradients; other modules that own parameters get their rows by a
per-row VJP of the module alone. Tensors in no hooked module (a module with several inputs, or
called on something other than a batch of rows) come from per-example Jacobians of the whole
network: correct for any model, slower. A module called several times per forward (weight
sharing) sums its calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.func import functional_call

from hgbench.contracts.hparams import Params
from hgbench.contracts.task import Likelihood
from hgbench.numerics.laplace.jacobians import Rows, hessian_factor, linearize
from hgbench.numerics.laplace.layers import (
    LinearCapture,
    Mask,
    RowCapture,
    generic_rows,
    is_linear,
    layer_grads,
    layer_inputs,
    own_params,
)

# (params, inputs) -> (n, C) outputs; examples must not interact (no BatchNorm)
ModelFn = Callable[[Params, Tensor], Tensor]

# Elements of factor-column gradients a `sink` receives at once: the diagonal and K-FAC take
# columns in groups of this size (at least one column), which bounds their memory
_GRAD_BUDGET = 2**18


@dataclass
class Capture:
    """Everything a structure needs from one chunk of n examples: the outputs f (n, C), the
    Linear/Conv2d layers' a and g, and the other tensors' rows."""

    f: Tensor
    k: int  # factor columns it holds (C, fewer in a group handed to a sink, 1 for single splits)
    columns: slice = field(default_factory=lambda: slice(None))  # which of them: all, or a group
    layers: dict[str, LinearCapture] = field(default_factory=dict)
    other: RowCapture = field(default_factory=lambda: RowCapture({}))

    @property
    def n(self) -> int:
        return self.f.shape[0]

    def parts(self) -> list[LinearCapture | RowCapture]:
        return [*self.layers.values(), self.other]

    def rows(self, exclude: frozenset[str] | set[str] = frozenset()) -> Rows:
        """Factor rows per tensor (but those in `exclude`), (n, K, *shape)."""
        out: Rows = {}
        for part in self.parts():
            out.update(part.rows(exclude))
        return out

    def diag(self, masks: list[Mask]) -> list[dict[str, Tensor]]:
        """Σ_{n,k} m_{nk} L_{nk}² per tensor, one dict per mask."""
        out: list[dict[str, Tensor]] = [{} for _ in masks]
        for part in self.parts():
            for res, term in zip(out, part.diag(masks), strict=True):
                res.update(term)
        return out

    def grams(self, names: set[str]) -> dict[str, Tensor]:
        """L_t L_tᵀ (nK × nK) for the tensors in `names`."""
        out: dict[str, Tensor] = {}
        for part in self.parts():
            out.update(part.grams(names))
        return out


Sink = Callable[[Capture], None]
Calls = dict[str, list[tuple[Tensor, Tensor]]]  # module -> its (input, output) per call
Owners = dict[str, tuple[nn.Module, str, dict[str, str]]]  # module -> (module, prefix, tensors)


def capture(
    model: nn.Module,
    params: Params,
    inputs: Tensor,
    likelihood: Likelihood,
    wrt: list[str],
    columns: Tensor | None = None,
    layerwise: bool = True,
    fn: ModelFn | None = None,
    sink: Sink | None = None,
) -> Capture:
    """The pieces of the factor rows of `wrt` on a chunk of inputs (n, ...) at `params`.

    `fn(params, inputs)` must call `model` on `inputs` (default: functional_call). `columns`
    (n,): keep factor column columns[i] of example i only (K = 1, one backward pass). Without
    `layerwise` every tensor comes from per-example Jacobians (the slow reference). With a
    `sink`, groups of factor columns are handed to it as Captures of those columns alone (their
    `columns` says which) as soon as their backward passes are done, and only f is returned:
    the diagonal and K-FAC sums need no more than one group's gradients in memory at a time.
    Everything stays differentiable in what `inputs` depend on (augmentation magnitudes),
    including through Λ(f); at fixed inputs it is detached.
    """
    if fn is None:
        fn = lambda p, x: functional_call(model, p, (x,))  # noqa: E731
    chosen = set(wrt)
    create_graph = inputs.requires_grad
    owners: Owners = {}
    if layerwise:
        for name, module in model.named_modules():
            prefix = f"{name}." if name else ""
            own = own_params(module, prefix, chosen)
            if own:
                owners[name] = (module, prefix, own)
    store: dict[str, list[tuple[Tensor | None, Tensor]]] = {name: [] for name in owners}

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
            store[name].append((args[0] if len(args) == 1 else None, out))

        return hook

    # fresh leaves, so the layer outputs are in a graph even at fixed inputs
    leaves = {k: (v.detach().requires_grad_(True) if k in chosen else v) for k, v in params.items()}
    handles = [m.register_forward_hook(make_hook(name)) for name, (m, _, _) in owners.items()]
    with torch.enable_grad():  # the K backward passes need a graph, even under no_grad
        try:
            f = fn(leaves, inputs)  # (n, C)
        finally:
            for h in handles:
                h.remove()
        n = f.shape[0]
        # modules called on batches of rows (examples × copies) with a single input
        calls: Calls = {
            name: [(x if create_graph else x.detach(), out) for x, out in seen if x is not None]
            for name, seen in store.items()
            if seen and all(x is not None and x.shape[0] % n == 0 for x, _ in seen)
        }
        # Λ(f)'s factor is the VJP's cotangent; it carries a graph only where the inputs do
        factor = hessian_factor(f if create_graph else f.detach(), likelihood)  # (n, C, K)
        if columns is not None:  # one chosen column per example: (n, C, 1)
            factor = factor.gather(2, columns[:, None, None].expand(n, factor.shape[1], 1))
        k = factor.shape[-1]
        result = Capture(f if create_graph else f.detach(), k, slice(0, k))
        # the Linear/Conv2d inputs once per chunk, (n, in', copies · R), for every column
        inputs_of = {
            name: _cat([layer_inputs(owners[name][0], x, n) for x, _ in seen])
            for name, seen in calls.items()
            if is_linear(owners[name][0])
        }
        outs = [out for seen in calls.values() for _, out in seen]
        grads = _backward(f, outs, factor, create_graph, sink is not None)
        for cols, per_out in grads:
            part = _assemble(result.f, cols, calls, owners, inputs_of, per_out, params)
            if sink is None:
                result = part
            else:
                sink(part)
    done = {t for name in calls for t in owners[name][2].values()}
    rest = [t for t in wrt if t not in done]
    if rest:
        rest_rows, _ = linearize(fn, params, inputs, likelihood, rest, None)
        if columns is not None:
            pick = torch.arange(n, device=columns.device)
            rest_rows = {t: r[pick, columns].unsqueeze(1) for t, r in rest_rows.items()}
        if sink is None:
            result.other.rows_.update(rest_rows)
        else:
            sink(Capture(result.f, k, slice(0, k), other=RowCapture(rest_rows)))
    return result


def _backward(f: Tensor, outs: list[Tensor], factor: Tensor, create_graph: bool, grouped: bool):
    """Yields (columns, [gradient (rows, columns, *out) per output]): all K columns at once,
    or, `grouped`, groups of columns whose gradients fit _GRAD_BUDGET, each column copied into
    its group's buffer as it comes (no second copy by a stack)."""
    k = factor.shape[-1]
    if not outs:
        return
    group, first, buffers, stored = k, 0, [], []
    for col in range(k):
        per_out = torch.autograd.grad(
            f,
            outs,
            grad_outputs=factor[:, :, col],
            retain_graph=col < k - 1 or create_graph,
            create_graph=create_graph,
        )
        if create_graph or not grouped:  # a graph through a buffer's copies costs more
            stored.append(per_out)
            if grouped or col == k - 1:
                cols = slice(col, col + 1) if grouped else slice(0, k)
                yield cols, [torch.stack(g, 1) for g in zip(*stored, strict=True)]
                stored = []
            continue
        if col == first:
            size = sum(g.numel() for g in per_out)
            group = max(1, min(k - first, _GRAD_BUDGET // max(size, 1)))
            buffers = [g.new_empty((g.shape[0], group, *g.shape[1:])) for g in per_out]
        for buf, g in zip(buffers, per_out, strict=True):
            buf[:, col - first].copy_(g)
        del per_out
        if col - first + 1 == group:
            yield slice(first, col + 1), buffers
            first = col + 1


def _cat(parts: list[Tensor]) -> Tensor:
    """The calls of a layer side by side along positions (last dim); one call: itself, no copy
    (a cat of one tensor copies it: ~15% of a diagonal fit of a small MLP)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, -1)


def _assemble(
    f: Tensor,
    cols: slice,
    calls: Calls,
    owners: Owners,
    inputs_of: dict[str, Tensor],
    grads: list[Tensor],
    params: Params,
) -> Capture:
    """A Capture from the factor-column gradients (rows, K, *out) of every call's output."""
    n = f.shape[0]
    result = Capture(f, cols.stop - cols.start, cols)
    other: Rows = {}
    i = 0
    for name, seen in calls.items():
        module, prefix, own = owners[name]
        gs = grads[i : i + len(seen)]
        i += len(seen)
        if is_linear(module):
            g = _cat([layer_grads(module, g, n) for g in gs])  # (n, K, out, R)
            weight = own.get("weight")
            shape = tuple(params[weight].shape) if weight is not None else None
            result.layers[name] = LinearCapture(weight, own.get("bias"), shape, inputs_of[name], g)
        else:
            for (x, _), g in zip(seen, gs, strict=True):
                for t, r in generic_rows(module, prefix, own, params, x, g, n).items():
                    other[t] = other[t] + r if t in other else r
    result.other = RowCapture(other)
    return result
