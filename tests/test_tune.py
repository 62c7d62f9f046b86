"""Ray Tune layer on tiny synthetic data: grid coverage, optuna + ASHA, CSV schema, failed trials,
scalability, a killed experiment resumed, and one-line errors for bad input.

One local Ray (2 CPUs, no dashboard) is shared by every in-process test (``ray_session``);
the resume test runs tune/search.py as a script in its own process, as a user would.
"""

import json
import os
import signal
import subprocess
import sys
import time

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

    from tune.experiment import RAY_ENV

    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    if started:
        ray.shutdown()


def script(path, *args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / path), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(capsys, main, argv):
    """Run ``main(argv)``: it must exit 2 with exactly one stderr line starting with 'error: '."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
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


@pytest.mark.parametrize("args,needle", [
    (["--set", "M=-1"], "M=-1"),
    (["--set", "bogus=3"], "unknown parameter 'bogus'"),
    (["--set", "q"], "expected key=value"),
    (["--params", "M,zeta"], "--params: unknown zeta"),
    (["--mode", "grid", "--params", "q", "--set", "concepts=3"], "q=4: larger than the 3 concept"),
    (["--mode", "optuna", "--params", "q", "--set", "concepts=3"], "q=6: larger than the 3 concept"),
    (["--metric", "test_recall@20"], "choose a validation metric"),
    (["--mode", "bayes"], "invalid choice: 'bayes'"),
    (["--epochs", "-3"], "must be >= 0"),
    (["--epochs", "0"], "epochs=0"),
    (["--seeds", "a,b"], "comma-separated integers"),
    (["--mode", "optuna", "--seeds", "1,2"], "takes one seed"),
    (["--cpus-per-trial", "64"], "--cpus-per-trial 64: this machine has"),
    (["--gpus-per-trial", "64"], "--gpus-per-trial 64: this machine has"),
])
def test_invalid_search_arguments_fail_with_one_line(ray_session, tmp_path, capsys, args, needle):
    from tune.search import main

    line = one_line_error(capsys, main, [*TINY, *args, "--storage", str(tmp_path)])
    assert needle in line
    assert not any(p.suffix == ".csv" for p in tmp_path.rglob("*"))


def test_resume_of_nothing_and_existing_name_fail(ray_session, tmp_path, capsys):
    from tune.search import main

    assert "--resume: no experiment" in one_line_error(
        capsys, main, [*TINY, "--storage", str(tmp_path), "--name", "none", "--resume"])
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "results.csv").write_text("x\n")
    assert "continue it with --resume" in one_line_error(
        capsys, main, [*TINY, "--storage", str(tmp_path), "--name", "taken"])


def test_scripts_run_from_the_repo_root_and_reject_unknown_datasets(tmp_path):
    proc = script("tune/search.py", "--dataset", "atlantis", "--data-dir", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: unknown dataset 'atlantis'")
    proc = script("tune/scalability.py", "--dataset", "atlantis", "--data-dir", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown dataset 'atlantis'"), proc.stderr


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
    assert set(frame["dataset"]) == {"synthetic"} and set(frame["variant"]) == {"kdiffe"}
    assert set(frame["seed"]) == {2024} and (frame["M"] == 5).all() and (frame["n_users"] == 120).all()
    assert frame["seconds_per_epoch"].gt(0).all() and frame["wall_time"].gt(0).all()
    best = json.loads((tmp_path / "grid" / "best.json").read_text())
    assert best["best"]["val_recall@20"] == frame["val_recall@20"].max() and best["trials"] == 6
    out = capsys.readouterr().out
    assert "best by val_recall@20" in out and "test       recall@20" in out


def test_optuna_with_asha_stops_some_trials_early(ray_session, tmp_path):
    from tune.search import main

    assert main([*TINY, "--mode", "optuna", "--params", "xi,q", "--num-samples", "6", "--epochs", "4",
                 "--max-concurrent", "2", "--set", "variant=no_cl", "--storage", str(tmp_path), "--name", "opt"]) == 0
    frame = pd.read_csv(tmp_path / "opt" / "results.csv")
    epochs = frame.groupby("trial_id")["epoch"].max()
    assert len(epochs) == 6 and set(frame["kind"]) == {"search"}
    assert (epochs < 4).any() and (epochs == 4).any()  # ASHA stopped some, others ran to the end
    trials = frame.drop_duplicates("trial_id")
    assert trials["xi"].nunique() == 6 and trials["xi"].between(0, 1).all() and trials["q"].between(1, 6).all()


def test_failed_trials_are_recorded_and_do_not_stop_the_experiment(ray_session, tmp_path, capsys):
    import torch

    from tune.search import main

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    code = main([*TINY, "--mode", "random", "--params", "xi", "--num-samples", "2", "--scheduler", "fifo",
                 "--epochs", "1", "--set", "device=cuda:7", "--storage", str(tmp_path), "--name", "bad"])
    assert code == 1
    frame = pd.read_csv(tmp_path / "bad" / "results.csv")
    assert len(frame) == 2 and frame["trial_id"].nunique() == 2 and set(frame["status"]) == {"error"}
    assert frame["error"].str.contains("cuda").all()
    out = capsys.readouterr().out
    assert "2 trials, 2 failed" in out and "no successful trial" in out
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


def test_killed_experiment_resumes_without_repeating_trials(tmp_path):
    args = [*TINY, "--mode", "grid", "--params", "q", "--epochs", "2", "--max-concurrent", "1",
            "--storage", str(tmp_path), "--name", "killme"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "tune" / "search.py"), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    csv = tmp_path / "killme" / "results.csv"
    deadline = time.time() + 180
    try:
        while time.time() < deadline:
            if csv.exists() and pd.read_csv(csv).query("epoch == 2")["trial_id"].nunique() >= 2:
                break
            if proc.poll() is not None:
                pytest.fail("the experiment ended before it could be killed")
            time.sleep(0.3)
        else:
            pytest.fail("no trial finished in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = pd.read_csv(csv)
    finished = before[before["trial_id"].isin(before.query("epoch == 2")["trial_id"])]
    assert before["trial_id"].nunique() < 6
    resumed = script("tune/search.py", *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = pd.read_csv(csv)
    assert after["trial_id"].nunique() == 6 and len(after) == 12, after[["trial_id", "epoch", "status", "error"]].to_string()  # 6 trials x 2 evaluations
    assert not after.duplicated(["trial_id", "epoch"]).any()
    assert sorted(after.drop_duplicates("trial_id")["q"]) == [1, 2, 3, 4, 5, 6]
    # trials finished before the kill were kept, not run again
    keep = ["trial_id", "epoch", "wall_time", "val_recall@20"]
    kept = after[after["trial_id"].isin(finished["trial_id"])][keep].sort_values(keep[:2]).reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, finished[keep].sort_values(keep[:2]).reset_index(drop=True))


def test_resuming_an_older_csv_adds_its_missing_columns_without_shifting_rows(tmp_path):
    from tune.experiment import results_callback, tidy_frame
    path = tmp_path / "results.csv"
    old = [c for c in COLUMNS if c != "l2"]  # a CSV started before the l2 column existed
    first = {c: f"v-{c}" for c in old} | {"trial_id": "t1", "status": "ok", "epoch": "1"}
    pd.DataFrame([first], columns=old).to_csv(path, index=False)
    tidy_frame(path).to_csv(path, index=False)  # what run() does before resuming
    row = {c: f"v-{c}" for c in COLUMNS} | {"trial_id": "t2", "status": "ok", "epoch": "1"}
    results_callback("exp", "search", path)._append(row)
    frame = pd.read_csv(path, dtype=str)
    assert list(frame.columns) == list(COLUMNS)
    assert all(frame.loc[0, c] == first[c] for c in old) and pd.isna(frame.loc[0, "l2"])
    assert all(frame.loc[1, c] == row[c] for c in COLUMNS)
