"""How a report draws: one colour per method (a hue per family), markers per config, and the
figure, legend and axis helpers every figure shares.

Figures are built on `matplotlib.figure.Figure` with an Agg canvas, not pyplot: no display, no
global figure registry to leak into, and nothing changes the backend of a user's session.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
)

from hgbench.contracts.method import Family
from hgbench.report.configs import describe_configs, family_members, method_family, ordered_methods
from hgbench.report.configs import with_labels as _with_labels

Color = tuple[float, float, float]
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
FALLBACK_COLOR: Color = (0.5, 0.5, 0.5)
# A sequential colormap per family: its methods are shades of one hue, dark to light. `other`
# (methods this process has not registered) gets qualitative colours none of these hues use.
FAMILY_CMAPS = {
    Family.BASELINE: "Greys",
    Family.BLACKBOX: "Oranges",
    Family.IMPLICIT: "Blues",
    Family.UNROLLED: "Greens",
    Family.REVERSAL: "Purples",
    Family.MARGLIK: "Reds",
}
OTHER_COLORS: tuple[Color, ...] = (
    tuple(
        tuple(mpl.colormaps["tab10"].colors[i][:3])
        for i in (6, 8, 9, 5)  # pink, olive, cyan, brown
    )
    + tuple(tuple(mpl.colormaps["Set2"].colors[i][:3]) for i in (3, 5, 6, 7))
)


def family_shades(family: Family, n: int) -> list[Color]:
    """n shades of the family's hue, dark first; light ends are left out (unreadable on white)."""
    if family not in FAMILY_CMAPS:
        return [OTHER_COLORS[i % len(OTHER_COLORS)] for i in range(n)]
    cmap = mpl.colormaps[FAMILY_CMAPS[family]]
    top = 0.95 if family == Family.BASELINE else 0.9
    stops = [0.72] if n == 1 else np.linspace(top, 0.45, n)
    if family == Family.BASELINE and n == 1:
        stops = [0.9]  # the floor is near-black: every other method is measured against it
    return [tuple(cmap(float(s))[:3]) for s in stops]


def method_colors(methods: Sequence[str]) -> dict[str, Color]:
    """One colour per method: its family's hue (registry `Method.family`), shaded by its place
    among the family's registered methods, so a method has the same colour in every report
    (while the registered methods stay the same)."""
    colors: dict[str, Color] = {}
    for family in dict.fromkeys(method_family(m) for m in methods):
        members = family_members(family, methods)
        shades = family_shades(family, len(members))
        colors.update({m: shades[members.index(m)] for m in methods if m in members})
    return colors


@dataclass(frozen=True)
class Style:
    """Colour per method, marker per config label: built once per report, shared by figures."""

    colors: dict[str, Color]  # method -> colour
    markers: dict[str, str]  # config label -> marker (distinct within a family)
    methods: dict[str, str]  # config label -> method
    families: dict[str, Family]  # method -> family
    order: list[str]  # config labels in display order

    def color(self, label: str) -> Color:
        return self.colors.get(self.methods.get(label, label), FALLBACK_COLOR)

    def marker(self, label: str) -> str:
        return self.markers.get(label, "o")

    def family(self, label: str) -> Family:
        return self.families.get(self.methods.get(label, label), Family.OTHER)


def make_style(rows: pd.DataFrame, method_order: Sequence[str] | None = None) -> Style:
    configs = describe_configs(rows)
    methods = ordered_methods(configs["method"], method_order)
    rank = {m: i for i, m in enumerate(methods)}
    configs = configs.assign(mrank=[rank[m] for m in configs["method"]])
    configs = configs.sort_values(["mrank", "rank"], kind="stable")
    families = {m: method_family(m) for m in methods}
    markers: dict[str, str] = {}
    used: dict[Family, int] = {}
    for c in configs.itertuples():  # consecutive markers within a family: panels tell them apart
        k = used.get(families[c.method], 0)
        markers[c.label] = MARKERS[k % len(MARKERS)]
        used[families[c.method]] = k + 1
    return Style(
        colors=method_colors(methods),
        markers=markers,
        methods=dict(zip(configs["label"], configs["method"], strict=True)),
        families=families,
        order=list(dict.fromkeys(configs["label"])),
    )


