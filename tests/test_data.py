import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from kdiffe.data import (DatasetError, load_dataset, load_folder, make_synthetic, resolve_data_dir,
                         split_validation, subsample_users)


@pytest.mark.parametrize("name,users,items,train,val,test,modalities", [
    ("tiktok", 9308, 6710, 59541, 3051, 6130, {"image", "audio"}),
    ("baby", 19445, 7050, 118551, 21682, 20559, set()),
])
def test_real_datasets_load_with_documented_counts(datasets_dir, name, users, items, train, val, test, modalities):
    ds = load_dataset(name, datasets_dir)
    assert (ds.n_users, ds.n_items) == (users, items)
    assert (ds.train.nnz, ds.val.nnz, ds.test.nnz) == (train, val, test)
    assert set(ds.features) == modalities
    for feats in ds.features.values():
        assert feats.shape == (items, 128) and feats.dtype == np.float32
    assert ds.kg_triples is not None and ds.kg_triples[:, 0].max() < items
    assert ds.notes == ()


def test_sports_derives_a_seeded_validation_split(datasets_dir):
    ds = load_dataset("sports", datasets_dir, seed=3)
    assert (ds.n_users, ds.n_items) == (35598, 18357)
    assert ds.train.nnz + ds.val.nnz == 218409 and ds.test.nnz == 37899
    assert 0.08 < ds.val.nnz / 218409 < 0.12
    assert ds.train.multiply(ds.val).nnz == 0
    assert ds.features == {} and ds.kg_triples is None
    assert "derived a validation split" in ds.notes[0]
    again = load_dataset("sports", datasets_dir, seed=3)
    assert (again.val != ds.val).nnz == 0


def test_split_validation_keeps_one_item_per_user():
    train = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]], dtype=np.float32))
    new, val = split_validation(train, 0.5, seed=0)
    assert (new + val != train).nnz == 0
    assert np.all(np.diff(new.indptr) >= 1)


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("KDIFFE_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path.resolve()
    assert resolve_data_dir("elsewhere").name == "elsewhere"
    monkeypatch.delenv("KDIFFE_DATA_DIR")
    assert resolve_data_dir() == (tmp_path.cwd() / "data").resolve()


def test_unknown_dataset_names_the_folder(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        load_dataset("nope", tmp_path)


def test_synthetic_is_seeded_and_disjoint():
    a, b = make_synthetic(seed=1), make_synthetic(seed=1)
    assert (a.train != b.train).nnz == 0
    assert a.train.multiply(a.test).nnz == 0 and a.val.multiply(a.test).nnz == 0
    assert a.features["image"].shape == (a.n_items, 32)
    assert (make_synthetic(seed=2).train != a.train).nnz > 0


def test_subsample_users():
    ds = make_synthetic(n_users=100, seed=0)
    small = subsample_users(ds, 30, seed=0)
    assert small.n_users == 30 and small.n_items == ds.n_items
    assert "subsampled 30 of 100" in small.notes[-1]


# --- deliberately broken folders --------------------------------------------------------------

def _write_folder(path, n_users=6, n_items=5, val=True):
    rng = np.random.default_rng(0)
    dense = (rng.random((n_users, n_items)) < 0.6).astype(np.float32)
    test = np.zeros_like(dense)
    valm = np.zeros_like(dense)
    for u in range(n_users):
        items = np.flatnonzero(dense[u])
        if len(items) >= 3:
            test[u, items[0]], dense[u, items[0]] = 1, 0
            valm[u, items[1]], dense[u, items[1]] = 1, 0
    path.mkdir(parents=True, exist_ok=True)
    for name, m in (("trnMat", dense), ("tstMat", test)) + ((("valMat", valm),) if val else ()):
        with open(path / f"{name}.pkl", "wb") as fh:
            pickle.dump(sp.coo_matrix(m), fh)
    np.save(path / "image_feat.npy", rng.normal(size=(n_items, 4)).astype(np.float16))
    (path / "kg.txt").write_text("0 1 7\n1 1 8\n")
    return path


def test_own_folder_in_the_same_format_loads(tmp_path):
    ds = load_dataset("mine", _write_folder(tmp_path / "mine").parent)
    assert ds.name == "mine" and ds.n_users == 6 and ds.kg_triples.shape == (2, 3)


def _pickle(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


@pytest.mark.parametrize("breakage,needle", [
    (lambda p: (p / "trnMat.pkl").unlink(), "trnMat.pkl: file not found"),
    (lambda p: (p / "tstMat.pkl").write_bytes(b"not a pickle"), "tstMat.pkl: not a readable pickle"),
    (lambda p: _pickle(p / "valMat.pkl", [1, 2, 3]), "valMat.pkl: expected a scipy.sparse"),
    (lambda p: _pickle(p / "tstMat.pkl", sp.coo_matrix((7, 5))), r"tstMat.pkl: shape \(7, 5\) disagrees"),
    (lambda p: _pickle(p / "trnMat.pkl", sp.coo_matrix((6, 5))), "training set is empty"),
    (lambda p: np.save(p / "image_feat.npy", np.full((5, 4), np.nan)), "image_feat.npy: contains NaN"),
    (lambda p: np.save(p / "image_feat.npy", np.zeros((4, 4))), r"image_feat.npy: expected shape \(5, dim\)"),
    (lambda p: (p / "image_feat.npy").write_bytes(b"garbage"), "image_feat.npy: not a readable"),
    (lambda p: (p / "kg.txt").write_text("0 1 2\n9 1 2\n"), "kg.txt: item id 9 out of range"),
    (lambda p: (p / "kg.txt").write_text("0 1\n"), "kg.txt: expected 3 columns"),
    (lambda p: (p / "kg.txt").write_text("a b c\n"), "kg.txt: expected lines of three integers"),
])
def test_broken_files_fail_with_the_file_named(tmp_path, breakage, needle):
    folder = _write_folder(tmp_path / "broken")
    breakage(folder)
    with pytest.raises(DatasetError, match=needle):
        load_folder(folder)


def test_overlapping_splits_are_rejected(tmp_path):
    folder = _write_folder(tmp_path / "overlap")
    with open(folder / "trnMat.pkl", "rb") as fh:
        train = pickle.load(fh)
    _pickle(folder / "tstMat.pkl", train)
    with pytest.raises(DatasetError, match="tstMat.pkl vs trnMat.pkl: .* pairs appear in both"):
        load_folder(folder)


def test_negative_entries_are_rejected(tmp_path):
    folder = _write_folder(tmp_path / "neg")
    _pickle(folder / "valMat.pkl", sp.coo_matrix(-np.eye(6, 5)))
    with pytest.raises(DatasetError, match="valMat.pkl: entries must be finite and non-negative"):
        load_folder(folder)
