"""Contracts: what a plugin implements (Method, Task, a hparam space, a suite), the registries
that name them, and the result row every layer above writes or reads. Nothing here runs a cell."""
