"""Loader fuzzing: a small valid dataset folder with one file broken at a time.

Property: ``load_folder`` (then ``kg_triples`` and the KG built from kg.txt) either gives a
genuinely valid dataset or raises DatasetError with a one-line message naming the broken file;
never another exception, never a silently wrong result. Mutations known to break a rule must
fail; mutations that keep the content (other index dtypes, CSR/CSC, duplicates) must load the
same matrices as the unbroken folder.
"""

import os
import pickle
import subprocess
import sys
import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdiffe.attention import load_authors_similarity
from kdiffe.data import DatasetError, load_folder
from kdiffe.knowledge import KnowledgeGraph, build_knowledge

ROOT = Path(__file__).resolve().parents[1]
USERS, ITEMS = 6, 5
MATRICES = ("trnMat.pkl", "valMat.pkl", "tstMat.pkl")
KG_LINES = ["0 1 7", "1 1 8", "4 2 9", "2 2 7"]
FUZZ = settings(max_examples=50, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
RAW = settings(FUZZ, max_examples=120)  # random bytes find more with more examples


def _splits() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    train = (rng.random((USERS, ITEMS)) < 0.7).astype(np.float32)
    val, test = np.zeros_like(train), np.zeros_like(train)
    for u in range(USERS):
        items = np.flatnonzero(train[u])
        test[u, items[0]], train[u, items[0]] = 1, 0
        if len(items) >= 3:
            val[u, items[1]], train[u, items[1]] = 1, 0
    return {"trnMat.pkl": train, "valMat.pkl": val, "tstMat.pkl": test}


SPLITS = _splits()
FEATURES = np.random.default_rng(1).normal(size=(ITEMS, 3)).astype(np.float32)


def _npy(array: np.ndarray) -> bytes:
    buf = BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


BASE = {name: pickle.dumps(sp.coo_matrix(m)) for name, m in SPLITS.items()}
BASE["image_feat.npy"] = _npy(FEATURES)
BASE["kg.txt"] = ("\n".join(KG_LINES) + "\n").encode()


def _write(files: dict[str, bytes | None]) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-", dir=_write.root))
    for name, data in {**BASE, **files}.items():
        if data is not None:
            (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="module", autouse=True)
def _root(tmp_path_factory):
    _write.root = tmp_path_factory.mktemp("fuzz")


def _assert_valid(ds) -> None:
    """Everything a run relies on holds."""
    shape = (ds.n_users, ds.n_items)
    assert shape == (USERS, ITEMS)  # a changed shape is always caught by the other splits
    for m in (ds.train, ds.val, ds.test):
        assert isinstance(m, sp.csr_matrix) and m.shape == shape
        m.check_format(full_check=True)
        assert m.has_canonical_format and m.dtype == np.float32 and np.all(m.data == 1)
    assert ds.train.nnz > 0
    assert ds.train.multiply(ds.val).nnz == ds.train.multiply(ds.test).nnz == ds.val.multiply(ds.test).nnz == 0
    for feats in ds.features.values():
        assert feats.dtype == np.float32 and feats.ndim == 2 and feats.shape[0] == ITEMS and feats.shape[1] > 0
        assert np.all(np.isfinite(feats))
    triples = ds.kg_triples
    kg = build_knowledge(ds, "file", 2, 2, 3, 0, log=lambda m: None)
    if triples is None:
        assert kg is None
    else:
        assert triples.dtype == np.int64 and triples.ndim == 2 and triples.shape[1] == 3 and len(triples)
        assert triples.min() >= 0 and triples[:, 0].max() < ITEMS
        assert isinstance(kg, KnowledgeGraph) and kg.n_items == ITEMS


def _same_as_base(ds) -> None:
    for m, name in ((ds.train, "trnMat.pkl"), (ds.val, "valMat.pkl"), (ds.test, "tstMat.pkl")):
        assert np.array_equal(m.toarray(), SPLITS[name]), name


def _check(files: dict[str, bytes | None], broken: str, must_fail: bool, same: bool = False):
    """Load the folder with ``files`` replaced; return the dataset or None after a DatasetError."""
    folder = _write(files)
    try:
        ds = load_folder(folder)
        _assert_valid(ds)  # reads kg.txt and builds the KG from it
    except DatasetError as exc:
        message = str(exc)
        assert "\n" not in message and broken in message, message
        return None
    assert not must_fail, f"{broken}: a broken file loaded"
    if same:
        _same_as_base(ds)
    return ds


# --- raw bytes: truncation, bit flips, garbage, empty, deleted -------------------------------------

FILES = st.sampled_from(sorted(BASE))


@RAW
@given(name=FILES, data=st.data())
def test_truncated_file(name, data):
    cut = data.draw(st.integers(0, len(BASE[name]) - 1))
    # a pickle or .npy cut short is always unreadable; a cut kg.txt may still be valid text
    _check({name: BASE[name][:cut]}, name, must_fail=name != "kg.txt")


@RAW
@given(name=FILES, data=st.data())
def test_flipped_byte(name, data):
    raw = bytearray(BASE[name])
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    _check({name: bytes(raw)}, name, must_fail=False)


@RAW
@given(name=FILES, junk=st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"\x80\x04.", b"\x80\x05N.",
                                                                         b"\x93NUMPY", b"PK\x03\x04", b"\n \n"])))
