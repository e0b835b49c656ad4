"""Ridge regression on digits pixels with one L2 hparam per feature: exact hypergradients.

Training loss (Gaussian likelihood on one-hot targets, bias unpenalised):

    L_T(W, b, λ) = 1/n Σ ½‖W x_n + b − y_n‖² + ½ Σ_j exp(λ_j) ‖W[:, j]‖²  (+ const)

so with X̃ = [X, 1] and A = X̃ᵀX̃/n + diag(exp λ, 0) the optimum is [W b]ᵀ = A⁻¹ X̃ᵀY/n, and
for the validation loss L_V with gradient G = ∂L_V/∂[W b]ᵀ (features × classes):

    dL_V/dλ_j = −exp(λ_j) Σ_c (A⁻¹ G)_{jc} W*_{cj}
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import grad

from hgbench.contracts.hparams import WD_PREFIX, HParam, HParams, Params
from hgbench.contracts.task import Likelihood, Problem, Splits, Task, register_task
from hgbench.tasks.digits import digits_splits


def _design(x: Tensor) -> Tensor:
    flat = x.reshape(x.shape[0], -1)
    return torch.cat([flat, flat.new_ones(flat.shape[0], 1)], dim=1)  # (n, d + 1)


@dataclass(frozen=True)
class RidgeTask(Task):
    """Multi-output ridge regression on centred digits pixels; λ per pixel feature."""

    n_train: int = 1000
    n_val: int = 400

    def load_data(self, seed: int) -> Splits:
        s = digits_splits(seed, self.n_train, self.n_val)
        # Centre only: pixels are already in [0, 1], and dividing by the training std would blow
        # up pixels that are almost always blank (a std near 0) into huge values elsewhere.
        mean = s.x_train.reshape(len(s.x_train), -1).mean(0)

        def centre(x: Tensor) -> Tensor:
            return x.reshape(len(x), -1) - mean

        return Splits(
            centre(s.x_train), s.y_train, centre(s.x_val), s.y_val, centre(s.x_test), s.y_test
        )

    def make_model(self) -> nn.Module:
        return nn.Linear(64, self.n_classes)

    def hparam_space(self, params: Params) -> list[HParam]:
        return [HParam(WD_PREFIX + "weight", (64,), self.log_wd_init, -12.0, 2.0)]

    def default_lr(self, splits: Splits) -> float:
        # 1/L for the quadratic: plain SGD and momentum both stay stable
        x = _design(splits.x_train)
        return float(1.0 / torch.linalg.eigvalsh(x.T @ x / x.shape[0]).max())

    # --- exact solutions (used by probe mode and the tests) ------------------------------------
    def _system(self, problem: Problem, hparams: HParams) -> tuple[Tensor, Tensor]:
        x = _design(problem.data.x_train)
        reg = torch.cat([hparams[WD_PREFIX + "weight"].exp(), x.new_zeros(1)])
        a = x.T @ x / x.shape[0] + torch.diag(reg)
        return a, x

    def optimum(self, problem: Problem, hparams: HParams) -> Params:
        a, x = self._system(problem, hparams)
        y = nn.functional.one_hot(problem.data.y_train, self.n_classes).to(x.dtype)
        wb = torch.linalg.solve(a, x.T @ y / x.shape[0]).T  # (classes, d + 1)
        return {"weight": wb[:, :-1].contiguous(), "bias": wb[:, -1].contiguous()}

    def exact_hypergradient(self, problem: Problem, hparams: HParams) -> dict[str, Tensor]:
        a, _ = self._system(problem, hparams)
        params = self.optimum(problem, hparams)
        g = grad(problem.val_loss)(params)
        g_wb = torch.cat([g["weight"], g["bias"][:, None]], dim=1).T  # (d + 1, classes)
        w = params["weight"]  # (classes, d)
        solved = torch.linalg.solve(a, g_wb)[:-1]  # (d, classes)
        lam = hparams[WD_PREFIX + "weight"]
        return {WD_PREFIX + "weight": -lam.exp() * (solved * w.T).sum(1)}


register_task(
    RidgeTask(
        name="ridge",
        description="ridge regression on centred digits pixels, one L2 hparam per pixel",
        likelihood=Likelihood.GAUSSIAN,
        epochs=20,
        batch_size=100,
        momentum=0.9,
        tags=("small",),
    )
)
