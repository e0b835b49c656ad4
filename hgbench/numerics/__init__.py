"""Numerics: the pieces methods are built of, on parameter dicts and flat vectors: HVPs and mixed
VJPs, linear solvers, implicit and unrolled hypergradients, exact reversal, inner training,
augmentation, and the Laplace marginal likelihood (`laplace/`). They know no runner or store."""
