"""Tables II and III (plots/tables.py) on a hand-made results frame with known answers."""

import math

import numpy as np
import pandas as pd
import pytest

from kdiffe.config import Config
from kdiffe.paper import PAPER_TABLE_II, PAPER_TABLE_III
from kdiffe.results import COLUMNS, best_evaluation, best_rows, result_row
from plots import tables
from plots.tables import table_ii, table_iii, table_iii_markdown, write_table, write_table_iii

# test Recall@20 / NDCG@20 at each trial's best validation epoch, per (dataset, variant): seed -> value
RECALL = {("tiktok", "kdiffe"): {0: 0.10, 1: 0.12, 2: 0.14},
          ("tiktok", "no_s"): {0: 0.09, 1: 0.10, 2: 0.14},
          ("tiktok", "unguided"): {0: 0.08, 1: 0.12},
          ("tiktok", "no_cl"): {0: 0.10, 1: 0.12, 2: 0.14},
          ("tiktok", "lightgcn"): {0: 0.07, 1: 0.09, 2: 0.11},
          ("baby", "kdiffe"): {0: 0.20, 1: 0.30},
          ("baby", "no_cl"): {0: 0.10, 1: 0.30}}


def rows_of_trial(dataset, variant, seed, recall):
    """Two evaluations: epoch 1 has the higher *test* value (a trap), epoch 2 the higher validation."""
    config = Config(dataset=dataset, variant=variant, seed=seed).to_dict()
    trial = f"{dataset}-{variant}-{seed}"
    evaluations = [(1, 0.1, recall + 0.5), (2, 0.2, recall), (3, 0.2, recall + 0.3)]  # epoch 3 ties epoch 2
    return [result_row("hand", trial, config, {"epoch": e, "val_recall@20": v, "val_ndcg@20": v / 2,
                                               "test_recall@20": t, "test_ndcg@20": t / 2}, kind="ablation")
            for e, v, t in evaluations]


@pytest.fixture
def frame():
    rows = [row for (dataset, variant), seeds in RECALL.items() for seed, recall in seeds.items()
            for row in rows_of_trial(dataset, variant, seed, recall)]
    failed = result_row("hand", "tiktok-kdiffe-9", Config(dataset="tiktok", seed=9).to_dict(), {},
                        kind="ablation", status="error", error="CUDA out of memory")
    return pd.DataFrame(rows + [failed], columns=list(COLUMNS))


def test_best_rows_take_the_best_validation_epoch(frame):
    best = best_rows(frame)
    assert len(best) == sum(len(s) for s in RECALL.values())  # the failed trial is dropped
    assert set(best["epoch"]) == {2}  # not the best test epoch (1), the earliest of the tied (2, 3)
    kdiffe = best[best["trial_id"] == "tiktok-kdiffe-1"].iloc[0]
    assert kdiffe["test_recall@20"] == pytest.approx(0.12)
    stacked = frame.set_index(pd.Index([0] * len(frame)))  # per-file indexes concatenated: all repeated
    pd.testing.assert_frame_equal(best_rows(stacked), best)


def test_best_rows_live_in_the_core(frame):
    assert tables.best_rows is best_rows  # plots re-uses the core definition, no copy
    assert tables.PAPER_TABLE_II is PAPER_TABLE_II and tables.PAPER_TABLE_III is PAPER_TABLE_III


def test_best_evaluation_is_the_best_of_best_rows(frame):
    best = best_evaluation(frame)
    # every trial peaks at validation 0.2 (epoch 2): the first trial id in order wins, at its epoch 2
    assert best["trial_id"] == "baby-kdiffe-0" and best["epoch"] == 2
    assert best["test_recall@20"] == pytest.approx(0.20) and best["val_recall@20"] == pytest.approx(0.2)
    assert best["wall_time"] is None and best["n_users"] is None  # NaN -> None
    assert type(best["epoch"]) is int and type(best["M"]) is int  # plain Python values, JSON-ready
    lifted = frame.copy()
    lifted.loc[(lifted["trial_id"] == "tiktok-no_s-2") & (lifted["epoch"] == 3), "val_recall@20"] = 0.9
    assert best_evaluation(lifted)["trial_id"] == "tiktok-no_s-2"
    assert best_evaluation(lifted)["test_recall@20"] == pytest.approx(0.14 + 0.3)
    assert best_evaluation(frame, "val_ndcg@20")["val_ndcg@20"] == pytest.approx(0.1)
    assert best_evaluation(frame[frame["status"] == "error"]) is None


