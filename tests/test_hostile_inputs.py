"""Hostile inputs to ``python -m kdiffe train``: each gives one ``error:`` line and exit 2.

Unreadable paths, forged sizes, files that are not regular files, empty held-out splits and
sizes beyond the machine's memory. Runs that could hang or allocate without bound (on a
regression) go to a subprocess with a time limit and an address-space limit.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import re
import resource
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import ROOT
from kdiffe.cli import main
from kdiffe.config import Config, ConfigError
from kdiffe.data import DatasetError, load_dataset, load_folder, make_synthetic

ADDRESS_SPACE = 4 * 2**30  # a regression fails with MemoryError instead of eating the machine


def write_dataset(folder: Path) -> Path:
    """A small dataset in the authors' format (pickled coo matrices, features, kg.txt)."""
    ds = make_synthetic(n_users=120, n_items=60, seed=3)
    folder.mkdir(parents=True)
    for name, matrix in (("trnMat", ds.train), ("valMat", ds.val), ("tstMat", ds.test)):
        dump(folder / f"{name}.pkl", matrix.tocoo())
    for modality, feats in ds.features.items():
        np.save(folder / f"{modality}_feat.npy", feats)
    (folder / "kg.txt").write_text("".join(f"{i} 0 {i % 7}\n" for i in range(60)))
    return folder


