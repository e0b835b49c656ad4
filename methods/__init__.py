"""Every built-in method module is imported here explicitly, so each registers itself once."""

from hgbench.methods import (  # noqa: F401
    baselines,
    forward_mode,
    ift,
    laplace,
    nystrom,
    one_step,
    reversible,
    stochastic_bilevel,
    truncated,
    unroll,
)
