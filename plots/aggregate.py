"""Aggregation of tidy results into what figures, tables and claims show: pure pandas, no drawing.

A trial's best validation evaluation (:func:`best_evaluations`), sweep curves over one parameter
(mean, std, n at each value, one curve per configuration: :func:`sweep_curves`), and the last
evaluation of each scalability trial (:func:`scalability_trials`). Shared by
:mod:`plots.figures` (which draws them) and :mod:`plots.claims` (which judges them).
"""

from __future__ import annotations

from typing import Any, Collection, Sequence

import numpy as np
import pandas as pd

from kdiffe.config import FIELDS
from kdiffe.results import CONFIG_COLUMNS, SELECTION_METRIC, best_rows
from plots import style, tables

#: Validation metric that picks each trial's evaluation; the test metrics of that row are plotted.
SELECTION = SELECTION_METRIC
SECONDS = "seconds_per_epoch"


def best_evaluations(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per successful trial: its evaluation with the best validation Recall@20."""
    return best_rows(frame, SELECTION)


def summarise(rows: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Mean, sample standard deviation (0 for one value) and count of ``y`` at each ``x``."""
    rows = rows.dropna(subset=[x, y])
    grouped = rows.groupby(x, sort=True)[y]
    out = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1).fillna(0.0), "n": grouped.count()})
    return out.rename_axis("x").reset_index().astype({"x": float, "mean": float, "std": float, "n": int})


def config_columns(frame: pd.DataFrame, vary: str | Collection[str]) -> list[str]:
    """Columns that must agree for trials to share a curve: every config column but ``vary``
    (one name or several; seed, dataset and variant are not config columns)."""
    vary = {vary} if isinstance(vary, str) else set(vary)
    return [c for c in CONFIG_COLUMNS if c in frame.columns and c not in vary]


def config_groups(trials: pd.DataFrame, vary: str) -> list[pd.DataFrame]:
    """``trials`` split by configuration: equal in every config column but ``vary``."""
    if trials.empty:
        return []
    columns = config_columns(trials, vary)
    if not columns:
        return [trials]
    return [group for _, group in trials.groupby(columns, dropna=False, sort=False)]


def value_text(value: Any) -> str:
    """A config value as a label shows it: 30.0 -> '30', 0.001 -> '0.001', NaN -> '?'."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        if pd.isna(value):
            return "?"
        return str(int(value)) if float(value).is_integer() else f"{float(value):g}"
    return "?" if value is None else str(value)


def differing(groups: Sequence[pd.DataFrame], vary: str | Collection[str]) -> list[str]:
    """The config columns (but ``vary``) whose value differs between ``groups``."""
    if len(groups) < 2:
        return []
    columns = config_columns(groups[0], vary)
    firsts = pd.concat([g[columns].iloc[:1] for g in groups], ignore_index=True)
    return [c for c in columns if firsts[c].map(value_text).nunique() > 1]


def _sort_key(value: Any) -> tuple:
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def labelled_curves(parts: Sequence[tuple[str, pd.DataFrame]], vary: str, x: str, y: str,
                    label_columns: Collection[str] = ()) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The curves of one panel and the config columns that split it.

    ``parts`` are (display name, trials) pairs (a variant's or a dataset's trials). Each part is
    split by configuration (every config column but ``vary``); replicates (seeds) are pooled only
    inside one configuration. Curves are labelled with their values of ``label_columns`` (the
    columns that differ anywhere in the figure, so one configuration keeps one label and colour
    across panels) and of whatever splits this panel: "KDiffE (epochs=30)"; when the curves of the
    panel rest on different numbers of seeds, each label says its own ("KDiffE (epochs=30; 1 seed)").
    """
    order = {name: i for i, (name, _) in enumerate(parts)}
    groups = [(name, group) for name, trials in parts for group in config_groups(trials, vary)]
    split = differing([g for _, g in groups], vary)
    shown = [c for c in CONFIG_COLUMNS if c in set(split) | set(label_columns) and c != vary]
    groups.sort(key=lambda ng: (order[ng[0]], tuple(_sort_key(ng[1][c].iloc[0]) for c in shown)))
    seeds = [int(group["seed"].nunique()) if "seed" in group else 1 for _, group in groups]
    counted = len(set(seeds)) > 1  # curves of this panel rest on different numbers of seeds: say so
    curves: dict[str, pd.DataFrame] = {}
    for (name, group), k in zip(groups, seeds):
        curve = summarise(group, x, y)
        if len(curve):
            extra = ", ".join(f"{c}={value_text(group[c].iloc[0])}" for c in shown)
            if counted:
                extra += ("; " if extra else "") + f"{k} seed{'s' if k != 1 else ''}"
            curves[f"{name} ({extra})" if extra else name] = curve
    return curves, split


