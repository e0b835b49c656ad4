"""Every built-in method module is imported here explicitly, so each registers itself once."""

from hgbench.methods import baselines, ift, laplace, reversible, unroll  # noqa: F401
