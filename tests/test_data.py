import os
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from kdiffe import safe_pickle
from kdiffe.attention import load_authors_similarity
from kdiffe.data import (DatasetError, load_dataset, load_folder, load_sparse_pickle, make_synthetic,
                         resolve_data_dir, split_validation, subsample_users)
from kdiffe.errors import UserError
from kdiffe.knowledge import build_knowledge


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
    monkeypatch.chdir(tmp_path)  # no dataset in any documented place (tests/test_serving.py: the places)
    assert resolve_data_dir() == (tmp_path / "data").resolve()


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
    (lambda p: (p / "kg.txt").write_text("0 -1 2\n"), "kg.txt: negative id"),
    (lambda p: np.save(p / "image_feat.npy", np.ones((5, 4), np.complex64)), "image_feat.npy: expected real numeric"),
    (lambda p: np.save(p / "image_feat.npy", np.full((5, 4), 1e300)), "image_feat.npy: values beyond the float32"),
    (lambda p: _savez(p / "image_feat.npy", a=np.ones((5, 4))), "image_feat.npy: expected one .npy array"),
    (lambda p: _pickle(p / "trnMat.pkl", _coo_with(np.array([0, 9]), np.array([0, 1]), (6, 5))),
     r"trnMat.pkl: row index out of range \[0, 6\)"),
    (lambda p: _pickle(p / "valMat.pkl", _coo_with(np.array([0, 1]), np.array([-1, 1]), (6, 5))),
     r"valMat.pkl: column index out of range"),
    (lambda p: _pickle(p / "tstMat.pkl", _coo_with(np.array([0, 1]), np.array([0]), (6, 5))),
     "tstMat.pkl: row/col/data lengths differ"),
    (lambda p: _pickle(p / "tstMat.pkl", sp.coo_matrix(np.eye(6, 5, dtype=np.complex128))),
     "tstMat.pkl: refuses numpy dtype 'c16' \\(only bool, integer and real arrays are allowed\\)"),
    (lambda p: _pickle(p / "tstMat.pkl", np.eye(6, 5)), "tstMat.pkl: expected a scipy.sparse matrix, got ndarray"),
])
def test_broken_files_fail_with_the_file_named(tmp_path, breakage, needle):
    folder = _write_folder(tmp_path / "broken")
    breakage(folder)
    with pytest.raises(DatasetError, match=needle) as info:
        load_folder(folder).kg_triples  # kg.txt is read on first use
    assert "\n" not in str(info.value)


def _savez(path, **arrays):
    with open(path, "wb") as fh:  # np.savez(path) would append .npz
        np.savez(fh, **arrays)


def _coo_with(row, col, shape):
    """A COO whose arrays bypass scipy's checks, as a corrupt or hand-made file could hold."""
    m = sp.coo_matrix(np.eye(*shape))
    m.coords, m.data, m._shape = (row, col), np.ones(len(row)), shape
    return m


def test_out_of_range_indices_never_reach_scipy(tmp_path):
    """scipy's tocsr() trusts a COO's indices: out of range, it writes outside its arrays."""
    path = tmp_path / "m.pkl"
    _pickle(path, _coo_with(np.array([0, 1, 5]), np.array([0, 1, 2]), (3, 3)))
    with pytest.raises(DatasetError, match=r"m.pkl: row index out of range \[0, 3\)"):
        load_sparse_pickle(path)


def test_tiny_values_stay_interactions(tmp_path):
    folder = _write_folder(tmp_path / "tiny")
    with open(folder / "trnMat.pkl", "rb") as fh:
        train = pickle.load(fh)
    before = load_folder(folder).train
    train.data = np.full(train.nnz, 1e-60)  # positive, but 0 in float32
    _pickle(folder / "trnMat.pkl", train)
    assert (load_folder(folder).train != before).nnz == 0