def test_garbage_or_empty_file(name, junk):
    # an empty or blank kg.txt is "no triples": an error too
    _check({name: junk}, name, must_fail=junk.strip() == b"" or name != "kg.txt")


@pytest.mark.parametrize("name", sorted(BASE))
def test_deleted_file(name):
    ds = _check({name: None}, name, must_fail=name in ("trnMat.pkl", "tstMat.pkl"))
    if name == "kg.txt":
        assert ds.kg_triples is None
    if name == "valMat.pkl":
        assert "derived a validation split" in ds.notes[0]


# --- matrices ---------------------------------------------------------------------------------------

_KEEP = object()


def _coo(name: str, row=None, col=None, data=None, shape=_KEEP) -> sp.coo_matrix:
    """The base COO of ``name`` with arrays swapped in behind scipy's back (as a file could hold)."""
    m = sp.coo_matrix(SPLITS[name])
    m.coords = (m.row if row is None else row, m.col if col is None else col)
    if data is not None:
        m.data = data
    if shape is not _KEEP:
        m._shape = shape
    return m


MATRIX = st.sampled_from(MATRICES)
BAD_VALUES = st.sampled_from([np.nan, np.inf, -np.inf, -1.0, -1e-300])
BAD_INDICES = st.sampled_from([-1, -(2**40), 6, 7, 2**31, 2**63 - 1])


@FUZZ
@given(name=MATRIX, bad=BAD_VALUES, data=st.data())
def test_bad_matrix_values(name, bad, data):
    values = np.ones(int(SPLITS[name].sum()))
    values[data.draw(st.integers(0, len(values) - 1))] = bad
    _check({name: pickle.dumps(_coo(name, data=values))}, name, must_fail=True)


@FUZZ
@given(name=MATRIX, dtype=st.sampled_from([np.complex128, np.str_, object, "datetime64[s]"]))
def test_matrix_values_of_a_wrong_dtype(name, dtype):
    values = np.ones(int(SPLITS[name].sum())).astype(dtype)
    _check({name: pickle.dumps(_coo(name, data=values))}, name, must_fail=True)


@FUZZ
@given(name=MATRIX, dtype=st.sampled_from([np.bool_, np.int8, np.uint64, np.float16, np.float32]),
       scale=st.sampled_from([1, 3, 1e-60, 1e30]))
