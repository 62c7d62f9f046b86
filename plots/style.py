"""Print style of the paper's figures: fonts, colours, markers, axes.

Everything here is a constant or a small helper; :data:`RC` is applied with
``matplotlib.rc_context`` around each figure, so importing this module changes no global
matplotlib state. The names of datasets, variants, parameters and metrics are facts of the paper
and live in :mod:`kdiffe.paper`; the helpers below only look them up.
"""

from __future__ import annotations

from typing import Any

from kdiffe.paper import DATASET_NAMES as PAPER_DATASET_NAMES, LOG_SCALE_PARAMS, VARIANT_NAMES

#: matplotlib settings for a figure printed at about 7 inches wide (two-column page width).
RC: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8.5,
    "figure.titlesize": 10.5,
    "lines.linewidth": 1.6,
    "lines.markersize": 5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by publishers
    "ps.fonttype": 42,
    "savefig.dpi": 200,
}

#: Okabe-Ito colours (colour-blind safe) and markers that stay distinct in grey-scale print.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")

DEFAULT_LINE = {"color": "0.35", "linestyle": ":", "linewidth": 1.2}
BAND_ALPHA = 0.18

#: Width of a full-page figure and height of one row of panels, inches.
PAGE_WIDTH = 7.0
ROW_HEIGHT = 1.85

#: Display names beyond the paper's datasets.
DATASET_NAMES = {**PAPER_DATASET_NAMES, "synthetic": "Synthetic"}

#: Parameters drawn on a logarithmic axis: t, and those searched on a log scale.
LOG_PARAMS = frozenset({"t"}) | LOG_SCALE_PARAMS

#: Panels per row of a figure that wraps (the search scatter).
MAX_COLUMNS = 4
#: The best trial of a search: a star drawn over its point.
BEST_MARKER = {"marker": "*", "s": 110, "facecolor": "none", "edgecolor": "black", "linewidth": 0.9}


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(str(dataset), str(dataset))


def variant_name(variant: str) -> str:
    return VARIANT_NAMES.get(str(variant), str(variant))


def ordered(values: list[str], order: tuple[str, ...]) -> list[str]:
    """``values`` with those named in ``order`` first (in that order), the rest sorted."""
    known = [v for v in order if v in values]
    return known + sorted(v for v in set(values) if v not in order)


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def marker(index: int) -> str:
    return MARKERS[index % len(MARKERS)]
