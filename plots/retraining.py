"""A re-training side by side: a search's best configuration against the published defaults.

``tune/search.py --mode retrain`` (and the end of every optuna or random search) trains two arms
with the same seeds: ``found`` (the configuration the search selected) and ``defaults`` (its
searched parameters at the model's published defaults). Each run contributes the test metrics of
its best *validation* evaluation (:func:`kdiffe.results.best_rows`). The arms are compared per
seed: the mean difference found - defaults with its paired 95 % t interval
(:func:`plots.verdicts.difference`), and that rule's verdict: "found is better" only when the
interval lies above 0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from kdiffe.files import write_atomic
from kdiffe.results import CONFIG_COLUMNS, best_rows
from plots import verdicts
from plots.tables import mean_std_text

ARMS = ("found", "defaults")
VERDICT_WORDS = {verdicts.HOLDS: "found is better", verdicts.CONTRADICTED: "the defaults are better",
                 verdicts.NOT_CONFIRMED: "no difference at 5 %", verdicts.UNTESTABLE: "untestable (under 2 shared seeds)"}


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _mean_std(values: pd.Series) -> str:
    return "-" if values.empty else mean_std_text(values.mean(), values.std(ddof=1))


def _signed(d: verdicts.Difference) -> str:
    if not math.isfinite(d.low):
        return f"{d.mean:+.4f}" if math.isfinite(d.mean) else "-"
    return f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"


def retrain_table(frame: pd.DataFrame, metric: str, params: Iterable[str]) -> list[str]:
    """Markdown lines: one row per arm (its values of ``params``, the seeds that ran, validation
    ``metric`` and test Recall/NDCG at the same k as mean ± std), then the paired difference
    found - defaults with its 95 % CI, and the verdict on the validation metric and on test recall."""
    k = metric.split("@")[1]
    columns = (metric, f"test_recall@{k}", f"test_ndcg@{k}")
    best = best_rows(frame, metric)
    params = [p for p in params if p in frame.columns]
    header = ["arm", "settings", "seeds", *(c.replace("_", " ") for c in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    runs: dict[str, pd.DataFrame] = {}
    for arm in ARMS:
        rows = best[best["sweep"] == arm].sort_values("seed") if not best.empty else best
        if rows.empty:
            continue
        runs[arm] = rows.set_index("seed")
        settings = ", ".join(f"{p}={_short(rows.iloc[0][p])}" for p in params) or "-"
        seeds = ",".join(str(int(s)) for s in rows["seed"])
        lines.append("| " + " | ".join([arm, settings, seeds, *(_mean_std(rows[c]) for c in columns)]) + " |")
    if len(runs) < 2:
        if "found" in runs:
            lines.append("")
            lines.append("The best configuration found is the published defaults: one arm.")
        return lines
    shared = runs["found"].index.intersection(runs["defaults"].index)
    found, default = runs["found"].loc[shared], runs["defaults"].loc[shared]
    diffs = {c: verdicts.difference(found[c].to_numpy(), default[c].to_numpy()) for c in columns}
    lines.append("| found - defaults (paired, 95 % CI) | | " + f"{len(shared)} shared | "
                 + " | ".join(_signed(diffs[c]) for c in columns) + " |")
    lines += ["", f"Verdict (paired t over seeds, 5 %): on validation {metric[4:]}, "
                  f"{VERDICT_WORDS[diffs[metric].verdict]}; on test recall@{k}, "
                  f"{VERDICT_WORDS[diffs[columns[1]].verdict]}."]
    return lines


def moved_params(frame: pd.DataFrame) -> list[str]:
    """The configuration columns whose values differ between a re-training's two arms."""
    firsts = frame.drop_duplicates("sweep").set_index("sweep")
    if not set(ARMS) <= set(firsts.index):
        return []
    a, b = firsts.loc["found"], firsts.loc["defaults"]
    return [c for c in CONFIG_COLUMNS if c in frame.columns and c != "seed" and str(a[c]) != str(b[c])]


def write_retrain_tables(frame: pd.DataFrame, out: Path, metric: str = "val_recall@20") -> list[Path]:
    """``retrain_<experiment>.md`` for every re-training experiment (kind "retrain") in ``frame``."""
    written = []
    for experiment, rows in frame[frame["kind"] == "retrain"].groupby("experiment", sort=True):
        lines = retrain_table(rows, metric, moved_params(rows))
        path = out / f"retrain_{experiment}.md"
        write_atomic(path, f"### Re-training: {experiment}\n\n" + "\n".join(lines) + "\n")
        written.append(path)
    return written