@pytest.mark.parametrize("fmt,protocol", [("coo", 3), ("coo", 4), ("coo", 5), ("csr", 4), ("csc", 5)])
def test_sparse_formats_and_protocols_load_alike(tmp_path, fmt, protocol):
    folder = _write_folder(tmp_path / "fmt")
    reference = load_folder(folder)
    for name in ("trnMat", "valMat", "tstMat"):
        with open(folder / f"{name}.pkl", "rb") as fh:
            m = pickle.load(fh).asformat(fmt)
        with open(folder / f"{name}.pkl", "wb") as fh:
            pickle.dump(m, fh, protocol=protocol)
    ds = load_folder(folder)
    for a, b in ((ds.train, reference.train), (ds.val, reference.val), (ds.test, reference.test)):
        assert (a != b).nnz == 0


def test_numpy_scalars_and_big_endian_arrays_load(tmp_path):
    path = tmp_path / "m.pkl"
    m = sp.coo_matrix(np.eye(6, 5))
    m._shape = (np.int64(6), np.int64(5))  # pickled through numpy's scalar()
    m.coords = (m.row.astype(">i4"), m.col.astype(">u8"))
    m.data = m.data.astype(">f8")
    _pickle(path, m)
    got = load_sparse_pickle(path)
    assert got.shape == (6, 5) and (got.tocsr() != sp.csr_matrix(np.eye(6, 5))).nnz == 0


def test_huge_memo_index_is_refused_before_allocating(tmp_path):
    """A LONG_BINPUT with index 2**28 would make the C unpickler allocate a 2 GiB memo."""
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(sp.coo_matrix(np.eye(2)), protocol=3)[:-1] + b"r\x00\x00\x00\x10.")
    with pytest.raises(DatasetError, match="m.pkl: not a readable pickle .*memo index 268435456 out of range"):
        load_sparse_pickle(path)


# --- pickles must not run code (issue 9) --------------------------------------------------------

class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_trnmat_is_refused_without_running(tmp_path):
    folder = _write_folder(tmp_path / "evil")
    marker = tmp_path / "pwned"
    _pickle(folder / "trnMat.pkl", _Evil(marker))
    with pytest.raises(DatasetError) as info:
        load_dataset("evil", tmp_path)
    message = str(info.value)
    assert message == (f"{folder / 'trnMat.pkl'}: refuses to load global '{os.system.__module__}.system' "
                       "(only scipy.sparse matrices and numpy arrays are allowed)")
    assert isinstance(info.value, UserError) and "\n" not in message
    assert not marker.exists()


def test_malicious_pickle_nested_in_a_matrix_is_refused(tmp_path):
    folder = _write_folder(tmp_path / "nested")
    marker = tmp_path / "pwned"
    m = sp.coo_matrix(np.eye(6, 5))
    m.maxprint = _Evil(marker)  # any attribute is unpickled
    _pickle(folder / "tstMat.pkl", m)
    with pytest.raises(DatasetError, match="tstMat.pkl: refuses to load global '.*system'"):
        load_folder(folder)
    m = sp.coo_matrix(np.eye(6, 5))
    m.data = np.array([_Evil(marker)] * m.nnz, dtype=object)  # an object array pickles its elements
    _pickle(folder / "tstMat.pkl", m)
    with pytest.raises(DatasetError, match="tstMat.pkl: refuses numpy dtype 'O8'"):  # before its elements
        load_folder(folder)
    assert not marker.exists()


def test_malicious_similarity_is_refused_without_running(tmp_path):
    path, marker = tmp_path / "Similarity_1_1.pkl", tmp_path / "pwned"
    _pickle(path, _Evil(marker))
    with pytest.raises(DatasetError, match=r"Similarity_1_1.pkl: refuses to load global '.*\.system' \(only"):
        load_authors_similarity(path, 3, 2)
    assert not marker.exists()


