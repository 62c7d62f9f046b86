"""Crash-proofing of the Ray runner, each test bounded in time and on loopback only:

- the driver killed mid-experiment, then ``--resume`` with nothing but ``--name``: every trial
  once, finished trials untouched, the stored options (data folder included) reused;
- a trial's worker process killed mid-trial: Ray restarts the trial, which continues from its own
  last checkpoint, with no evaluation lost or repeated and the same numbers as an uninterrupted run;
- two Ray nodes on this machine (a head and a worker joined to it, token authentication required):
  a search with ``--address`` runs trials on both, resumes by name alone, a wrong token is named
  as such, and both nodes stop at the end;
- Ctrl-C and SIGTERM (to the driver, or to its whole process group, Ray's processes included)
  while every trial runs: exit 130 with the resume command, no cut trial counted as finished;
- two drivers started at once on one experiment: one runs, the other is refused naming it;
- a full disk (a small tmpfs, when this runs as root): one-line error, then resume completes.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT
from test_tune import TINY, script

SMALL = ["--set", "M=5", "--set", "R=2", "--set", "concepts=6", "--set", "denoiser_hidden=32"]


def write_dataset(folder: Path) -> None:
    """A small dataset in the authors' format (pickled coo matrices, features) from the synthetic generator."""
    from kdiffe.data import make_synthetic

    ds = make_synthetic(n_users=120, n_items=60, seed=3)
    folder.mkdir(parents=True)
    for name, matrix in (("trnMat", ds.train), ("valMat", ds.val), ("tstMat", ds.test)):
        with open(folder / f"{name}.pkl", "wb") as fh:
            pickle.dump(matrix.tocoo(), fh)
    import numpy as np

    for modality, feats in ds.features.items():
        np.save(folder / f"{modality}_feat.npy", feats)


