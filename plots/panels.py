"""What each figure shows, as data: panels of named curves (x, mean, std, n) or trial scatters,
built from the aggregated results (:mod:`plots.aggregate`). Pure pandas, no drawing:
:mod:`plots.drawing` draws them, :mod:`plots.figures` decides what is rendered where.

A sweep figure is one of :data:`kdiffe.paper.FIGURES` (5-9): a dataset is drawn only when every
one of the figure's variants has a grid over its parameters there, so a comparison figure
(Figure 5) never shows one side alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Sequence

import pandas as pd

from kdiffe import paper
from kdiffe.catalog import MODELS, published_defaults
from kdiffe.config import FIELDS
from kdiffe.paper import MODEL_SEARCH_PARAMS, SWEEP_PARAMS, TRAINING_PARAMS, PaperFigure
from plots import style
from plots.aggregate import (
    SCALABILITY_MOVES, SECONDS, SELECTION, config_groups, default_value, figure_label_columns, grid_trials,
    labelled_curves, scalability_curves, scalability_trials)

METRICS = ("test_recall@20", "test_ndcg@20")
#: Figures 5-9, as the paper defines them (number, parameters, title, variants compared).
SWEEP_FIGURES = tuple(f for n, f in sorted(paper.FIGURES.items()) if n in range(5, 10))


def category_label(name: str) -> str:
    """A variant's name on a narrow categorical axis: 'KDiffE w/o S' -> 'w/o S'."""
    return name.removeprefix("KDiffE ") if name.startswith("KDiffE ") else name


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


def run_hint(params: Sequence[str], variant: str | None = None, dataset: str = "<dataset>") -> str:
    extra = f" --variant {variant}" if variant and variant != "kdiffe" else ""
    return f"run `python tune/search.py --dataset {dataset} --mode grid --params {','.join(params)}{extra}`"


def split_note(where: str, differ: Sequence[str]) -> str:
    return (f"{where}: trials differ in {', '.join(differ)}; drawn as separate curves, "
            "never averaged together")


def sweep_panels(best: pd.DataFrame, spec: PaperFigure) -> tuple[list[list[Panel]], list[str]]:
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
    """Parameters that take more than one value across ``trials``: SWEEP_PARAMS, the baselines' own,
    theta2 and lr, then variant."""
    moved = [p for p in SWEEP_PARAMS + MODEL_SEARCH_PARAMS + TRAINING_PARAMS
             if p in trials.columns and trials[p].nunique(dropna=True) > 1]
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


def param_label(param: str, model: str) -> str:
    """The axis label of ``param`` in a search of ``model``: the model's own where its field means
    something else there (kdiffe.catalog.Entry.labels), else the paper's symbol."""
    if param == "variant":
        return "variant"
    entry = MODELS.get(model)
    return (entry.labels if entry else {}).get(param) or paper.PARAM_LABELS.get(param, param)


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
                 title=title, xlabel=param_label(param, model), default=default,
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
