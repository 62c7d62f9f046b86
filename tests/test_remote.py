"""Experiments stored at a URI (tune/remote.py) and data that travels with the trials (tune/shipped.py),
against a real S3-compatible server on 127.0.0.1 (moto's standalone server, started here):

- the commit marker of a trial's checkpoint: a checkpoint cut off before its marker is never read,
  and the next one clears it (no Ray);
- credentials in the URI and a bucket that does not exist: one line, exit 2;
- a grid search with --storage s3://..., nothing written to a local folder named after the URI,
  S built once and shared through the experiment's cache, figures drawn from the URI;
- the driver SIGKILLed mid-experiment, then --resume from the URI alone: every (trial, epoch) once;
- a two-node loopback Ray cluster whose nodes never see the data folder (it is removed once the
  driver has shipped it): trials run on both nodes on the data that travelled.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT
from test_reliability import SMALL, cluster_offers, free_port, stop_nodes, wait_for, write_dataset
from test_tune import TINY, script

pytest.importorskip("moto")
pafs = pytest.importorskip("pyarrow.fs")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free loopback port; yields the environment that reaches it."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("the moto server did not start")
            time.sleep(0.1)
    home = tmp_path_factory.mktemp("s3home")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_DEFAULT_REGION": "us-east-1",
           "KDIFFE_MIRROR_DIR": str(home / "mirror"), "KDIFFE_STAGING_DIR": str(home / "staging")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fs, _ = pafs.FileSystem.from_uri("s3://bkt?allow_bucket_creation=true")
    fs.create_dir("bkt")
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def stored(uri: str) -> dict[str, int]:
    """Every object under ``uri``: path relative to it -> size."""
    fs, root = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {i.path[len(root) + 1:]: i.size for i in infos if i.type == pafs.FileType.File}


def read_bytes(uri: str) -> bytes:
    fs, path = pafs.FileSystem.from_uri(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def read_csv(uri: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(read_bytes(uri)))


def test_a_checkpoint_cut_off_before_its_marker_is_never_read(s3, tmp_path):
    from kdiffe.storage import Remote
    from tune.remote import STATE_MARKER, RemoteTrialFiles

    uri = "s3://bkt/unit/exp"
    files = RemoteTrialFiles(uri, "t1")
    files.begin("node", {"trial_id": "t1"}, {"q": 1})

    def save(text):
        def write(folder):
            folder.mkdir(parents=True)
            (folder / "trainer.pt").write_text(text)
        return write

    files.save_state(save("first"))
    trial = Remote(uri).child("trials/t1")
    trial.put("state-7/trainer.pt", b"torn")  # a later checkpoint killed before its marker
    again = RemoteTrialFiles(uri, "t1")
    again.begin("node", {"trial_id": "t1"}, {"q": 1})
    assert (again.state_folder() / "trainer.pt").read_text() == "first"
    again.save_state(save("second"))
    assert json.loads(trial.get(STATE_MARKER))["folder"] == "state-8"
    assert [n for n in trial.children() if n.startswith("state-")] == ["state-8"]  # old and torn ones gone
    third = RemoteTrialFiles(uri, "t1")
    third.begin("node", {"trial_id": "t1"}, {"q": 1})
    assert (third.state_folder() / "trainer.pt").read_text() == "second"
    assert set(stored(uri + "/trials/t1")) == {"state-8/trainer.pt", STATE_MARKER, "trial.json", "row.json",
                                               "worker.json"}
    third.close()
    assert not third.staging.exists()


def test_credentials_in_the_uri_and_a_missing_bucket_are_one_line(s3, tmp_path):
    for storage, words in (("s3://key:secret@bkt/exp", "credentials do not belong in the URI"),
                           ("s3://no-such-bucket/exp", "cannot write there")):
        run = script("tune/search.py", *TINY, "--mode", "grid", "--params", "q", "--storage", storage, env=s3,
                     timeout=120)
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert run.returncode == 2 and len(lines) == 1 and words in lines[0], run.stderr[-2000:]
        assert "secret" not in run.stderr
    assert not list(ROOT.glob("s3:*"))


def test_a_grid_search_on_s3_resumes_from_the_uri_and_draws_figures(s3, tmp_path):
    uri = "s3://bkt/grid"
    args = [*TINY, "--mode", "grid", "--params", "q", "--epochs", "3", "--max-concurrent", "1",
            "--cpus-per-trial", "1", "--storage", uri, "--name", "killme"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "tune" / "search.py"), *args], cwd=ROOT, env=s3,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    finished = lambda: sum(n.endswith("/end.json") for n in stored(uri + "/killme")) >= 2  # noqa: E731
    try:
        wait_for(finished, proc, 240, "two trials finished in the store")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    resumed = script("tune/search.py", "--storage", uri, "--name", "killme", "--resume", env=s3)
    assert resumed.returncode == 0, resumed.stderr[-3000:] + resumed.stdout[-3000:]
    assert "trials ended before" in resumed.stdout and f"{uri}/killme/results.csv" in resumed.stdout
    frame = read_csv(f"{uri}/killme/results.csv")
    assert frame["trial_id"].nunique() == 6 and len(frame) == 18, frame[["trial_id", "epoch", "status"]]
    assert not frame.duplicated(["trial_id", "epoch"]).any() and set(frame["status"]) == {"ok"}
    objects = stored(f"{uri}/killme")
    assert {"experiment.json", "best.json", "results.csv"} <= set(objects)
    markers = [n for n in objects if n.endswith("/state.json")]
    assert len(markers) == 6
    for marker in markers:  # every marker names a complete checkpoint, the only one left
        trial = marker.rsplit("/", 1)[0]
        folder = json.loads(read_bytes(f"{uri}/killme/{marker}"))["folder"]
        assert f"{trial}/{folder}/trainer.pt" in objects
        assert [n for n in objects if n.startswith(f"{trial}/state-")] == [f"{trial}/{folder}/trainer.pt"]
    cached = [n for n in objects if n.startswith("cache/")]
    assert len(cached) == 1 and cached[0].startswith("cache/S_")  # one S for the six trials, built once
    record = json.loads(read_bytes(f"{uri}/killme/experiment.json"))
    assert [run["exit"] for run in record["runs"]] == [None, 0]
    assert "testing" not in json.dumps(record)  # no credential recorded
    assert not list(ROOT.glob("s3:*")) and not (ROOT / "results").joinpath("killme").exists()
    out = tmp_path / "figures"
    drawn = subprocess.run([sys.executable, str(ROOT / "plots" / "figures.py"), "--results", uri, "--out", str(out),
                            "--formats", "png"], cwd=ROOT, env=s3, capture_output=True, text=True, timeout=300)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert (out / "figure9.png").is_file()
    drawn_q = pd.read_csv(out / "figure9.csv")
    assert set(drawn_q["param"]) == {"q"} and set(drawn_q["x"]) == {1, 2, 3, 4, 5, 6}


def test_a_two_node_cluster_trains_on_data_that_travelled(s3, tmp_path):
    port = free_port()
    data = tmp_path / "data"
    write_dataset(data / "tiny")
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {**s3, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_AUTH_MODE": "token"}
    env.pop("KDIFFE_DATA_DIR", None)
    ray = str(Path(sys.executable).with_name("ray"))
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--block", "--disable-usage-stats"]
    staging = {name: tmp_path / f"staging-{name}" for name in ("head", "worker")}
    head = subprocess.Popen([ray, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common],
                            env={**env, "KDIFFE_STAGING_DIR": str(staging["head"])}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    nodes = [head]
    uri = "s3://bkt/cluster"
    try:
        wait_for(lambda: cluster_offers(ray, port, 1, env), head, 120, "the head node")
        nodes.append(subprocess.Popen([ray, "start", "--address", f"127.0.0.1:{port}", *common],
                                      env={**env, "KDIFFE_STAGING_DIR": str(staging["worker"])},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        wait_for(lambda: cluster_offers(ray, port, 2, env), nodes[-1], 120, "the worker node to join")
        args = ["--dataset", "tiny", "--data-dir", str(data), *SMALL, "--mode", "grid", "--params", "q",
                "--epochs", "3", "--address", f"127.0.0.1:{port}", "--cpus-per-trial", "1", "--max-concurrent", "2",
                "--storage", uri, "--name", "travel"]
        driver = subprocess.Popen([sys.executable, str(ROOT / "tune" / "search.py"), *args], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            # the record is written after the data is shipped and before any trial starts
            wait_for(lambda: "travel/experiment.json" in stored(uri), driver, 120, "the experiment record")
            shutil.rmtree(data)  # from now on no node can read the data folder
            out, err = driver.communicate(timeout=300)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait()
        assert driver.returncode == 0, err[-3000:] + out[-2000:]
        assert "2 trials at a time, 1 CPU each (Ray sees 2 CPUs" in out, out[-2000:]
        frame = read_csv(f"{uri}/travel/results.csv")
        assert frame["trial_id"].nunique() == 6 and len(frame) == 18 and set(frame["status"]) == {"ok"}
        assert set(frame["dataset"]) == {"tiny"}
        workers = [json.loads(read_bytes(f"{uri}/travel/{n}")) for n in stored(f"{uri}/travel")
                   if n.endswith("worker.json")]
        assert len({w["node"] for w in workers}) == 2, workers  # both nodes ran trials
        homes = {str(path) for path in staging.values()}
        assert all(any(w["data"].startswith(home) for home in homes) for w in workers), workers
        for home in staging.values():  # each node unpacked the shipped files once, into its own folder
            assert len(list(home.glob("data-*/tiny/trnMat.pkl"))) == 1
    finally:
        stop_nodes(nodes)


def test_shipped_datasets_unpack_once_per_content_and_refuse_what_is_too_large(tmp_path, monkeypatch):
    from tune import shipped
    from tune.store import ExperimentError

    write_dataset(tmp_path / "data" / "tiny")
    bundle = shipped.pack(["tiny", "synthetic", "tiny"], tmp_path / "data")
    assert list(bundle) == ["tiny"] and set(bundle["tiny"]) == {"trnMat.pkl", "valMat.pkl", "tstMat.pkl",
                                                                "image_feat.npy", "text_feat.npy"}
    root = shipped.unpack(bundle, tmp_path / "node")
    assert root.name == f"data-{shipped.digest(bundle)}"
    for name, data in bundle["tiny"].items():
        assert (root / "tiny" / name).read_bytes() == data == (tmp_path / "data" / "tiny" / name).read_bytes()
    stamp = (root / "tiny" / "trnMat.pkl").stat().st_mtime_ns
    assert shipped.unpack(bundle, tmp_path / "node") == root  # the same content: not written again
    assert (root / "tiny" / "trnMat.pkl").stat().st_mtime_ns == stamp
    changed = {"tiny": {**bundle["tiny"], "kg.txt": b"0 0 1\n"}}
    assert shipped.unpack(changed, tmp_path / "node") != root
    from kdiffe.data import load_dataset

    assert load_dataset("tiny", root).train.nnz == load_dataset("tiny", tmp_path / "data").train.nnz
    monkeypatch.setattr(shipped, "MAX_BYTES", 1000)
    with pytest.raises(ExperimentError, match="--data-transport ray: .* exceed"):
        shipped.pack(["tiny"], tmp_path / "data")


def test_a_remote_child_keeps_the_query_of_its_uri():
    from kdiffe.storage import Remote, is_uri

    assert is_uri("s3://b/x") and is_uri("gs://b") and not is_uri("file:///tmp/x") and not is_uri("/tmp/x")
    remote = Remote("s3://bkt/exp?endpoint_override=127.0.0.1:1&scheme=http")
    child = remote.child("name/trials")
    assert child.uri == "s3://bkt/exp/name/trials?endpoint_override=127.0.0.1:1&scheme=http"
    assert child.root == "bkt/exp/name/trials" and child.path("a/b") == "bkt/exp/name/trials/a/b"


def test_a_pull_replaces_the_mirror_but_keeps_the_drivers_lock_and_ray_files(s3, tmp_path):
    from kdiffe.storage import Remote
    from tune.remote import Mirror
    from tune.store import read_trials

    store = Remote("s3://bkt/pull")
    store.put("exp/results.csv", b"a\n1\n")
    store.put("exp/trials/t1/rows.csv", b"a\n1\n")
    store.put("exp/trials/t1/state-3/trainer.pt", b"weights")  # checkpoints stay in the store
    store.put("exp/trials/t1/state.json", b"{}")  # its commit marker comes: the driver learns the trial has one
    store.put("exp/trials/t2/rows.csv", b"a\n1\n")  # cut before its first checkpoint
    local = tmp_path / "mirror" / "exp"
    (local / "ray" / "run-1").mkdir(parents=True)
    (local / ".lock").write_text("held")
    (local / "stale.csv").write_text("gone after the pull")
    Mirror(store, "exp", local).pull()
    assert sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()) == [
        ".lock", "results.csv", "trials/t1/rows.csv", "trials/t1/state.json", "trials/t2/rows.csv"]
    assert (local / "ray" / "run-1").is_dir() and (local / ".lock").read_text() == "held"
    records = read_trials(local)
    assert records["t1"].checkpointed and not records["t2"].checkpointed


def test_reproduce_reads_each_parts_state_from_the_store(s3, tmp_path):
    from kdiffe.storage import Remote

    store = Remote("s3://bkt/repro")
    store.put("synthetic-figure9-q/experiment.json", json.dumps({"settings": {}, "runs": [{"exit": 0}]}))
    store.put("synthetic-figure5-unguided/experiment.json", json.dumps({"settings": {}, "runs": [{"exit": None}]}))
    plan = script("tune/reproduce.py", "--dry-run", "--storage", "s3://bkt/repro", "--parts", "grid,grid-unguided",
                  "--grid-params", "q", "--datasets", "synthetic", "--seeds", "0", env=s3, timeout=120)
    assert plan.returncode == 0, plan.stderr[-2000:]
    states = {line.split()[0]: line.split()[1] for line in plan.stdout.splitlines() if line.startswith("synthetic-")}
    assert states == {"synthetic-figure9-q": "done", "synthetic-figure5-unguided": "resume"}


def test_on_a_file_system_uri_a_record_is_renamed_into_place(tmp_path, monkeypatch):
    """A pyarrow file system that is not an object store (here the local one behind a
    ``Remote``) gets each record through a temporary name, never written in place."""
    from kdiffe.storage import Remote

    remote = Remote.__new__(Remote)
    remote.fs, remote._pafs, remote.root, remote.uri = pafs.LocalFileSystem(), pafs, str(tmp_path), str(tmp_path)
    moves = []
    real_move = remote.fs.move
    monkeypatch.setattr(remote, "fs", type("Spy", (), {
        "create_dir": remote.fs.create_dir, "open_output_stream": remote.fs.open_output_stream,
        "move": lambda self, a, b: (moves.append((a, b)), real_move(a, b))})())
    remote.put("a/b.json", "{}")
    assert (tmp_path / "a" / "b.json").read_text() == "{}"
    assert len(moves) == 1 and moves[0][1] == f"{tmp_path}/a/b.json" and ".tmp" in moves[0][0]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.json"]


def test_an_ablation_suite_on_s3_leaves_its_table_in_the_store(s3):
    run = script("ablations/run.py", *TINY, "--variants", "kdiffe,no_s", "--seeds", "0,1", "--epochs", "1",
                 "--storage", "s3://bkt/abl", "--name", "suite", env=s3, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-2000:]
    objects = stored("s3://bkt/abl/suite")
    assert {"results.csv", "best.json", "experiment.json", "table_iii.md", "table_iii.csv"} <= set(objects)
    assert "| no_s | 2 |" in read_bytes("s3://bkt/abl/suite/table_iii.md").decode()