def dump(path: Path, obj) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def one_line_error(capsys, argv):
    """``main(argv)`` in this process: exit 2 and exactly one stderr line starting 'error: '."""
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def cli_error(*args: str, timeout: float = 120, prefix: list[str] = ()) -> str:
    """``python -m kdiffe train ... --epochs 1 --device cpu`` in a subprocess (time and memory
    bounded): exit 2 and exactly one stderr line starting 'error: '; returns that line."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    proc = subprocess.run([*prefix, sys.executable, "-m", "kdiffe", "train", "--epochs", "1", "--device", "cpu", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, preexec_fn=limit)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


# --- 3. sizes checked against memory before allocating ------------------------------------------

def test_memory_estimate_has_the_documented_terms():
    from kdiffe.memory import check_memory

    cfg = Config(variant="lightgcn", dim=8, layers=2, eval_batch=10)
    # embeddings 4 copies x 4 B x 50 nodes x 8 + 3 layers x 4 B x 50 x 8 + scores 4 B x 10 x 20
    assert check_memory(cfg, 30, 20) == 6400 + 4800 + 800


def test_huge_dim_is_refused_before_the_model_is_built():
    from kdiffe import Trainer

    small = dict(variant="lightgcn", syn_users=60, syn_items=40, epochs=1, device="cpu")
    with pytest.raises(ConfigError, match=r"^dim=1000000000: the run would need about [\d.]+ GiB .* than the "
                                          r"[\d.]+ GiB ") as info:
        Trainer(Config(dim=10**9, **small), log=lambda m: None)
    assert "\n" not in str(info.value)
    assert Trainer(Config(**small), log=lambda m: None).model.user.weight.shape == (60, 64)


def test_memory_check_names_the_parameter_or_the_dataset(monkeypatch):
    from kdiffe import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: (2**20, "free (test)"))
    with pytest.raises(ConfigError, match=r"^M=100000: .*random walks of S.* 0\.0 GiB free \(test\)"):
        memory.check_memory(Config(variant="lightgcn_s", M=100_000), 200, 100)
    with pytest.raises(ConfigError, match=r"^dataset 'big' \(100000 users, 5000 items\) with these settings"):
        memory.check_memory(Config(variant="lightgcn"), 100_000, 5000, dataset="big")


def test_cli_refuses_a_huge_dim_on_one_line():
    assert "dim=1000000000: the run would need" in cli_error("--variant", "lightgcn", "--set", "dim=1000000000")


# --- 4. OSError while looking for or reading a dataset --------------------------------------------

@pytest.fixture
def deny(monkeypatch):
    """``deny(path)``: every stat, open or listing of ``path`` or below it raises PermissionError
    (tests run as root, whom chmod does not stop)."""
    blocked: list[Path] = []

    def check(target):
        if isinstance(target, int):
            return
        p = Path(os.path.abspath(os.fsdecode(target)))
        if any(p == b or b in p.parents for b in blocked):
            raise PermissionError(13, "Permission denied", str(p))

    def wrap(fn):
        def guarded(target, *args, **kwargs):
            check(target)
            return fn(target, *args, **kwargs)
        return guarded

    for module, name in ((os, "stat"), (os, "open"), (os, "listdir"), (os, "scandir"), (builtins, "open"),
                         (io, "open")):
        monkeypatch.setattr(module, name, wrap(getattr(module, name)))
    return blocked.append


@pytest.mark.parametrize("where", ["data dir", "folder", "trnMat.pkl", "valMat.pkl", "tstMat.pkl",
                                   "image_feat.npy", "kg.txt"])
def test_unreadable_paths_are_named(tmp_path, deny, where):
    folder = write_dataset(tmp_path / "data" / "tiny")
    target = {"data dir": folder.parent, "folder": folder}.get(where, folder / where)
    deny(target)
    with pytest.raises(DatasetError) as info:
        load_dataset("tiny", folder.parent).kg_triples  # kg.txt is read on first use
    message = str(info.value)
    assert message.startswith(f"{target}: cannot ") and "PermissionError: Permission denied" in message
    assert "\n" not in message


def test_unlistable_folder_is_named(tmp_path, monkeypatch):
    folder = write_dataset(tmp_path / "data" / "tiny")
    real = os.listdir, os.scandir

    def refuse(fn):
        def guarded(path=".", *args):
            if Path(os.fsdecode(path)) == folder:
                raise PermissionError(13, "Permission denied", str(path))
            return fn(path, *args)
        return guarded

    monkeypatch.setattr(os, "listdir", refuse(real[0]))
    monkeypatch.setattr(os, "scandir", refuse(real[1]))  # the old glob: no features, silently
    with pytest.raises(DatasetError, match=f"^{re.escape(str(folder))}: cannot list the folder"):
        load_folder(folder)


def test_cli_names_an_unreadable_dataset_folder(tmp_path, deny, capsys):
    folder = write_dataset(tmp_path / "data" / "tiny")
    deny(folder)
    line = one_line_error(capsys, ["train", "--dataset", "tiny", "--data-dir", str(folder.parent), "--epochs", "1"])
    assert line == f"error: {folder}: cannot access (PermissionError: Permission denied)"


def _without_dac_override(tmp: Path) -> list[str] | None:
    """A command prefix under which chmod 000 stops this process: none for a plain user, for root
    ``setpriv`` dropping CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH; None when neither works."""
    locked = tmp / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        for prefix in ([], ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]):
            try:
                proc = subprocess.run([*prefix, sys.executable, "-c", f"import os; os.listdir({str(locked)!r})"],
                                      capture_output=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if b"PermissionError" in proc.stderr:
                return prefix
        return None
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("victim", ["folder", "data dir"])
def test_mode_000_is_named(tmp_path, victim):
    prefix = _without_dac_override(tmp_path)
    if prefix is None:
        pytest.skip("permissions do not stop this process (root, and setpriv cannot drop CAP_DAC_OVERRIDE)")
    folder = write_dataset(tmp_path / "data" / "tiny")
    target = folder if victim == "folder" else folder.parent
    target.chmod(0)
    try:
        line = cli_error("--dataset", "tiny", "--data-dir", str(folder.parent), prefix=prefix)
    finally:
        target.chmod(0o755)
    assert line.startswith(f"error: {target}: cannot ") and "PermissionError: Permission denied" in line


# --- 5. declared sizes checked against the file's content -----------------------------------------

def test_declared_shape_rule_boundary():
    from kdiffe.data import check_declared_shape

    check_declared_shape(Path("m.pkl"), (65_536, 16), 1)  # 65552 = 16 x 1 + 65536
    check_declared_shape(Path("m.pkl"), (9308, 6710), 59541)  # TikTok
    with pytest.raises(DatasetError, match=r"^m.pkl: declares shape \(65537, 16\) \(65553 users \+ items\) "
                                           r"for only 1 interactions"):
        check_declared_shape(Path("m.pkl"), (65_537, 16), 1)


@pytest.mark.parametrize("shape", [(2**31 - 1, 200), (50_000_000, 60)])
def test_forged_shape_is_refused_before_allocating(tmp_path, shape):
    folder = write_dataset(tmp_path / "data" / "forged")
    for name in ("trnMat", "valMat", "tstMat"):
        with open(folder / f"{name}.pkl", "rb") as fh:
            m = pickle.load(fh)
        m._shape = shape
        dump(folder / f"{name}.pkl", m)
    assert (folder / "trnMat.pkl").stat().st_size < 20_000
    line = cli_error("--dataset", "forged", "--data-dir", str(folder.parent))
    assert line.startswith(f"error: {folder / 'trnMat.pkl'}: declares shape {shape} ")


def _npy_header(shape, dtype=np.float32) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                "fortran_order": False, "shape": shape})
    return buf.getvalue()  # magic, version 1.0 and the header


def test_npy_header_declaring_a_huge_shape_is_refused(tmp_path):
    folder = write_dataset(tmp_path / "npy")
    (folder / "image_feat.npy").write_bytes(_npy_header((60, 2**40)) + bytes(100))
    with pytest.raises(DatasetError, match=r"image_feat.npy: header declares shape \(60, 1099511627776\) of "
                                           r"float32 \(263882790666240 bytes\) but the file holds 100 bytes"):
        load_folder(folder)


def test_npy_with_trailing_bytes_is_refused(tmp_path):
    folder = write_dataset(tmp_path / "npy")
    np.save(folder / "image_feat.npy", np.ones((60, 4), np.float32))
    with open(folder / "image_feat.npy", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(DatasetError, match=r"image_feat.npy: header declares shape \(60, 4\) of float32 "
                                           r"\(960 bytes\) but the file holds 961"):
        load_folder(folder)


def test_cli_refuses_a_forged_npy_header(tmp_path):
    folder = write_dataset(tmp_path / "data" / "npy")
    (folder / "image_feat.npy").write_bytes(_npy_header((60, 2**28)) + bytes(64))
    assert "image_feat.npy: header declares shape (60, 268435456)" in cli_error(
        "--dataset", "npy", "--data-dir", str(folder.parent), "--variant", "lightgcn")


# --- 6. regular files only ------------------------------------------------------------------------

def _load_within(seconds, fn, fifo: Path):
    """Run ``fn`` in a thread; if it is still blocked after ``seconds`` (a FIFO opened for reading
    waits for a writer), open the FIFO for writing to let it go, and fail."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(10)
        pytest.fail(f"loading hung on the FIFO {fifo}")
    if "error" in result:
        raise result["error"]
    return result.get("value")


