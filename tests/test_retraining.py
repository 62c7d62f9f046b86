"""plots/retraining.py: the side by side of a re-training, with known numbers."""

import math

import pandas as pd
from scipy import stats

from kdiffe.results import result_row
from plots.retraining import moved_params, retrain_table, write_retrain_tables


def frame(found, defaults, epochs=2):
    """A re-training's rows: each (arm, seed) run peaks at its last epoch with the given validation
    value; test recall = validation - 0.01."""
    rows = []
    for arm, values, tau in (("found", found, 0.8), ("defaults", defaults, 0.5)):
        for seed, value in enumerate(values):
            for epoch in range(1, epochs + 1):
                v = value if epoch == epochs else value / 2
                metrics = {"epoch": epoch, "val_recall@20": v, "val_ndcg@20": v / 2, "test_recall@20": v - 0.01,
                           "test_ndcg@20": v / 3}
                rows.append(result_row(metrics=metrics, experiment="r", trial_id=f"{arm}{seed}", kind="retrain",
                                       sweep=arm, config={"dataset": "tiktok", "seed": seed, "tau": tau, "q": 1}))
    return pd.DataFrame(rows)


def test_the_table_shows_each_arm_and_the_paired_difference_with_its_interval(tmp_path):
    found, defaults = [0.30, 0.42, 0.35], [0.10, 0.20, 0.18]
    rows = frame(found, defaults)
    assert moved_params(rows) == ["tau"]
    lines = retrain_table(rows, "val_recall@20", ["tau"])
    d = [a - b for a, b in zip(found, defaults)]
    mean, sd = sum(d) / 3, pd.Series(d).std()
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert lines[2].startswith(f"| found | tau=0.8 | 0,1,2 | {sum(found) / 3:.4f} ± {pd.Series(found).std():.4f} |")
    assert f"| 3 shared | {mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}] |" in lines[4]
    assert lines[-1].endswith("on validation recall@20, found is better; on test recall@20, found is better.")
    written = write_retrain_tables(rows, tmp_path)
    assert [p.name for p in written] == ["retrain_r.md"] and "### Re-training: r" in written[0].read_text()


def test_arms_that_cannot_be_told_apart_are_no_difference_and_one_arm_says_so():
    lines = retrain_table(frame([0.30, 0.20, 0.25], [0.25, 0.26, 0.24]), "val_recall@20", ["tau"])
    assert "no difference at 5 %" in lines[-1]
    one = frame([0.3, 0.2], [])
    assert retrain_table(one, "val_recall@20", [])[-1] == "The best configuration found is the published defaults: one arm."
