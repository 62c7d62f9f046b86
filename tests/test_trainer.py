import json

import numpy as np
import pytest
import torch

from kdiffe import Config, Trainer, make_synthetic, train

QUIET = dict(log=lambda message: None)


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(n_users=600, n_items=400, seed=0)


def test_lightgcn_learns_far_above_random(synthetic):
    reports = []
    cfg = Config(variant="lightgcn", epochs=30, eval_every=5, patience=0, batch_size=512)
    summary = train(cfg, reports.append, dataset=synthetic, **QUIET)
    random_recall = 20 / synthetic.n_items
    assert summary["val"]["recall@20"] > 5 * random_recall
    assert summary["best_epoch"] in {5, 10, 15, 20, 25, 30}
    assert [r["epoch"] for r in reports] == [5, 10, 15, 20, 25, 30]
    assert {"val_recall@20", "test_ndcg@50", "seconds_per_epoch", "bpr_loss", "best_epoch"} <= set(reports[0])
    assert reports[-1]["done"] and summary["test"]["recall@20"] == next(
        r["test_recall@20"] for r in reports if r["epoch"] == summary["best_epoch"])


def test_summary_json_and_selection_label(tmp_path, synthetic):
    out = tmp_path / "summary.json"
    cfg = Config(variant="lightgcn_s", epochs=2, M=5, R=2, select_on="test")
    summary = train(cfg, dataset=synthetic, out=out, **QUIET)
    saved = json.loads(out.read_text())
    assert saved["config"]["variant"] == "lightgcn_s" and saved["config"]["M"] == 5
    assert "authors' protocol" in saved["selected_on"]
    assert saved["s_seconds"] > 0 and saved["peak_memory_mb"] > 0 and saved["epochs_run"] == 2
    assert set(saved["val"]) >= {"recall@10", "ndcg@20", "precision@50"}


def test_early_stopping(synthetic):
    cfg = Config(variant="lightgcn", epochs=50, patience=2, lr=1e-6, metric="recall@10")
    summary = train(cfg, dataset=synthetic, **QUIET)
    assert summary["epochs_run"] < 50


def test_seeded_runs_repeat(synthetic):
    cfg = Config(variant="lightgcn", epochs=2)
    a, b = train(cfg, dataset=synthetic, **QUIET), train(cfg, dataset=synthetic, **QUIET)
    assert a["val"] == b["val"]


@pytest.mark.parametrize("variant", ["lightgcn", "kdiffe"])
def test_resume_matches_an_uninterrupted_run(tmp_path, synthetic, variant):
    cfg = Config(variant=variant, epochs=4, M=5, R=2, patience=0)
    straight = Trainer(cfg, synthetic, **QUIET)
    straight.run()
    first = Trainer(cfg.replace(epochs=2), synthetic, **QUIET)
    first.run()
    first.save(tmp_path)
    resumed = Trainer(cfg, synthetic, **QUIET)
    resumed.load(tmp_path)
    assert resumed.epoch == 2
    resumed.run()
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b)
    assert [r["epoch"] for r in resumed.history.evaluations] == [1, 2, 3, 4]


def test_short_real_tiktok_run(datasets_dir):
    cfg = Config(dataset="tiktok", data_dir=str(datasets_dir), variant="lightgcn_s", epochs=2)
    summary = train(cfg, **QUIET)
    assert summary["val"]["recall@20"] > 0.02  # random ranking gives 20 / 6710 = 0.003
    assert summary["epochs_run"] == 2


def test_restored_early_stopped_run_does_not_train_again(tmp_path, synthetic):
    cfg = Config(variant="lightgcn", epochs=50, patience=2, lr=1e-6, metric="recall@10")
    first = Trainer(cfg, synthetic, **QUIET)
    first.run()
    assert first.finished and first.epoch < 50
    first.save(tmp_path)
    again = Trainer(cfg, synthetic, **QUIET)
    again.load(tmp_path)
    assert again.finished
    reports = []
    again.run(reports.append)
    assert reports == [] and again.epoch == first.epoch
