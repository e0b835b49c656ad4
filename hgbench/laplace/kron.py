"""Kronecker-factored GGN (K-FAC) for nn.Linear and nn.Conv2d layers, from module hooks.

For a layer with weight W (out × in', in' = in·kh·kw for a convolution) that is applied at R
positions per example (R = 1 for Linear; the output pixels for Conv2d; times S for a model that
averages its logits over S augmented copies), with inputs a_{nr} (in') and factor-row output
gradients g_{nkr} = ∂(M_nᵀ f_n)_k / ∂out_{nr} (out), the GGN block of W is approximated by

    B ⊗ A,   B = Σ_{n,k,r} g_{nkr} g_{nkr}ᵀ,   A = (1 / (N R)) Σ_{n,r} a_{nr} a_{nr}ᵀ

(the "expand" convention: positions are treated like extra examples, Eschenhagen et al. 2023),
and the bias block by B alone; W is flattened row-major (out, in'), so the block is B ⊗ A with
the output factor first. This is the convention of curvlinops' KFACLinearOperator with
`kfac_approx="expand"` and separate weight and bias, which laplace-torch's default Kron uses.
K-FAC is an approximation, neither an upper nor a lower bound on the exact log-determinant.

Restricting the factor rows (n, k) that enter B (a 0/1 weight per row) gives the K-FAC of any
output split of a block of data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from hgbench.hparams import Params
from hgbench.laplace.layers import LayerCapture, capture_layers
from hgbench.laplace.logdet import kron_logdet, scaled_gram_logdet
from hgbench.task import Likelihood


@dataclass
class KronBlock:
    """One layer's factors: B (out × out) and A (in' × in'), with lazily cached eigenvalues."""

    weight: str | None
    bias: str | None
    weight_shape: tuple[int, ...] | None
    B: Tensor
    A: Tensor
    _eig: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def eigenvalues(self, which: str) -> Tensor:
        if which not in self._eig:
            self._eig[which] = torch.linalg.eigvalsh(getattr(self, which))
        return self._eig[which]

    def logdet_ratio(self, delta: dict[str, Tensor]) -> Tensor:
        """log det(curvature + prior) − log det prior, for this layer's weight and bias."""
        total = self.B.new_zeros(())
        if self.weight is not None:
            total = total + self._weight_logdet(delta[self.weight])
        if self.bias is not None:
            d = delta[self.bias].expand(self.B.shape[0])
            total = total + scaled_gram_logdet(self.B, d)
        return total

    def _weight_logdet(self, d: Tensor) -> Tensor:
        assert self.weight_shape is not None
        if d.numel() == 1:
            return kron_logdet(self.eigenvalues("B"), self.eigenvalues("A"), d.reshape(()))
        full = d.expand(self.weight_shape).reshape(self.weight_shape[0], -1)  # (out, in')
        if bool((full == full[:1]).all()):  # varies along the input axis only: I ⊗ D_in
            s = full[0].rsqrt()
            a = s[:, None] * self.A * s[None, :]
            return kron_logdet(self.eigenvalues("B"), torch.linalg.eigvalsh(a), full.new_ones(()))
        if bool((full == full[:, :1]).all()):  # varies along the output axis only: D_out ⊗ I
            s = full[:, 0].rsqrt()
            b = s[:, None] * self.B * s[None, :]
            return kron_logdet(torch.linalg.eigvalsh(b), self.eigenvalues("A"), full.new_ones(()))
        raise ValueError(
            f"kron needs a prior precision for {self.weight} that is constant along its input or "
            "its output axis (per tensor, per row or per column), not one per weight"
        )


def kron_factors(
    model: nn.Module,
    fn: Callable[[Params, Tensor], Tensor],
    params: Params,
    inputs: Tensor,
    likelihood: Likelihood,
    wrt: list[str],
    row_weights: list[Tensor] | None = None,
    chunk_size: int | None = None,
    columns: Tensor | None = None,
) -> tuple[list[dict[str, KronBlock]], Tensor]:
    """K-FAC blocks of every covered layer for each group of factor rows, and the outputs f.

    `fn(params, inputs)` must call `model` (e.g. through functional_call) on `inputs` (B, ...).
    `row_weights`: one (B, K) 0/1 tensor per group, selecting the factor rows that enter B;
    None: one group with every row. `columns` (B,) keeps one factor column per example (K = 1,
    one backward pass). Examples are processed `chunk_size` at a time (one forward and K
    backward passes each). The factors stay differentiable in whatever `inputs` depend on
    (augmentation magnitudes), including through Λ(f).
    """
    n_total = inputs.shape[0]
    step = n_total if chunk_size is None else chunk_size
    b_sums: list[dict[str, Tensor]] | None = None
    a_sums: dict[str, Tensor] = {}
    a_counts: dict[str, int] = {}
    captured: dict[str, LayerCapture] = {}
    outputs = []
    for start in range(0, n_total, step):
        cols = None if columns is None else columns[start : start + step]
        captured, f = capture_layers(
            model, fn, params, inputs[start : start + step], likelihood, wrt, cols
        )
        n = f.shape[0]
        if row_weights is None:
            weights = [torch.ones(n, captured_k(captured, f), dtype=f.dtype, device=f.device)]
        else:
            weights = [w[start : start + step].to(f.dtype) for w in row_weights]
        if b_sums is None:
            b_sums = [{} for _ in weights]
        for name, cap in captured.items():
            # Σ g gᵀ and Σ a aᵀ as one (items × features) matmul each: several times faster on
            # a CPU than the equivalent einsum over (K, rows, positions)
            g = cap.g.reshape(-1, cap.g.shape[-1])  # (K · rows · R, out)
            for group, w in zip(b_sums, weights, strict=True):
                if row_weights is None:
                    term = g.T @ g
                else:  # weight of factor row (n, k) on every copy and position of example n
                    wk = w.T.repeat_interleave(cap.copies, dim=1)[:, :, None, None]
                    term = (cap.g * wk).reshape(g.shape).T @ g
                group[name] = group[name] + term if name in group else term
            a = cap.a.reshape(-1, cap.a.shape[-1])  # (rows · R, in')
            term = a.T @ a
            a_sums[name] = a_sums[name] + term if name in a_sums else term
            a_counts[name] = a_counts.get(name, 0) + a.shape[0]
        outputs.append(f)
    assert b_sums is not None
    out: list[dict[str, KronBlock]] = []
    for group in b_sums:
        blocks = {}
        for name, cap in captured.items():
            # A: the mean over examples, copies and positions, Σ a aᵀ / (N R)
            a_factor = a_sums[name] / a_counts[name]
            blocks[name] = KronBlock(cap.weight, cap.bias, cap.weight_shape, group[name], a_factor)
        out.append(blocks)
    return out, torch.cat(outputs)


def captured_k(captured: dict[str, LayerCapture], f: Tensor) -> int:
    """K, the number of factor columns (the outputs' dimension when no layer is covered)."""
    for cap in captured.values():
        return cap.g.shape[0]
    return f.shape[-1]
