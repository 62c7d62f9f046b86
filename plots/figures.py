"""The paper's Figures 5-10 and Tables II-III, redrawn from stored experiment results.

    python plots/figures.py                                      # reads ./results, writes results/figures/
    python plots/figures.py --results results --out paper --formats png

Reads every ``results.csv`` under ``--results`` (default ``results``, the runners' ``--storage``
default, relative to the current folder; the tidy files that ``tune/search.py``,
``ablations/run.py`` and ``tune/scalability.py`` write; schema: :mod:`kdiffe.results`) and trains
nothing, so figures can be redrawn after every sweep. What is drawn where, the paper's grids,
numbers and names come from :mod:`kdiffe.paper`; this module depends on nothing in ``tune/``.

=========  ==================================================================================
Figure 5   effectiveness of denoising: Recall@20 / NDCG@20 against q, KDiffE against the
           unguided variant; a dataset needs both q grids (one alone is left out with a note
           naming the command that runs the other; Figure 9 shows KDiffE's q alone)
Figure 6   M and R          (grid rows: sweep M / R, plus the sweep="default" trials)
Figure 7   xi and t
Figure 8   tau and theta1   (log axis for theta1)
Figure 9   q                (KDiffE)
Figure 10  seconds per epoch (a) against diffusion steps t per dataset, (b) against users
search_*   one per optuna/random search (kind "search"): each successful trial's best
           validation Recall@20 against every parameter the search moved (one panel each; the
           variant as a categorical panel when it moved, colours by variant), best trial starred
Table II   datasets x variants (ablation rows; default grid trials where no ablation ran)
Table III  ablations, mean ± std over seeds with a paired test (via plots/tables.py)
claims     a verdict on every claim (plots/claims.py, rules in plots/verdicts.py)
others     comparisons (plots/tables.py), what_ran (plots/provenance.py, every run of every
           experiment under --results), splits (plots/splits.py, from the datasets: --data-dir)
=========  ==================================================================================

Accuracy plotted: test Recall@20 / NDCG@20 at each trial's best *validation* Recall@20
evaluation (never the best test epoch; :func:`kdiffe.results.best_rows`), averaged over the
trials (seeds) at each point; a band shows ±1 standard deviation where a point has several.
Seconds per epoch: each trial's last evaluation (the mean over its epochs), on an axis from 0.
Dotted grey lines mark each parameter's default value (that of the experiment's sweep="default"
trials, else the paper's).

Replicates: trials are pooled into one mean ± std point only when their whole configuration is
equal (every :data:`kdiffe.results.CONFIG_COLUMNS` value, epochs included) apart from the seed and
the plotted parameter. Trials whose configurations differ in anything else (say, two grid
experiments run with different ``--epochs``) are never averaged together: each configuration is
its own curve, labelled with what differs ("KDiffE (epochs=30)"), and a note says so. Nothing is
dropped silently and no point mixes two settings, so every curve is one of the paper's sweeps.

Each figure is written as PNG and PDF with a CSV of the numbers drawn beside it
(``figureN.csv``, ``search_<experiment>.csv``). Missing data skips a figure or table with a
one-line note naming the experiment that produces it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kdiffe import paper  # noqa: E402
from kdiffe.catalog import published_defaults  # noqa: E402
from kdiffe.config import FIELDS  # noqa: E402
from kdiffe.paper import PAPER_GRIDS, SWEEP_PARAMS, TRAINING_PARAMS  # noqa: E402
from kdiffe.results import DEFAULT_STORAGE, REQUIRED, RESULTS_FILE, is_rerun, read_results  # noqa: E402
from kdiffe.errors import UserError, report  # noqa: E402
from kdiffe.files import replace_atomic  # noqa: E402
from plots import style, tables  # noqa: E402
from plots.aggregate import (  # noqa: E402
    SCALABILITY_MOVES, SECONDS, SELECTION, best_evaluations, config_groups, default_value, figure_label_columns,
    grid_trials, labelled_curves, scalability_curves, scalability_trials)
from plots.claims import write_claims  # noqa: E402
from plots.provenance import write_what_ran  # noqa: E402
from plots.splits import write_splits  # noqa: E402

METRICS = ("test_recall@20", "test_ndcg@20")
TEXT_COLUMNS = ("experiment", "kind", "trial_id", "dataset", "variant", "sweep", "status")
OPTIONAL_COLUMNS = ("n_users", "max_users", "kg_entities")  #: absent columns (older files) read as unknown
FORMATS = ("png", "pdf", "svg")


class UsageError(UserError):
    """A mistake in the command line (reported as ``error: ...``, exit 2)."""


@dataclass(frozen=True)
class SweepFigure:
    """One of Figures 5-9: metrics against the one-factor grids of ``params``, a curve per variant.

    A dataset is drawn only when every one of ``variants`` has a grid over the figure's
    parameters there: a comparison figure (Figure 5) never shows one side alone.
    """

    number: int
    params: tuple[str, ...]
    title: str
    variants: tuple[str, ...] = ("kdiffe",)


SWEEP_FIGURES = tuple(SweepFigure(f.number, f.params, f.title, f.variants)
                      for n, f in sorted(paper.FIGURES.items()) if n in range(5, 10))


@dataclass
class Panel:
    """What one axes shows: named curves (columns x, mean, std, n) and where the default lies."""

    param: str  #: x quantity: a SWEEP_PARAMS name, "users" (Figure 10b) or "variant" (a search)
    ylabel: str
    curves: dict[str, pd.DataFrame]
    title: str = ""
    xlabel: str = ""
    default: float | None = None
    ticklabels: dict[float, str] = field(default_factory=dict)
    key: dict[str, str] = field(default_factory=dict)  #: identifies the panel in figureN.csv
    kind: str = "line"  #: "line": curves of x, mean, std, n; "scatter": points x, y (one per trial)
    best: tuple[float, float] | None = None  #: scatter: the best trial's point, starred


@dataclass
class Rendered:
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- loading
def find_results(root: Path) -> list[Path]:
    """``root`` itself if it is not a folder, else every results.csv below it (read_results
    refuses one that is not a regular file)."""
    if root.exists() and not root.is_dir():
        return [root]
    if not root.is_dir():
        raise UsageError(f"--results {root}: no such file or folder; run an experiment first "
                         "(tune/search.py, ablations/run.py or tune/scalability.py) or name the folder "
                         "with --results")
    files = sorted(root.rglob(RESULTS_FILE))
    if not files:
        raise UsageError(f"no {RESULTS_FILE} under {root}; run an experiment first "
                         "(tune/search.py, ablations/run.py or tune/scalability.py)")
    return files


def load_results(root: Path, notes: list[str] | None = None) -> pd.DataFrame:
    """All results files under ``root`` as one frame (values checked by
    :func:`kdiffe.results.read_results`); trial ids made unique across experiments. A file with
    a header but no rows yet adds a note to ``notes``."""
    paths = find_results(root)
    frames = [read_results(path, REQUIRED) for path in paths]
    if notes is not None:
        notes += [f"{path} skipped: no rows yet" for path, f in zip(paths, frames) if not len(f)]
    non_empty = [f for f in frames if len(f)] or frames[:1]
    frame = pd.concat(non_empty, ignore_index=True).drop_duplicates(ignore_index=True)
    for name in TEXT_COLUMNS:
        frame[name] = frame[name].fillna("").astype(str)
    for name in OPTIONAL_COLUMNS:
        if name not in frame.columns:
            frame[name] = np.nan
    frame["trial_id"] = frame["experiment"] + "/" + frame["trial_id"]
    return frame


# --------------------------------------------------------------------------------------- panels
def run_hint(params: Sequence[str], variant: str | None = None, dataset: str = "<dataset>") -> str:
    extra = f" --variant {variant}" if variant and variant != "kdiffe" else ""
    return f"run `python tune/search.py --dataset {dataset} --mode grid --params {','.join(params)}{extra}`"


def split_note(where: str, differ: Sequence[str]) -> str:
    return (f"{where}: trials differ in {', '.join(differ)}; drawn as separate curves, "
            "never averaged together")


def sweep_panels(best: pd.DataFrame, spec: SweepFigure) -> tuple[list[list[Panel]], list[str]]:
    """Rows of panels (parameter x metric) by columns (datasets) for one of Figures 5-9, and notes.

    A dataset appears only when every variant of ``spec`` has a grid over the figure's
    parameters there; Figure 5 (KDiffE against the unguided variant) is skipped rather than
    drawn with one side of the comparison.
    """
    grid = best[(best["kind"] == "grid") & best["variant"].isin(spec.variants)]
    present = [p for p in spec.params if (grid["sweep"] == p).any()]
    if not present:
        hint = run_hint(spec.params) + "".join(f" (and with `--variant {v}`)" for v in spec.variants
                                               if v != "kdiffe")
        return [], [f"figure {spec.number} skipped: no grid rows for {'/'.join(spec.params)}; {hint}"]
    notes = [f"figure {spec.number}: no grid rows for {p}, panels left out; {run_hint([p])}"
             for p in spec.params if p not in present]
    moved = grid[grid["sweep"].isin(present)]
    datasets, lacking = [], []
    for dataset in style.ordered(list(moved["dataset"].unique()), paper.DATASETS):
        have = set(moved.loc[moved["dataset"] == dataset, "variant"])
        missing = [v for v in spec.variants if v not in have]
        if missing:
            lacking += [(dataset, v) for v in missing]
        else:
            datasets.append(dataset)
    if lacking:
        names = " vs ".join(style.variant_name(v) for v in spec.variants)
        hints = "; ".join(f"{dataset} has no {variant} grid over {'/'.join(present)}: "
                          f"{run_hint(present, variant, dataset)}" for dataset, variant in lacking)
        if not datasets:
            alone = " (Figure 9 shows q for KDiffE alone)" if "q" in present and spec.number != 9 else ""
            return [], [f"figure {spec.number} skipped: it compares {names}; {hints}{alone}"]
        notes.append(f"figure {spec.number}: {', '.join(sorted({d for d, _ in lacking}))} left out "
                     f"(it compares {names}); {hints}")
    labels = {dataset: figure_label_columns([g for p in present for v in spec.variants
                                             for g in config_groups(grid_trials(best, p, dataset, v), p)], present)
              for dataset in datasets}
    rows: list[list[Panel]] = []
    for param in present:
        for metric in METRICS:
            row = []
            for dataset in datasets:
                panel, differ = _sweep_panel(best, param, dataset, spec.variants, metric, labels[dataset])
                row.append(panel)
                if differ:
                    notes.append(split_note(f"figure {spec.number} ({param}, {style.dataset_name(dataset)})",
                                            differ))
            rows.append(row)
    return rows, list(dict.fromkeys(notes))


def _sweep_panel(best: pd.DataFrame, param: str, dataset: str, variants: Sequence[str], metric: str,
                 label_columns: Collection[str] = ()) -> tuple[Panel, list[str]]:
    parts = [(style.variant_name(v), grid_trials(best, param, dataset, v)) for v in variants]
    curves, differ = labelled_curves(parts, param, param, metric, label_columns)
    panel = Panel(param=param, ylabel=paper.METRIC_NAMES[metric], curves=curves, title=style.dataset_name(dataset),
                  xlabel=paper.PARAM_LABELS[param], default=default_value(best, param, dataset, variants[0]),
                  key={"dataset": dataset, "param": param, "metric": metric})
    return panel, differ


def scalability_panels(frame: pd.DataFrame) -> tuple[list[Panel], list[str]]:
    """Figure 10: (a) seconds per epoch against t, a curve per dataset; (b) against users."""
    panels, notes = [], []
    groups = [g for sweep, column in SCALABILITY_MOVES.items() for _, trials in
              scalability_trials(frame, sweep).groupby("dataset") for g in config_groups(trials, column)]
    labels = figure_label_columns(groups, SCALABILITY_MOVES.values())
    steps = scalability_trials(frame, "t")
    if steps.empty:
        notes.append("figure 10a skipped: no scalability rows for t; "
                     "run `python tune/scalability.py --dataset tiktok baby sports --only t`")
    else:
        datasets = style.ordered(list(steps["dataset"].unique()), paper.DATASETS)
        curves, differ = scalability_curves(frame, "t", datasets, labels)
        panels.append(Panel(param="t", ylabel="seconds per epoch", title="(a) diffusion steps",
                            xlabel=paper.PARAM_LABELS["t"], default=float(FIELDS["t"].default),
                            curves=curves, key={"panel": "a", "metric": SECONDS}))
        if differ:
            notes.append(split_note("figure 10a", differ))
    users = scalability_trials(frame, "users").dropna(subset=["users"])
    if users.empty:
        notes.append("figure 10b skipped: no scalability rows for users; "
                     f"run `python tune/scalability.py --dataset {paper.SCALABILITY_DATASET} --only users`")
    else:
        datasets = style.ordered(list(users["dataset"].unique()), paper.DATASETS)
        everyone = users[users["max_users"] == 0]
        names = ", ".join(style.dataset_name(d) for d in datasets)
        curves, differ = scalability_curves(frame, "users", datasets, labels)
        panels.append(Panel(param="users", ylabel="seconds per epoch", title=f"(b) users, {names}",
                            xlabel="number of users", curves=curves,
                            ticklabels={float(n): f"all\n({int(n):,})" for n in everyone["users"].unique()},
                            key={"panel": "b", "metric": SECONDS}))
        if differ:
            notes.append(split_note("figure 10b", differ))
    return panels, notes


def search_experiments(best: pd.DataFrame) -> list[str]:
    """Experiments of kind "search" (optuna / random) with at least one successful trial."""
    return sorted(best.loc[best["kind"] == "search", "experiment"].unique())


def searched_params(trials: pd.DataFrame) -> list[str]:
    """Parameters that take more than one value across ``trials``: SWEEP_PARAMS, theta2 and lr, then variant."""
    moved = [p for p in SWEEP_PARAMS + TRAINING_PARAMS if trials[p].nunique(dropna=True) > 1]
    return moved + (["variant"] if trials["variant"].nunique() > 1 else [])


def search_panels(best: pd.DataFrame, experiment: str) -> tuple[list[list[Panel]], pd.DataFrame, list[str]]:
    """One optuna/random search: a scatter panel per parameter it moved (x: the trial's value,
    y: its best validation Recall@20), rows of at most ``style.MAX_COLUMNS`` panels, one block per
    dataset; the table of the points drawn (search_<experiment>.csv); notes."""
    trials = best[(best["kind"] == "search") & (best["experiment"] == experiment)].dropna(subset=[SELECTION])
    if trials.empty:
        return [], pd.DataFrame(), [f"search {experiment} skipped: no successful trial"]
    datasets = style.ordered(list(trials["dataset"].unique()), paper.DATASETS)
    variants = style.ordered(list(trials["variant"].unique()), paper.VARIANT_ORDER)
    rows: list[list[Panel]] = []
    found, notes = [], []
    for dataset in datasets:
        part = trials[trials["dataset"] == dataset]
        moved = searched_params(part)
        if not moved:
            notes.append(f"search {experiment} on {dataset} skipped: no parameter varies across its "
                         f"{len(part)} successful trials")
            continue
        title = style.dataset_name(dataset) if len(datasets) > 1 else ""
        panels = [_search_panel(part, param, variants, title) for param in moved]
        rows += [panels[i:i + style.MAX_COLUMNS] for i in range(0, len(panels), style.MAX_COLUMNS)]
        top = part[SELECTION].max()
        columns = ["experiment", "dataset", "trial_id", "variant", "seed", "epoch"] + \
            [p for p in moved if p != "variant"] + [SELECTION]
        found.append(part[columns].assign(best=part[SELECTION] == top))
    table = pd.concat(found, ignore_index=True) if found else pd.DataFrame()
    return rows, table, notes


def _search_panel(trials: pd.DataFrame, param: str, variants: Sequence[str], title: str) -> Panel:
    position = {v: float(i) for i, v in enumerate(v for v in variants if v in set(trials["variant"]))}

    def xs(rows: pd.DataFrame) -> pd.Series:
        return rows["variant"].map(position) if param == "variant" else rows[param].astype(float)

    curves = {}
    for variant in variants:
        rows = trials[trials["variant"] == variant]
        points = pd.DataFrame({"x": xs(rows).to_numpy(float), "y": rows[SELECTION].to_numpy(float),
                               "trial_id": rows["trial_id"].to_numpy()}).dropna(subset=["x", "y"])
        if len(points):
            curves[style.variant_name(variant)] = points.sort_values("x", kind="stable").reset_index(drop=True)
    top = trials.loc[trials[SELECTION].idxmax()]
    model = str(trials["model"].iloc[0]) if "model" in trials.columns and len(trials) else FIELDS["model"].default
    # the searched model's own default (kdiffe.catalog: LightGCN's published θ2 is 1e-4, not KDiffE's 1e-5)
    default = None if param == "variant" else float(published_defaults(model).get(param, FIELDS[param].default))
    return Panel(param=param, ylabel="validation " + paper.METRIC_NAMES["test_recall@20"], curves=curves,
                 title=title, xlabel=paper.PARAM_LABELS.get(param, "variant"), default=default,
                 ticklabels={x: category_label(style.variant_name(v)) for v, x in position.items()}
                 if param == "variant" else {},
                 key={"dataset": str(top["dataset"]), "param": param, "metric": SELECTION}, kind="scatter",
                 best=(float(xs(top.to_frame().T).iloc[0]), float(top[SELECTION])))


def panel_table(rows: list[list[Panel]]) -> pd.DataFrame:
    """The numbers a figure draws, one row per point (written as figureN.csv)."""
    parts = [curve.assign(curve=label, **panel.key) for row in rows for panel in row
             for label, curve in panel.curves.items()]
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    front = [c for c in table.columns if c not in ("x", "mean", "std", "n")]
    return table[front + ["x", "mean", "std", "n"]]


# -------------------------------------------------------------------------------------- drawing
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


def category_label(name: str) -> str:
    """A variant's name on a narrow categorical axis: 'KDiffE w/o S' -> 'w/o S'."""
    return name.removeprefix("KDiffE ") if name.startswith("KDiffE ") else name


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
        replace_atomic(path, lambda tmp: fig.savefig(tmp, format=fmt))
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------- outputs
def file_stem(name: str) -> str:
    """An experiment name made safe as part of a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "experiment"


def render_figures(frame: pd.DataFrame, out: Path, formats: Sequence[str]) -> Rendered:
    """Figures 5-10 and one figure per search under ``out``: images plus a CSV of the numbers
    drawn; notes for what had no data."""
    import matplotlib

    done = Rendered()
    out.mkdir(parents=True, exist_ok=True)
    best = best_evaluations(frame)
    jobs: list[tuple[str, list[list[Panel]], str, pd.DataFrame]] = []
    for spec in SWEEP_FIGURES:
        rows, notes = sweep_panels(best, spec)
        done.notes += notes
        if rows:
            jobs.append((f"figure{spec.number}", rows, f"Figure {spec.number}. {spec.title}", panel_table(rows)))
    panels, notes = scalability_panels(frame)
    done.notes += notes
    if panels:
        jobs.append(("figure10", [panels], f"Figure 10. {paper.FIGURES[10].title}", panel_table([panels])))
    for experiment in search_experiments(best):
        rows, table, notes = search_panels(best, experiment)
        done.notes += notes
        if rows:
            names = ", ".join(style.dataset_name(d) for d in
                              style.ordered(list(table["dataset"].unique()), paper.DATASETS))
            title = f"Search {experiment} ({names}): best validation Recall@20 of each trial"
            jobs.append((f"search_{file_stem(experiment)}", rows, title, table))
    for stem, rows, title, table in jobs:
        with matplotlib.rc_context(style.RC):
            done.written += save(draw(rows, title), out, stem, formats)
        done.written.append(tables.write_csv(table, out / f"{stem}.csv"))
    return done


def table_ii_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Evaluations behind Table II: ablation trials, plus default grid trials of the dataset x
    variant pairs that no ablation covers (hyperparameter searches and scalability runs never)."""
    ablation = frame[frame["kind"] == "ablation"]
    covered = set(zip(ablation["dataset"], ablation["variant"]))
    defaults = frame[(frame["kind"] == "grid") & (frame["sweep"] == "default")]
    extra = defaults[[pair not in covered for pair in zip(defaults["dataset"], defaults["variant"])]]
    return pd.concat([ablation, extra], ignore_index=True)


