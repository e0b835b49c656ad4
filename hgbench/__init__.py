"""hgbench: a benchmark suite for hypergradient methods."""

__version__ = "0.1.0"
