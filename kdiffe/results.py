"""The tidy results schema shared by the experiment runner (``tune/``) and ``plots/``.

One CSV row per trial x evaluation. Writers build rows with :func:`result_row`; readers check
files with :func:`read_results`. Nothing else defines column names. :func:`best_rows` and
:func:`best_evaluation` are the one definition of "a trial's best evaluation" that every table,
figure and ``best.json`` quotes.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Iterable, Mapping

from .config import FIELDS, from_dict
from .errors import UserError
from .files import open_regular, read_json
from .paper import SWEEP_PARAMS  # noqa: F401  (re-exported: the schema's sweep columns)

RESULTS_FILE = "results.csv"  #: tidy CSV written beside Ray's files by every experiment
RECORD_FILE = "experiment.json"  #: every run of an experiment: command, commit, machine, times, exit
BEST_FILE = "best.json"
#: Folder holding experiments (the runners' ``--storage``, plots/figures.py's ``--results``), relative to cwd.
DEFAULT_STORAGE = "results"
#: Validation metric that picks each trial's best evaluation unless told otherwise.
SELECTION_METRIC = "val_recall@20"

#: An experiment that re-runs a search's best configuration with several seeds is named
#: ``<search experiment>`` + RERUN_SUFFIX; tables report it apart from the paper's ablation suite.
RERUN_SUFFIX = "-best"


def last_run(record: object) -> dict[str, Any] | None:
    """The last run an experiment.json record lists (its ``exit`` is None until it ends), or None."""
    runs = record.get("runs") if isinstance(record, dict) else None
    return runs[-1] if isinstance(runs, list) and runs and isinstance(runs[-1], dict) else None


def rerun_name(search: str) -> str:
    return search + RERUN_SUFFIX


def is_rerun(experiment: str) -> bool:
    return str(experiment).endswith(RERUN_SUFFIX)


#: Experiment kinds (column ``kind``).
KINDS = ("search", "grid", "ablation", "scalability", "retrain")

#: Identify a trial and its place in the experiment. ``sweep`` names what the trial moves:
#: a SWEEP_PARAMS name in one-factor grids ("default" for the all-defaults point, which belongs
#: to every parameter's curve), "t" or "users" in scalability runs, the arm ("found" or
#: "defaults") in a re-training, "" otherwise.
ID_COLUMNS = ("experiment", "kind", "trial_id", "dataset", "variant", "seed", "sweep", "status", "error")

#: What a trial's model actually used (Recommender.recorded), beside kg_entities: the item-feature
#: modalities it read ("image,text"; empty for none).
RUN_COLUMNS = ("modalities",)

#: Per-evaluation measurements. ``kg_entities``: entities of the KG the trial used, 0 when it had
#: none (knowledge, diffusion and CL did not run).
TIME_COLUMNS = ("epoch", "seconds_per_epoch", "epoch_seconds", "s_seconds", "wall_time", "n_users", "n_items",
                "kg_entities")


def metric_columns(ks: Iterable[int] = (10, 20, 50)) -> tuple[str, ...]:
    return tuple(f"{split}_{name}@{k}" for split in ("val", "test") for k in ks
                 for name in ("recall", "ndcg", "precision"))


METRIC_COLUMNS = metric_columns()

#: Every Config field except the run-location ones becomes a column of the same name.
CONFIG_COLUMNS = tuple(name for name in FIELDS if name not in ("data_dir", "cache_dir", "dataset", "variant", "seed"))

COLUMNS = ID_COLUMNS + TIME_COLUMNS + RUN_COLUMNS + METRIC_COLUMNS + CONFIG_COLUMNS


def method(config: Mapping[str, Any]) -> Any:
    """The ``variant`` column of a row: the kdiffe model's variant, or the name of another model."""
    model = config.get("model") or FIELDS["model"].default
    return config.get("variant") if model == FIELDS["model"].default else model