def render_tables(frame: pd.DataFrame, out: Path) -> Rendered:
    """Tables II and III (markdown and CSV) through plots/tables.py; Table III under both selection
    protocols (table_protocols); the re-runs of searches' best configurations (table_search)."""
    done = Rendered()
    reruns = frame["experiment"].map(is_rerun).astype(bool)
    suite = frame[~reruns]
    ablation = suite[suite["kind"] == "ablation"]
    for name, build, write, rows, hint in (
            ("II", tables.table_ii, tables.write_table_ii, table_ii_rows(suite), "no ablation rows or default grid "
             "trials; run `python ablations/run.py --dataset tiktok baby sports`"),
            ("III", tables.table_iii, tables.write_table_iii, ablation, "no ablation rows; "
             "run `python ablations/run.py --dataset tiktok --seeds 0-4`")):
        table = build(rows) if len(rows) else pd.DataFrame()
        if not len(table):
            done.notes.append(f"table {name} skipped: {hint}")
            continue
        done.written += write(table, out, f"table_{name.lower()}")
    for stem, rows, heading in (("table_protocols", ablation, "Table III, both protocols"),
                                ("table_search", frame[reruns & (frame["kind"] == "ablation")],
                                 "Best configurations of the searches, re-run")):
        table = tables.protocol_table(rows) if len(rows) else pd.DataFrame()
        if len(table):
            done.written += tables.write_blocks(table, out, stem, heading)
    done.written += tables.write_comparisons(frame, out)
    return done


