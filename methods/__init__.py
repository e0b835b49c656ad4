"""Every built-in method module is imported here explicitly, so each registers itself once."""

from hgbench.methods import (  # noqa: F401
    baselines,
    blackbox,
    drmad,
    forward_mode,
    hypergradient_descent,
    ift,
    laplace,
    nystrom,
    one_step,
    pes,
    reversible,
    stochastic_bilevel,
    truncated,
    unroll,
)