#: Identity columns read as text whatever they look like: a trial id of hex digits such as
#: "0012345678" or "8e12345678" would otherwise come back as a number.
TEXT_DTYPES = {name: str for name in ID_COLUMNS}

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
               variant=method(config), seed=config.get("seed"), sweep=sweep, status=status,
               error=error, wall_time=wall_time, n_users=n_users, n_items=n_items)
    for name in CONFIG_COLUMNS:
        row[name] = _cell(config.get(name))
    for name in TIME_COLUMNS + RUN_COLUMNS + METRIC_COLUMNS:
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
    """Load a results CSV as a pandas DataFrame, failing with the names of missing columns or
    the first value :func:`check_values` refuses. Only a regular file is read
    (:func:`kdiffe.files.open_regular`: no folder, FIFO or device)."""
    import pandas as pd

    try:
        handle = open_regular(path, SchemaError)
    except FileNotFoundError:
        raise SchemaError(f"{path}: file not found") from None
    except OSError as exc:
        raise SchemaError(f"{path}: cannot open ({exc.strerror or exc})") from None
    with handle:
        try:
            frame = pd.read_csv(handle, dtype=TEXT_DTYPES)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise SchemaError(f"{path}: not a readable CSV ({exc})") from None
        except OSError as exc:
            raise SchemaError(f"{path}: cannot read ({exc.strerror or exc})") from None
    check_columns(frame.columns, required, path)
    return check_values(with_config_defaults(frame), path)


#: Values of column ``status``: "ok" rows belong to trials that ended on their own rules (their
#: epochs, patience, or the scheduler's stop); "partial" rows to trials cut short (an interrupted
#: or failed run; never counted); an "error" row (one per failed trial) may lack every measurement.
STATUSES = ("ok", "partial", "error")
SECONDS_COLUMNS = ("seconds_per_epoch", "epoch_seconds", "s_seconds", "wall_time")
COUNT_COLUMNS = ("n_users", "n_items", "kg_entities")
METRIC_PATTERN = re.compile(r"(val|test)_(recall|ndcg|precision)@[0-9]+")
_INT_LIMIT = 2.0 ** 63  #: integers beyond int64 (q = 1e30) are refused