def grid_trials(best: pd.DataFrame, param: str, dataset: str, variant: str) -> pd.DataFrame:
    """Trials of one sweep curve: those moving ``param`` plus the default trials of their experiments."""
    grid = best[(best["kind"] == "grid") & (best["dataset"] == dataset) & (best["variant"] == variant)]
    moved = grid[grid["sweep"] == param]
    if moved.empty:
        return moved
    defaults = grid[(grid["sweep"] == "default") & grid["experiment"].isin(moved["experiment"].unique())]
    return pd.concat([moved, defaults], ignore_index=True)


def sweep_curves(best: pd.DataFrame, param: str, dataset: str, variant: str, metric: str
                 ) -> dict[str, pd.DataFrame]:
    """The curves of one variant over ``param`` (points x, mean, std, n): one per configuration,
    keyed by the variant's display name plus what differs ("KDiffE (epochs=30)")."""
    trials = grid_trials(best, param, dataset, variant)
    return labelled_curves([(style.variant_name(variant), trials)], param, param, metric)[0]


def grid_matrix(best: pd.DataFrame, param: str, dataset: str, variant: str, metric: str) -> pd.DataFrame:
    """One sweep as a (value of ``param`` x seed) table of ``metric``, only the seeds that ran at
    every value; empty when there is no grid. Of several configurations the claims judge the one
    trained longest (most ``epochs``: grids re-run at the ablations' budget supersede the first
    30-epoch ones), then the one with the most trials."""
    groups = config_groups(grid_trials(best, param, dataset, variant), param)
    if not groups:
        return pd.DataFrame()
    trials = max(groups, key=lambda g: (float(g["epochs"].max()) if "epochs" in g.columns else 0.0, len(g)))
    table = trials.pivot_table(index=param, columns="seed", values=metric, aggfunc="mean").sort_index()
    return table.dropna(axis=1)


def figure_label_columns(groups: Sequence[pd.DataFrame], params: Collection[str]) -> list[str]:
    """Config columns (``params`` aside) that differ between any of a figure's curves: every
    curve of the figure shows its values of them."""
    return differing(groups, params)


def sweep_curve(best: pd.DataFrame, param: str, dataset: str, variant: str, metric: str) -> pd.DataFrame:
    """The one curve of a variant over ``param``; ValueError when its trials hold several
    configurations (use :func:`sweep_curves`)."""
    curves = sweep_curves(best, param, dataset, variant, metric)
    if len(curves) > 1:
        raise ValueError(f"{variant} trials over {param} on {dataset} hold {len(curves)} configurations: "
                         f"{', '.join(curves)}")
    return next(iter(curves.values()), summarise(best.iloc[:0], param, metric))


def default_value(best: pd.DataFrame, param: str, dataset: str, variant: str) -> float:
    """The value the default trials used; the Config (paper) default when they are absent or disagree."""
    trials = grid_trials(best, param, dataset, variant)
    values = trials.loc[trials["sweep"] == "default", param].dropna().unique()
    return float(values[0]) if len(values) == 1 else float(FIELDS[param].default)


def scalability_trials(frame: pd.DataFrame, sweep: str) -> pd.DataFrame:
    """Last evaluation of every successful scalability trial of ``sweep`` ("t" or "users")."""
    rows = frame[(frame["kind"] == "scalability") & (frame["sweep"] == sweep) & (frame["status"] == "ok")]
    rows = rows.dropna(subset=[SECONDS, "epoch"])
    last = rows.sort_values("epoch", kind="stable").groupby("trial_id", sort=False).tail(1)
    if sweep == "users":
        last = last.assign(users=users_axis(last))
    return last


def users_axis(trials: pd.DataFrame) -> pd.Series:
    """Users trained on: n_users where recorded, else max_users (0, all users, stays unknown)."""
    fallback = trials["max_users"].where(trials["max_users"] > 0)
    return trials["n_users"].fillna(fallback).astype(float)


#: Figure 10: the config column each scalability sweep moves.
SCALABILITY_MOVES = {"t": "t", "users": "max_users"}


def scalability_curves(frame: pd.DataFrame, sweep: str, datasets: Sequence[str], label_columns: Collection[str] = ()
                       ) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Figure 10 curves: mean seconds per epoch at each t (or number of users), per dataset and
    configuration (the config column the sweep moves, t or max_users, aside)."""
    trials = scalability_trials(frame, sweep)
    parts = []
    for dataset in datasets:
        rows = trials[trials["dataset"] == dataset]
        parts.append((style.dataset_name(dataset) + (" [no KG]" if tables.ran_without_kg(rows) else ""), rows))
    return labelled_curves(parts, SCALABILITY_MOVES[sweep], "t" if sweep == "t" else "users", SECONDS,
                           label_columns)
