"""Method configs in a report: labels, families, and the order methods are shown in.

A config is a (method, method_params) pair; its label is the method name plus the settings that
differ between that method's configs (`unroll (K=5)`). A method's family comes from the method
registry (`Method.family`); a method that is not registered here (a plugin not loaded in this
process) is in family `other`, so a report never depends on which methods exist.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from importlib import import_module
from typing import Any

import pandas as pd

from hgbench.contracts.method import METHODS, Family

# Figures and tables show families in this order: the floor first, then black-box search, then
# the gradient-based families, and anything else last.
FAMILY_ORDER = (
    Family.BASELINE,
    Family.BLACKBOX,
    Family.IMPLICIT,
    Family.UNROLLED,
    Family.REVERSAL,
    Family.MARGLIK,
    Family.OTHER,
)


def _registered() -> list[str]:
    """Registered method names, loading the built-in ones (never third-party plugins: a report
    must not fail because a plugin does)."""
    try:
        import_module("hgbench.methods")
    except Exception:  # noqa: BLE001 - a broken install still gets a report, with family `other`
        pass
    return list(METHODS)


def method_family(method: str) -> Family:
    """The registered method's family, or `other` for a method not registered here."""
    return METHODS[method].family if method in _registered() else Family.OTHER


def family_members(family: Family, present: Iterable[str] = ()) -> list[str]:
    """The registered methods of `family` in registration order, then `present` methods of that
    family not registered, sorted: the stable order shades of a family's hue are given in."""
    registered = [m for m in _registered() if METHODS[m].family == family]
    extra = sorted({m for m in present if m not in registered and method_family(m) == family})
    return registered + extra


def ordered_methods(present: Iterable[str], method_order: Sequence[str] | None = None) -> list[str]:
    """`method_order` first (even methods absent here, so orders stay stable), then the rest by
    family (`FAMILY_ORDER`), registration order within a family, then name."""
    present = set(present)
    order = list(dict.fromkeys(method_order or []))
    registered = {m: i for i, m in enumerate(_registered())}
    rest = sorted(
        (m for m in present if m not in order),
        key=lambda m: (
            FAMILY_ORDER.index(method_family(m)),
            registered.get(m, len(registered)),
            m,
        ),
    )
    return order + rest


def _norm(value: Any) -> Any:
    # 5 and 5.0 are the same setting; without this they would become two configs with one label
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool) or value is None:
        return (1, str(value))
    if isinstance(value, int | float):
        return (0, value)
    return (1, _show(value))


def _key(params: Any) -> str:
    norm = {k: _norm(v) for k, v in (params or {}).items()}
    return json.dumps(norm, sort_keys=True, default=str)


def describe_configs(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per (method, distinct method_params): columns method, key, params, label, rank.

    The label is the method name, plus the settings that differ between that method's configs
    (`unroll (K=5)`); rank orders a method's configs by those settings (numbers numerically).
    """
    out = []
    for method in sorted(set(rows["method"].dropna())):
        configs: dict[str, dict[str, Any]] = {}
        for params in rows.loc[rows["method"] == method, "method_params"]:
            configs.setdefault(_key(params), {k: _norm(v) for k, v in (params or {}).items()})
        names = list(dict.fromkeys(k for p in configs.values() for k in p))
        varying = [
            k
            for k in names
            if len({json.dumps(p.get(k, "\0missing"), default=str) for p in configs.values()}) > 1
        ]
        ranked = sorted(
            configs.items(), key=lambda kv: [_sort_key(kv[1].get(k, "\uffff")) for k in varying]
        )
        for rank, (key, params) in enumerate(ranked):
            label = method
            if len(configs) > 1:
                shown = ", ".join(f"{k}={_show(params[k])}" for k in varying if k in params)
                label = f"{method} ({shown or 'defaults'})"
            out.append(
                {"method": method, "key": key, "params": params, "label": label, "rank": rank}
            )
    return pd.DataFrame(out, columns=["method", "key", "params", "label", "rank"])


def with_labels(rows: pd.DataFrame, configs: pd.DataFrame | None = None) -> pd.DataFrame:
    """`rows` with a `label` column naming each row's method config (see `describe_configs`)."""
    configs = describe_configs(rows) if configs is None else configs
    lookup = {(c.method, c.key): c.label for c in configs.itertuples()}
    keys = [(m, _key(p)) for m, p in zip(rows["method"], rows["method_params"], strict=True)]
    return rows.assign(label=[lookup.get(k, str(k[0])) for k in keys])
