"""The tidy results schema shared by the experiment runner (``tune/``) and ``plots/``.

One CSV row per trial x evaluation. Writers build rows with :func:`result_row`; readers check
files with :func:`read_results`. Nothing else defines column names.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from .config import FIELDS
from .errors import UserError

RESULTS_FILE = "results.csv"  #: tidy CSV written beside Ray's files by every experiment
BEST_FILE = "best.json"

#: Hyperparameters the paper sweeps (Figures 5-9), in the paper's order.
SWEEP_PARAMS = ("M", "R", "xi", "t", "tau", "theta1", "q")

#: Experiment kinds (column ``kind``).
KINDS = ("search", "grid", "ablation", "scalability")

#: Identify a trial and its place in the experiment. ``sweep`` names what the trial moves:
#: a SWEEP_PARAMS name in one-factor grids ("default" for the all-defaults point, which belongs
#: to every parameter's curve), "t" or "users" in scalability runs, "" otherwise.
ID_COLUMNS = ("experiment", "kind", "trial_id", "dataset", "variant", "seed", "sweep", "status", "error")

#: Per-evaluation measurements.
TIME_COLUMNS = ("epoch", "seconds_per_epoch", "epoch_seconds", "s_seconds", "wall_time", "n_users", "n_items")


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
        value = config.get(name)
        row[name] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    for name in TIME_COLUMNS + METRIC_COLUMNS:
        if name in metrics:
            row[name] = metrics[name]
    return row


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
    return frame
