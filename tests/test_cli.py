import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "kdiffe", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_train_writes_summary(tmp_path):
    out = tmp_path / "s.json"
    proc = run("train", "--dataset", "synthetic", "--variant", "lightgcn", "--epochs", "2",
               "--set", "syn_users=200", "--set", "syn_items=100", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "epoch   2" in proc.stdout and "best epoch" in proc.stdout
    assert json.loads(out.read_text())["config"]["syn_users"] == 200


@pytest.mark.parametrize("args,needle", [
    (["train", "--set", "bogus=1"], "unknown parameter 'bogus'"),
    (["train", "--set", "M=-5"], "M=-5"),
    (["train", "--set", "xi=abc"], "xi='abc'"),
    (["train", "--dataset", "nowhere"], "unknown dataset 'nowhere'"),
    (["train", "--device", "cuda:0", "--epochs", "1"], "no CUDA device"),
    (["attention", "--dataset", "synthetic", "--M", "0"], "--M >= 1"),
    (["train", "--set", "M=inf"], "M='inf': expected a finite int"),
    (["train", "--set", "M=1e400"], "M='1e400': expected a finite int"),
    (["train", "--set", "xi=nan"], "xi='nan': expected a finite float"),
    (["train", "--seed", "-1"], "seed=-1: a seed must be in [0, 4294967295]"),
    (["train", "--set", "seed=99999999999"], "seed=99999999999: a seed must be in"),
    (["train", "--set", "resplit=4294967296"], "resplit=4294967296: a seed must be in"),
    (["train", "--variant", "lightgcn", "--set", "dim=1000000000", "--set", "syn_users=60", "--set", "syn_items=40"],
     "dim=1000000000: the run would need"),
    (["attention", "--dataset", "synthetic", "--M", "1000000000"], "M=1000000000: the run would need"),
    (["train", "--model", "sgl", "--set", "M=5"], "--set M=...: model=sgl does not use M; its own parameters: layers,"),
    (["train", "--set", "layer_combine=mean"], "model=kdiffe does not use layer_combine"),
])
def test_user_mistakes_exit_2_with_one_line(tmp_path, args, needle):
    if "cuda" in " ".join(args):
        import torch
        if torch.cuda.is_available():
            pytest.skip("a CUDA device is visible")
    proc = run(*args, env={"KDIFFE_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("error:")


def test_attention_command_prints_statistics():
    proc = run("attention", "--dataset", "synthetic", "--M", "10", "--R", "3")
    assert proc.returncode == 0, proc.stderr
    assert "nnz" in proc.stdout and "(= train edges: True)" in proc.stdout and "median" in proc.stdout