def check_values(frame, source: str | os.PathLike):
    """The value rules of a results file, in one place; returns ``frame`` with its measurement
    columns (TIME_COLUMNS, metrics) as numbers. Fails with SchemaError naming the column, the
    first offending row (counted from 1 below the header) and its value:

    status in STATUSES, kind in KINDS ("ok" rows); metrics finite in [0, 1]; epoch a positive integer;
    seconds finite >= 0; n_users, n_items, kg_entities integers >= 0; empty cells allowed except
    epoch, the REQUIRED metrics and the non-text Config columns on "ok" rows; each distinct
    configuration (the Config columns) accepted by :func:`kdiffe.config.from_dict`.
    """
    import numpy as np
    import pandas as pd

    def fail(name: str, rows, why: str) -> None:
        at = int(np.flatnonzero(np.asarray(rows, bool))[0])
        value = frame[name].iloc[at]
        if isinstance(value, str) or pd.isna(value):
            shown = "empty" if pd.isna(value) else repr(value)
        else:  # a number as the file most likely spells it: 3 (not 3.0), 1e+30, inf
            number = float(value)
            shown = str(int(number)) if number.is_integer() and abs(number) < 1e16 else repr(number)
        raise SchemaError(f"{source}: column {name}, row {at + 1}: {shown} {why}")

    if "status" in frame.columns and not frame["status"].isin(STATUSES).all():
        fail("status", ~frame["status"].isin(STATUSES), f"is not one of {', '.join(STATUSES)}")
    ok = frame["status"].eq("ok").to_numpy() if "status" in frame.columns else np.ones(len(frame), bool)
    if "kind" in frame.columns and not frame["kind"][ok].isin(KINDS).all():
        fail("kind", ok & ~frame["kind"].isin(KINDS).to_numpy(), f"is not one of {', '.join(KINDS)}")
    out = frame.copy()
    metrics = [c for c in frame.columns if METRIC_PATTERN.fullmatch(c)]
    for name in [c for c in TIME_COLUMNS if c in frame.columns] + metrics:
        values = pd.to_numeric(frame[name], errors="coerce")
        if (values.isna() & frame[name].notna()).any():
            fail(name, values.isna() & frame[name].notna(), "holds a non-number")
        out[name] = values
    for name in [c for c in INT_COLUMNS | set(COUNT_COLUMNS) if c in frame.columns]:
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(float)
        bad = ~np.isnan(values) & ~((np.abs(values) < _INT_LIMIT) & (np.mod(values, 1) == 0))
        if bad.any():
            fail(name, bad, "is not an integer (64-bit)")
    for names, lo, hi, why in ((metrics, 0.0, 1.0, "is not a number in [0, 1]"),
                               (("epoch",), 1.0, math.inf, "is not a positive integer"),
                               (SECONDS_COLUMNS, 0.0, math.inf, "is not a finite number >= 0"),
                               (COUNT_COLUMNS, 0.0, math.inf, "is not an integer >= 0")):
        for name in [c for c in names if c in out.columns]:
            values = out[name].to_numpy(float)
            bad = ~np.isnan(values) & ~(np.isfinite(values) & (values >= lo) & (values <= hi))
            if bad.any():
                fail(name, bad, why)
    text = {n for n in CONFIG_COLUMNS if isinstance(FIELDS[n].default, str)}
    needed = ["epoch"] + [c for c in REQUIRED if METRIC_PATTERN.fullmatch(c)]
    for name in [c for c in needed + [n for n in CONFIG_COLUMNS if n not in text] if c in frame.columns]:
        if (ok & frame[name].isna().to_numpy()).any():
            fail(name, ok & frame[name].isna().to_numpy(), 'on a row with status "ok"')
    columns = [c for c in CONFIG_COLUMNS if c in frame.columns]
    # one check per configuration; an empty cell is "" in a text column of an "ok" row, else unknown
    keyed = frame[columns].assign(_ok=ok)
    firsts = np.flatnonzero(~keyed.duplicated().to_numpy())
    for at, config in zip(firsts, keyed.iloc[firsts].to_dict("records")):
        row_ok = config.pop("_ok")
        values = {k: "" if pd.isna(v) else str(v) if k in text else v for k, v in config.items()
                  if not pd.isna(v) or (row_ok and k in text)}
        try:
            from_dict(values)
        except UserError as exc:
            name = str(exc).partition("=")[0]
            where = f"column {name}, row {at + 1}" if name in columns else f"row {at + 1}"
            raise SchemaError(f"{source}: {where}: {exc}") from None
    return out


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


def row_config(row: Mapping[str, Any]) -> dict[str, Any]:
    """The Config values of one results row (or best.json's ``best``): every Config column that
    holds a value, the ``variant`` column read back as the model's name where it is one."""
    values = {name: row[name] for name in ("dataset", "seed", *CONFIG_COLUMNS) if name in row}
    values = {k: v for k, v in values.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    model = values.get("model") or FIELDS["model"].default
    if model == FIELDS["model"].default and row.get("variant") not in (None, ""):
        values["variant"] = row["variant"]
    return values


def found_config(source: str | os.PathLike) -> dict[str, Any]:
    """The configuration at ``source``: a best.json, an experiment folder holding one, or a saved
    model folder (model.json, :mod:`kdiffe.serving`); checked by building a Config from it."""
    from pathlib import Path

    path = Path(source)
    for candidate in (path, path / BEST_FILE, path / "model.json"):
        if candidate.is_file():
            path = candidate
            break
    else:
        raise UserError(f"--from {source}: no best.json or model.json there (an experiment folder, its best.json, "
                        "or a saved model folder)")
    data = read_json(path, lambda why: UserError(f"--from {why}"))
    if isinstance(data, dict) and isinstance(data.get("best"), dict):  # best.json
        values = row_config(data["best"])
    elif isinstance(data, dict) and isinstance(data.get("config"), dict):  # model.json
        values = {k: v for k, v in data["config"].items() if k in FIELDS and k not in ("data_dir", "cache_dir")}
    else:
        raise UserError(f"--from {path}: holds no configuration (no 'best' row, no 'config')")
    from_dict(values)  # an impossible or unknown value is named now
    return values