def rows_of(experiment: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for rows in sorted((experiment / "trials").glob("*/rows.csv")):
        try:
            out[rows.parent.name] = pd.read_csv(rows)
        except (pd.errors.EmptyDataError, OSError):
            pass
    return out


def wait_for(condition, proc: subprocess.Popen, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"the process ended before {what}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "tune" / "search.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def test_killed_driver_resumes_with_only_its_name(tmp_path):
    data = tmp_path / "data"
    write_dataset(data / "tiny")
    env = {k: v for k, v in os.environ.items() if k != "KDIFFE_DATA_DIR"}
    args = ["--dataset", "tiny", "--data-dir", str(data), *SMALL, "--mode", "grid", "--params", "q", "--epochs", "2",
            "--max-concurrent", "1", "--storage", str(tmp_path / "runs"), "--name", "killme"]
    proc = start(args, env)
    experiment = tmp_path / "runs" / "killme"
    finished_two = lambda: sum(len(r) == 2 for r in rows_of(experiment).values()) >= 2  # noqa: E731
    try:
        wait_for(finished_two, proc, 180, "two trials finished")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = rows_of(experiment)
    assert 2 <= len(before) < 6
    finished = {trial: rows for trial, rows in before.items() if len(rows) == 2}
    for state in experiment.rglob("experiment_state-*.json"):  # Ray's state, torn: resume never reads it
        state.write_bytes(state.read_bytes()[:3000 if state.stat().st_size > 3000 else 10])
    resumed = script("tune/search.py", "--storage", str(tmp_path / "runs"), "--name", "killme", "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:] + resumed.stdout[-3000:]
    after = pd.read_csv(experiment / "results.csv")
    assert after["trial_id"].nunique() == 6 and len(after) == 12, after[["trial_id", "epoch", "status"]].to_string()
    assert not after.duplicated(["trial_id", "epoch"]).any() and set(after["status"]) == {"ok"}
    assert sorted(after.drop_duplicates("trial_id")["q"]) == [1, 2, 3, 4, 5, 6]
    assert set(after["dataset"]) == {"tiny"}
    keep = ["trial_id", "epoch", "wall_time", "val_recall@20", "test_ndcg@20"]
    for trial, rows in finished.items():  # trials finished before the kill were kept, not run again
        mine = after[after["trial_id"] == trial][keep[1:]].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, rows[keep[1:]].reset_index(drop=True))
    record = json.loads((experiment / "experiment.json").read_text())
    assert [run["exit"] for run in record["runs"]] == [None, 0]  # the killed run never ended
    assert record["settings"]["data_dir"] == str(data)


def test_killed_worker_restarts_the_trial_from_its_checkpoint(tmp_path):
    import kdiffe
    from kdiffe.config import from_dict

    epochs = 40
    args = [*TINY, "--set", "syn_users=300", "--set", "patience=0", "--set", "xi=0.5", "--set", "variant=no_cl",
            "--mode", "random", "--params", "tau", "--num-samples", "1", "--scheduler", "fifo", "--epochs",
            str(epochs), "--max-failures", "1", "--cpus-per-trial", "1", "--retrain-seeds", "none", "--storage", str(tmp_path),
            "--name", "crash"]
    proc = start(args)
    experiment = tmp_path / "crash"
    try:
        wait_for(lambda: any(len(r) >= 3 for r in rows_of(experiment).values()), proc, 180, "three evaluations")
        (trial,) = rows_of(experiment)
        worker = json.loads((experiment / "trials" / trial / "worker.json").read_text())
        os.kill(worker["pid"], signal.SIGKILL)
        assert proc.wait(timeout=240) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    again = json.loads((experiment / "trials" / trial / "worker.json").read_text())
    assert again["pid"] != worker["pid"]  # a new worker ran the rest
    frame = pd.read_csv(experiment / "results.csv")
    assert list(frame["epoch"]) == list(range(1, epochs + 1)) and set(frame["status"]) == {"ok"}
    tau = float(frame["tau"].iloc[0])
    values = {"dataset": "synthetic", "syn_users": 300, "syn_items": 60, "M": 5, "R": 2, "concepts": 6,
              "denoiser_hidden": 32, "patience": 0, "xi": 0.5, "variant": "no_cl", "epochs": epochs, "tau": tau,
              "seed": 2024, "metric": "recall@20"}
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the trial's threads: the same arithmetic as in the worker
    try:
        reference = kdiffe.train(from_dict(values), log=lambda message: None)["history"]
    finally:
        torch.set_num_threads(threads)
    expected = pd.DataFrame(reference)["val_recall@20"].to_numpy()
    assert frame["val_recall@20"].to_numpy() == pytest.approx(expected, abs=1e-12)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_offers(ray: str, port: int, cpus: int, env: dict) -> bool:
    """Whether ``ray status`` shows the cluster at ``port`` with ``cpus`` CPUs in all (nodes take
    from seconds to a minute to join, depending on the machine's load)."""
    try:
        status = subprocess.run([ray, "status", "--address", f"127.0.0.1:{port}"], env=env, capture_output=True,
                                text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return f"/{cpus}.0 CPU" in status.stdout


def stop_nodes(nodes: list[subprocess.Popen]) -> None:
    """SIGTERM each Ray node (`ray start --block`), the head last; a node still up after 60 s is
    killed and fails the test (never `ray stop`, which would end every Ray on the machine)."""
    for node in reversed(nodes):
        node.terminate()
    for node in nodes:
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
            pytest.fail("a Ray node did not stop on SIGTERM")


def test_search_on_a_two_node_cluster_uses_both_nodes(tmp_path):
    port = free_port()
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}, "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_TOKEN_PATH": str(token)}  # the client is told where the token is, not the mode
    node_env = {**env, "RAY_AUTH_MODE": "token"}  # the cluster requires the token
    ray = str(Path(sys.executable).with_name("ray"))
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--block", "--disable-usage-stats"]
    head = subprocess.Popen([ray, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common],
                            env=node_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    nodes = [head]
    try:
        wait_for(lambda: cluster_offers(ray, port, 1, node_env), head, 120, "the head node")
        worker = subprocess.Popen([ray, "start", "--address", f"127.0.0.1:{port}", *common], env=node_env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        nodes.append(worker)
        wait_for(lambda: cluster_offers(ray, port, 2, node_env), worker, 120, "the worker node to join")
        run = script("tune/search.py", *TINY, "--mode", "grid", "--params", "q", "--epochs", "10",
                     "--address", f"127.0.0.1:{port}", "--cpus-per-trial", "1", "--max-concurrent", "2",
                     "--storage", str(tmp_path), "--name", "cluster", timeout=300, env=env)
        assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-2000:]
        assert "2 trials at a time, 1 CPU each (Ray sees 2 CPUs" in run.stdout
        frame = pd.read_csv(tmp_path / "cluster" / "results.csv")
        assert frame["trial_id"].nunique() == 6 and set(frame["status"]) == {"ok"}
        used = {json.loads(p.read_text())["node"] for p in (tmp_path / "cluster" / "trials").glob("*/worker.json")}
        assert len(used) == 2, used
        again = script("tune/search.py", "--storage", str(tmp_path), "--name", "cluster", "--resume", timeout=300,
                       env=env)  # the stored --address, and token mode switched on before Ray is imported
        assert again.returncode == 0 and "6 of 6 trials ended before" in again.stdout, again.stderr[-3000:]
        wrong = tmp_path / "wrong_token"
        wrong.write_text(secrets.token_hex(32))
        began = time.time()
        refused = script("tune/search.py", *TINY, "--mode", "grid", "--params", "q", "--address", f"127.0.0.1:{port}", "--storage", str(tmp_path),
                         "--name", "refused", timeout=120, env={**env, "RAY_AUTH_TOKEN_PATH": str(wrong)})
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert refused.returncode == 2 and time.time() - began < 30, refused.stderr[-3000:]
        assert len(lines) == 1 and "refused this client's authentication token" in lines[0], lines
    finally:
        stop_nodes(nodes)
    assert all(node.returncode is not None for node in nodes)
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))  # the head's GCS is gone