@pytest.mark.parametrize("name", ["trnMat.pkl", "valMat.pkl", "tstMat.pkl", "image_feat.npy", "kg.txt"])
def test_fifo_is_refused_quickly(tmp_path, name):
    folder = write_dataset(tmp_path / "fifo")
    (folder / name).unlink()
    os.mkfifo(folder / name)
    with pytest.raises(DatasetError, match=f"^{re.escape(str(folder / name))}: not a regular file \\(a FIFO\\)$"):
        _load_within(20, lambda: load_folder(folder).kg_triples, folder / name)


@pytest.mark.parametrize("name,target,kind", [("trnMat.pkl", "/dev/zero", "a character device"),
                                              ("tstMat.pkl", "/dev/null", "a character device"),
                                              ("image_feat.npy", "/dev/zero", "a character device"),
                                              ("valMat.pkl", ".", "a directory")])
def test_symlink_to_a_device_or_folder_is_refused(tmp_path, name, target, kind):
    folder = write_dataset(tmp_path / "data" / "dev")
    (folder / name).unlink()
    (folder / name).symlink_to(target if target != "." else folder)
    line = cli_error("--dataset", "dev", "--data-dir", str(folder.parent), "--variant", "lightgcn", timeout=120)
    assert line == f"error: {folder / name}: not a regular file ({kind})"


def test_cli_refuses_a_fifo_trnmat(tmp_path):
    folder = write_dataset(tmp_path / "data" / "fifo")
    (folder / "trnMat.pkl").unlink()
    os.mkfifo(folder / "trnMat.pkl")
    line = cli_error("--dataset", "fifo", "--data-dir", str(folder.parent), timeout=60)
    assert line == f"error: {folder / 'trnMat.pkl'}: not a regular file (a FIFO)"


# --- 7. empty validation or test splits -----------------------------------------------------------

