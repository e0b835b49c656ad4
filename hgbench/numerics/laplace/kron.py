"""Kronecker-factored GGN (K-FAC) blocks for nn.Linear and nn.Conv2d layers.

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
output split of a block of data. The sums come from hgbench.numerics.laplace.layers
(`LinearCapture.kron`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from hgbench.numerics.laplace.logdet import kron_logdet, scaled_gram_logdet


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