def test_matrix_values_of_other_real_dtypes_load_the_same(name, dtype, scale):
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        values = (np.ones(int(SPLITS[name].sum())) * scale).astype(dtype)
    if not np.all(np.isfinite(values.astype(np.float64))) or not np.all(values):
        return  # the cast itself lost the value (inf in float16, 0 in float16): not this property
    _check({name: pickle.dumps(_coo(name, data=values))}, name, must_fail=False, same=True)


@FUZZ
@given(name=MATRIX, axis=st.sampled_from(["row", "col"]), bad=BAD_INDICES, data=st.data())
def test_out_of_range_indices(name, axis, bad, data):
    base = sp.coo_matrix(SPLITS[name])
    idx = getattr(base, axis).astype(np.int64)
    idx[data.draw(st.integers(0, len(idx) - 1))] = bad
    _check({name: pickle.dumps(_coo(name, **{axis: idx}))}, name, must_fail=True)


@FUZZ
@given(name=MATRIX, dtype=st.sampled_from([np.int8, np.uint16, np.int64, np.uint64, np.float64, np.bool_]))
def test_index_dtypes(name, dtype):
    base = sp.coo_matrix(SPLITS[name])
    m = _coo(name, row=base.row.astype(dtype), col=base.col.astype(dtype))
    real_ints = np.dtype(dtype).kind in "iu"
    _check({name: pickle.dumps(m)}, name, must_fail=not real_ints, same=real_ints)


@FUZZ
@given(name=MATRIX, which=st.sampled_from(["row", "col", "data"]))
def test_arrays_of_different_lengths(name, which):
    base = sp.coo_matrix(SPLITS[name])
    arrays = {"row": base.row, "col": base.col, "data": base.data}
    arrays[which] = arrays[which][:-1]
    _check({name: pickle.dumps(_coo(name, **arrays))}, name, must_fail=True)


@FUZZ
@given(name=MATRIX, shape=st.one_of(
    st.tuples(st.integers(0, 9), st.integers(0, 9)).filter(lambda s: s != (USERS, ITEMS)),
    st.sampled_from([(-1, ITEMS), (2**40, ITEMS), (USERS, 2**62), (USERS,), (USERS, ITEMS, 1), (6.0, 5.0),
                     ("6", "5"), (True, 5), None, [USERS, ITEMS]])))
def test_wrong_matrix_shape(name, shape):
    _check({name: pickle.dumps(_coo(name, shape=shape))}, name, must_fail=True)


@FUZZ
@given(name=MATRIX, fmt=st.sampled_from(["csr", "csc"]), protocol=st.sampled_from([3, 4, 5]))
def test_other_sparse_formats_load_the_same(name, fmt, protocol):
    data = pickle.dumps(sp.coo_matrix(SPLITS[name]).asformat(fmt), protocol=protocol)
    _check({name: data}, name, must_fail=False, same=True)


@FUZZ
@given(name=MATRIX, data=st.data())
def test_broken_compressed_matrix(name, data):
    m = sp.csr_matrix(SPLITS[name])
    indptr, indices = m.indptr.astype(np.int64), m.indices.astype(np.int64)
    what = data.draw(st.sampled_from(["indptr_value", "indptr_short", "index"]))
    if what == "indptr_value":
        i = data.draw(st.integers(0, len(indptr) - 1))
        indptr[i] += data.draw(st.sampled_from([-100, -1, 1, 100]))
        if np.all(np.diff(indptr) >= 0) and indptr[0] == 0 and indptr[-1] == len(indices):
            return  # still a valid CSR (moves one entry to another row): not this property
    elif what == "indptr_short":
        indptr = indptr[:-1]
    else:
        indices[data.draw(st.integers(0, len(indices) - 1))] = data.draw(BAD_INDICES)
    m.indptr, m.indices = indptr, indices
    _check({name: pickle.dumps(m)}, name, must_fail=True)


