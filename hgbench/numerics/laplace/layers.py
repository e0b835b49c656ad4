"""Per-layer curvature contractions: closed forms for Linear and Conv2d, per-row VJPs for other
modules that own parameters. hgbench.numerics.laplace.capture collects their inputs and gradients.

For a layer applied at R positions per example (R = 1 for Linear on flat inputs; the output
pixels for Conv2d; times S for a model that averages its logits over S augmented copies), the
factor row k of example n restricted to its weight is a sum of outer products,

    L_{nk}[W] = Σ_r g_{nkr} a_{nr}ᵀ,    L_{nk}[b] = Σ_r g_{nkr},

with a_{nr} the layer's input (unfolded patch for a convolution) and g_{nkr} the gradient of
(M_nᵀ f_n)_k with respect to the layer's output at position r. From a and g each structure takes
what it needs in closed form, without forming a row where it can:

    diag      Σ_{nk} L_{nk}[W]²  =  (Σ_k g_{nk}²)ᵀ (a_n²)      for R = 1: one (out × n)(n × in)
              matmul (the einsum 'kno,ni->oi'); for R > 1 the rows are formed a few examples at a
              time by one batched matmul, squared and summed (as BackPACK's DiagGGN)
    kron      B = Σ g gᵀ, A = Σ a aᵀ                            two matmuls
    (hgbench.numerics.laplace.kron) kernel    L[W] L[W]ᵀ = (G Gᵀ) ⊙ (A Aᵀ ⊗ 1_{K×K})             for
    R = 1, no row formed rows      for full and blockdiag, which need them

Layout: a is (n, in', R) and g (n, K, out, R), the layouts a convolution produces (unfold's
patches, output gradients per channel), so the contractions read them without a transposing copy.
A weighting of the factor rows (an (n, K) 0/1 mask per group: output splits) enters every
contraction, so no masked copy of the rows is made.

Other modules that own parameters (Fixup's scalar Bias and Scale, or any module called on a batch
of independent rows) get their rows from a per-row VJP of that module alone (torch.func over the
module, not the network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap

from hgbench.contracts.hparams import Params
from hgbench.numerics.laplace.jacobians import Rows

Mask = Tensor | None  # (n, K) 0/1 weights of the factor rows of a group; None: every row

# R > 1 diagonal: rows are formed for this many elements at a time (bounds a chunk's memory)
_ROW_BUDGET = 2**20


def is_linear(module: nn.Module) -> bool:
    """Linear and Conv2d layers the closed forms cover."""
    return isinstance(module, nn.Linear) or (
        isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"
    )


def own_params(module: nn.Module, prefix: str, wrt: set[str]) -> dict[str, str]:
    """The module's own parameters among `wrt`: local name -> full name."""
    return {
        local: prefix + local
        for local, _ in module.named_parameters(recurse=False)
        if prefix + local in wrt
    }


