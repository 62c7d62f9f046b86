"""benchmarks/early_ranking.py: Spearman correlation of early validation metrics with the best one."""

import pandas as pd
import pytest

from benchmarks.early_ranking import early_ranking
from kdiffe.results import COLUMNS


def test_rank_correlation_per_epoch_against_the_best():
    # trial -> validation Recall@20 at epochs 1, 2, 3; bests are 0.5, 0.6, 0.7, 0.8 (order a < b < c < d)
    values = {"a": (0.4, 0.5, 0.1), "b": (0.3, 0.6, 0.2), "c": (0.2, 0.7, 0.3), "d": (0.1, 0.8, 0.4)}
    rows = [{"trial_id": t, "epoch": e + 1, "status": "ok", "val_recall@20": v}
            for t, series in values.items() for e, v in enumerate(series)]
    rows.append({"trial_id": "e", "epoch": 1, "status": "error", "val_recall@20": None})
    table = early_ranking(pd.DataFrame(rows).reindex(columns=list(COLUMNS))).set_index("epoch")
    assert table.loc[1, "spearman"] == pytest.approx(-1.0)  # epoch 1 ranks them backwards
    assert table.loc[2, "spearman"] == pytest.approx(1.0)  # epoch 2 holds every best
    assert table.loc[3, "spearman"] == pytest.approx(1.0) and (table["trials"] == 4).all()