@FUZZ
@given(name=MATRIX, obj=st.sampled_from(["dense", "list", "coo_array", "dict", "none", "dtype"]))
def test_not_a_sparse_matrix(name, obj):
    m = SPLITS[name]
    value = {"dense": m, "list": m.tolist(), "coo_array": sp.coo_array(m), "dict": {"data": m},
             "none": None, "dtype": m.dtype}[obj]
    _check({name: pickle.dumps(value)}, name, must_fail=True)


@FUZZ
@given(name=st.sampled_from(["valMat.pkl", "tstMat.pkl"]), other=MATRIX, data=st.data())
def test_overlapping_splits(name, other, data):
    if name == other:
        return
    dense = SPLITS[name].copy()
    rows, cols = np.nonzero(SPLITS[other])
    k = data.draw(st.integers(0, len(rows) - 1))
    dense[rows[k], cols[k]] = 1
    _check({name: pickle.dumps(sp.coo_matrix(dense))}, name, must_fail=True)


def test_duplicate_entries_count_once():
    m = sp.coo_matrix(SPLITS["trnMat.pkl"])
    dup = sp.coo_matrix((np.concatenate([m.data, m.data]), (np.tile(m.row, 2), np.tile(m.col, 2))), shape=m.shape)
    _check({"trnMat.pkl": pickle.dumps(dup)}, "trnMat.pkl", must_fail=False, same=True)


# --- features ---------------------------------------------------------------------------------------

@FUZZ
@given(feats=st.sampled_from([
    np.zeros((ITEMS + 1, 3)), np.zeros((ITEMS - 1, 3)), np.zeros(ITEMS), np.zeros((ITEMS, 3, 2)), np.zeros((ITEMS, 0)),
    np.zeros(()), FEATURES.astype(np.complex64), FEATURES.astype(str), FEATURES.astype(object), FEATURES > 0,
    np.full((ITEMS, 3), 1e300), np.zeros((ITEMS, 3), dtype=[("a", "f4")]), np.zeros((ITEMS, 3), "datetime64[s]")]))
def test_wrong_features(feats):
    _check({"image_feat.npy": _npy(feats)}, "image_feat.npy", must_fail=True)


@FUZZ
@given(bad=st.sampled_from([np.nan, np.inf, -np.inf]), dtype=st.sampled_from([np.float16, np.float32, np.float64]),
       data=st.data())
def test_non_finite_features(bad, dtype, data):
    feats = FEATURES.astype(dtype)
    feats.flat[data.draw(st.integers(0, feats.size - 1))] = bad
    _check({"image_feat.npy": _npy(feats)}, "image_feat.npy", must_fail=True)


@FUZZ
@given(dtype=st.sampled_from([np.float16, np.float64, np.int32, np.uint8, ">f8"]))
def test_other_feature_dtypes_load(dtype):
    ds = _check({"image_feat.npy": _npy(FEATURES.astype(dtype))}, "image_feat.npy", must_fail=False)
    assert np.allclose(ds.features["image"], FEATURES.astype(dtype).astype(np.float32))


# --- kg.txt ---------------------------------------------------------------------------------------------

def _kg(lines: list[str]) -> dict[str, bytes]:
    return {"kg.txt": ("\n".join(lines) + "\n").encode()}


@FUZZ
@given(line=st.integers(0, len(KG_LINES) - 1), column=st.integers(0, 2),
       token=st.sampled_from(["-1", "-99999999999", "9223372036854775808", "1.5", "1e3", "nan", "x", "0x1", "1,2"]))
def test_bad_kg_tokens(line, column, token):
    lines = list(KG_LINES)
    parts = lines[line].split()
    parts[column] = token
    lines[line] = " ".join(parts)
    _check(_kg(lines), "kg.txt", must_fail=True)


@FUZZ
@given(line=st.integers(0, len(KG_LINES) - 1), item=st.sampled_from([ITEMS, ITEMS + 1, 2**40, 2**63 - 1]))
def test_kg_item_out_of_range(line, item):
    lines = list(KG_LINES)
    lines[line] = f"{item} 1 7"
    _check(_kg(lines), "kg.txt", must_fail=True)