def test_similarity_is_checked(tmp_path):
    path = tmp_path / "Similarity_1_1.pkl"
    _pickle(path, sp.csr_matrix(np.full((5, 5), 0.5)))
    assert load_authors_similarity(path, 3, 2).shape == (3, 2)
    _pickle(path, sp.csr_matrix(np.full((5, 5), np.nan)))
    with pytest.raises(DatasetError, match=r"Similarity_1_1.pkl: entries must lie in \[0, 1\]"):
        load_authors_similarity(path, 3, 2)
    repeated = sp.coo_matrix(np.full((5, 5), 0.5))
    repeated.coords = (np.r_[repeated.row, 0], np.r_[repeated.col, 0])
    repeated.data = np.r_[repeated.data, 0.7]
    _pickle(path, repeated)
    with pytest.raises(DatasetError, match=r"Similarity_1_1.pkl: 1 repeated \(row, column\) entries"):
        load_authors_similarity(path, 3, 2)
    with pytest.raises(DatasetError, match=r"Similarity_1_1.pkl: expected a sparse 6 x 6 matrix"):
        load_authors_similarity(path, 4, 2)


def test_old_protocols_name_the_refused_global(tmp_path):
    path = tmp_path / "m.pkl"
    with open(path, "wb") as fh:
        pickle.dump(sp.coo_matrix(np.eye(2)), fh, protocol=2)
    with pytest.raises(DatasetError, match="m.pkl: refuses to load global '_codecs.encode'"):
        load_sparse_pickle(path)


def test_allow_list_is_only_sparse_matrices_and_numpy_arrays():
    modules = {module.split(".")[0] for module, _ in safe_pickle.ALLOWED_GLOBALS}
    assert modules == {"numpy", "scipy"}
    scipy_modules = {module for module, _ in safe_pickle.ALLOWED_GLOBALS if module.startswith("scipy")}
    assert scipy_modules == {f"scipy.sparse.{p}{fmt}" for p in ("", "_") for fmt in ("coo", "csr", "csc")}


def _plain_load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open(path, "rb") as fh:
            return pickle.load(fh)


@pytest.mark.parametrize("name", ["tiktok", "baby", "sports"])
def test_real_pickles_load_identical_to_pickle_load(datasets_dir, name):
    paths = sorted((datasets_dir / name).glob("*Mat.pkl")) + sorted((datasets_dir / name).glob("Similarity_*.pkl"))
    assert len(paths) >= 2
    for path in paths:
        ours, theirs = load_sparse_pickle(path), _plain_load(path)
        assert ours.shape == theirs.shape and ours.nnz == theirs.nnz
        if theirs.format == "coo":
            assert np.array_equal(ours.row, theirs.row) and np.array_equal(ours.col, theirs.col)
            assert np.array_equal(ours.data, theirs.data)
        assert (ours.tocsr() != theirs.tocsr()).nnz == 0


# --- kg.txt is read only when used -----------------------------------------------------------------

def test_kg_is_read_lazily_and_only_for_kg_file(tmp_path):
    folder = _write_folder(tmp_path / "lazy")
    (folder / "kg.txt").write_text("0 1 oops\n")
    ds = load_folder(folder)  # a corrupt kg.txt does not break a run that never uses it
    assert ds.summary().endswith("kg.txt: present")
    assert build_knowledge(ds, "features", 2, 2, 3, 0, log=lambda m: None) is not None
    with pytest.raises(DatasetError, match="kg.txt: expected lines of three integers"):
        build_knowledge(ds, "file", 2, 2, 3, 0, log=lambda m: None)
    (folder / "kg.txt").write_text("0 1 7\n1 1 8\n0 1 7\n")
    ds = load_folder(folder)
    assert ds.kg_triples.tolist() == [[0, 1, 7], [1, 1, 8]]
    assert ds.summary().endswith("kg.txt: 2 triples")
    assert subsample_users(ds, 3, seed=0).kg_triples.tolist() == [[0, 1, 7], [1, 1, 8]]
    (folder / "kg.txt").unlink()
    assert load_folder(folder).kg_triples is None and load_folder(folder).summary().endswith("kg.txt: none")


def test_synthetic_triples_are_given():
    ds = make_synthetic(n_users=50, n_items=40, seed=0)
    assert ds.kg_loaded and ds.kg_triples.shape == (40, 3)


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