EMPTY_VAL = ("holds no interactions; delete it to have a seeded validation split taken from train "
             "(as for a dataset without valMat.pkl)")


@pytest.mark.parametrize("name,needle", [("valMat.pkl", EMPTY_VAL),
                                         ("tstMat.pkl", "holds no interactions; there is nothing to test on")])
@pytest.mark.parametrize("zeros", [False, True])
def test_empty_held_out_file_is_refused(tmp_path, name, needle, zeros):
    folder = write_dataset(tmp_path / "empty")
    empty = sp.coo_matrix((120, 60))
    if zeros:  # explicit zero entries are no interactions either
        empty = sp.coo_matrix((np.zeros(3), ([0, 1, 2], [0, 1, 2])), shape=(120, 60))
    dump(folder / name, empty)
    with pytest.raises(DatasetError) as info:
        load_folder(folder)
    assert str(info.value) == f"{folder / name}: {needle}"


def test_cli_refuses_an_empty_valmat(tmp_path, capsys):
    folder = write_dataset(tmp_path / "data" / "tiny")
    dump(folder / "valMat.pkl", sp.coo_matrix((120, 60)))
    line = one_line_error(capsys, ["train", "--dataset", "tiny", "--data-dir", str(folder.parent), "--epochs", "1"])
    assert line == f"error: {folder / 'valMat.pkl'}: {EMPTY_VAL}"


@pytest.mark.parametrize("ratios,empty", [((1.0, 0.0, 0.0), "validation and test"), ((0.9, 0.1, 0.0), "test"),
                                          ((0.9, 0.0, 0.1), "validation")])
def test_resplit_leaving_an_empty_split_is_refused(ratios, empty):
    with pytest.raises(ConfigError, match=rf"^resplit=3: the re-split .* leaves the {empty} split without"):
        load_dataset("synthetic", resplit_seed=3, resplit_ratios=ratios)
    assert load_dataset("synthetic", resplit_seed=3, resplit_ratios=(0.8, 0.1, 0.1)).val.nnz > 0


def test_cli_refuses_a_resplit_without_test(capsys):
    line = one_line_error(capsys, ["train", "--set", "resplit=3", "--set", "resplit_ratios=1,0,0",
                                   "--set", "syn_users=60", "--epochs", "1"])
    assert line.startswith("error: resplit=3: the re-split") and "validation and test split without" in line


def test_subsample_leaving_an_empty_split_is_refused(tmp_path):
    folder = write_dataset(tmp_path / "data" / "sub")
    val = np.zeros((120, 60), np.float32)
    with open(folder / "trnMat.pkl", "rb") as fh:
        train = pickle.load(fh).tocsr()
    item = train[0].indices[0]
    train[0, item] = 0
    train.eliminate_zeros()
    val[0, item] = 1  # only user 0 has a validation interaction
    dump(folder / "trnMat.pkl", train.tocoo())
    dump(folder / "valMat.pkl", sp.coo_matrix(val))
    for seed in range(6):
        kept = np.random.default_rng(seed).choice(120, 1, replace=False)
        if kept[0] == 0:
            assert load_dataset("sub", folder.parent, seed=seed, max_users=1).val.nnz == 1
        else:
            with pytest.raises(ConfigError, match=r"^max_users=1: the subsample of 1 users leaves the validation"):
                load_dataset("sub", folder.parent, seed=seed, max_users=1)


def test_derived_validation_split_that_is_empty_is_refused(tmp_path):
    folder = tmp_path / "data" / "thin"
    folder.mkdir(parents=True)
    dump(folder / "trnMat.pkl", sp.coo_matrix(np.eye(8, 6)))  # one training item per user: none to move
    dump(folder / "tstMat.pkl", sp.coo_matrix(np.eye(8, 6, k=1)))
    with pytest.raises(ConfigError, match=r"^val_fraction=0\.1: the validation split derived from train leaves "
                                          r"the validation split without interactions"):
        load_dataset("thin", folder.parent)


def test_synthetic_without_held_out_items_is_refused():
    with pytest.raises(ConfigError, match=r"^syn_items=2: the synthetic dataset leaves the validation and test"):
        load_dataset("synthetic", synthetic=dict(n_users=50, n_items=2, n_clusters=1))
