"""What each data split holds: the published split and every re-split the stored results trained
on, measured from the data itself (:mod:`kdiffe.data`), as ``splits.md`` / ``splits.csv``.

Per split: interactions in train / validation / test; users with a test interaction and their mean
training degree; the share of test interactions whose item never occurs in training; the median
training popularity of a test interaction's item; the mean item id of test and of training
interactions (ids numbered in order of first appearance make a temporal hold-out show as newer,
higher ids). Splits whose dataset is not under the data folder are left out with a note.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kdiffe.data import Dataset, load_dataset
from kdiffe.errors import UserError
from plots import tables

KEYS = ("dataset", "resplit", "resplit_ratios", "resplit_holdout")


def statistics(ds: Dataset) -> dict[str, float]:
    """The numbers of one split (see the module docstring)."""
    popularity = np.asarray(ds.train.sum(axis=0)).ravel()
    test = ds.test.tocoo()
    with_test = np.unique(test.row)
    degree = np.asarray(ds.train.sum(axis=1)).ravel()
    test_popularity = popularity[test.col]
    return {"train": ds.train.nnz, "val": ds.val.nnz, "test": ds.test.nnz, "users with a test item": len(with_test),
            "their mean training degree": float(degree[with_test].mean()) if len(with_test) else np.nan,
            "test items unseen in training %": 100.0 * float((test_popularity == 0).mean()) if test.nnz else np.nan,
            "median training popularity of a test item": float(np.median(test_popularity)) if test.nnz else np.nan,
            "mean item id, test": float(test.col.mean()) if test.nnz else np.nan,
            "mean item id, train": float(ds.train.tocoo().col.mean())}


def _splits(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["kind"] == "ablation"] if "kind" in frame.columns else frame
    present = [k for k in KEYS if k in rows.columns]
    found = rows[present].drop_duplicates().copy()
    for key, default in (("resplit", 0), ("resplit_ratios", ""), ("resplit_holdout", "shares")):
        if key not in found.columns:
            found[key] = default
    found["resplit"] = pd.to_numeric(found["resplit"], errors="coerce").fillna(0).astype(int)
    found["resplit_ratios"] = found["resplit_ratios"].map(lambda v: "" if pd.isna(v) else str(v))
    found["resplit_holdout"] = found["resplit_holdout"].map(lambda v: "shares" if pd.isna(v) else str(v))
    return found.drop_duplicates().sort_values(list(KEYS)).reset_index(drop=True)


def split_table(frame: pd.DataFrame, data_dir: str | Path | None) -> tuple[pd.DataFrame, list[str]]:
    """One row per split the ablation results of ``frame`` trained on, and notes on those skipped."""
    rows, notes = [], []
    for split in _splits(frame).itertuples(index=False):
        ratios = tuple(float(r) for r in split.resplit_ratios.split(",")) if split.resplit_ratios else None
        try:
            ds = load_dataset(str(split.dataset), data_dir, resplit_seed=int(split.resplit),
                              resplit_ratios=ratios, resplit_holdout=str(split.resplit_holdout))
        except UserError as exc:
            notes.append(f"splits: {split.dataset} left out ({exc})")
            continue
        label = tables.data_label(pd.DataFrame([split._asdict()]))[0]
        rows.append({"split": label, **statistics(ds)})
    return pd.DataFrame(rows), notes


def write_splits(frame: pd.DataFrame, data_dir: str | Path | None, out: Path) -> tuple[list[Path], list[str]]:
    table, notes = split_table(frame, data_dir)
    if table.empty:
        return [], notes + ["splits skipped: no dataset of the results under the data folder"]
    shown = table.copy()
    for column in shown.columns[1:]:
        shown[column] = [f"{v:,.0f}" if float(v).is_integer() and "%" not in column and "mean" not in column
                         else f"{v:.1f}" for v in table[column]]
    return list(tables.write_table(table, out, "splits", markdown=tables.to_markdown(shown))), notes
