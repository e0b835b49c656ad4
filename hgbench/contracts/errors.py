"""Errors the command line turns into a one-line message and exit status 2."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input found before any work starts: unknown name, invalid setting, missing data."""


class UnknownNameError(UsageError, KeyError):
    """A registry lookup for a name (or pattern) that matches nothing."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DataUnavailableError(UsageError):
    """A dataset is missing from its directory and cannot be downloaded."""


class DivergedError(RuntimeError):
    """A method produced a non-finite objective, loss, parameter or hyperparameter."""