@FUZZ
@given(line=st.integers(0, len(KG_LINES) - 1), n=st.sampled_from([1, 2, 4, 5]))
def test_kg_wrong_column_count(line, n):
    lines = list(KG_LINES)
    lines[line] = " ".join(["1"] * n)
    _check(_kg(lines), "kg.txt", must_fail=True)


@FUZZ
@given(entity=st.sampled_from([0, 10**9, 2**62, 2**63 - 1]), relation=st.sampled_from([0, 2**40, 2**63 - 1]),
       extra=st.lists(st.sampled_from(["", "# a comment", "  ", "\t"]) , max_size=3), dup=st.booleans())
def test_valid_kg_variants_load_exactly(entity, relation, extra, dup):
    lines = KG_LINES + [f"3 {relation} {entity}"] + (KG_LINES[:1] if dup else []) + extra
    ds = _check(_kg(lines), "kg.txt", must_fail=False)
    expected = np.unique(np.array([[int(t) for t in l.split()] for l in KG_LINES + [f"3 {relation} {entity}"]]), axis=0)
    assert np.array_equal(ds.kg_triples, expected)


# --- the authors' Similarity_*.pkl ---------------------------------------------------------------------

SIMILARITY = pickle.dumps(sp.csr_matrix(np.random.default_rng(2).random((USERS + ITEMS, USERS + ITEMS)) < 0.3,
                                        dtype=np.float64), protocol=4)


@RAW
@given(data=st.data())
def test_broken_similarity(data):
    raw = bytearray(SIMILARITY)
    how = data.draw(st.sampled_from(["cut", "flip"]))
    pos = data.draw(st.integers(0, len(raw) - 1))
    if how == "cut":
        raw = raw[:pos]
    else:
        raw[pos] ^= data.draw(st.integers(1, 255))
    path = Path(tempfile.mkdtemp(prefix="sim-", dir=_write.root)) / "Similarity_9_9.pkl"
    path.write_bytes(bytes(raw))
    try:
        block = load_authors_similarity(path, USERS, ITEMS)
    except DatasetError as exc:
        assert "\n" not in str(exc) and "Similarity_9_9.pkl" in str(exc)
        return
    assert how == "flip" and isinstance(block, sp.csr_matrix) and block.shape == (USERS, ITEMS)
    block.check_format(full_check=True)
    assert np.all((block.data >= 0) & (block.data <= 1))


# --- the command line -----------------------------------------------------------------------------------

class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("breakage,needle", [
    (lambda p, marker: (p / "tstMat.pkl").write_bytes(BASE["tstMat.pkl"][:40]), "tstMat.pkl: not a readable pickle"),
    (lambda p, marker: (p / "trnMat.pkl").write_bytes(pickle.dumps(_Evil(marker))),
     "trnMat.pkl: refuses to load global"),
    (lambda p, marker: (p / "kg.txt").write_text("0 1 x\n"), "kg.txt: expected lines of three integers"),
])
def test_cli_reports_a_corrupt_dataset_on_one_line(tmp_path, breakage, needle):
    folder, marker = tmp_path / "data" / "broken", tmp_path / "pwned"
    folder.mkdir(parents=True)
    for name, data in BASE.items():
        (folder / name).write_bytes(data)
    breakage(folder, marker)
    env = {**os.environ, "KDIFFE_CACHE_DIR": str(tmp_path / "cache")}
    kg_file = ["--variant", "no_s", "--set", "kg=file"] if "kg.txt" in needle else []  # kg.txt is read only then
    proc = subprocess.run([sys.executable, "-m", "kdiffe", "train", "--dataset", "broken",
                           "--data-dir", str(tmp_path / "data"), "--epochs", "1", "--device", "cpu", *kg_file],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert not marker.exists()
