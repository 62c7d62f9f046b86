"""kdiffe/serving.py and the CLI around it: the best model saved, served and exported."""

import json
import os

import numpy as np
import pytest
import torch

from kdiffe import cli, serving
from kdiffe.config import Config, from_dict
from kdiffe.metrics import Evaluator
from kdiffe.results import found_config
from kdiffe.trainer import Trainer

SMALL = dict(dataset="synthetic", syn_users=120, syn_items=80, epochs=4, M=8, R=2, seed=3, eval_every=1,
             batch_size=256)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    trainer = Trainer(Config(**SMALL), log=lambda *_: None)
    summary = trainer.run()
    trainer.save_model(folder)
    trainer.save(folder / "checkpoint")
    return trainer, summary, folder


def test_the_saved_embeddings_give_the_reported_test_numbers(trained):
    trainer, summary, folder = trained
    model = serving.load_model(folder)
    assert (model.n_users, model.n_items) == (120, 80) and model.dataset == "synthetic"
    assert model.evaluation["epoch"] == summary["best_epoch"] and from_dict(model.config) == trainer.config
    ds = trainer.dataset
    users, items = torch.from_numpy(model.users), torch.from_numpy(model.items)
    metrics = Evaluator(ds.test, [ds.train, ds.val])(lambda u: users[u] @ items.T)
    assert metrics["recall@20"] == pytest.approx(summary["test"]["recall@20"], abs=1e-6)
    assert metrics["ndcg@20"] == pytest.approx(summary["test"]["ndcg@20"], abs=1e-6)


def test_recommend_ranks_by_score_and_never_returns_a_training_item(trained):
    trainer, _, folder = trained
    model = serving.load_model(folder)
    train = trainer.dataset.train
    items, scores = serving.recommend(model, [0, 7], 10, exclude=train)
    for user, row, row_scores in zip([0, 7], items, scores):
        assert not set(row) & set(train[user].indices)
        assert list(row_scores) == sorted(row_scores, reverse=True)
        unseen = np.setdiff1d(np.arange(80), train[user].indices)
        full = model.users[user] @ model.items[unseen].T
        assert row_scores[0] == pytest.approx(full.max())
    tie = serving.SavedModel({}, np.ones((1, 2), np.float32), np.ones((4, 2), np.float32), {}, "x")
    assert list(serving.recommend(tie, [0], 3)[0][0]) == [0, 1, 2]  # ties: lower id first
    with pytest.raises(serving.ModelError, match="user 120 is not among the model's 120 users"):
        serving.recommend(model, [120], 5)
    with pytest.raises(serving.ModelError, match="--k 0"):
        serving.recommend(model, [0], 0)


def test_export_from_a_checkpoint_is_the_same_model(trained, tmp_path):
    _, _, folder = trained
    out = serving.export_checkpoint(folder / "checkpoint", tmp_path / "exported")
    a, b = serving.load_model(folder), serving.load_model(out)
    assert np.array_equal(a.users, b.users) and np.array_equal(a.items, b.items)
    assert a.evaluation["epoch"] == b.evaluation["epoch"]
    resumed = Trainer(Config(**SMALL), log=lambda *_: None)
    resumed.load(folder / "checkpoint")  # a resumed run keeps its best embeddings
    assert torch.equal(resumed.best_embeddings[0], torch.from_numpy(a.users))


