"""The reversible-learning experiments of Maclaurin, Duvenaud and Adams (ICML 2015) on digits.

- `digits_mlp3`: learning-rate and momentum schedules on a 64-50-50-50-10 tanh MLP, batch 200
  (their MNIST 784-50-50-50-10 schedule experiment, scaled to 8×8 digits).
- `digits_logreg_ard`: logistic regression with one L2 hparam per weight (their ARD experiment).

Both reuse the digits splits and models of `hgbench.tasks.digits`. Their epoch budgets are small
so that every method stays fast on them in the default suite (for `reversible_sgd` an epoch of
budget is one meta-iteration of T steps).
"""

from __future__ import annotations

from hgbench.contracts.hparams import WeightDecay
from hgbench.contracts.task import register_task
from hgbench.tasks.digits import DigitsTask

register_task(
    DigitsTask(
        name="digits_mlp3",
        description="digits 8×8, MLP 64-50-50-50-10 (tanh), batch 200, per-tensor weight decay",
        hidden=(50, 50, 50),
        epochs=10,
        batch_size=200,
        lr=0.05,
        tags=("small",),
    )
)
register_task(
    DigitsTask(
        name="digits_logreg_ard",
        description="digits 8×8, logistic regression (Linear 64-10), one L2 hparam per weight",
        hidden=(),  # MLP(64, (), 10): flatten, then one linear layer
        weight_decay=WeightDecay.PARAM,
        log_wd_init=-4.0,
        epochs=10,
        batch_size=200,
        lr=0.1,
        tags=("small",),
    )
)
