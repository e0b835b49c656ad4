"""Linearised-Laplace marginal likelihoods for any model with independent examples: per-layer
curvature contractions (hgbench.numerics.laplace.layers), GGN structures and their log-determinants
with the prior, fits (`fit_laplace`), exact values, stochastic block lower bounds, and probe mode's
exact MARGLIK reference.

    fit = fit_laplace(model, params, hparams, x, y, Structure.KRON)   # any nn.Module
    value = fit.log_marglik(params, hparams, n_data=len(y))           # δ = N exp(log_wd.<name>)
"""

from hgbench.numerics.laplace.bounds import BoundKind, OutputSplit, Partition, bound_kind, partition
from hgbench.numerics.laplace.fitting import (
    LaplaceFit,
    Network,
    augmented_inputs,
    fit_laplace,
    laplace_params,
    prior_precision,
)
from hgbench.numerics.laplace.ggn import Curvature, Structure
from hgbench.numerics.laplace.jacobians import hessian_factor, linearize, per_example_jacobians
from hgbench.numerics.laplace.reference import marglik_reference
from hgbench.numerics.laplace.values import (
    exact_log_marglik,
    hypergradient,
    log_marglik,
    partitioned_log_marglik,
)

__all__ = [
    "BoundKind",
    "Curvature",
    "LaplaceFit",
    "Network",
    "OutputSplit",
    "Partition",
    "Structure",
    "augmented_inputs",
    "bound_kind",
    "exact_log_marglik",
    "fit_laplace",
    "hessian_factor",
    "hypergradient",
    "laplace_params",
    "linearize",
    "log_marglik",
    "marglik_reference",
    "partition",
    "partitioned_log_marglik",
    "per_example_jacobians",
    "prior_precision",
]