def covered_layers(model: nn.Module, wrt: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """Linear and Conv2d layers (K-FAC's domain): module name -> (weight name, bias name) among
    `wrt` (else None)."""
    out = {}
    chosen = set(wrt)
    for name, module in model.named_modules():
        if not is_linear(module):
            continue
        own = own_params(module, f"{name}." if name else "", chosen)
        if own:
            out[name] = (own.get("weight"), own.get("bias"))
    return out


# --- layouts ----------------------------------------------------------------------------------
def layer_inputs(module: nn.Module, x: Tensor, n: int) -> Tensor:
    """A Linear/Conv2d layer's input vectors (rows, ...) per example, (n, in', copies · R)."""
    if isinstance(module, nn.Conv2d):
        x = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
    else:  # (rows, ..., in) -> (rows, in, R)
        x = x.reshape(x.shape[0], -1, x.shape[-1]).transpose(1, 2)
    return _merge_copies(x, n)


def layer_grads(module: nn.Module, g: Tensor, n: int) -> Tensor:
    """A Linear/Conv2d layer's factor-column output gradients (rows, K, *out) per example,
    (n, K, out, copies · R): a view, but for several copies per example."""
    if isinstance(module, nn.Conv2d):
        g = g.flatten(3)
    else:
        g = g.reshape(*g.shape[:2], -1, g.shape[-1]).transpose(2, 3)
    return _merge_grad_copies(g, n)


def _merge_grad_copies(g: Tensor, n: int) -> Tensor:
    """(rows, K, out, R) with rows = n · copies -> (n, K, out, copies · R)."""
    if g.shape[0] == n:
        return g
    c = g.shape[0] // n
    g = g.reshape(n, c, *g.shape[1:]).permute(0, 2, 3, 1, 4)  # (n, K, out, copies, R)
    return g.reshape(n, g.shape[1], g.shape[2], -1)


def _merge_copies(x: Tensor, n: int) -> Tensor:
    """(rows, d, R) with rows = n · copies -> (n, d, copies · R)."""
    if x.shape[0] == n:
        return x
    c = x.shape[0] // n
    return x.reshape(n, c, *x.shape[1:]).transpose(1, 2).reshape(n, x.shape[1], -1)


def _weighted(t: Tensor, mask: Mask) -> Tensor:
    """t (n, K, ...) times the mask's weight of each factor row (n, k)."""
    if mask is None:
        return t
    return t * mask.to(t.dtype).reshape(*mask.shape, *([1] * (t.ndim - 2)))


# --- the contractions -------------------------------------------------------------------------
@dataclass
class LinearCapture:
    """A Linear or Conv2d layer: inputs a (n, in', R), factor-column output gradients
    g (n, K, out, R); R = copies × positions per example."""

    weight: str | None
    bias: str | None
    weight_shape: tuple[int, ...] | None
    a: Tensor
    g: Tensor

    @property
    def single(self) -> bool:
        return self.a.shape[-1] == 1

    def _weight_rows(self, start: int, stop: int) -> Tensor:
        """L[W] of examples start..stop, (n', K, out, in')."""
        g, a = self.g[start:stop], self.a[start:stop]
        if self.single:
            return g[..., 0, None] * a[:, None, None, :, 0]
        n, k, out, r = g.shape
        # one batched matmul over examples, (K · out × R) @ (R × in')
        return torch.bmm(g.reshape(n, k * out, r), a.transpose(1, 2)).view(n, k, out, -1)

    def _bias_rows(self) -> Tensor:
        return self.g[..., 0] if self.single else self.g.sum(-1)  # (n, K, out), R = 1: a view

    def rows(self, exclude: frozenset[str] | set[str] = frozenset()) -> Rows:
        """Factor rows per tensor (but those in `exclude`), (n, K, *shape)."""
        n, k = self.g.shape[:2]
        out = {}
        if self.weight is not None and self.weight not in exclude:
            assert self.weight_shape is not None
            out[self.weight] = self._weight_rows(0, n).reshape(n, k, *self.weight_shape)
        if self.bias is not None and self.bias not in exclude:
            out[self.bias] = self._bias_rows()
        return out

    def diag(self, masks: list[Mask]) -> list[dict[str, Tensor]]:
        """Σ_{n,k} m_{nk} L_{nk}² per tensor, one dict per mask."""
        n, k, out, _ = self.g.shape
        results: list[dict[str, Tensor]] = [{} for _ in masks]
        if self.weight is not None:
            assert self.weight_shape is not None
            if self.single:
                g2, a2 = self.g[..., 0].square(), self.a[..., 0].square()  # (n, K, out), (n, in)
                for res, mask in zip(results, masks, strict=True):
                    s = _weighted(g2, mask).sum(1)  # (n, out)
                    res[self.weight] = (s.T @ a2).reshape(self.weight_shape)  # 'nko,ni->oi'
            else:
                per = max(1, _ROW_BUDGET // max(1, k * out * self.a.shape[1]))
                sums: list[Tensor | None] = [None] * len(masks)
                for start in range(0, n, per):
                    rows = self._weight_rows(start, min(start + per, n))  # (n', K, out, in')
                    # in place where no graph needs the rows: one pass over them less
                    sq = rows.square() if rows.requires_grad else rows.square_()
                    sq = sq.view(-1, sq.shape[2] * sq.shape[3])  # (n' K, out · in')
                    for i, mask in enumerate(masks):
                        if mask is None:
                            term = sq.sum(0)
                        else:
                            term = mask[start : start + per].reshape(1, -1).to(sq) @ sq
                        sums[i] = term if sums[i] is None else sums[i] + term
                for res, total in zip(results, sums, strict=True):
                    assert total is not None
                    res[self.weight] = total.reshape(self.weight_shape)
        if self.bias is not None:
            b2 = self._bias_rows().square()  # (n, K, out)
            for res, mask in zip(results, masks, strict=True):
                res[self.bias] = _weighted(b2, mask).sum((0, 1))
        return results

    def grams(self, names: set[str]) -> dict[str, Tensor]:
        """L_t L_tᵀ (nK × nK, rows ordered (n, k)) for the tensors in `names`."""
        n, k = self.g.shape[:2]
        out = {}
        if self.weight in names:
            if self.single:  # (G Gᵀ) ⊙ (A Aᵀ ⊗ 1): no row is ever formed
                g = self.g[..., 0].reshape(n * k, -1)  # (nK, out)
                a = self.a[..., 0]  # (n, in)
                aa = (a @ a.T).repeat_interleave(k, 0).repeat_interleave(k, 1)
                out[self.weight] = (g @ g.T) * aa
            else:
                flat = self._weight_rows(0, n).reshape(n * k, -1)
                out[self.weight] = flat @ flat.T
        if self.bias in names:
            b = self._bias_rows().reshape(n * k, -1)
            out[self.bias] = b @ b.T
        return out

    def kron_b(self, masks: list[Mask]) -> list[Tensor]:
        """K-FAC's output factor sums B = Σ m g gᵀ, one per mask: one matmul each over every
        (example, column, position); several times faster on a CPU than an einsum."""
        n, k, out, r = self.g.shape
        if self.single:
            flat = self.g[..., 0].reshape(n * k, out)  # items (n, k)
            weights = [None if m is None else m.reshape(n * k, 1) for m in masks]
            return [flat.T @ (flat if w is None else flat * w.to(flat)) for w in weights]
        flat = self.g.transpose(0, 2).reshape(out, k * n * r)  # one copy; items (k, n, r)
        bs = []
        for mask in masks:
            if mask is None:
                bs.append(flat @ flat.T)
            else:  # the weight of factor row (n, k) on each of its positions
                w = mask.T.to(flat.dtype).reshape(1, k, n, 1)
                bs.append((flat.view(out, k, n, r) * w).reshape(out, -1) @ flat.T)
        return bs

    def kron_a(self) -> tuple[Tensor, int]:
        """K-FAC's input factor sum Σ a aᵀ and the number of (example, position) terms in it."""
        n, d, r = self.a.shape
        if self.single:
            a = self.a[..., 0]
            return a.T @ a, n
        flat = self.a.transpose(0, 1).reshape(d, -1)  # (in', n R)
        return flat @ flat.T, n * r


@dataclass
class RowCapture:
    """Tensors whose rows are formed outright (n, K, *shape): a generic module's (per-row VJP)
    or the whole network's (per-example Jacobians)."""

    rows_: Rows

    def rows(self, exclude: frozenset[str] | set[str] = frozenset()) -> Rows:
        return {t: r for t, r in self.rows_.items() if t not in exclude}

    def diag(self, masks: list[Mask]) -> list[dict[str, Tensor]]:
        return [
            {name: _weighted(r.square(), mask).sum((0, 1)) for name, r in self.rows_.items()}
            for mask in masks
        ]

    def grams(self, names: set[str]) -> dict[str, Tensor]:
        out = {}
        for name in names & set(self.rows_):
            r = self.rows_[name]
            flat = r.reshape(r.shape[0] * r.shape[1], math.prod(r.shape[2:]))  # (n K, P_t)
            out[name] = flat @ flat.T
        return out


def generic_rows(
    module: nn.Module,
    prefix: str,
    own: dict[str, str],
    params: Params,
    x: Tensor,
    g: Tensor,
    n: int,
) -> Rows:
    """Rows of a module's own tensors by a per-row VJP of the module alone, at `params`: x
    (rows, ...) its input, g (rows, K, *out) the factor-column gradients of its output; summed
    over the copies of each example, (n, K, *shape)."""
    free = {local: params[full].detach() for local, full in own.items()}
    # every other parameter the module (and its children) uses, at its value in `params`
    fixed = {
        local: params.get(prefix + local, p)
        for local, p in module.named_parameters()
        if local not in own
    }

    def one_row(x_row: Tensor, g_row: Tensor) -> dict[str, Tensor]:
        def out(p: Params) -> Tensor:
            return functional_call(module, {**fixed, **p}, (x_row[None],))[0]

        _, pull = vjp(out, free)
        return vmap(pull)(g_row)[0]  # (K, *shape) per tensor

    per_row = vmap(one_row)(x, g)  # (rows, K, *shape)
    return {own[local]: r.reshape(n, -1, *r.shape[1:]).sum(1) for local, r in per_row.items()}
