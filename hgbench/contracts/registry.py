"""One generic name -> object registry, used for methods, tasks and suites."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from hgbench.contracts.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Explicit string names; registering a name twice is an error; lookups list the known names.

    `names(pattern)` accepts shell-style patterns and comma-separated lists of them
    (`"ift_*,unroll"`), in registration order.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if not name or any(c in name for c in "*?[],= "):
            raise ValueError(f"invalid {self.kind} name {name!r}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered ({self._items[name]!r})")
        self._items[name] = obj

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self._unknown(name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def names(self, patterns: str | list[str] | None = None) -> list[str]:
        """Registered names matching any of the patterns; every pattern must match something."""
        if patterns is None:
            return list(self._items)
        if isinstance(patterns, str):
            patterns = [p.strip() for p in patterns.split(",") if p.strip()]
        chosen: list[str] = []
        for pattern in patterns:
            hits = [n for n in self._items if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise UnknownNameError(self._unknown(pattern))
            chosen += [n for n in hits if n not in chosen]
        return chosen

    def _unknown(self, name: str) -> str:
        known = ", ".join(self._items) or "(none registered)"
        return f"unknown {self.kind} {name!r}; known {self.kind}s: {known}"