def test_table_iii_means_stds_and_paired_p_values(frame):
    table = table_iii(frame).set_index(["dataset", "variant"])
    assert list(table.loc["tiktok"].index) == ["kdiffe", "no_s", "unguided", "no_cl", "lightgcn"]
    row = table.loc[("tiktok", "kdiffe")]
    assert row["seeds"] == 3 and math.isnan(row["test_recall@20 p"])
    assert row["test_recall@20 mean"] == pytest.approx(0.12) and row["test_recall@20 std"] == pytest.approx(0.02)
    assert row["test_ndcg@20 mean"] == pytest.approx(0.06) and row["test_ndcg@20 std"] == pytest.approx(0.01)
    # no_s - kdiffe = (-0.01, -0.02, 0): t = -sqrt(3) with 2 df, two-sided p = 1 - |t| / sqrt(t^2 + 2)
    no_s = table.loc[("tiktok", "no_s")]
    assert no_s["test_recall@20 mean"] == pytest.approx(0.11)
    assert no_s["test_recall@20 std"] == pytest.approx(np.std([0.09, 0.10, 0.14], ddof=1))
    assert no_s["test_recall@20 p"] == pytest.approx(1 - math.sqrt(3 / 5))
    assert no_s["test_ndcg@20 p"] == pytest.approx(1 - math.sqrt(3 / 5))
    # unguided ran seeds 0 and 1 only: paired over those; differences (-0.02, 0): t = -1 with 1 df, p = 0.5
    assert table.loc[("tiktok", "unguided"), "test_recall@20 p"] == pytest.approx(0.5)
    assert table.loc[("tiktok", "no_cl"), "test_recall@20 p"] == 1.0  # identical to the full model
    assert table.loc[("tiktok", "lightgcn"), "test_recall@20 p"] == 0.0  # a constant gap
    # the paper's Table III beside ours on TikTok, nothing on Baby
    assert (table.loc[("tiktok", "no_s"), "paper recall@20"], table.loc[("tiktok", "no_s"), "paper ndcg@20"]) \
        == (0.107, 0.041)
    assert math.isnan(table.loc[("tiktok", "lightgcn"), "paper recall@20"])
    baby = table.loc["baby"]
    assert baby.loc["no_cl", "test_recall@20 mean"] == pytest.approx(0.20)
    assert baby.loc["no_cl", "test_recall@20 p"] == pytest.approx(0.5)  # diffs (-0.1, 0), 1 df
    assert math.isnan(baby.loc["kdiffe", "paper recall@20"])


def test_table_iii_markdown_has_one_block_per_dataset(frame, tmp_path):
    table = table_iii(frame)
    md, csv = write_table_iii(table, tmp_path / "out")
    text = md.read_text()
    assert text == table_iii_markdown(table)
    assert text.index("### Table III: baby") < text.index("### Table III: tiktok")
    assert "| kdiffe | 3 | 0.1200 ± 0.0200 |" in text and "0.225" in text
    assert "0.107 / 0.041" in text
    pd.testing.assert_frame_equal(pd.read_csv(csv), table, check_dtype=False)


def test_table_ii_means_with_the_papers_numbers(frame):
    table = table_ii(frame)
    assert list(zip(table["dataset"], table["variant"])) == [
        ("baby", "kdiffe"), ("baby", "no_cl"),
        ("tiktok", "kdiffe"), ("tiktok", "no_s"), ("tiktok", "unguided"), ("tiktok", "no_cl"), ("tiktok", "lightgcn (KDiffE's form)")]
    indexed = table.set_index(["dataset", "variant"])
    assert indexed.loc[("tiktok", "kdiffe"), "recall@20"] == pytest.approx(0.12)
    assert indexed.loc[("tiktok", "kdiffe"), "ndcg@20"] == pytest.approx(0.06)
    assert indexed.loc[("tiktok", "unguided"), "runs"] == 2
    assert indexed.loc[("baby", "kdiffe"), "recall@20"] == pytest.approx(0.25)
    assert tuple(indexed.loc[("tiktok", "kdiffe"), ["paper recall@20", "paper ndcg@20"]]) == (0.112, 0.046)
    assert tuple(indexed.loc[("baby", "kdiffe"), ["paper recall@20", "paper ndcg@20"]]) == (0.095, 0.040)
    assert math.isnan(indexed.loc[("tiktok", "no_s"), "paper recall@20"])


