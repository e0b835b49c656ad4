"""Markdown pieces of a report: number formats, tables, one-line errors."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Formatter = Callable[[float], str]
MISSING = "–"


def fixed(digits: int) -> Formatter:
    return lambda x: f"{x:.{digits}f}"


def significant(x: float) -> str:
    """Three significant digits without exponents in the usual range of seconds and megabytes."""
    if x != 0 and abs(x) < 1e-3:
        return f"{x:.2e}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:#.3g}".rstrip(".")  # '#' keeps trailing zeros: 8.90, not 8.9


def scientific(x: float) -> str:
    return f"{x:.2e}"


def signed(formatter: Formatter) -> Formatter:
    """`formatter` with an explicit sign (+0.012, −0.003): for differences."""
    return lambda x: ("+" if x > 0 else "−" if x < 0 else "") + formatter(abs(x))


def resolving(widths: Sequence[float], least: int = 3, most: int = 6) -> Formatter:
    """Fixed decimals that show about two digits of the typical interval width (`widths`), at
    least `least`: differences of 1e-4 in a loss near 9 would otherwise all print alike."""
    w = [x for x in widths if x is not None and math.isfinite(x) and x > 0]
    if not w:
        return fixed(least)
    digits = math.ceil(-math.log10(sorted(w)[len(w) // 2])) + 1
    return fixed(min(most, max(least, digits)))


def fmt(x: float | None, formatter: Formatter) -> str:
    return formatter(x) if x is not None and math.isfinite(x) else MISSING


def fmt_spread(rec: Mapping[str, Any], metric: str, formatter: Formatter) -> str:
    """`median [q25, q75]` from `<metric>_med/_q25/_q75`, e.g. `0.912 [0.905, 0.918]`."""
    med = rec[f"{metric}_med"]
    if not math.isfinite(med):
        return MISSING
    return (
        f"{fmt(med, formatter)} [{fmt(rec[f'{metric}_q25'], formatter)}, "
        f"{fmt(rec[f'{metric}_q75'], formatter)}]"
    )


def fmt_interval(value: float, low: float, high: float, formatter: Formatter) -> str:
    """`value [low, high]`; just `value` where no interval exists (one seed)."""
    if not math.isfinite(value):
        return MISSING
    if not (math.isfinite(low) and math.isfinite(high)):
        return fmt(value, formatter)
    return f"{fmt(value, formatter)} [{fmt(low, formatter)}, {fmt(high, formatter)}]"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None
) -> str:
    right = right or [False] * len(header)
    lines = [
        "| " + " | ".join(_escape(h) for h in header) + " |",
        "|" + "|".join("---:" if r else "---" for r in right) + "|",
    ]
    lines += ["| " + " | ".join(_escape(str(c)) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def one_line(text: Any, limit: int = 200) -> str:
    """The informative line of an error: a traceback's last line, else the first line."""
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    if not lines:
        return "(no error text)"
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