def test_resplit_redraws_every_users_interactions_reproducibly():
    from kdiffe.data import resplit

    ds = make_synthetic(n_users=200, n_items=80, seed=5)
    union = ds.train + ds.val + ds.test
    a, b, c = resplit(ds, 1), resplit(ds, 1), resplit(ds, 2)
    assert (a.train != b.train).nnz == 0 and (a.test != b.test).nnz == 0  # seeded
    assert (a.train != c.train).nnz > 0  # another draw
    assert (a.train + a.val + a.test != union).nnz == 0  # nothing lost, nothing added
    assert a.train.multiply(a.val).nnz == a.train.multiply(a.test).nnz == a.val.multiply(a.test).nnz == 0
    assert (np.diff(a.train.indptr) >= 1).all()  # every user keeps a training item
    shares = np.array([ds.train.nnz, ds.val.nnz, ds.test.nnz]) / union.nnz
    got = np.array([a.train.nnz, a.val.nnz, a.test.nnz]) / union.nnz
    assert np.abs(got - shares).max() < 0.02  # the published split's proportions by default
    d = resplit(ds, 1, (0.6, 0.2, 0.2))
    assert abs(d.test.nnz / union.nnz - 0.2) < 0.03 and "resplit 1" in d.name


@pytest.mark.parametrize("ratios", [(0.5, 0.5), (0.5, 0.6, 0.1), (0.0, 0.5, 0.5), (0.9, -0.1, 0.2)])
def test_resplit_refuses_impossible_ratios(ratios):
    from kdiffe.data import resplit

    with pytest.raises(DatasetError, match="resplit ratios"):
        resplit(make_synthetic(seed=0), 1, ratios)


def test_resplit_one_held_out_per_user_by_hand():
    from dataclasses import replace

    from kdiffe.data import resplit

    ds = make_synthetic(n_users=3, n_items=6, n_clusters=2, interactions=3, seed=0)
    degrees = [1, 2, 5]  # users 0, 1, 2
    rows = np.repeat(np.arange(3), degrees)
    cols = np.concatenate([np.arange(d) for d in degrees])
    train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(3, 6))
    empty = sp.csr_matrix((3, 6), dtype=np.float32)
    ds = replace(ds, train=train, val=empty, test=empty)
    for seed in range(1, 6):
        everything_to_test = resplit(ds, seed, (0.9, 0.0, 0.1), holdout="one")
        assert np.diff(everything_to_test.test.indptr).tolist() == [0, 1, 1]
        assert everything_to_test.val.nnz == 0
        assert np.diff(everything_to_test.train.indptr).tolist() == [1, 1, 4]
        assert (everything_to_test.train + everything_to_test.test != train).nnz == 0
    to_val = resplit(ds, 1, (0.5, 0.5, 0.0), holdout="one")
    assert np.diff(to_val.val.indptr).tolist() == [0, 1, 1] and to_val.test.nnz == 0
    assert "one held out" in to_val.name


def test_resplit_one_held_out_mirrors_the_published_tiktok_split(datasets_dir):
    from kdiffe.data import resplit

    ds = load_dataset("tiktok", datasets_dir)
    a, b = resplit(ds, 1, holdout="one"), resplit(ds, 1, holdout="one")
    assert (a.test != b.test).nnz == 0 and (a.val != b.val).nnz == 0
    held = np.diff(a.val.indptr) + np.diff(a.test.indptr)
    degree = np.diff((ds.train + ds.val + ds.test).tocsr().indptr)
    assert held.max() == 1 and (held == (degree >= 2)).all()  # one per user with two or more
    assert a.val.nnz + a.test.nnz == (degree >= 2).sum()
    assert abs(a.val.nnz / (a.val.nnz + a.test.nnz) - 3051 / (3051 + 6130)) < 0.02  # the published val:test
    shares = resplit(ds, 1)  # the per-user shares give test items to heavier users only
    assert np.diff(shares.test.indptr).astype(bool).sum() < 0.5 * np.diff(a.test.indptr).astype(bool).sum()


def test_resplit_refuses_an_unknown_holdout():
    from kdiffe.data import resplit

    with pytest.raises(DatasetError, match="resplit holdout 'two'"):
        resplit(make_synthetic(seed=0), 1, holdout="two")
    with pytest.raises(DatasetError, match="needs a validation or test share"):
        resplit(make_synthetic(seed=0), 1, (1.0, 0.0, 0.0), holdout="one")