def test_write_table_and_empty_frames(frame, tmp_path):
    md, csv = write_table(table_ii(frame), tmp_path, "table_ii")
    assert md.name == "table_ii.md" and csv.name == "table_ii.csv"
    lines = md.read_text().splitlines()
    assert lines[0].startswith("| dataset | variant | runs | recall@20") and len(lines) == 2 + 7
    # mean, std, ndcg mean, std, the best *test* epoch's mean (epoch 1: + 0.5), no p against itself, the paper's
    assert "| tiktok | kdiffe | 3 | 0.1200 | 0.0200 | 0.0600 | 0.0100 | 0.6200 |  | 0.1120 | 0.0460 | KDiffE, Table II |" in lines
    empty = frame[frame["status"] == "error"]
    assert table_ii(empty).empty and table_iii(empty).empty


def test_re_splits_get_their_own_block_and_unequal_configs_are_not_pooled():
    def trial(variant, seed, recall, **config):
        values = Config(dataset="tiktok", variant=variant, seed=seed, **config).to_dict()
        return result_row("hand", f"{variant}-{seed}-{config}", values,
                          {"epoch": 1, "val_recall@20": 0.1, "val_ndcg@20": 0.05, "test_recall@20": recall,
                           "test_ndcg@20": recall / 2}, kind="ablation")

    rows = [trial("kdiffe", s, 0.10 + s / 100, theta2=4e-5) for s in range(3)]
    rows += [trial("lightgcn", s, 0.08 + s / 100, theta2=2e-5) for s in range(3)]  # θ₂ per variant: one row
    rows += [trial("no_cl", s, 0.05, theta2=t) for s in range(2) for t in (1e-5, 4e-5)]  # two θ₂: two rows
    rows += [trial("kdiffe", s, 0.20, resplit=1) for s in range(2)]
    rows += [trial("no_cl", s, 0.05, resplit=1, epochs=30) for s in range(2)]
    rows += [trial("no_cl", 0, 0.07, resplit=1, epochs=60)]
    rows += [trial("kdiffe", s, 0.12, resplit=1, resplit_holdout="one") for s in range(2)]
    table = table_iii(pd.DataFrame(rows, columns=list(COLUMNS)))
    cells = {(r.dataset, r.variant): r.seeds for r in table.itertuples()}
    assert [v for d, v in zip(table["dataset"], table["variant"]) if d == "tiktok"] == [
        "kdiffe", "no_cl (theta2=1e-05)", "no_cl (theta2=4e-05)", "lightgcn"]  # labelled rows keep the table order
    assert list(table_ii(pd.DataFrame(rows, columns=list(COLUMNS)))["variant"])[:4] == [
        "kdiffe", "no_cl (theta2=1e-05)", "no_cl (theta2=4e-05)", "lightgcn (KDiffE's form)"]
    assert cells == {("tiktok", "kdiffe"): 3, ("tiktok", "lightgcn"): 3, ("tiktok", "no_cl (theta2=1e-05)"): 2,
                     ("tiktok", "no_cl (theta2=4e-05)"): 2,
                     ("tiktok (re-split 1, per-user shares)", "kdiffe"): 2,
                     ("tiktok (re-split 1, per-user shares)", "no_cl (epochs=30)"): 2,
                     ("tiktok (re-split 1, per-user shares)", "no_cl (epochs=60)"): 1,
                     ("tiktok (re-split 1, one held out per user)", "kdiffe"): 2}
    published = table[table["dataset"] == "tiktok"].set_index("variant")
    assert published.loc["kdiffe", "test_recall@20 mean"] == pytest.approx(0.11)
    assert published.loc["kdiffe", "paper recall@20"] == PAPER_TABLE_III["tiktok"]["kdiffe"][0]
    assert table[table["dataset"] != "tiktok"]["paper recall@20"].isna().all()  # the paper has no re-splits


def test_a_results_file_older_than_a_config_field_reads_as_its_default(tmp_path):
    from kdiffe.results import read_results
    from tune.store import read_frame

    row = result_row("old", "t0", Config().to_dict(),
                     {"epoch": 1, "val_recall@20": 0.1, "val_ndcg@20": 0.05, "test_recall@20": 0.1,
                      "test_ndcg@20": 0.05})
    path = tmp_path / "results.csv"
    pd.DataFrame([row]).drop(columns=["resplit_holdout", "kg"]).to_csv(path, index=False)  # before they existed
    for frame in (read_results(path), read_frame(path)):
        assert frame.loc[0, "resplit_holdout"] == "shares" and frame.loc[0, "kg"] == Config().kg
        assert frame.loc[0, "M"] == 50  # columns the file has are kept
