"""--tracker: every trial's parameters and evaluation curve in MLflow (its local SQLite store) and
TensorBoard (event files read back here), through Ray Tune's logger callbacks."""

import struct

import pandas as pd
import pytest

from test_tune import TINY, one_line_error, ray_session  # noqa: F401  (the shared local Ray)

GRID = [*TINY, "--set", "patience=0", "--mode", "grid", "--params", "q", "--epochs", "2", "--max-concurrent", "2"]


def curves(folder):
    """{trial key: [(epoch, val_recall@20), ...]} from results.csv, and each trial's q."""
    frame = pd.read_csv(folder / "results.csv").sort_values(["trial_id", "epoch"])
    return ({t: list(zip(g["epoch"].astype(int), g["val_recall@20"])) for t, g in frame.groupby("trial_id")},
            frame.drop_duplicates("trial_id").set_index("trial_id")["q"].to_dict())


def test_mlflow_gets_one_run_per_trial_with_its_parameters_and_validation_curve(ray_session, tmp_path):  # noqa: F811
    mlflow = pytest.importorskip("mlflow")
    from tune.search import main

    assert main([*GRID, "--tracker", "mlflow", "--storage", str(tmp_path), "--name", "g"]) == 0
    expected, q = curves(tmp_path / "g")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("g").experiment_id])
    assert len(runs) == len(expected) == 6
    for run in runs:
        trial = run.data.tags["trial"]
        assert run.info.status == "FINISHED" and run.data.tags["kind"] == "grid"
        assert int(run.data.params["q"]) == q[trial] and run.data.params["M"] == "5"
        assert run.data.params["sweep"] in ("default", "q") and run.data.params["dataset"] == "synthetic"
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_recall_at_20"))
        assert [step for step, _ in history] == [epoch for epoch, _ in expected[trial]]
        assert [v for _, v in history] == pytest.approx([v for _, v in expected[trial]])


def scalars(folder, tag):
    """(step, value) of every scalar ``tag`` in the TensorBoard event files under ``folder``
    (TFRecord framing: length, its CRC, an Event protobuf, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    found = []
    for file in folder.rglob("events.out.tfevents*"):
        data, at = file.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            found += [(event.step, v.simple_value) for v in event.summary.value if v.tag == tag]
    return sorted(found)


def test_tensorboard_gets_each_trials_curve_in_the_experiment_folder(ray_session, tmp_path):  # noqa: F811
    pytest.importorskip("tensorboardX")
    from tune.search import main

    assert main([*GRID, "--tracker", "tensorboard", "--storage", str(tmp_path), "--name", "g"]) == 0
    expected, _ = curves(tmp_path / "g")
    for trial, curve in expected.items():
        got = scalars(tmp_path / "g" / "tensorboard" / trial, "ray/tune/val_recall_at_20")
        assert [step for step, _ in got] == [epoch for epoch, _ in curve]
        assert [v for _, v in got] == pytest.approx([v for _, v in curve], rel=1e-6)  # float32 in the file


def test_a_tracker_without_its_package_is_one_line(ray_session, tmp_path, capsys, monkeypatch):  # noqa: F811
    import importlib.util

    from tune.search import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    line = one_line_error(capsys, main, [*GRID, "--tracker", "wandb", "--storage", str(tmp_path)])
    assert line == 'error: --tracker wandb: the wandb package is not installed (pip install wandb, or pip install -e ".[track]")'
    assert not any(tmp_path.iterdir())