@pytest.mark.parametrize("how", ["SIGINT to the group", "SIGTERM to the driver", "SIGTERM to the group"])
def test_a_stop_while_every_trial_runs_is_an_interruption(tmp_path, how):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) or SIGTERM (``kill``, a
    scheduler, systemd) while every planned trial runs: exit 130 with the resume command, the cut
    trials marked partial and never counted, and the printed command finishes the experiment."""
    args = [*TINY, "--set", "patience=0", "--mode", "random", "--params", "tau", "--num-samples", "2",
            "--scheduler", "fifo", "--epochs", "60", "--max-concurrent", "2", "--retrain-seeds", "none",
            "--storage", str(tmp_path), "--name", "stopme"]
    env = {**os.environ, "KDIFFE_STOP_GRACE_S": "5"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "tune" / "search.py"), *args], cwd=ROOT, text=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    experiment = tmp_path / "stopme"
    try:
        wait_for(lambda: len(rows_of(experiment)) == 2 and all(len(r) >= 2 for r in rows_of(experiment).values()),
                 proc, 180, "both trials running")
        signum = signal.SIGINT if how.startswith("SIGINT") else signal.SIGTERM
        os.killpg(proc.pid, signum) if how.endswith("group") else os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "SIGTERM received" not in err, err[-3000:]
    hint = [line for line in out.splitlines() if line.startswith("interrupted: continue with ")]
    assert len(hint) == 1, out
    assert "2 trials, 0 failed, 2 cut short" in out and "2/2 trials done" not in out, out
    frame = pd.read_csv(experiment / "results.csv")
    assert set(frame["status"]) == {"partial"} and frame["trial_id"].nunique() == 2
    best = json.loads((experiment / "best.json").read_text())
    assert best["best"] is None and best["partial_trials"] == 2
    assert json.loads((experiment / "experiment.json").read_text())["runs"][-1]["exit"] == 130
    if how != "SIGINT to the group":
        return
    command = hint[0].removeprefix("interrupted: continue with ").split()
    assert command[:2] == ["python", "tune/search.py"]
    resumed = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    frame = pd.read_csv(experiment / "results.csv")
    assert frame["trial_id"].nunique() == 2 and len(frame) == 2 * 60 and set(frame["status"]) == {"ok"}
    assert not frame.duplicated(["trial_id", "epoch"]).any()


def test_two_drivers_started_at_once_run_the_experiment_once(tmp_path):
    args = [*TINY, "--mode", "grid", "--params", "q", "--epochs", "2", "--storage", str(tmp_path), "--name", "twice"]
    runs = [subprocess.Popen([sys.executable, str(ROOT / "tune" / "search.py"), *args], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True) for _ in range(2)]
    try:
        outs = [run.communicate(timeout=300) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 2], [err[-2000:] for _, err in outs]
    refused = [err for run, (_, err) in zip(runs, outs) if run.returncode == 2][0]
    winner = [run for run in runs if run.returncode == 0][0]
    lines = [line for line in refused.splitlines() if line.strip()]
    assert len(lines) == 1 and "twice is being run by another driver" in lines[0], refused
    assert f"host {socket.gethostname()}, pid {winner.pid}" in lines[0]
    frame = pd.read_csv(tmp_path / "twice" / "results.csv")
    assert frame["trial_id"].nunique() == 6 and len(frame) == 12
    assert len(json.loads((tmp_path / "twice" / "experiment.json").read_text())["runs"]) == 1


def _small_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_full_disk_fails_cleanly_and_resume_completes_every_epoch_once(tmp_path):
    """A real full disk (a 4 MB tmpfs, nearly filled): trials that cannot write fail (saying the
    disk is full), the driver ends with its summary or one error line, never a traceback of its
    own, and experiment.json stays whole; once space is back, --resume gives every (trial, epoch)
    exactly once. tests/test_tune.py's patched write covers the driver's own writes failing."""
    disk = tmp_path / "disk"
    # 1.3 MB free at first; every trial's folder holds about 420 KB once run (its checkpoint keeps
    # the best evaluation's embeddings too), so the six need about 2.6 MB once the ballast goes
    if not _small_tmpfs(disk, "4m"):
        pytest.skip("needs root to mount a small tmpfs (test_tune.py covers a patched full disk)")
    try:
        ballast = disk / "ballast"
        ballast.write_bytes(b"\0" * (2700 * 1024))
        args = [*TINY, "--mode", "grid", "--params", "q", "--epochs", "3", "--max-failures", "0",
                "--storage", str(disk), "--name", "full"]
        run = script("tune/search.py", *args)
        ours = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
        if run.returncode == 2:  # the driver's own writes hit the full disk
            assert len(ours) == 1 and "No space left on device" in ours[0] and "--resume" in ours[0], run.stderr
        else:  # only trials did: they failed, the driver summed up
            assert run.returncode in (0, 1) and not ours, run.stdout[-2000:] + run.stderr[-3000:]
            assert "failed" in run.stdout and "No space left on device" in run.stdout, run.stdout[-3000:]
        record = json.loads((disk / "full" / "experiment.json").read_text())  # whole, not torn
        assert record["runs"][-1]["command"][0] == "tune/search.py"
        ballast.unlink()
        resumed = script("tune/search.py", "--storage", str(disk), "--name", "full", "--resume")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        frame = pd.read_csv(disk / "full" / "results.csv")
        assert frame["trial_id"].nunique() == 6 and len(frame) == 18 and set(frame["status"]) == {"ok"}
        assert not frame.duplicated(["trial_id", "epoch"]).any()
        assert not list(disk.rglob("state.new")) and not list(disk.rglob("*.tmp"))
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