def test_a_broken_model_folder_is_one_line(trained, tmp_path):
    _, _, folder = trained
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(serving.ModelError, match="model.json: missing"):
        serving.load_model(bad)
    (bad / "model.json").write_text('{"format": ')
    with pytest.raises(serving.ModelError, match=r"model.json: unreadable \(Expecting value"):
        serving.load_model(bad)
    (bad / "model.json").unlink()
    os.mkfifo(bad / "model.json")  # never waits for a writer
    with pytest.raises(serving.ModelError, match=r"model.json: not a regular file \(a FIFO\)"):
        serving.load_model(bad)
    (bad / "model.json").unlink()
    for name in ("model.json", "user_embeddings.npy", "item_embeddings.npy"):
        (bad / name).write_bytes((folder / name).read_bytes())
    users = np.load(folder / "user_embeddings.npy")
    users[0, 0] = np.nan
    np.save(bad / "user_embeddings.npy", users)
    with pytest.raises(serving.ModelError, match="finite floats"):
        serving.load_model(bad)
    np.save(bad / "user_embeddings.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(serving.ModelError, match="not a readable .npy"):  # never unpickled
        serving.load_model(bad)
    np.save(bad / "user_embeddings.npy", users[1:6])
    with pytest.raises(serving.ModelError, match="disagree with model.json"):
        serving.load_model(bad)
    with pytest.raises(serving.ModelError, match="no checkpoint there"):
        serving.export_checkpoint(tmp_path, tmp_path / "out")


def test_the_cli_trains_saves_recommends_and_retrains_from_a_found_configuration(tmp_path, capsys):
    sets = [x for k, v in SMALL.items() if k not in ("dataset", "epochs", "seed") for x in ("--set", f"{k}={v}")]
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "synthetic", "--epochs", "2", "--seed", "3", *sets, "--out", str(out)]) == 0
    assert (out / "summary.json").is_file() and (out / "user_embeddings.npy").is_file()
    capsys.readouterr()
    assert cli.main(["recommend", "--model", str(out), "--users", "0,5", "--k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("user 0: ") and len(lines[1].split()) == 2 + 3
    assert cli.main(["recommend", "--model", str(out), "--users", "a"]) == 2
    assert cli.main(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    # --from a saved model: its configuration, then what the command line gives
    assert found_config(out)["M"] == 8 and found_config(out)["seed"] == 3
    assert cli.main(["train", "--from", str(out), "--seed", "4", "--epochs", "1", "--out", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["config"]["seed"] == 4 and again["config"]["M"] == 8 and again["config"]["syn_users"] == 120
    assert cli.main(["train", "--from", str(tmp_path / "none")]) == 2


def test_found_config_reads_a_best_json_of_a_baseline_model(tmp_path):
    best = {"best": {"experiment": "e", "dataset": "tiktok", "variant": "lightgcn", "model": "lightgcn", "seed": 0,
                     "theta2": 5.4e-05, "lr": 0.0074, "epochs": 60, "M": float("nan"), "ks": "10,20,50"}}
    (tmp_path / "best.json").write_text(json.dumps(best))
    values = found_config(tmp_path)
    config = from_dict(values)
    assert (config.model, config.variant, config.theta2, config.lr) == ("lightgcn", "kdiffe", 5.4e-05, 0.0074)
    assert config.l2 == "batch"  # the model's published defaults fill what the row does not say
    kdiffe = {"best": {**best["best"], "model": "kdiffe", "variant": "no_s"}}
    (tmp_path / "best.json").write_text(json.dumps(kdiffe))
    assert from_dict(found_config(tmp_path / "best.json")).variant == "no_s"


def test_an_experiment_from_a_found_configuration_keeps_its_own_dataset_seed_and_set_values(tmp_path):
    from types import SimpleNamespace

    from kdiffe.config import ConfigError
    from tune.cli import base_values

    best = {"best": {"dataset": "tiktok", "variant": "kdiffe", "model": "kdiffe", "seed": 0, "M": 32, "xi": 0.66,
                     "epochs": 60, "theta2": 9e-05}}
    (tmp_path / "best.json").write_text(json.dumps(best))
    args = SimpleNamespace(overrides=["xi=0.5"], epochs=None, data_dir=str(tmp_path), source=str(tmp_path))
    values = base_values(args, {"dataset": "synthetic", "model": "kdiffe", "variant": "kdiffe", "epochs": 20})
    assert (values["M"], values["theta2"], values["xi"]) == (32, 9e-05, 0.5)  # --set above --from
    assert values["dataset"] == "synthetic" and values["epochs"] == 20 and "seed" not in values
    with pytest.raises(ConfigError, match="its model is kdiffe, this experiment's lightgcn; pass --model kdiffe"):
        base_values(args, {"dataset": "synthetic", "model": "lightgcn"})


def test_threads_default_to_the_idle_cores_and_openmp_waits_passively():
    import os

    from kdiffe import threads

    assert os.environ.get("OMP_WAIT_POLICY") is not None  # set (or chosen) before torch loaded
    assert threads.default_threads(cores=2, load=0.0) == 2
    assert threads.default_threads(cores=2, load=1.2) == 1  # one core already busy
    assert threads.default_threads(cores=16, load=40.0) == 1
    assert threads.default_threads(cores=8, load=2.4) == 6
    before = torch.get_num_threads()
    try:
        assert threads.set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert cli.main(["attention", "--dataset", "synthetic", "--threads", "-1"]) == 2


def test_datasets_are_found_in_the_documented_places_and_the_error_names_them(tmp_path, monkeypatch):
    from kdiffe import data

    monkeypatch.delenv("KDIFFE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert data.resolve_data_dir() == tmp_path / "data"  # nothing anywhere: ./data
    with pytest.raises(data.DatasetError, match=r"searched .*/data, .*/datasets, .*shared/datasets"):
        data.load_dataset("tiktok")
    (tmp_path / "datasets" / "mine").mkdir(parents=True)
    (tmp_path / "datasets" / "mine" / "trnMat.pkl").write_bytes(b"")
    assert data.resolve_data_dir() == tmp_path / "datasets"  # the first place holding a dataset
    assert data.resolve_data_dir("elsewhere") == tmp_path / "elsewhere"  # --data-dir first
    monkeypatch.setenv("KDIFFE_DATA_DIR", str(tmp_path / "env"))
    assert data.resolve_data_dir() == tmp_path / "env"  # then the environment
    with pytest.raises(data.DatasetError, match=r"KDIFFE_DATA_DIR="):
        data.load_dataset("tiktok")


def test_a_resumed_run_shows_the_best_of_earlier_runs_and_its_replayed_evaluations_set_no_pace(monkeypatch, capsys):
    from types import SimpleNamespace

    import pandas as pd

    from tune import console
    from tune.experiment import Work, best_before
    from tune.store import TrialRecord

    def record(key: str, outcome: str, values: list[float]) -> TrialRecord:
        rows = pd.DataFrame({"trial_id": key, "status": "ok", "epoch": range(1, len(values) + 1),
                             "val_recall@20": values})
        return TrialRecord(key=key, outcome=outcome, rows=rows)

    work = Work(records={"a": record("a", "finished", [0.05, 0.12, 0.08]), "b": record("b", "stopped", [0.07]),
                         "c": record("c", "partial", [0.2])}, left=2)
    assert best_before(work, "val_recall@20") == pytest.approx(0.12)  # the cut trial "c" runs again: not counted
    assert best_before(Work(records={}, left=4), "val_recall@20") is None

    clock = [100.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    c = console.Console(("q",), "val_recall@20", total=4, max_t=10, every=0.0, done_before=2, best_before=0.12)
    t = SimpleNamespace(trial_id="c", status="RUNNING", config={"q": 2})
    for i in range(1, 4):  # replayed from its checkpoint at once: its best, but no pace and no plan line
        c.on_trial_result(0, [t], t, {"val_recall@20": 0.02 * i, "epoch": i, "training_iteration": i, "replayed": True})
    assert c.first_result is None and c.evaluations == {} and c.latest["c"]["best"] == pytest.approx(0.06)
    assert "best val_recall@20 0.1200" in c.progress([t]) and "left" not in c.progress([t])
    for i in range(4, 7):  # then one evaluation every 10 s
        clock[0] += 10.0
        c.on_trial_result(0, [t], t, {"val_recall@20": 0.04 * i, "epoch": i, "training_iteration": i, "replayed": False})
    assert "the plan is 4 trials" in capsys.readouterr().out and c.evaluations == {"c": 3}
    # 1 pending x 10 + (10 - 6) left to the running one, at 3 evaluations per 20 s
    assert c.seconds_left([t], pending=1) == pytest.approx(14 / (3 / 20))
    assert "2/4 trials done, 1 running, 1 pending, best val_recall@20 0.2400" in c.progress([t])

    # a continued trial that ends after one new evaluation: no time left from its short tail, and
    # none until a second fresh evaluation sets a pace; without a budget (max_t 0), none at all
    for max_t in (10, 0):
        clock[0] = 100.0
        c = console.Console(("q",), "val_recall@20", total=4, max_t=max_t, every=0.0)
        u, v = (SimpleNamespace(trial_id=k, status="RUNNING", config={"q": 2}) for k in "uv")
        for t in (u, v):  # as Ray calls it
            c.on_trial_start(0, [u, v], t)
        c.on_trial_result(0, [u, v], u, {"val_recall@20": 0.1, "epoch": 8, "training_iteration": 8, "replayed": True})
        clock[0] = 105.0
        c.on_trial_result(0, [u, v], u, {"val_recall@20": 0.1, "epoch": 9, "training_iteration": 9, "finished": True})
        c.on_trial_complete(0, [u, v], u)
        assert "1/4 trials done" in c.progress([u, v]) and "left" not in c.progress([u, v])
        clock[0] = 200.0
        c.on_trial_result(0, [u, v], v, {"val_recall@20": 0.1, "epoch": 1, "training_iteration": 1, "finished": True})
        c.on_trial_complete(0, [u, v], v)
        assert "2/4 trials done" in c.progress([u, v])
        assert ("at most" in c.progress([u, v])) == (max_t == 10)  # two fresh evaluations: 20 trial-epochs / pace


def test_the_time_left_is_the_budget_over_the_pace_and_identical_lines_are_not_repeated(monkeypatch, capsys):
    from types import SimpleNamespace

    from tune import console

    clock = [100.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    c = console.Console(("q",), "val_recall@20", total=4, max_t=10, every=0.0)
    a, b = (SimpleNamespace(trial_id=t, status="RUNNING", config={"q": 2}) for t in "ab")
    for i in range(1, 6):  # two trials, 5 evaluations each, over 10 s: 1 trial-epoch per second
        clock[0] = 100.0 + 2 * i
        for t in (a, b):
            c.on_trial_result(0, [a, b], t, {"val_recall@20": 0.1 * i, "epoch": i, "training_iteration": i})
    first = capsys.readouterr().out
    assert "the plan is 4 trials of at most 10 evaluations (40 trial-epochs)" in first
    clock[0] = 110.0
    # left: 2 pending x 10 + 2 running x (10 - 5) = 30 trial-epochs at 10 / 8 s (first result at 102 s)
    assert c.seconds_left([a, b], pending=2) == pytest.approx(30 / (10 / 8))
    c.on_step_end(0, [a, b])
    c.on_step_end(0, [a, b])  # nothing moved: not printed again
    out = capsys.readouterr().out
    assert out.count("trials done") == 1 and "0/4 trials done, 2 running, 2 pending" in out
    assert "under a minute left" in out and "q=2" in out.splitlines()[1]
