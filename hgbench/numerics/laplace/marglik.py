"""Kept for `hgbench.probe`, which imports the reference from here: the pieces now live in
hgbench.laplace.{bounds, fitting, values, reference}."""

from hgbench.laplace.reference import marglik_reference

__all__ = ["marglik_reference"]
