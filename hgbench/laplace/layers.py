"""Layer-wise pieces of the factor rows for nn.Linear and nn.Conv2d, from module hooks.

For a layer applied at R positions per example (R = 1 for Linear on flat inputs; the output
pixels for Conv2d; times S for a model that averages its logits over S augmented copies), the
factor row k of example n restricted to its weight is a sum of outer products,

    L_{nk}[W] = Σ_r g_{nkr} a_{nr}ᵀ,    L_{nk}[b] = Σ_r g_{nkr},

with a_{nr} the layer's input (unfolded patch for a convolution) and g_{nkr} the gradient of
(M_nᵀ f_n)_k with respect to the layer's output at position r. One forward pass and K backward
passes (one per column of the Hessian factor M, all examples at once) give every a and g. From
them: K-FAC factors (hgbench.laplace.kron), the rows themselves (as BackPACK does), and, for
R = 1, the layer's NTK without forming any row:

    L[W] L[W]ᵀ = (G Gᵀ) ⊙ (A Aᵀ ⊗ 1_{K×K}),   G: (N K × out),  A: (N × in)

which costs (NK)²·out + N²·in instead of (NK)²·out·in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hgbench.hparams import Params
from hgbench.laplace.jacobians import hessian_factor
from hgbench.task import Likelihood

SUPPORTED = (nn.Linear, nn.Conv2d)


def covered_layers(model: nn.Module, wrt: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """Layers handled here: module name -> (weight name, bias name) among `wrt` (else None)."""
    out = {}
    for name, module in model.named_modules():
        if not isinstance(module, SUPPORTED):
            continue
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            continue
        prefix = f"{name}." if name else ""
        weight = prefix + "weight" if prefix + "weight" in wrt else None
        bias = prefix + "bias" if module.bias is not None and prefix + "bias" in wrt else None
        if weight is not None or bias is not None:
            out[name] = (weight, bias)
    return out


def _positions(x: Tensor) -> Tensor:
    """(rows, ..., d) -> (rows, positions, d)."""
    return x.reshape(x.shape[0], -1, x.shape[-1])


def _layer_inputs(module: nn.Module, a: Tensor) -> Tensor:
    """The layer's input vectors per position, (rows, R, in')."""
    if isinstance(module, nn.Conv2d):
        patches = F.unfold(
            a, module.kernel_size, module.dilation, module.padding, module.stride
        )  # (rows, in', L)
        return patches.transpose(1, 2)
    return _positions(a)


def _layer_grads(module: nn.Module, g: Tensor) -> Tensor:
    """Output gradients per position, (rows, R, out)."""
    if isinstance(module, nn.Conv2d):
        return g.flatten(2).transpose(1, 2)
    return _positions(g)


@dataclass
class LayerCapture:
    """One layer's inputs a (rows, R, in') and factor-column output gradients g (K, rows, R, out);
    `rows` = examples × copies (module calls per example)."""

    weight: str | None
    bias: str | None
    weight_shape: tuple[int, ...] | None
    a: Tensor
    g: Tensor
    copies: int

    def rows(self, n: int) -> dict[str, Tensor]:
        """The factor rows of this layer's tensors, (n, K, *shape)."""
        k = self.g.shape[0]
        g = self.g.reshape(k, n, -1, self.g.shape[-1])  # (K, n, copies·R, out)
        out = {}
        if self.weight is not None:
            a = self.a.reshape(n, -1, self.a.shape[-1])  # (n, copies·R, in')
            w = torch.einsum("knri,nrj->nkij", g, a)
            out[self.weight] = w.reshape(n, k, *self.weight_shape)
        if self.bias is not None:
            out[self.bias] = g.sum(2).transpose(0, 1)  # (n, K, out)
        return out

    def grams(self, n: int) -> dict[str, Tensor]:
        """L_t L_tᵀ per tensor, (nK × nK) with rows ordered (n, k): the layer's NTK blocks."""
        k = self.g.shape[0]
        out = {}
        single = self.copies * self.a.shape[1] == 1
        if self.weight is not None:
            if single:  # (G Gᵀ) ⊙ (A Aᵀ ⊗ 1): no row is ever formed
                g = self.g[:, :, 0].transpose(0, 1).reshape(n * k, -1)  # (nK, out)
                a = self.a[:, 0]  # (n, in)
                aa = (a @ a.T).repeat_interleave(k, 0).repeat_interleave(k, 1)
                out[self.weight] = (g @ g.T) * aa
            else:
                flat = self.rows(n)[self.weight].flatten(2).flatten(0, 1)
                out[self.weight] = flat @ flat.T
        if self.bias is not None:
            b = self.g.reshape(k, n, -1, self.g.shape[-1]).sum(2).transpose(0, 1)
            b = b.reshape(n * k, -1)
            out[self.bias] = b @ b.T
        return out


def capture_layers(
    model: nn.Module,
    fn: Callable[[Params, Tensor], Tensor],
    params: Params,
    inputs: Tensor,
    likelihood: Likelihood,
    wrt: list[str],
    columns: Tensor | None = None,
) -> tuple[dict[str, LayerCapture], Tensor]:
    """Inputs and factor-column output gradients of every covered layer, and the outputs f.

    `fn(params, inputs)` must call `model` (e.g. through functional_call) on `inputs` (B, ...).
    `columns` (B,): only factor column columns[n] of each example (K = 1, one backward pass).
    Everything stays differentiable in what `inputs` depend on (augmentation magnitudes),
    including through Λ(f); at fixed inputs it is detached.
    """
    layers = covered_layers(model, wrt)
    names = list(layers)
    modules = dict(model.named_modules())
    create_graph = inputs.requires_grad
    store: dict[str, tuple[Tensor, Tensor]] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
            store[name] = (args[0], out)

        return hook

    # Fresh leaves, so the layer outputs are in a graph even at fixed inputs.
    leaves = {k: (v.detach().requires_grad_(True) if k in wrt else v) for k, v in params.items()}
    handles = [modules[name].register_forward_hook(make_hook(name)) for name in names]
    with torch.enable_grad():  # the K backward passes need a graph, even under no_grad
        try:
            f = fn(leaves, inputs)  # (n, C)
        finally:
            for h in handles:
                h.remove()
        n = f.shape[0]
        # Λ(f)'s factor is the VJP's cotangent; it carries a graph only where the inputs do
        factor = hessian_factor(f if create_graph else f.detach(), likelihood)  # (n, C, K)
        if columns is not None:  # one chosen column per example: (n, C, 1)
            factor = factor.gather(2, columns[:, None, None].expand(n, factor.shape[1], 1))
        outs = [store[name][1] for name in names]
        grads: list[list[Tensor]] = [[] for _ in names]
        for k in range(factor.shape[-1] if names else 0):
            per_layer = torch.autograd.grad(
                f, outs, grad_outputs=factor[:, :, k], retain_graph=True, create_graph=create_graph
            )
            for i, (name, g) in enumerate(zip(names, per_layer, strict=True)):
                grads[i].append(_layer_grads(modules[name], g))
    captures = {}
    for i, name in enumerate(names):
        weight, bias = layers[name]
        a = _layer_inputs(modules[name], store[name][0])
        g = torch.stack(grads[i])  # (K, rows, R, out)
        if not create_graph:
            a = a.detach()
        shape = tuple(params[weight].shape) if weight is not None else None
        captures[name] = LayerCapture(weight, bias, shape, a, g, a.shape[0] // n)
    return captures, (f if create_graph else f.detach())