def prepare(rows: pd.DataFrame, style: Style | None) -> tuple[pd.DataFrame, Style]:
    if "label" not in rows.columns:
        rows = _with_labels(rows)
    return rows, style if style is not None else make_style(rows)


LEGEND_ROOM = 2.2  # inches beside the axes for the legend, before `legend` sizes it
LEGEND_WRAP = 48  # characters per legend line


def figure(ncols: int, nrows: int = 1, height: float = 4.2, width: float = 5.2) -> Figure:
    fig = Figure(figsize=(width * ncols + LEGEND_ROOM, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def handle(style: Style, label: str, **kwargs: object) -> Line2D:
    """A legend proxy for a config: its colour and marker, label wrapped."""
    props = {"color": style.color(label), "marker": style.marker(label), "linestyle": "-"}
    props.update(kwargs)
    return Line2D([], [], label=textwrap.fill(label, LEGEND_WRAP, subsequent_indent="  "), **props)


def legend(fig: Figure, style: Style, labels: Sequence[str], extra: Sequence[Line2D] = ()) -> None:
    """A figure legend with uniform proxies, so highlighted points do not change legend marks."""
    handles = [handle(style, lab) for lab in labels] + list(extra)
    if handles:
        # Make room for the legend beside the axes: long config labels would otherwise squeeze
        # the axes to nothing (constrained layout then gives up and the legend covers the plot).
        chars = max(len(line) for h in handles for line in str(h.get_label()).splitlines())
        lines = sum(len(str(h.get_label()).splitlines()) + 0.4 for h in handles)
        width, height = fig.get_size_inches()
        fig.set_size_inches(width - LEGEND_ROOM + 0.9 + 0.075 * chars, max(height, 0.18 * lines))
        fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False)


def no_data(ax: Axes, what: str = "no data") -> None:
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", color="grey")


def _short(value: float, _pos: object = None) -> str:
    """Plain numbers on log axes (200, 0.05, 1e+05), never overlapping mathtext."""
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{float(f'{value:.3g}'):g}"  # 3 significant digits, no exponent: 2000, 0.005
    return f"{value:.0e}"


def _short_minor(value: float, _pos: object = None) -> str:
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return _short(value) if min(abs(mantissa - 2), abs(mantissa - 5)) < 1e-6 else ""


def log_axis(ax: Axes, which: str) -> None:
    """Log scale with plain-number labels: a few linear ticks within a decade, 2× and 5× labelled
    over up to about three decades, decades only beyond (matplotlib's defaults label dense minor
    ticks in overlapping mathtext). Call after the limits are final."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    getattr(ax, f"set_{which}scale")("log")
    lo, hi = getattr(ax, f"get_{which}lim")()
    if not lo > 0:
        return
    if hi / lo < 10:  # within a decade a log axis is nearly linear: a few plain ticks
        axis.set_major_locator(MaxNLocator(4))
        axis.set_minor_locator(NullLocator())
    else:  # minor ticks (and grid lines) at 2× and 5× only: readable, and 4× fewer to draw
        axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        wide = hi / lo >= 10**2.7  # past about three decades only the decades are labelled
        axis.set_minor_formatter(NullFormatter() if wide else FuncFormatter(_short_minor))
    axis.set_major_formatter(FuncFormatter(_short))


def maybe_log_x(ax: Axes, x: np.ndarray) -> None:
    # seconds often span decades across methods; a linear axis would crush the fast ones
    x = x[np.isfinite(x) & (x > 0)]
    if x.size >= 2 and x.max() / x.min() > 30:
        log_axis(ax, "x")


def errs(s: pd.DataFrame, metric: str, sign: float = 1.0, keys: Sequence[str] = ()) -> np.ndarray:
    """Asymmetric (2, n) error bars around the centre (of sign*metric): `keys` names the centre,
    low and high suffixes (default: median and 25–75%)."""
    centre, low, high = keys or ("med", "q25", "q75")
    mid, lo, hi = (sign * s[f"{metric}_{k}"].to_numpy(float) for k in (centre, low, high))
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    return np.clip(np.nan_to_num(np.vstack([mid - lo, hi - mid]), nan=0.0), 0.0, None)
