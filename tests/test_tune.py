"""Ray Tune layer on tiny synthetic data: grid coverage, optuna + ASHA, CSV schema, resume, errors."""

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


@pytest.fixture(scope="module")
def ray_session():
    import ray

    os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def script(path, *args, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / path), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_grid_points_are_one_factor_at_a_time():
    points = grid_points(parse_params("M,q"), {"M": 50, "q": 1})
    assert points[0] == {"sweep": "default"}
    assert [p["M"] for p in points if p["sweep"] == "M"] == [30, 80, 110, 130, 150]
    assert [p["q"] for p in points if p["sweep"] == "q"] == [2, 3, 4, 5, 6]
    assert all(len(p) == 2 for p in points[1:])
    assert len(grid_points(parse_params(None), {"M": 50, "R": 12, "xi": 0.7, "t": 10, "tau": 0.5, "theta1": 0.01,
                                                "q": 1})) == 1 + sum(len(g) - 1 for g in PAPER_GRIDS.values())


def test_grid_experiment_covers_exactly_the_grid(ray_session, tmp_path, capsys):
    from tune.search import main

    assert main([*TINY, "--mode", "grid", "--params", "q", "--epochs", "1", "--storage", str(tmp_path),
                 "--name", "grid"]) == 0
    frame = pd.read_csv(tmp_path / "grid" / "results.csv")
    assert list(frame.columns) == list(COLUMNS)
    trials = frame.drop_duplicates("trial_id")
    assert sorted(zip(trials["sweep"], trials["q"])) == [("default", 1)] + [("q", q) for q in range(2, 7)]
    assert set(frame["kind"]) == {"grid"} and set(frame["status"]) == {"ok"}
    assert (tmp_path / "grid" / "best.json").exists()
    assert "best (by val_recall@20)" in capsys.readouterr().out


def test_optuna_with_asha_stops_some_trials_early(ray_session, tmp_path):
    from tune.search import main

    assert main([*TINY, "--mode", "optuna", "--params", "xi,q", "--num-samples", "6", "--epochs", "4",
                 "--max-concurrent", "2", "--set", "variant=no_cl", "--storage", str(tmp_path), "--name", "opt"]) == 0
    frame = pd.read_csv(tmp_path / "opt" / "results.csv")
    epochs = frame.groupby("trial_id")["epoch"].max()
    assert len(epochs) == 6 and set(frame["kind"]) == {"search"}
    assert (epochs < 4).any() and (epochs == 4).any()
    assert frame.drop_duplicates("trial_id")["xi"].nunique() == 6


def test_ablation_suite_writes_table_iii(ray_session, tmp_path, capsys):
    from ablations.run import main

    assert main([*TINY, "--seeds", "2", "--epochs", "1", "--storage", str(tmp_path), "--name", "abl"]) == 0
    table = pd.read_csv(tmp_path / "abl" / "table_iii.csv")
    assert list(table["variant"]) == ["kdiffe", "no_s", "unguided", "no_cl", "lightgcn"]
    assert (table["seeds"] == 2).all()
    md = (tmp_path / "abl" / "table_iii.md").read_text()
    assert "± " in md and "lightgcn" in md
    frame = pd.read_csv(tmp_path / "abl" / "results.csv")
    assert frame["trial_id"].nunique() == 10 and set(frame["kind"]) == {"ablation"}


def test_killed_experiment_resumes_without_repeating_trials(tmp_path):
    args = [*TINY, "--mode", "grid", "--params", "q", "--epochs", "2", "--max-concurrent", "1",
            "--storage", str(tmp_path), "--name", "killme"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "tune" / "search.py"), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    csv = tmp_path / "killme" / "results.csv"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if csv.exists():
                done = pd.read_csv(csv).query("epoch == 2")["trial_id"].nunique()
                if done >= 2:
                    break
            if proc.poll() is not None:
                pytest.fail("the experiment ended before it could be killed")
            time.sleep(0.5)
        else:
            pytest.fail("no trial finished in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = pd.read_csv(csv)
    finished_before = set(before.query("epoch == 2")["trial_id"])
    assert before["trial_id"].nunique() < 6
    resumed = script("tune/search.py", *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = pd.read_csv(csv)
    assert after["trial_id"].nunique() == 6
    assert not after.duplicated(["trial_id", "epoch"]).any()
    assert set(after.query("epoch == 2")["trial_id"]) >= finished_before
    assert sorted(after.drop_duplicates("trial_id")["q"]) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("path,args,needle", [
    ("tune/search.py", ["--set", "M=-1"], "M=-1"),
    ("tune/search.py", ["--set", "bogus=3"], "unknown parameter 'bogus'"),
    ("tune/search.py", ["--params", "M,zeta"], "--params: unknown zeta"),
    ("tune/search.py", ["--mode", "grid", "--params", "q", "--set", "concepts=3"], "q=4: larger than the 3 concept"),
    ("tune/search.py", ["--metric", "test_recall@20"], "choose a validation metric"),
    ("ablations/run.py", ["--set", "tau=0"], "tau=0.0"),
])
def test_invalid_arguments_fail_fast(tmp_path, path, args, needle):
    start = time.time()
    proc = script(path, *TINY, *args, "--storage", str(tmp_path))
    assert proc.returncode == 2, proc.stderr[-1000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert time.time() - start < 60
    assert not any(tmp_path.iterdir())


def test_unknown_dataset_fails_fast(tmp_path):
    proc = script("tune/search.py", "--dataset", "atlantis", "--data-dir", str(tmp_path))
    assert proc.returncode == 2 and "unknown dataset 'atlantis'" in proc.stderr


def test_failing_trials_are_recorded_and_do_not_stop_the_experiment(ray_session, tmp_path, capsys):
    from tune.search import main

    # validation passes (the config is well-formed); every trial then fails inside Ray: no CUDA here
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    assert main([*TINY, "--mode", "random", "--params", "xi", "--num-samples", "2", "--scheduler", "fifo",
                 "--epochs", "1", "--set", "device=cuda:7", "--storage", str(tmp_path), "--name", "fails"]) == 0
    frame = pd.read_csv(tmp_path / "fails" / "results.csv")
    assert len(frame) == 2 and set(frame["status"]) == {"error"}
    assert frame["error"].str.contains("no CUDA device").all()
    assert "no successful trial" in capsys.readouterr().out


def test_scalability_points_and_users_sweep(ray_session, tmp_path):
    from tune.scalability import main, points

    grid = points(["tiktok", "sports"], "sports", 35598, None)
    assert [p["t"] for p in grid if p["sweep"] == "t" and p["dataset"] == "sports"] == [2, 5, 10, 20, 50, 80]
    assert [p["max_users"] for p in grid if p["sweep"] == "users"] == [5000, 10000, 20000, 30000, 0]
    assert main([*TINY, "--users-dataset", "synthetic", "--only", "users", "--user-counts", "50,0",
                 "--epochs", "1", "--storage", str(tmp_path), "--name", "scal"]) == 0
    frame = pd.read_csv(tmp_path / "scal" / "results.csv")
    assert set(frame["kind"]) == {"scalability"} and set(frame["sweep"]) == {"users"}
    assert sorted(frame["n_users"]) == [50, 120] and (frame["seconds_per_epoch"] > 0).all()