def render_all(frame: pd.DataFrame, out: Path, formats: Sequence[str] = ("png", "pdf"),
               root: Path | None = None, data_dir: str | Path | None = None) -> Rendered:
    """Every figure, table and the claims from ``frame``; with ``root`` (the results folder) also
    the table of every run of every experiment there (plots/provenance.py); with ``data_dir`` the
    statistics of every split the results trained on (plots/splits.py)."""
    out.mkdir(parents=True, exist_ok=True)
    drawn, tabled = render_figures(frame, out, formats), render_tables(frame, out)
    ran = write_what_ran(root, out) if root is not None and root.is_dir() else []
    split_files, split_notes = write_splits(frame, data_dir, out) if data_dir is not None else ([], [])
    return Rendered(drawn.written + tabled.written + write_claims(frame, out) + ran + split_files,
                    drawn.notes + tabled.notes + split_notes)


# ------------------------------------------------------------------------------------------ CLI
def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise UsageError(f"--formats {text!r}: choose from {', '.join(FORMATS)}")
    return formats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plots/figures.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path(DEFAULT_STORAGE),
                        help="folder searched recursively for results.csv files, or one CSV file "
                             f"(default {DEFAULT_STORAGE}, the runners' --storage default)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <results>/figures)")
    parser.add_argument("--formats", default="png,pdf", help="comma-separated image formats (default png,pdf)")
    parser.add_argument("--data-dir", default=None,
                        help="folder of the datasets, for the statistics of each split (splits.md); "
                             "default $KDIFFE_DATA_DIR, and none when it is unset")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        formats = parse_formats(args.formats)
        skipped: list[str] = []
        frame = load_results(args.results, skipped)
        default_out = args.results.parent if args.results.is_file() else args.results
        out = args.out or default_out / "figures"
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: not a folder")
    except UserError as exc:
        return report(exc)
    data_dir = args.data_dir or os.environ.get("KDIFFE_DATA_DIR")
    done = render_all(frame, out, formats, args.results, data_dir)
    for path in done.written:
        print(f"wrote {path}")
    for note in skipped + done.notes:
        print(note, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
