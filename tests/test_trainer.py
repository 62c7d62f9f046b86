import collections
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import kdiffe
from kdiffe import Config, Trainer, from_dict, make_synthetic, train
from kdiffe.sampling import epoch_batches
from kdiffe.trainer import CheckpointError

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


@pytest.mark.parametrize("run", [{"variant": "lightgcn"}, {"variant": "kdiffe"}, {"model": "lightgcn"},
                                 {"model": "sgl"}, {"model": "ncl", "warm_up": 1, "clusters": 6},
                                 {"model": "bm3"}, {"model": "diffmm", "denoiser_hidden": 32}])
def test_resume_matches_an_uninterrupted_run(tmp_path, synthetic, run, one_thread):
    cfg = from_dict({**run, "epochs": 4, "M": 5, "R": 2, "patience": 0})
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
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [r["epoch"] for r in resumed.history.evaluations] == [1, 2, 3, 4]
    assert _metrics(resumed.history.evaluations) == _metrics(straight.history.evaluations)


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


def _metrics(rows):
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in rows]


def _leaves(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _straight_and_cut(cfg, synthetic, epochs):
    """A run of all ``cfg.epochs`` and one of the same config cut after ``epochs``."""
    straight = Trainer(cfg, synthetic, **QUIET)
    straight.run()
    first = Trainer(cfg.replace(epochs=epochs), synthetic, **QUIET)
    first.run()
    return straight, first


def test_checkpoint_is_plain_data_and_loads_with_weights_only(tmp_path, synthetic, one_thread):
    cfg = Config(variant="kdiffe", epochs=4, M=5, R=2, patience=0)
    straight, first = _straight_and_cut(cfg, synthetic, 2)
    path = first.save(tmp_path)
    state = torch.load(path, weights_only=True)  # refuses anything but tensors and plain values
    assert {type(x) for x in _leaves(state)} <= {torch.Tensor, str, int, float, bool, type(None)}
    assert state["history"]["evaluations"][0]["epoch"] == 1 and state["extra"]["triples"].dtype == torch.int64
    resumed = Trainer(cfg, synthetic, **QUIET)
    resumed.load(tmp_path)
    assert any(resumed.history.best is row for row in resumed.history.evaluations)
    resumed.run()
    assert _metrics(resumed.history.evaluations) == _metrics(straight.history.evaluations)


def test_numpy_values_in_history_are_saved_as_python_numbers(tmp_path, synthetic):
    trainer = Trainer(Config(variant="lightgcn", epochs=1), synthetic, **QUIET)
    trainer.run()
    trainer.history.evaluations[0]["numpy_value"] = np.float64(0.25)
    trainer.history.evaluations[0]["numpy_int"] = np.int64(3)
    trainer.history.epoch_seconds.append(np.float32(1.5))
    state = torch.load(trainer.save(tmp_path), weights_only=True)
    row = state["history"]["evaluations"][0]
    assert type(row["numpy_value"]) is float and type(row["numpy_int"]) is int
    assert type(state["history"]["epoch_seconds"][-1]) is float


class _Payload:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return "payload"


def test_a_checkpoint_with_code_is_refused_without_running_it(tmp_path, synthetic):
    trainer = Trainer(Config(variant="lightgcn", epochs=1), synthetic, **QUIET)
    state = trainer.state_dict()
    state["extra"] = _Payload()
    torch.save(state, tmp_path / "trainer.pt")
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        trainer.load(tmp_path)
    assert not _Payload.ran


def test_checkpoint_of_another_variant_is_refused(tmp_path, synthetic):
    Trainer(Config(variant="lightgcn", epochs=1), synthetic, **QUIET).save(tmp_path)
    with pytest.raises(CheckpointError, match="diffusion view"):
        Trainer(Config(variant="kdiffe", epochs=1, M=5, R=2), synthetic, **QUIET).load(tmp_path)


@pytest.mark.parametrize("layout", [1, 2])
def test_checkpoints_of_the_previous_layouts_still_load(tmp_path, synthetic, one_thread, layout):
    """Format 1 (denoiser, diff_optimizer and view_triples at the top) and format 2 (the view's
    state under "view", before models kept it as their extra state) resume exactly."""
    cfg = Config(variant="kdiffe", epochs=3, M=5, R=2, patience=0)
    straight, first = _straight_and_cut(cfg, synthetic, 2)
    state = first.state_dict()
    view = state.pop("extra")
    if layout == 1:
        del state["format"], state["history"]["best_index"]
        state.update(denoiser=view["denoiser"], diff_optimizer=view["optimizer"], view_triples=view["triples"])
    else:
        state.update(format=2, view=view)
    torch.save(state, tmp_path / "trainer.pt")
    resumed = Trainer(cfg, synthetic, **QUIET)
    resumed.load(tmp_path)
    resumed.run()
    assert _metrics(resumed.history.evaluations) == _metrics(straight.history.evaluations)


SYNCS = ("item", "cpu", "tolist", "numpy", "nonzero", "unique", "__bool__", "__float__", "__int__", "__index__")


@pytest.fixture
def device_reads(monkeypatch):
    """Counts, per name, the calls made from kdiffe code that read a tensor back to the host."""
    package = str(Path(kdiffe.__file__).parent)
    counts = collections.Counter()

    def counting(name, original):
        def wrapper(*args, **kwargs):
            if sys._getframe(1).f_code.co_filename.startswith(package):
                counts[name] += 1
            return original(*args, **kwargs)
        return wrapper

    def start():
        for name in SYNCS:
            monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
        for name in ("unique", "nonzero", "unique_consecutive"):
            monkeypatch.setattr(torch, name, counting(f"torch.{name}", getattr(torch, name)))
        return counts
    return start


def test_the_batch_loop_never_reads_from_the_device(synthetic, device_reads):
    trainer = Trainer(Config(variant="kdiffe", epochs=2, M=5, R=2, batch_size=128), synthetic, **QUIET)
    trainer.train_epoch()
    batches = epoch_batches(synthetic.train, trainer.keys, 128, trainer.rng, anchors=True)
    assert len(batches) > 20
    counts = device_reads()
    for batch in batches:
        loss, parts = trainer.model.loss(batch, trainer.view.triples)
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
    assert sum(counts.values()) == 0, counts


@pytest.mark.parametrize("variant", ["kdiffe", "lightgcn"])
def test_device_reads_per_epoch_do_not_grow_with_the_batches(synthetic, device_reads, variant):
    """A whole epoch (diffusion view included) reads back a fixed few values, whatever the batch count."""
    per_epoch = {}
    for batch_size in (512, 64):
        trainer = Trainer(Config(variant=variant, epochs=2, M=5, R=2, batch_size=batch_size), synthetic, **QUIET)
        counts = device_reads()
        counts.clear()
        trainer.train_epoch()
        per_epoch[batch_size] = dict(counts)
    assert per_epoch[512] == per_epoch[64] and sum(per_epoch[64].values()) <= 2, per_epoch
