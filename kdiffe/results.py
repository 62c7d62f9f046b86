"""The tidy results schema shared by the experiment runner (``tune/``) and ``plots/``.

One CSV row per trial x evaluation. Writers build rows with :func:`result_row`; readers check
files with :func:`read_results`. Nothing else defines column names. :func:`best_rows` and
:func:`best_evaluation` are the one definition of "a trial's best evaluation" that every table,
figure and ``best.json`` quotes.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from .config import FIELDS
from .errors import UserError
from .paper import SWEEP_PARAMS  # noqa: F401  (re-exported: the schema's sweep columns)

RESULTS_FILE = "results.csv"  #: tidy CSV written beside Ray's files by every experiment
BEST_FILE = "best.json"
#: Folder holding experiments (the runners' ``--storage``, plots/figures.py's ``--results``), relative to cwd.
DEFAULT_STORAGE = "results"
#: Validation metric that picks each trial's best evaluation unless told otherwise.
SELECTION_METRIC = "val_recall@20"

#: An experiment that re-runs a search's best configuration with several seeds is named
#: ``<search experiment>`` + RERUN_SUFFIX; tables report it apart from the paper's ablation suite.
RERUN_SUFFIX = "-best"


def rerun_name(search: str) -> str:
    return search + RERUN_SUFFIX


def is_rerun(experiment: str) -> bool:
    return str(experiment).endswith(RERUN_SUFFIX)


#: Experiment kinds (column ``kind``).
KINDS = ("search", "grid", "ablation", "scalability")

#: Identify a trial and its place in the experiment. ``sweep`` names what the trial moves:
#: a SWEEP_PARAMS name in one-factor grids ("default" for the all-defaults point, which belongs
#: to every parameter's curve), "t" or "users" in scalability runs, "" otherwise.
ID_COLUMNS = ("experiment", "kind", "trial_id", "dataset", "variant", "seed", "sweep", "status", "error")

#: Per-evaluation measurements. ``kg_entities``: entities of the KG the trial used, 0 when it had
#: none (a dataset without item features: the knowledge, diffusion and CL parts did not run).
TIME_COLUMNS = ("epoch", "seconds_per_epoch", "epoch_seconds", "s_seconds", "wall_time", "n_users", "n_items",
                "kg_entities")


def metric_columns(ks: Iterable[int] = (10, 20, 50)) -> tuple[str, ...]:
    return tuple(f"{split}_{name}@{k}" for split in ("val", "test") for k in ks
                 for name in ("recall", "ndcg", "precision"))


METRIC_COLUMNS = metric_columns()

#: Every Config field except the run-location ones becomes a column of the same name.
CONFIG_COLUMNS = tuple(name for name in FIELDS if name not in ("data_dir", "cache_dir", "dataset", "variant", "seed"))

COLUMNS = ID_COLUMNS + TIME_COLUMNS + METRIC_COLUMNS + CONFIG_COLUMNS

#: What each figure or table needs beyond the identity columns.
REQUIRED = ("experiment", "kind", "trial_id", "dataset", "variant", "seed", "sweep", "status", "epoch",
            "seconds_per_epoch", "val_recall@20", "val_ndcg@20", "test_recall@20", "test_ndcg@20") + SWEEP_PARAMS


class SchemaError(UserError):
    """A results file that lacks required columns."""


def result_row(experiment: str, trial_id: str, config: Mapping[str, Any], metrics: Mapping[str, Any],
               *, kind: str = "search", sweep: str = "", status: str = "ok", error: str = "", wall_time: float | None = None,
               n_users: int | None = None, n_items: int | None = None) -> dict[str, Any]:
    """One tidy row from a trial's config and one evaluation's metrics."""
    row: dict[str, Any] = {name: None for name in COLUMNS}
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: choose from {', '.join(KINDS)}")
    row.update(experiment=experiment, kind=kind, trial_id=trial_id, dataset=config.get("dataset"),
               variant=config.get("variant"), seed=config.get("seed"), sweep=sweep, status=status,
               error=error, wall_time=wall_time, n_users=n_users, n_items=n_items)
    for name in CONFIG_COLUMNS:
        row[name] = _cell(config.get(name))
    for name in TIME_COLUMNS + METRIC_COLUMNS:
        if name in metrics:
            row[name] = metrics[name]
    return row


def with_config_defaults(frame):
    """``frame`` with every Config column it lacks added, filled with that field's default: a file
    written before a field existed holds runs that used its default."""
    for name in CONFIG_COLUMNS:
        if name not in frame.columns:
            frame[name] = _cell(FIELDS[name].default)
    return frame


def _cell(value: Any) -> Any:
    """A Config value as a CSV cell: sequences (``ks``) as "10,20,50"."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def check_columns(columns: Iterable[str], required: Iterable[str], source: str | os.PathLike) -> None:
    missing = [c for c in required if c not in set(columns)]
    if missing:
        raise SchemaError(f"{source}: missing columns {', '.join(missing)}")


def read_results(path: str | os.PathLike, required: Iterable[str] = REQUIRED):
    """Load a results CSV as a pandas DataFrame, failing with the names of missing columns."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise SchemaError(f"{path}: file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: not a readable CSV ({exc})") from None
    check_columns(frame.columns, required, path)
    return with_config_defaults(frame)


def best_rows(frame, metric: str = SELECTION_METRIC):
    """One row per trial: its evaluation with the highest validation ``metric`` (the earliest epoch on ties).

    Failed trials (status other than "ok") and rows without the metric are ignored. Every table,
    figure and best.json quotes the test metrics of these rows, so selection never looks at test.
    Rows come sorted by trial_id.
    """
    ok = frame[(frame["status"] == "ok") & frame[metric].notna()]
    if ok.empty:
        return ok
    ok = ok.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)  # any index, even repeated
    index = ok.groupby("trial_id", sort=False)[metric].idxmax()
    return ok.loc[index.values].reset_index(drop=True)


def best_evaluation(frame, metric: str = SELECTION_METRIC) -> dict[str, Any] | None:
    """The single best evaluation over all trials (the best of :func:`best_rows`; on ties the first
    trial id) as a plain dict ready for JSON: NaN as None, numpy scalars as Python ones, whole
    numbers of integer columns (epoch, seed, M, ...) as int; None when no trial has the metric."""
    best = best_rows(frame, metric)
    if best.empty:
        return None
    row = best.loc[best[metric].idxmax()]
    return {k: _plain(k, v) for k, v in row.to_dict().items()}


#: Columns holding integers (a CSV with gaps reads them as floats).
INT_COLUMNS = frozenset({"epoch", "seed", "n_users", "n_items"} | {
    name for name in CONFIG_COLUMNS
    if isinstance(FIELDS[name].default, int) and not isinstance(FIELDS[name].default, bool)})


def _plain(name: str, value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            return value
    if isinstance(value, float):
        if value != value:
            return None
        if name in INT_COLUMNS and value.is_integer():
            return int(value)
    return value
