"""Kept for `hgbench.engine.probe`, which imports the reference from here: the pieces now live in
hgbench.numerics.laplace.{bounds, fitting, values, reference}."""

from hgbench.numerics.laplace.reference import marglik_reference

__all__ = ["marglik_reference"]
