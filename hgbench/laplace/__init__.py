"""Linearised-Laplace marginal likelihoods: per-example Jacobians and the weighted NTK
(torch.func), GGN structures and their log-determinants with the prior, exact values, stochastic
block lower bounds, and probe mode's exact MARGLIK reference."""

from hgbench.laplace.ggn import Curvature, Structure
from hgbench.laplace.jacobians import (
    hessian_factor,
    linearize,
    per_example_jacobians,
    prior_weighted_ntk,
)
from hgbench.laplace.marglik import (
    BoundKind,
    LaplaceFit,
    OutputSplit,
    Partition,
    augmented_inputs,
    bound_kind,
    exact_log_marglik,
    fit_laplace,
    hypergradient,
    laplace_params,
    log_marglik,
    marglik_reference,
    partition,
    partitioned_log_marglik,
    prior_precision,
)

__all__ = [
    "BoundKind",
    "Curvature",
    "LaplaceFit",
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
    "prior_weighted_ntk",
]
