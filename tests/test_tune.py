"""Ray Tune layer on tiny synthetic data: grid coverage, optuna + ASHA, the CSV schema, failed
trials, scalability, and one-line errors for bad input.

One local Ray (2 CPUs, no dashboard) is shared by every in-process test (``ray_session``). The
tests that kill processes, resume, or join a two-node cluster are in tests/test_reliability.py.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from kdiffe.results import COLUMNS
from tune.spaces import PAPER_GRIDS, grid_points, parse_params

TINY = ["--dataset", "synthetic", "--set", "syn_users=120", "--set", "syn_items=60", "--set", "M=5", "--set", "R=2",
        "--set", "concepts=6", "--set", "denoiser_hidden=32"]


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session (also imported by test_ablations.py)."""
    import ray

    from tune.experiment import set_ray_env

    set_ray_env()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    if started:
        ray.shutdown()


def script(path, *args, timeout=300, env=None):
    return subprocess.run([sys.executable, str(ROOT / path), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def one_line_error(capsys, main, argv):
    """Run ``main(argv)``: it must return 2 with exactly one stderr line starting with 'error: '."""
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# ---------------------------------------------------------------------------------- no Ray
def test_grid_points_are_one_factor_at_a_time():
    points = grid_points(parse_params("M,q"), {"M": 50, "q": 1})
    assert points[0] == {"sweep": "default"}
    assert [p["M"] for p in points if p["sweep"] == "M"] == [30, 80, 110, 130, 150]
    assert [p["q"] for p in points if p["sweep"] == "q"] == [2, 3, 4, 5, 6]
    assert all(len(p) == 2 for p in points[1:])
    defaults = {"M": 50, "R": 12, "xi": 0.7, "t": 10, "tau": 0.5, "theta1": 0.01, "q": 1}
    assert len(grid_points(parse_params(None), defaults)) == 1 + sum(len(g) - 1 for g in PAPER_GRIDS.values())
    variants = [p["variant"] for p in grid_points(("variant",), {"variant": "kdiffe"})[1:]]
    assert variants == ["no_s", "unguided", "no_cl", "lightgcn", "lightgcn_s"]


def test_training_parameters_are_searched_only_when_named():
    assert "theta2" not in parse_params(None) and "lr" not in parse_params(None)
    assert parse_params("q,theta2,lr") == ("q", "theta2", "lr")
    points = grid_points(("theta2",), {"theta2": 1e-5})
    assert [p["theta2"] for p in points[1:]] == [1e-6, 2e-5, 4e-5, 1e-4, 1e-3]
    assert [p["lr"] for p in grid_points(("lr",), {})[1:]] == [1e-4, 5e-4, 2e-3, 5e-3, 1e-2]  # default 1e-3


@pytest.mark.parametrize("text,seeds", [("2024", [2024]), ("0,1,2", [0, 1, 2]), ("0-4", [0, 1, 2, 3, 4]),
                                        ("3,0-1", [3, 0, 1]), ("1,1", [1])])
def test_seeds_mean_the_same_in_every_script(text, seeds):
    from tune.cli import seeds_arg

    assert seeds_arg(text) == seeds


@pytest.mark.parametrize("args,needle", [
    (["--set", "M=-1"], "M=-1"),
    (["--set", "bogus=3"], "unknown parameter 'bogus'"),
    (["--set", "q"], "expected key=value"),
    (["--params", "M,zeta"], "--params: unknown zeta"),
    (["--mode", "grid", "--params", "q", "--set", "concepts=3"], "q=4: larger than the 3 concept"),
    (["--mode", "optuna", "--params", "q", "--set", "concepts=3"], "q=6: larger than the 3 concept"),
    (["--mode", "random", "--params", "q", "--set", "q=1000"], "--set q=...: q is searched"),
    (["--mode", "grid", "--params", "xi,variant", "--variant", "no_s"], "the variant is searched"),
    (["--metric", "test_recall@20"], "choose a validation metric"),
    (["--mode", "optuna", "--params", "R,M"], "--set M=...: M is searched"),
    (["--mode", "bayes"], "invalid choice: 'bayes'"),
    (["--epochs", "-3"], "must be >= 0"),
    (["--epochs", "0"], "epochs=0"),
    (["--seeds", "a,b"], "expected seeds such as"),
    (["--mode", "optuna", "--params", "xi", "--seeds", "1,2"], "takes one seed"),
    (["--cpus-per-trial", "64"], "--cpus-per-trial 64: this machine has"),
    (["--gpus-per-trial", "64"], "--gpus-per-trial 64: this machine has"),
    (["--mode", "grid", "--retrain-seeds", "0-2"], "--retrain-seeds: --mode grid ends without a re-training"),
    (["--retrain-seeds", "a"], "expected seeds such as"),
    (["--mode", "retrain"], "--mode retrain needs --from"),
    (["--mode", "retrain", "--from", "/nowhere"], "--from /nowhere: no best.json or model.json there"),
])
def test_invalid_search_arguments_fail_with_one_line(ray_session, tmp_path, capsys, args, needle):
    from tune.search import main

    params = [] if "--params" in args else ["--params", "xi"]  # TINY fixes M and R
    line = one_line_error(capsys, main, [*TINY, *params, *args, "--storage", str(tmp_path)])
    assert needle in line
    assert not any(p.suffix == ".csv" for p in tmp_path.rglob("*"))
    assert not any(tmp_path.iterdir())  # nothing is created for a refused command


def test_resume_of_nothing_and_existing_name_fail(tmp_path, capsys):
    from tune.search import main

    assert "--resume: no experiment" in one_line_error(
        capsys, main, [*TINY, "--storage", str(tmp_path), "--name", "none", "--resume"])
    assert "--resume needs --name" in one_line_error(capsys, main, ["--storage", str(tmp_path), "--resume"])
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "results.csv").write_text("x\n")
    assert "continue it with --name taken --resume" in one_line_error(
        capsys, main, [*TINY, "--params", "xi", "--storage", str(tmp_path), "--name", "taken"])
    assert "holds no experiment.json" in one_line_error(
        capsys, main, ["--storage", str(tmp_path), "--name", "taken", "--resume"])


@pytest.mark.parametrize("storage,needle", [
    ("file", "is a file, not a folder"),
    ("/proc/kdiffe-results", "cannot write there"),
    ("file/below", "cannot write there"),
    ("s3://bucket/exp?endpoint_override=127.0.0.1:1&scheme=http", "cannot write there"),  # nothing listens there
])
def test_unusable_storage_fails_before_ray_starts(tmp_path, storage, needle):
    if storage.startswith("file"):
        (tmp_path / "taken.txt").write_text("not a folder")
        storage = str(tmp_path / storage.replace("file", "taken.txt"))
    proc = script("tune/search.py", *TINY, "--storage", storage, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: --storage {storage}") and needle in proc.stderr
    assert "ray" not in proc.stdout.lower()
    assert not (ROOT / "s3:").exists()  # never a local folder named after the URI


def test_scripts_run_from_the_repo_root_and_reject_unknown_datasets(tmp_path):
    proc = script("tune/search.py", "--dataset", "atlantis", "--data-dir", str(tmp_path), "--storage", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: unknown dataset 'atlantis'")
    proc = script("tune/scalability.py", "--dataset", "atlantis", "--data-dir", str(tmp_path), "--storage", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown dataset 'atlantis'"), proc.stderr
    proc = script("tune/search.py", "--storage", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr == "error: --dataset is required\n", proc.stderr


def test_empty_or_old_results_files_read_as_rows_or_none(tmp_path):
    from tune.store import read_frame

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert list(read_frame(empty).columns) == list(COLUMNS) and len(read_frame(empty)) == 0
    old = [c for c in COLUMNS if c != "l2"]  # a CSV written before the l2 column existed
    pd.DataFrame([{c: "x" for c in old} | {"trial_id": "t1", "epoch": 1}], columns=old).to_csv(tmp_path / "o.csv", index=False)
    frame = read_frame(tmp_path / "o.csv")
    assert list(frame.columns) == list(COLUMNS) and frame.loc[0, "trial_id"] == "t1"
    assert frame.loc[0, "l2"] == "params"  # the default, which every run before the column used


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    from tune import store

    path = tmp_path / "results.csv"
    store.write_atomic(path, "a,b\n1,2\n")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", full_disk)
    with pytest.raises(OSError):
        store.write_atomic(path, "a,b\n3,4\n")
    assert path.read_text() == "a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary file left behind


def test_resume_refuses_options_that_change_the_trials(tmp_path):
    from tune.cli import resolve_resume
    from tune.store import ExperimentError, start_record

    settings = {"dataset": "synthetic", "epochs": 2, "overrides": ["M=5"], "cpus_per_trial": None,
                "data_dir": str(tmp_path)}
    start_record(tmp_path, "tune/search.py", ["tune/search.py"], settings)
    import argparse
    args = argparse.Namespace(dataset=None, epochs=None, overrides=[], cpus_per_trial=None, data_dir=None,
                              name="x", storage=str(tmp_path.parent), resume=True)
    merged, _ = resolve_resume(args, {"cpus_per_trial": 2.0, "resume": True, "name": "x"}, tmp_path)
    assert merged.epochs == 2 and merged.overrides == ["M=5"] and merged.cpus_per_trial == 2.0
    assert merged.data_dir == str(tmp_path)
    with pytest.raises(ExperimentError, match=r"--epochs 5: .* was started with 2"):
        resolve_resume(args, {"epochs": 5}, tmp_path)
    with pytest.raises(ExperimentError, match=r"--set M=6: .* was started with M=5"):
        resolve_resume(args, {"overrides": ["M=6"]}, tmp_path)


def test_ray_token_is_used_when_joining_a_cluster(tmp_path, monkeypatch):
    from tune import experiment

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "none"))
    assert not experiment.auth_token_available()
    (tmp_path / "token").write_text("abc\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
    assert experiment.auth_token_available()


@pytest.mark.parametrize("cpus,trials,given,expect", [
    (2, 1, (None, None), (2.0, 1)), (2, 35, (None, None), (1.0, 2)), (2, 2, (None, None), (1.0, 2)),
    (16, 1, (None, None), (4.0, 4)), (16, 4, (None, None), (4.0, 4)), (16, 8, (None, None), (2.0, 8)),
    (16, 35, (None, None), (1.0, 16)), (1, 6, (None, None), (1.0, 1)), (16, 35, (2.0, None), (2.0, 8)),
    (16, 35, (None, 2), (1.0, 2))])
def test_default_resources_share_the_cpus_among_the_trials(cpus, trials, given, expect):
    from tune.experiment import default_resources

    assert default_resources(cpus, *given, gpus_per_trial=0.0, trials=trials) == expect


# ---------------------------------------------------------------------------------- with Ray
def test_grid_experiment_covers_exactly_the_grid(ray_session, tmp_path, capsys):
    from tune.search import main

    assert main([*TINY, "--mode", "grid", "--params", "q", "--epochs", "1", "--storage", str(tmp_path),
                 "--name", "grid"]) == 0
    frame = pd.read_csv(tmp_path / "grid" / "results.csv")
    assert list(frame.columns) == list(COLUMNS)
    trials = frame.drop_duplicates("trial_id")
    assert len(frame) == len(trials) == 6  # one evaluation each
    assert sorted(zip(trials["sweep"], trials["q"])) == [("default", 1)] + [("q", q) for q in range(2, 7)]
    assert set(frame["kind"]) == {"grid"} and set(frame["status"]) == {"ok"}
    assert set(frame["experiment"]) == {"grid"}
    assert set(frame["dataset"]) == {"synthetic"} and set(frame["variant"]) == {"kdiffe"}
    assert set(frame["seed"]) == {2024} and (frame["M"] == 5).all() and (frame["n_users"] == 120).all()
    assert frame["seconds_per_epoch"].gt(0).all() and frame["wall_time"].gt(0).all()
    best = json.loads((tmp_path / "grid" / "best.json").read_text())
    assert best["best"]["val_recall@20"] == frame["val_recall@20"].max() and best["trials"] == 6
    from kdiffe.serving import export_checkpoint, load_model  # every trial keeps its best model
    trial = best["best"]["trial_id"]
    served = load_model(export_checkpoint(tmp_path / "grid" / "trials" / trial / "state", tmp_path / "served"))
    assert served.evaluation["val_recall@20"] == best["best"]["val_recall@20"] and served.n_users == 120
    record = json.loads((tmp_path / "grid" / "experiment.json").read_text())
    assert record["settings"]["epochs"] == 1 and record["runs"][0]["exit"] == 0
    assert record["runs"][0]["wall_seconds"] > 0 and record["runs"][0]["command"][0] == "tune/search.py"
    out = capsys.readouterr().out
    assert "best by val_recall@20" in out and "test       recall@20" in out
    assert "6/6 trials done" in out and "2 trials at a time, 1 CPU each" in out
    assert "╭" not in out and "Trial status" not in out and len(out.splitlines()) < 30  # no Ray boxes


def test_optuna_with_asha_stops_some_trials_early(ray_session, tmp_path, capsys):
    from tune.search import main

    assert main([*TINY, "--mode", "optuna", "--params", "xi,q,lr", "--num-samples", "6", "--epochs", "4", "--grace-period", "1",
                 "--max-concurrent", "2", "--cpus-per-trial", "1", "--set", "variant=no_cl", "--retrain-seeds", "none",
                 "--storage", str(tmp_path), "--name", "opt"]) == 0
    frame = pd.read_csv(tmp_path / "opt" / "results.csv")
    epochs = frame.groupby("trial_id")["epoch"].max()
    assert len(epochs) == 6 and set(frame["kind"]) == {"search"}
    assert (epochs < 4).any() and (epochs == 4).any()  # ASHA stopped some, others ran to the end
    trials = frame.drop_duplicates("trial_id")
    assert trials["xi"].nunique() == 6 and trials["xi"].between(0, 1).all() and trials["q"].between(1, 6).all()
    assert trials["lr"].nunique() == 6 and trials["lr"].between(1e-4, 1e-2).all() and (trials["theta2"] == 1e-5).all()
    assert ((trials["xi"] == 0.7) & (trials["q"] == 1) & (trials["lr"] == 1e-3)).sum() == 1  # the defaults, first
    assert "stopped early by the scheduler" in capsys.readouterr().out
    ends = {t: json.loads((tmp_path / "opt" / "trials" / t / "end.json").read_text()) for t in epochs.index}
    for trial, last in epochs.items():  # every trial says how it ended: the scheduler's stop, or its epochs
        assert ends[trial]["outcome"] == ("finished" if last == 4 else "stopped"), (trial, last, ends[trial])
    assert set(frame["status"]) == {"ok"}  # a stopped trial ended on the scheduler's rules: it counts


def retrain_runs(folder):
    """{arm: {seed: (val, test recall@20) at the run's best validation evaluation}} of a re-training."""
    frame = pd.read_csv(folder / "results.csv")
    assert set(frame["kind"]) == {"retrain"} and set(frame["status"]) == {"ok"}
    assert not frame.duplicated(["trial_id", "epoch"]).any()
    best = frame.loc[frame.groupby("trial_id")["val_recall@20"].idxmax()]
    return {arm: {int(r.seed): (r["val_recall@20"], r["test_recall@20"], r["tau"], r["q"]) for _, r in rows.iterrows()}
            for arm, rows in best.groupby("sweep")}


def test_a_search_ends_by_retraining_its_best_against_the_published_defaults(ray_session, tmp_path, capsys):
    from kdiffe.config import Config
    from tune.search import main

    argv = [*TINY, "--set", "patience=0", "--mode", "optuna", "--params", "tau,q", "--num-samples", "2",
            "--first-trial", "none", "--scheduler", "fifo", "--epochs", "2", "--retrain-seeds", "0,1",
            "--storage", str(tmp_path), "--name", "s"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "re-training the best configuration and the published defaults with seeds 0,1 (s-retrain;" in out
    assert out.count("done in") == 1 and out.index("done in") > out.index("found - defaults")
    best = json.loads((tmp_path / "s" / "best.json").read_text())["best"]
    runs = retrain_runs(tmp_path / "s-retrain")
    assert set(runs) == {"found", "defaults"} and all(set(r) == {0, 1} for r in runs.values())
    assert {r[2:] for r in runs["found"].values()} == {(best["tau"], best["q"])}
    assert {r[2:] for r in runs["defaults"].values()} == {(Config().tau, Config().q)}
    record = json.loads((tmp_path / "s-retrain" / "experiment.json").read_text())
    assert record["runs"][-1]["exit"] == 0 and "--from" in record["runs"][-1]["command"]
    table = (tmp_path / "s-retrain" / "retrain.md").read_text()
    found_val = [v[0] for _, v in sorted(runs["found"].items())]
    diff = np.subtract(found_val, [v[0] for _, v in sorted(runs["defaults"].items())])
    assert f"| found | tau={best['tau']:.4g}, q={best['q']} | 0,1 | {np.mean(found_val):.4f} ± " \
           f"{np.std(found_val, ddof=1):.4f} |" in table
    assert f"| found - defaults (paired, 95 % CI) | | 2 shared | {diff.mean():+.4f} [" in table
    assert all(line in out for line in table.splitlines()[2:]) and "Verdict (paired t over seeds, 5 %)" in out


def test_a_search_continues_its_retraining_unless_it_ended(ray_session, tmp_path, capsys):
    from tune.search import main

    argv = [*TINY, "--set", "patience=0", "--mode", "random", "--params", "tau", "--num-samples", "1",
            "--scheduler", "fifo", "--epochs", "1", "--retrain-seeds", "0,1", "--storage", str(tmp_path), "--name", "s"]
    assert main(argv) == 0
    folder = tmp_path / "s-retrain"
    before = pd.read_csv(folder / "results.csv")
    capsys.readouterr()
    assert main(["--storage", str(tmp_path), "--name", "s", "--resume"]) == 0  # ended: nothing re-trains
    out = capsys.readouterr().out
    assert "re-training" not in out and "done in" in out
    pd.testing.assert_frame_equal(pd.read_csv(folder / "results.csv"), before)
    record = json.loads((folder / "experiment.json").read_text())
    record["runs"][-1]["exit"] = 130  # as if the re-training had been interrupted
    (folder / "experiment.json").write_text(json.dumps(record))
    gone = sorted(before["trial_id"].unique())[0]
    shutil.rmtree(folder / "trials" / gone)
    assert main(["--storage", str(tmp_path), "--name", "s", "--resume", "--retrain-seeds", "0,1"]) == 0
    assert "re-training the best configuration: continuing s-retrain" in capsys.readouterr().out
    after = pd.read_csv(folder / "results.csv")
    assert after["trial_id"].nunique() == 4 and not after.duplicated(["trial_id", "epoch"]).any()
    assert main(["--storage", str(tmp_path), "--name", "s", "--resume", "--retrain-seeds", "none"]) == 0
    assert "re-training" not in capsys.readouterr().out


def test_a_retraining_of_the_defaults_runs_one_arm(ray_session, tmp_path, capsys):
    from tune.search import main

    found = tmp_path / "found.json"
    found.write_text(json.dumps({"best": {"model": "kdiffe", "variant": "kdiffe", "tau": 0.5, "q": 1, "seed": 9}}))
    assert main([*TINY, "--mode", "retrain", "--from", str(found), "--params", "tau,q", "--seeds", "3",
                 "--epochs", "1", "--storage", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "The best configuration found is the published defaults: one arm." in out
    runs = retrain_runs(tmp_path / "runs" / "found-retrain")
    assert set(runs) == {"found"} and set(runs["found"]) == {3}


def test_files_are_written_whole_or_not_at_all(tmp_path):
    from kdiffe.files import replace_atomic, write_atomic

    path = write_atomic(tmp_path / "a.md", "old\n")

    def torn(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        replace_atomic(path, torn)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["a.md"]
    write_atomic(path, "new\n")
    assert path.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["a.md"]


def test_failed_trials_are_recorded_and_do_not_stop_the_experiment(ray_session, tmp_path, capsys):
    import torch

    from tune.search import main

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    code = main([*TINY, "--mode", "random", "--params", "xi", "--num-samples", "2", "--scheduler", "fifo",
                 "--epochs", "1", "--max-failures", "0", "--set", "device=cuda:7", "--storage", str(tmp_path),
                 "--name", "bad"])
    assert code == 1
    frame = pd.read_csv(tmp_path / "bad" / "results.csv")
    assert len(frame) == 2 and frame["trial_id"].nunique() == 2 and set(frame["status"]) == {"error"}
    assert frame["error"].str.contains("cuda").all() and (frame["experiment"] == "bad").all()
    out = capsys.readouterr().out
    assert "2 trials, 2 failed" in out and "no successful trial" in out and "failed (xi=" in out
    assert json.loads((tmp_path / "bad" / "best.json").read_text())["failed_trials"] == 2


def test_scalability_sweeps_t_and_users(ray_session, tmp_path, capsys):
    from tune.scalability import main

    assert main([*TINY, "--users-dataset", "synthetic", "--steps", "2,5", "--user-counts", "50,0",
                 "--epochs", "1", "--storage", str(tmp_path), "--name", "scale"]) == 0
    frame = pd.read_csv(tmp_path / "scale" / "results.csv")
    assert set(frame["kind"]) == {"scalability"} and frame["trial_id"].nunique() == 4
    t_rows = frame[frame["sweep"] == "t"]
    assert sorted(t_rows["t"]) == [2, 5] and (t_rows["n_users"] == 120).all()
    assert sorted(frame[frame["sweep"] == "users"]["n_users"]) == [50, 120]
    assert frame["seconds_per_epoch"].gt(0).all()
    assert "s/epoch" in capsys.readouterr().out


def test_same_seed_twice_gives_identical_metrics(ray_session, tmp_path):
    from kdiffe.results import METRIC_COLUMNS
    from tune.search import main

    for name in ("a", "b"):
        assert main([*TINY, "--mode", "grid", "--params", "xi", "--epochs", "2", "--set", "patience=0",
                     "--storage", str(tmp_path), "--name", name]) == 0
    a, b = (pd.read_csv(tmp_path / n / "results.csv").sort_values(["sweep", "xi", "epoch"]).reset_index(drop=True)
            for n in ("a", "b"))
    assert len(a) == 12
    pd.testing.assert_frame_equal(a[list(METRIC_COLUMNS)], b[list(METRIC_COLUMNS)])


def test_reproduce_plans_runs_resumes_and_renders(ray_session, tmp_path, capsys):
    from tune.reproduce import main

    argv = ["--datasets", "synthetic", "--parts", "grid-unguided,ablation", "--seeds", "0", "--ablation-seeds", "0-1",
            "--epochs", "1", "--storage", str(tmp_path), *[x for s in TINY[3::2] for x in ("--set", s)]]
    assert main([*argv, "--dry-run"]) == 0
    plan = capsys.readouterr().out

    def states(out):  # the status column of each part's line (never a word of a path)
        return [line.split()[1] for line in out.splitlines() if line.startswith("synthetic-")]

    assert "synthetic-figure5-unguided" in plan and "trial-epochs" in plan and set(states(plan)) == {"new"}
    assert "--seeds 900 " in plan  # Figure 9's seeds, against whose q grid it is paired
    assert not any(tmp_path.iterdir())  # a dry run runs nothing
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "synthetic-figure5-unguided" / "results.csv").exists()
    ablation = pd.concat(pd.read_csv(p) for p in tmp_path.glob("synthetic-ablation-*/results.csv"))
    assert set(ablation["variant"]) == {"kdiffe", "no_s", "unguided", "no_cl", "lightgcn", "lightgcn_s"}
    assert set(ablation["seed"]) == {0, 1} and (tmp_path / "figures" / "table_iii.md").exists()
    assert "wrote" in out
    assert main([*argv, "--dry-run"]) == 0
    assert set(states(capsys.readouterr().out)) == {"done"}  # every part is done now
    assert main(["--parts", "everything", "--storage", str(tmp_path)]) == 2


def test_reproduce_times_scalability_one_trial_at_a_time(tmp_path, monkeypatch):
    import plots.figures
    import tune.cli
    from tune.reproduce import main

    started = {}

    def start(script, argv):
        started[script.prog] = argv
        return 0

    monkeypatch.setattr(tune.cli, "main", start)
    monkeypatch.setattr(plots.figures, "load_results", lambda root: None)
    monkeypatch.setattr(plots.figures, "render_all", lambda *args: SimpleNamespace(written=[], notes=[]))
    assert main(["--datasets", "synthetic", "--parts", "ablation,scalability", "--ablation-seeds", "0",
                 "--max-concurrent", "3", "--cpus-per-trial", "1", "--storage", str(tmp_path)]) == 0
    assert set(started) == {"ablations/run.py", "tune/scalability.py"}
    assert "--max-concurrent" not in started["tune/scalability.py"]
    assert " --cpus-per-trial 1" in " ".join(started["tune/scalability.py"])
    assert " --max-concurrent 3" in " ".join(started["ablations/run.py"])


def test_reproduce_plans_what_each_real_dataset_supports(datasets_dir, tmp_path, capsys):
    from tune.reproduce import main

    assert main(["--datasets", "tiktok", "baby", "sports", "--parts", "ablation,search,grid,resplit", "--search-datasets",
                 "tiktok", "sports", "--data-dir",
                 str(datasets_dir), "--storage", str(tmp_path), "--dry-run"]) == 0
    plan = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if " trial-epochs " in line}
    grids = [name for name in plan if "-figure" in name]
    assert grids == ["tiktok-figure9-q", "tiktok-figure6-M-R", "tiktok-figure7-xi-t", "tiktok-figure8-tau-theta1"]
    assert "--params M,R " in plan["tiktok-figure6-M-R"] and "--seeds 600,601,602 " in plan["tiktok-figure6-M-R"]
    assert "--seeds 900,901,902 " in plan["tiktok-figure9-q"] and "--epochs 60" in plan["tiktok-figure9-q"]
    assert "--variants kdiffe,no_s,unguided " in plan["tiktok-ablation-theta2-4e-05"]
    # no_cl at its own theta2, which LightGCN + S shares: a part of its own, named apart
    assert "--variants no_cl " in plan["tiktok-ablation-theta2-1e-05-no_cl"]
    assert "--variants lightgcn_s " in plan["tiktok-ablation-theta2-1e-05"]
    assert "--epochs 60" in plan["tiktok-ablation-theta2-4e-05"]
    assert "--epochs 150 --set patience=20" in plan["tiktok-ablation-theta2-2e-05"]  # LightGCN peaks later
    assert "--set kg=file" in plan["baby-ablation-kg-file"]  # KDiffE on Baby's own (degenerate) kg.txt
    assert "sports-ablation-kg-file" not in plan and "--variants lightgcn_s" in plan["sports-ablation-theta2-1e-05"]
    assert "--params theta2,lr" in plan["sports-search-lightgcn"] and "sports-search-kdiffe" not in plan
    assert "baby-search-lightgcn" not in plan  # searched: --search-datasets only
    assert "--params M,R,xi,t,tau,theta1,q,theta2,lr" in plan["tiktok-search-kdiffe"]
    resplits = [name for name in plan if "-resplit-" in name]
    assert {n.split("-theta2")[0] for n in resplits} == {"tiktok-resplit-1-one", "tiktok-resplit-2-one"}  # TikTok only
    assert "--set resplit=2 --set resplit_holdout=one " in plan["tiktok-resplit-2-one-theta2-4e-05"]
    assert main(["--datasets", "tiktok", "--parts", "grid", "--grid-design", "shared", "--grid-params", "q",
                 "--data-dir", str(datasets_dir), "--storage", str(tmp_path), "--dry-run"]) == 0
    (shared,) = [line for line in capsys.readouterr().out.splitlines() if " trial-epochs " in line]
    assert shared.startswith("tiktok-grid-q ") and "--seeds 0,1,2 " in shared and "--epochs 30" in shared
    assert main(["--datasets", "tiktok", "--parts", "resplit", "--resplits", "1", "--resplit-holdout", "shares",
                 "--data-dir", str(datasets_dir), "--storage", str(tmp_path), "--dry-run"]) == 0
    shares = [line for line in capsys.readouterr().out.splitlines() if " trial-epochs " in line]
    assert [line.split()[0] for line in shares][0] == "tiktok-resplit-1-theta2-4e-05"
    assert all("--set resplit=1 " in line and "resplit_holdout" not in line for line in shares)


def test_reproduce_search_reruns_each_searched_best_with_the_ablation_seeds(ray_session, tmp_path, capsys):
    from tune.reproduce import main

    sets = [x for s in ("syn_users=120", "syn_items=60", "concepts=6", "denoiser_hidden=32") for x in ("--set", s)]
    argv = ["--datasets", "synthetic", "--parts", "search", "--search-datasets", "synthetic", "--search-trials", "2",
            "--ablation-seeds", "3-4",
            "--epochs", "1", "--storage", str(tmp_path), *sets]
    assert main([*argv, "--dry-run"]) == 0
    assert "the best settings of synthetic-search-kdiffe" in capsys.readouterr().out
    assert main(argv) == 0
    for variant, moved in (("kdiffe", ["M", "R", "xi", "t", "tau", "theta1", "q", "theta2", "lr"]),
                           ("lightgcn", ["theta2", "lr"])):
        search = pd.read_csv(tmp_path / f"synthetic-search-{variant}" / "results.csv")
        assert search["trial_id"].nunique() == 2 and set(search["variant"]) == {variant}
        assert search.drop_duplicates("trial_id")["lr"].nunique() == 2  # lr is searched
        best = json.loads((tmp_path / f"synthetic-search-{variant}" / "best.json").read_text())["best"]
        rerun = pd.read_csv(tmp_path / f"synthetic-search-{variant}-best" / "results.csv")
        assert set(rerun["seed"]) == {3, 4} and set(rerun["variant"]) == {variant}
        for key in moved:
            assert np.allclose(rerun[key].astype(float), float(best[key])), key
        command = json.loads((tmp_path / f"synthetic-search-{variant}-best" / "experiment.json").read_text())
        assert f"lr={best['lr']!r}" in command["runs"][0]["command"]


def test_resume_of_a_run_killed_before_any_trial_wrote_runs_every_trial(ray_session, tmp_path, capsys):
    from tune.search import main

    argv = [*TINY, "--mode", "grid", "--params", "q", "--epochs", "1", "--storage", str(tmp_path), "--name", "early"]
    assert main(argv) == 0
    folder = tmp_path / "early"
    for name in list(folder.iterdir()):  # as if killed right after experiment.json was written
        if name.name != "experiment.json":
            shutil.rmtree(name) if name.is_dir() else name.unlink()
    (folder / "trials" / "stale_00000").mkdir(parents=True)
    assert main(["--storage", str(tmp_path), "--name", "early", "--resume"]) == 0
    assert "0 of 6 trials ended before; 6 to run" in capsys.readouterr().out
    frame = pd.read_csv(folder / "results.csv")
    assert frame["trial_id"].nunique() == 6 and "stale_00000" not in set(frame["trial_id"])
    assert len(json.loads((folder / "experiment.json").read_text())["runs"]) == 2


class _Planted:
    """A pickle that, when loaded, writes a file: what a hostile tuner.pkl would do."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (Path(self.target).write_text, ("code ran",))


def test_resume_ignores_a_torn_or_planted_ray_state(ray_session, tmp_path, capsys):
    """Resume rebuilds the work from the trial records: a truncated experiment_state, a planted
    tuner.pkl (and one in every Ray folder) neither repeat a trial nor run code."""
    import pickle

    from tune.search import main

    argv = [*TINY, "--mode", "grid", "--params", "q", "--epochs", "2", "--storage", str(tmp_path), "--name", "torn"]
    assert main(argv) == 0
    folder = tmp_path / "torn"
    before = pd.read_csv(folder / "results.csv")
    ran = tmp_path / "planted-code-ran"
    states = list(folder.rglob("experiment_state-*.json"))
    assert states  # Ray did write its state; it is only never read
    for state in states:
        state.write_bytes(state.read_bytes()[:300])
    for place in [folder, *{p.parent for p in folder.rglob("*") if p.is_file()}]:
        (place / "tuner.pkl").write_bytes(pickle.dumps(_Planted(ran)))
    (folder / "trials" / before["trial_id"].iloc[0] / "end.json").unlink()  # one trial cut short
    assert main(["--storage", str(tmp_path), "--name", "torn", "--resume"]) == 0
    assert "5 of 6 trials ended before; 1 to run" in capsys.readouterr().out
    assert not ran.exists()
    after = pd.read_csv(folder / "results.csv")
    assert after["trial_id"].nunique() == 6 and len(after) == 12 and set(after["status"]) == {"ok"}
    assert not after.duplicated(["trial_id", "epoch"]).any()
    keep = ["trial_id", "epoch", "val_recall@20", "test_ndcg@20"]
    pd.testing.assert_frame_equal(after[keep].sort_values(keep[:2]).reset_index(drop=True),
                                  before[keep].sort_values(keep[:2]).reset_index(drop=True))


def test_default_grace_period_waits_until_early_validation_predicts_the_ranking():
    """On the committed TikTok grid, from the first epoch after which the Spearman correlation of
    validation Recall@20 with each trial's best stays >= 0.6, ASHA may compare trials; not before."""
    from benchmarks.early_ranking import early_ranking
    from tune.experiment import DEFAULT_GRACE_PERIOD

    table = early_ranking(pd.read_csv(ROOT / "docs" / "results" / "tiktok-grid-e2e" / "results.csv"))
    low = table[table["spearman"] < 0.6]["epoch"]
    predictive_from = int(low.max()) + 1 if len(low) else 1
    assert 2 <= predictive_from <= DEFAULT_GRACE_PERIOD


# ---------------------------------------------------------------------------------- the experiment store
def test_trial_keys_name_cells_the_same_way_every_time():
    from tune.keys import KEY, KeyBook, digest, keyed

    cells = keyed([{"q": 1, "seed": 0}, {"seed": 0, "q": 1}, {"q": 2, "seed": 0}])
    assert cells[0][KEY] == digest({"q": 1, "seed": 0}) and len(cells[0][KEY]) == 10
    assert cells[1][KEY] == cells[0][KEY] + "-2"  # the same cell planned twice: two trials, two keys
    assert cells[2][KEY] != cells[0][KEY] and keyed([{"q": 2, "seed": 0}])[0][KEY] == cells[2][KEY]
    book = KeyBook(taken=[digest({"q": 1})], resumable={"abc": {"q": 3}})
    assert book.key({"q": 1}) == digest({"q": 1}) + "-2"  # taken by a trial that ended
    assert book.key({"q": 3}) == "abc"  # a resumed trial gets its old key back, once
    assert book.key({"q": 3}) == digest({"q": 3})


def test_random_search_draws_its_trials_from_its_seed():
    from kdiffe.paper import JOINT_RANGES
    from tune.spaces import sample_points

    params = ("M", "xi", "theta1", "t", "variant")
    first, again, other = (sample_points(params, 50, s) for s in (7, 7, 8))
    assert first == again and first != other
    for point in first:
        assert 30 <= point["M"] <= 150 and isinstance(point["M"], int) and 0 <= point["xi"] <= 1
        assert 1e-4 <= point["theta1"] <= 1 and point["t"] in JOINT_RANGES["t"][1]
    assert {p["M"] for p in first} != {first[0]["M"]}


def test_names_must_stay_inside_the_storage(tmp_path, capsys):
    from tune.search import main
    from tune.store import experiment_path

    storage = tmp_path / "store"
    for name in ("../../escaped", str(tmp_path / "abs"), "a/../../b", "x//y"):
        line = one_line_error(capsys, main, [*TINY, "--mode", "grid", "--params", "q", "--storage", str(storage), "--name", name])
        assert line.startswith("error: --name ") and name in line and "inside --storage" in line
    (storage / "link").parent.mkdir(parents=True, exist_ok=True)
    (storage / "link").symlink_to(tmp_path)
    assert "leads outside --storage" in one_line_error(capsys, main, [*TINY, "--mode", "grid", "--params", "q", "--storage",
                                                                     str(storage), "--name", "link/exp"])
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "abs").exists()
    assert experiment_path(storage.resolve(), "x/y") == storage.resolve() / "x" / "y"  # nested names stay allowed


@pytest.mark.parametrize("args,message", [
    (["--max-concurrent", "0"], "--max-concurrent: must be >= 1"),
    (["--seeds", "0-100000000"], "100,000,001 seeds; at most 10,000"),
    (["--seeds", "4294967296"], "at most 4294967295"),
    (["--set", "M=inf"], "M='inf': expected a finite int"), (["--set", "M=1e400"], "M='1e400': expected a finite int"),
    (["--set", "seed=99999999999"], "seed=99999999999: a seed must be in [0, 4294967295]"),
    (["--mode", "random", "--num-samples", "60000", "--seeds", "0-1"], "120,000 trials planned; at most 100,000"),
])
def test_impossible_run_options_are_one_line_errors(capsys, tmp_path, args, message):
    import time

    from tune.search import main

    began = time.monotonic()
    argv = [*TINY, "--mode", "grid", "--params", "q", *args, "--storage", str(tmp_path), "--name", "x"]
    assert message in one_line_error(capsys, main, argv)
    assert time.monotonic() - began < 20
    assert not (tmp_path / "x").exists()


def test_an_address_where_nothing_listens_fails_at_once(tmp_path):
    import time

    began = time.monotonic()
    run = script("tune/search.py", *TINY, "--mode", "grid", "--params", "q", "--address", "127.0.0.1:1",
                 "--storage", str(tmp_path), timeout=120)
    assert run.returncode == 2 and time.monotonic() - began < 60
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines == ["error: --address 127.0.0.1:1: no Ray cluster there (Connection refused)"], run.stderr


def test_one_driver_per_experiment(tmp_path, capsys):
    import socket

    from tune.lock import ExperimentLock
    from tune.search import main
    from tune.store import ExperimentError

    folder = tmp_path / "exp"
    with ExperimentLock(folder, "first"):
        with pytest.raises(ExperimentError, match=f"host {socket.gethostname()}, pid {os.getpid()}"):
            ExperimentLock(folder).acquire()
        line = one_line_error(capsys, main, [*TINY, "--mode", "grid", "--params", "q", "--storage", str(tmp_path), "--name", "exp"])
        assert f"exp is being run by another driver (host {socket.gethostname()}, pid {os.getpid()}" in line
    assert not folder.exists()  # a lock that held nothing else leaves no folder behind
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder.mkdir()
    (folder / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    said = []
    with ExperimentLock(folder, log=said.append) as lock:  # a dead driver's lock is taken over, and said so
        assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid() and lock.fd is not None
    assert len(said) == 1 and f"pid {int(dead.stdout)}" in said[0] and "gone" in said[0]
    assert (folder / ".lock").read_text() == ""
    (folder / ".lock").write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    with pytest.raises(ExperimentError, match="driver on another host .*host elsewhere, pid 1"):
        ExperimentLock(folder).acquire()


def test_a_full_disk_stops_the_driver_cleanly_and_resume_completes(ray_session, tmp_path, capsys, monkeypatch):
    import errno

    from tune import store
    from tune.search import main

    real = store.write_atomic

    def full(path, text):
        if path.name in ("results.csv", "best.json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(store, "write_atomic", full)
    argv = [*TINY, "--mode", "grid", "--params", "q", "--epochs", "2", "--storage", str(tmp_path), "--name", "full"]
    line = one_line_error(capsys, main, argv)
    assert "results.csv: No space left on device; nothing that finished is lost" in line and "--resume" in line
    folder = tmp_path / "full"
    record = json.loads((folder / "experiment.json").read_text())
    assert record["runs"][-1]["exit"] == 2 and not (folder / "results.csv").exists()
    monkeypatch.setattr(store, "write_atomic", real)
    assert main(["--storage", str(tmp_path), "--name", "full", "--resume"]) == 0
    frame = pd.read_csv(folder / "results.csv")
    assert frame["trial_id"].nunique() == 6 and len(frame) == 12 and set(frame["status"]) == {"ok"}
    assert "6 of 6 trials ended before; 0 to run" in capsys.readouterr().out


def test_optuna_resume_keeps_ended_trials_and_continues_cut_ones(ray_session, tmp_path, capsys):
    from tune.search import main

    argv = [*TINY, "--set", "patience=0", "--mode", "optuna", "--params", "tau,q", "--num-samples", "4",
            "--scheduler", "fifo", "--epochs", "3", "--retrain-seeds", "none", "--storage", str(tmp_path), "--name", "opt"]
    assert main(argv) == 0
    folder = tmp_path / "opt"
    before = pd.read_csv(folder / "results.csv")
    cut, gone = sorted(before["trial_id"].unique())[:2]
    (folder / "trials" / cut / "end.json").unlink()  # as if killed before its end was written
    shutil.rmtree(folder / "trials" / gone)  # as if killed before it began
    capsys.readouterr()
    assert main(["--storage", str(tmp_path), "--name", "opt", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "2 of 4 trials ended before; 2 to run (1 of them continue from their checkpoints, 1 new)" in out
    after = pd.read_csv(folder / "results.csv")
    last = [line for line in out.splitlines() if "trials done" in line][-1]  # the best of all runs, not of this one
    assert last.startswith("[") and f"best val_recall@20 {after['val_recall@20'].max():.4f}" in last
    assert after["trial_id"].nunique() == 4 and len(after) == 12 and set(after["status"]) == {"ok"}
    assert not after.duplicated(["trial_id", "epoch"]).any() and cut in set(after["trial_id"])
    keep = ["epoch", "tau", "q", "val_recall@20"]
    for trial in set(before["trial_id"]) - {gone}:  # ended trials kept, the cut one continued as itself
        pd.testing.assert_frame_equal(after[after["trial_id"] == trial][keep].reset_index(drop=True),
                                      before[before["trial_id"] == trial][keep].reset_index(drop=True))


def test_asha_on_resume_judges_new_trials_against_the_rungs_the_ended_trials_reached():
    from ray.tune.schedulers import TrialScheduler

    from tune.experiment import Work, _scheduler
    from tune.store import TrialRecord

    def record(key, outcome, values):
        rows = pd.DataFrame({"trial_id": key, "status": "ok", "epoch": range(1, len(values) + 1),
                             "val_recall@20": values})
        return TrialRecord(key=key, outcome=outcome, rows=rows)

    exp = SimpleNamespace(metric="val_recall@20", max_t=8, grace_period=2)
    ended = {k: record(k, "finished", [v, v]) for k, v in (("a", 0.1), ("b", 0.2), ("c", 0.3))}
    others = {"cut": record("cut", "partial", [0.9, 0.9]), "empty": TrialRecord(key="empty", outcome="finished")}
    for records, stopped in ((ended | others, ["low"]), (others, [])):  # without ended trials, no rung to judge by
        ledger = SimpleNamespace(stops=[])
        ledger.stop = lambda config, result, stops=ledger.stops: stops.append(config["k"])
        asha = _scheduler(exp, Work(records=records, left=2), ledger)
        asha.set_search_properties("val_recall@20", "max")
        actions = {}
        for key, value in (("low", 0.05), ("high", 0.35)):  # the rung at 2 evaluations has cutoff 0.2 (median)
            trial = SimpleNamespace(trial_id=key, config={"k": key})
            asha.on_trial_add(None, trial)
            actions[key] = [asha.on_trial_result(None, trial, {"training_iteration": i, "val_recall@20": value})
                            for i in (1, 2)]
        assert actions["high"] == [TrialScheduler.CONTINUE] * 2 and ledger.stops == stopped
        assert actions["low"][-1] == (TrialScheduler.STOP if stopped else TrialScheduler.CONTINUE)


def test_resume_says_which_cut_trials_start_over_for_want_of_a_checkpoint(tmp_path):
    """Committed records carry no checkpoint (.gitignore): a cut trial from them starts over, and
    the resume line says so instead of promising that it continues."""
    from tune.experiment import Work, resume_line
    from tune.store import TrialFiles, read_trials

    for key in ("ended", "kept", "bare"):
        files = TrialFiles(tmp_path, key)
        files.begin("node", {"trial_id": key}, {"seed": 0})
        if key == "ended":
            files.ended("finished", 3)
        if key == "kept":
            files.save_state(lambda folder: (folder.mkdir(), (folder / "trainer.pt").write_bytes(b"w")))
    records = read_trials(tmp_path)
    assert [records[k].checkpointed for k in ("ended", "kept", "bare")] == [False, True, False]
    assert resume_line("exp", 3, Work(records=records, left=2)) == (
        "exp: 1 of 3 trials ended before; 2 to run (1 of them continue from their checkpoints, "
        "1 start over (no checkpoint kept))")
    assert resume_line("exp", 5, Work(records=records, left=4)).endswith(  # two never began
        "(1 of them continue from their checkpoints, 1 start over (no checkpoint kept), 2 new)")
    shutil.rmtree(tmp_path / "trials" / "kept" / "state")
    assert resume_line("exp", 3, Work(records=read_trials(tmp_path), left=2)).endswith(
        "(0 of them continue from their checkpoints, 2 start over (no checkpoint kept))")


def test_resume_refuses_an_experiment_of_an_older_version(ray_session, tmp_path, capsys):
    """Trial folders named by Ray's ids, without trial.json, cannot be matched to the plan: refused,
    not run a second time."""
    from tune.search import main

    argv = [*TINY, "--mode", "grid", "--params", "q", "--epochs", "1", "--storage", str(tmp_path), "--name", "old"]
    assert main(argv) == 0
    trials = tmp_path / "old" / "trials"
    for n, folder in enumerate(sorted(trials.iterdir())):
        (folder / "trial.json").unlink()
        folder.rename(trials / f"kdiffe_trainable_0000{n}")
    line = one_line_error(capsys, main, ["--storage", str(tmp_path), "--name", "old", "--resume"])
    assert "was started by an older version" in line and "kdiffe_trainable_00000" in line


# ---------------------------------------------------------------------------------- other models
def test_another_models_search_uses_its_own_space_and_defaults():
    from tune.spaces import grid_points, parse_params

    assert parse_params(None, "lightgcn") == ("theta2", "lr")
    with pytest.raises(Exception, match="--params: unknown M for model lightgcn"):
        parse_params("M,theta2", "lightgcn")
    points = grid_points(("theta2",), {"model": "lightgcn"})
    # its batch L2's own grid (kdiffe.catalog.BATCH_L2_GRIDS); 1e-4: LightGCN's default point
    assert [p["theta2"] for p in points[1:]] == [1e-5, 1e-3, 1e-2, 0.1, 0.3, 1.0]


def test_a_model_with_its_own_ranges_is_searched_over_them():
    from tune.spaces import extreme_values, grid_points, parse_params, sample_points

    params = parse_params(None, "ncl")
    assert params == ("theta1", "proto_weight", "tau", "theta2", "lr")
    low, high = extreme_values(params, "ncl")
    # θ2: the batch L2's range, shared by the models that use it (kdiffe.catalog.BATCH_L2_RANGES)
    assert (low["theta1"], high["theta1"], low["tau"], low["theta2"], high["theta2"]) == (1e-9, 1e-5, 0.05, 1e-5, 1.0)
    assert extreme_values(("theta1",))[0]["theta1"] == 1e-4  # KDiffE's own range is untouched
    drawn = sample_points(params, 40, 3, "ncl")
    assert all(1e-9 <= p["theta1"] <= 1e-5 and 1e-9 <= p["proto_weight"] <= 1e-5 for p in drawn)
    assert [p["theta1"] for p in grid_points(("theta1",), {"model": "ncl"})[1:]] == [1e-8, 1e-6, 1e-5]  # 1e-7: default


def test_every_baselines_trials_cut_short_resume_bit_exactly_inside_ray(ray_session, tmp_path, capsys):
    """One experiment with every baseline, each with its own state across epochs: none (LightGCN),
    dropout views (SGL), the E-step (NCL, after one warm-up epoch, so the cut falls between two
    E-steps), the targets' dropout masks (BM3), the denoisers and rebuilt graphs (DiffMM); and
    KDiffE's LightGCN variant beside them."""
    from ablations.run import main
    from kdiffe.catalog import MODELS

    baselines = [m for m in MODELS if m != "kdiffe"]

    def ablation(name, epochs):
        argv = [*TINY, "--variants", "lightgcn", "--models", ",".join(baselines), "--seeds", "0", "--set",
                "warm_up=1", "--set", "clusters=6", "--set", "denoiser_hidden=32", "--epochs", str(epochs),
                "--storage", str(tmp_path),
                "--name", name]
        assert main(argv) == 0

    ablation("straight", 4)
    ablation("cut", 2)
    folder = tmp_path / "cut"
    record = json.loads((folder / "experiment.json").read_text())
    record["settings"]["epochs"] = 4  # as if cut after epoch 2 of 4
    (folder / "experiment.json").write_text(json.dumps(record))
    for trial in (folder / "trials").iterdir():
        (trial / "end.json").unlink()
    assert main(["--storage", str(tmp_path), "--name", "cut", "--resume"]) == 0
    keep = ["variant", "model", "epoch", "val_recall@20", "test_ndcg@20", "test_recall@20"]

    def rows(path):
        frame = pd.read_csv(path / "results.csv")[keep]
        return frame.sort_values(["variant", "model", "epoch"]).reset_index(drop=True)

    resumed, straight = rows(folder), rows(tmp_path / "straight")
    assert sorted(set(resumed["model"])) == sorted(baselines + ["kdiffe"])
    assert all(list(group["epoch"]) == [1, 2, 3, 4] for _, group in resumed.groupby(["variant", "model"]))
    pd.testing.assert_frame_equal(resumed, straight)


def test_reproduce_plans_every_baseline_with_kdiffes_budget_on_the_data_it_supports(datasets_dir, tmp_path, capsys):
    from kdiffe.catalog import MODELS
    from tune.reproduce import main

    assert main(["--datasets", "tiktok", "sports", "--parts", "baselines", "--data-dir", str(datasets_dir),
                 "--storage", str(tmp_path), "--dry-run"]) == 0
    plan = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if " trial-epochs " in line}
    for model in (m for m in MODELS if m != "kdiffe"):  # every registered baseline
        search = plan[f"tiktok-baseline-{model}-search"]
        assert f"--mode optuna --model {model} --num-samples 24 " in search and "--epochs 60" in search
        for part in (f"tiktok-baseline-{model}", f"tiktok-baseline-{model}-resplit-1-one"):
            assert f"--variants none --models {model} --seeds 0,1,2,3,4 " in plan[part]
            assert plan[part].endswith(f"the best settings of tiktok-baseline-{model}-search")
    assert "--set resplit=2 --set resplit_holdout=one " in plan["tiktok-baseline-sgl-resplit-2-one"]
    # Sports has no item features: the collaborative models only, at TikTok's best configuration, never re-split
    collaborative = sorted(f"sports-baseline-{m}" for m, e in MODELS.items() if m != "kdiffe" and not e.needs_features)
    assert sorted(n for n in plan if n.startswith("sports")) == collaborative
    assert {"sports-baseline-lightgcn", "sports-baseline-sgl", "sports-baseline-ncl"} <= set(collaborative)
    assert plan["sports-baseline-ncl"].endswith("the best settings of tiktok-baseline-ncl-search")
    assert main(["--parts", "baselines", "--baseline-models", "sgl,foo", "--storage", str(tmp_path)]) == 2
    baselines = ", ".join(m for m in MODELS if m != "kdiffe")
    assert f"error: --baseline-models sgl,foo: choose from {baselines}" in capsys.readouterr().err


def test_reproduce_baselines_search_then_rerun_the_best_beside_kdiffe_in_table_ii(ray_session, tmp_path, capsys):
    from tune.reproduce import main

    sets = [x for s in ("syn_users=120", "syn_items=60") for x in ("--set", s)]
    argv = ["--datasets", "synthetic", "--parts", "baselines", "--baseline-models", "sgl", "--search-datasets",
            "synthetic", "--search-trials", "2", "--ablation-seeds", "3-4", "--ablation-epochs", "1",
            "--baseline-epochs", "1", "--storage", str(tmp_path), *sets]
    assert main(argv) == 0
    best = json.loads((tmp_path / "synthetic-baseline-sgl-search" / "best.json").read_text())["best"]
    rerun = pd.read_csv(tmp_path / "synthetic-baseline-sgl" / "results.csv")
    assert set(rerun["seed"]) == {3, 4} and set(rerun["model"]) == {"sgl"} and set(rerun["variant"]) == {"sgl"}
    for key in ("theta1", "tau", "theta2", "lr"):  # SGL's own search space, carried to the re-run
        assert np.allclose(rerun[key].astype(float), float(best[key])), key
    table = (tmp_path / "figures" / "table_ii.md").read_text()
    assert "| synthetic | sgl | 2 |" in table  # the re-run is a Table II row, the search is not


def test_reproduce_gives_each_part_the_set_values_its_models_read(datasets_dir, tmp_path, capsys):
    from tune.reproduce import main

    argv = ["--datasets", "tiktok", "--parts", "grid,baselines", "--grid-params", "q", "--baseline-models",
            "sgl,lightgcn", "--data-dir", str(datasets_dir), "--storage", str(tmp_path), "--dry-run", "--set", "xi=0.5",
            "--set", "edge_drop=0.2", "--set", "batch_size=1024"]
    assert main(argv) == 0
    plan = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if " trial-epochs " in line}
    assert "tiktok-figure9-q" in plan and "tiktok-baseline-sgl-search" in plan
    for name, line in plan.items():
        given = {k for k in ("xi", "edge_drop") if f"--set {k}=" in line}
        assert given == ({"xi"} if "figure" in name else {"edge_drop"} if "-sgl" in name else set()), name
        assert "--set batch_size=1024" in line  # every model's
    assert main([*argv[:-6], "--set", "noise_eps=0.3"]) == 2  # no model of the plan reads it
    assert "error: --set noise_eps=...: none of the models of this run (kdiffe, sgl, lightgcn) uses noise_eps" in \
        capsys.readouterr().err


def test_reproduce_reruns_the_searched_datasets_best_on_another_dataset_alone(datasets_dir, tmp_path, capsys):
    """--datasets baby re-runs TikTok's stored search, as --datasets tiktok baby does; never the defaults."""
    from tune.reproduce import main

    argv = ["--datasets", "baby", "--parts", "baselines", "--baseline-models", "sgl", "--data-dir", str(datasets_dir),
            "--storage", str(tmp_path), "--dry-run"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: part baby-baseline-sgl re-runs the best configuration of tiktok-baseline-sgl-search, which is "
        f"neither in {tmp_path} nor in this plan: add tiktok to --datasets")
    search = tmp_path / "tiktok-baseline-sgl-search"
    search.mkdir()
    (search / "experiment.json").write_text(json.dumps({"script": "tune/search.py", "settings": {},
                                                         "runs": [{"exit": 0}]}))
    assert main(argv) == 0
    plan = [line for line in capsys.readouterr().out.splitlines() if " trial-epochs " in line]
    assert len(plan) == 1 and plan[0].startswith("baby-baseline-sgl ")
    assert plan[0].endswith("+ the best settings of tiktok-baseline-sgl-search")


def test_reproduce_refuses_a_set_value_that_a_part_searches(datasets_dir, tmp_path, capsys):
    """tune/search.py refuses to both fix and search a parameter; the plan says so before any part runs."""
    from tune.reproduce import main

    base = ["--datasets", "tiktok", "--data-dir", str(datasets_dir), "--storage", str(tmp_path), "--dry-run"]
    assert main([*base, "--parts", "grid", "--grid-params", "M,R", "--set", "M=2"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --set M=...: part tiktok-figure6-M-R searches M; drop the "
                                               "--set, or leave that part out (--parts, --grid-params)")
    assert main([*base, "--parts", "baselines", "--baseline-models", "sgl", "--set", "lr=0.002"]) == 2
    assert "part tiktok-baseline-sgl-search searches lr" in capsys.readouterr().err
    assert main([*base, "--parts", "grid", "--grid-params", "q", "--set", "M=2"]) == 0  # Figure 9 fixes M
