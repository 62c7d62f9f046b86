"""Drawing the panels of :mod:`plots.panels` with matplotlib (imported when a figure is drawn):
axes, ticks on the paper's grids, curves with their ±1 std bands, scatters, legends, and saving
each figure with the CSV of what it shows.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kdiffe.config import FIELDS
from kdiffe.files import replace_atomic
from kdiffe.paper import PAPER_GRIDS
from plots import style
from plots.aggregate import SECONDS
from plots.panels import Panel, category_label  # noqa: F401  (category_label: re-exported)


def on_paper_grid(param: str, observed: Sequence[float]) -> bool:
    paper_values = [float(v) for v in PAPER_GRIDS.get(param, ())]
    return bool(paper_values) and all(np.isclose(float(v), paper_values).any() for v in observed)


def tick_values(param: str, observed: Sequence[float]) -> list[float]:
    """The paper's axis values when the data lie on them, else the values observed."""
    if on_paper_grid(param, observed):
        return sorted(float(v) for v in PAPER_GRIDS[param])
    return sorted({float(v) for v in observed})


def tick_label(param: str, value: float) -> str:
    if param == "theta1" and value > 0 and float(np.log10(value)).is_integer():
        power = int(np.log10(value))
        return "1" if power == 0 else f"$10^{{{power}}}$"
    if param == "users":
        return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"
    return f"{value:g}"


def sparse_labels(ticks: Sequence[float], labels: list[str], min_decades: float) -> list[str]:
    """On a log axis, blank the labels of ticks closer than ``min_decades`` to the next labelled one
    on their right (the largest value always keeps its label): 50 and 80 would overlap."""
    out, last = list(labels), None
    for i in sorted(range(len(ticks)), key=lambda i: -ticks[i]):
        if last is not None and ticks[i] > 0 and np.log10(last / ticks[i]) < min_decades:
            out[i] = ""
        else:
            last = ticks[i]
    return out


def style_x_axis(ax: Any, panel: Panel, crowded: bool = False) -> None:
    """Log axis for LOG_PARAMS; ticks at the paper's grid values (or the values observed; a
    search's continuous values keep matplotlib's own ticks); categories named for ``variant``.
    ``crowded`` (narrow panels): log-axis labels closer than a quarter decade are thinned."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

    observed = [x for curve in panel.curves.values() for x in curve["x"]]
    if panel.param in style.LOG_PARAMS:
        ax.set_xscale("log")
    if panel.kind == "scatter" and panel.param != "variant" and not on_paper_grid(panel.param, observed):
        if panel.param not in style.LOG_PARAMS:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=isinstance(FIELDS[panel.param].default, int)))
        ax.margins(x=0.06)
        return
    ticks = tick_values(panel.param, observed)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    labels = [panel.ticklabels.get(t, tick_label(panel.param, t)) for t in ticks]
    if panel.param in style.LOG_PARAMS and (crowded or panel.kind == "scatter"):
        labels = sparse_labels(ticks, labels, 0.25)
    if panel.param == "variant":
        ax.set_xticklabels(labels, rotation=40, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticklabels(labels)
    if len(ticks) > 1:
        lo, hi = min(ticks), max(ticks)
        if panel.param in style.LOG_PARAMS:
            pad = (hi / lo) ** 0.05
            ax.set_xlim(lo / pad, hi * pad)
        else:
            pad = (0.12 if panel.param == "variant" else 0.05) * (hi - lo)
            ax.set_xlim(lo - pad, hi + pad)


def draw_panel(ax: Any, panel: Panel, colours: dict[str, int], legend: dict[str, Any], crowded: bool = False) -> None:
    """Curves with markers, ±1 std bands where a point has several trials, the default marked;
    or, for a search, one point per trial with the best starred."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    if not panel.curves:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if panel.default is not None:
        legend.setdefault("default value", ax.axvline(panel.default, zorder=1, **style.DEFAULT_LINE))
    for label, curve in panel.curves.items():
        index = colours[label]
        gid = "|".join([*panel.key.values(), label])
        if panel.kind == "scatter":
            points = ax.scatter(curve["x"], curve["y"], marker=style.marker(index), color=style.color(index),
                                s=18, alpha=0.85, linewidths=0.4, edgecolors="white", label=label, zorder=3)
            points.set_gid(gid)
            legend.setdefault(label, points)
            continue
        (line,) = ax.plot(curve["x"], curve["mean"], marker=style.marker(index), color=style.color(index),
                          label=label, zorder=3)
        line.set_gid(gid)
        legend.setdefault(label, line)
        if (curve["n"] > 1).any():
            ax.fill_between(curve["x"], curve["mean"] - curve["std"], curve["mean"] + curve["std"],
                            color=style.color(index), alpha=style.BAND_ALPHA, linewidth=0, zorder=2)
            legend.setdefault("±1 std over seeds", Patch(color="0.5", alpha=0.35, linewidth=0))
    if panel.best is not None:
        legend.setdefault("best trial", ax.scatter([panel.best[0]], [panel.best[1]], zorder=4, **style.BEST_MARKER))
    style_x_axis(ax, panel, crowded)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.margins(y=0.15)
    if panel.key.get("metric") == SECONDS:
        top = max(float((c["mean"] + c["std"]).max()) for c in panel.curves.values())
        ax.set_ylim(0, 1.12 * top if top > 0 else 1)


def draw(rows: list[list[Panel]], title: str) -> Any:
    """A figure of panels; titles where they change down a column, x labels under each block of
    one parameter, y labels on the left, one legend below."""
    from matplotlib.figure import Figure

    ncols = max(len(row) for row in rows)
    width = min(style.PAGE_WIDTH, 1.2 + 2.3 * ncols)
    fig = Figure(figsize=(width, style.ROW_HEIGHT * len(rows) + 0.9), layout="constrained")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    colours = {label: i for i, label in enumerate(_first_seen(rows))}
    legend: dict[str, Any] = {}
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            ax = axes[r][c]
            draw_panel(ax, panel, colours, legend, crowded=ncols >= 3)
            below = rows[r + 1][c] if r + 1 < len(rows) and c < len(rows[r + 1]) else None
            above = rows[r - 1][c] if r > 0 and c < len(rows[r - 1]) else None
            if panel.title and (above is None or above.title != panel.title):
                ax.set_title(panel.title, fontweight="bold")
            if below is None or below.param != panel.param:
                ax.set_xlabel(panel.xlabel)
            if c == 0 or panel.ylabel != row[c - 1].ylabel:
                ax.set_ylabel(panel.ylabel)
        for c in range(len(row), ncols):
            axes[r][c].set_visible(False)
    fig.suptitle(textwrap.fill(title, width=int(13 * width)))
    names = sorted(legend, key=lambda n: (n not in colours, colours.get(n, 0)))
    fig.legend([legend[n] for n in names], names, loc="outside lower center", frameon=False,
               ncols=legend_columns(names, width))
    return fig


def legend_columns(names: Sequence[str], width: float) -> int:
    """Entries per legend row: all in one row when they fit the figure's width."""
    chars = sum(len(n) + 6 for n in names)
    if chars <= 11 * width:
        return len(names)
    return max(1, min(len(names), int(11 * width // (max(len(n) for n in names) + 6))))


def _first_seen(rows: list[list[Panel]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for panel in row:
            seen.update(dict.fromkeys(panel.curves))
    return list(seen)


def save(fig: Any, out: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    paths = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        replace_atomic(path, lambda tmp: fig.savefig(tmp, format=fmt, bbox_inches="tight"))  # a long legend label is never cut off
        paths.append(path)
    return paths
