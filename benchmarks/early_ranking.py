"""How early does a trial's validation metric predict its final ranking? (ASHA's grace period)

For every epoch k, the Spearman rank correlation over trials between the validation metric at
epoch k and the trial's best validation metric over all its epochs. ASHA with grace period g
compares trials at g, 2g, 4g, ... evaluations: where the correlation is low it prunes at random.
Reads tidy results CSVs (any experiment that ran its trials to the end, e.g. a grid with
``--scheduler fifo``).

python benchmarks/early_ranking.py results/tiktok-grid/results.csv [more.csv ...] [--metric val_recall@20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdiffe.results import read_results  # noqa: E402


def early_ranking(frame: pd.DataFrame, metric: str = "val_recall@20") -> pd.DataFrame:
    """Per epoch k: trials that reached k, and Spearman rho (and p) of metric@k against best metric."""
    ok = frame[(frame["status"] == "ok") & frame[metric].notna()]
    wide = ok.pivot_table(index="trial_id", columns="epoch", values=metric, aggfunc="last")
    best = wide.max(axis=1)
    rows = []
    for epoch in wide.columns:
        have = wide[epoch].notna()
        if have.sum() < 3:
            continue
        rho, p = stats.spearmanr(wide.loc[have, epoch], best[have])
        rows.append({"epoch": int(epoch), "trials": int(have.sum()), "spearman": float(rho), "p": float(p)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="+", type=Path)
    parser.add_argument("--metric", default="val_recall@20")
    args = parser.parse_args()
    frame = pd.concat([read_results(p) for p in args.csv], ignore_index=True)
    table = early_ranking(frame, args.metric)
    print(f"| epoch | trials | Spearman rho ({args.metric} at the epoch vs the trial's best) | p |")
    print("| --- | --- | --- | --- |")
    for row in table.itertuples():
        print(f"| {row.epoch} | {row.trials} | {row.spearman:.2f} | {row.p:.2g} |")


if __name__ == "__main__":
    main()
