"""Datasets: the authors' on-disk format, validation at load, derived splits, synthetic data, and
loading any dataset by name (its folder's format detected, :mod:`kdiffe.formats`; the
:class:`Dataset` every format becomes and the safe file reads they share: :mod:`kdiffe.dataset`).

A dataset folder holds ``trnMat.pkl``, ``valMat.pkl`` (optional), ``tstMat.pkl`` (pickled
scipy.sparse user x item matrices), any ``<modality>_feat.npy`` (items x dim) and an optional
``kg.txt`` of ``head relation tail`` triples (item, relation, entity). The interaction graph
is the bipartite user-item graph A of the paper (Section III); features feed the knowledge
graph built in :mod:`kdiffe.knowledge`.

Loading never runs code from a dataset (pickles go through :mod:`kdiffe.safe_pickle`), and
every file is checked: a malformed one raises :class:`DatasetError` naming it, on one line.
Only regular files are opened (a FIFO, a device such as /dev/zero, or a folder in a file's
place is refused); any OSError while looking for or reading the data dir, a dataset folder or
a file becomes a DatasetError naming that path. Declared sizes are checked against the file's
content before anything of that size is allocated (:func:`check_declared_shape`, and the
header of each .npy against its file size). A validation or test split without interactions
is refused (it would make model selection or the reported metrics meaningless).
``kg.txt`` is parsed only when ``Dataset.kg_triples`` is first used (``kg=file``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import numpy as np
import scipy.sparse as sp

from . import safe_pickle
from .config import ConfigError
from .dataset import (Dataset, DatasetError, _binary_csr, _freeze, _is_dir, _list_dir, _load_features, _one_line,
                      _pairs, _per_user_shares, _probe, _read_bytes, resplit)
from .formats import LOADERS, detect_format


#: Where datasets are looked for when neither --data-dir nor $KDIFFE_DATA_DIR names a folder, in
#: this order: the first that holds a dataset (a folder with trnMat.pkl) is used, else ./data.
DATA_PLACES = ("data", "datasets", "../shared/datasets", "~/.cache/kdiffe/datasets")


def data_places() -> list[Path]:
    return [Path(place).expanduser().resolve() for place in DATA_PLACES]


def _holds_datasets(folder: Path) -> bool:
    try:
        return _is_dir(folder) and any(detect_format(folder / name) for name in _list_dir(folder))
    except DatasetError:
        return False


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $KDIFFE_DATA_DIR, else the first of :data:`DATA_PLACES` holding a dataset,
    else ./data (absolute)."""
    chosen = data_dir or os.environ.get("KDIFFE_DATA_DIR")
    if chosen:
        return Path(chosen).expanduser().resolve()
    return next((place for place in data_places() if _holds_datasets(place)), data_places()[0])


def searched_places(data_dir: str | os.PathLike | None = None) -> str:
    """Where a dataset was looked for, for an error message."""
    if data_dir:
        return f"--data-dir {data_dir}"
    if os.environ.get("KDIFFE_DATA_DIR"):
        return f"$KDIFFE_DATA_DIR={os.environ['KDIFFE_DATA_DIR']}"
    return "searched " + ", ".join(map(str, data_places())) + " (set --data-dir or KDIFFE_DATA_DIR)"


def available_datasets(data_dir: str | os.PathLike | None = None) -> list[str]:
    root = resolve_data_dir(data_dir)
    if not _is_dir(root):
        return []
    found = []
    for name in _list_dir(root):
        st = _probe(root / name / "trnMat.pkl")
        if (st is not None and stat.S_ISREG(st.st_mode)) or (st is None and detect_format(root / name)):
            found.append(name)
    return sorted(found)


#: :func:`check_declared_shape`: users + items may be at most this many per training interaction ...
IDS_PER_INTERACTION = 16
#: ... plus this many, whatever the interactions (small hand-made datasets)
IDS_SLACK = 2**16


def check_declared_shape(path: Path, shape: tuple[int, int], nnz: int) -> None:
    """Refuse a training matrix whose declared shape its interactions cannot justify.

    Rule: ``users + items <= IDS_PER_INTERACTION * nnz + IDS_SLACK`` (16 per interaction plus
    65536). The shape of trnMat.pkl drives every per-user and per-item allocation (CSR row
    pointers, per-user counts, embedding tables), while a pickle's size grows with nnz only; a
    forged shape such as (2**31 - 1) x 200 in a 5 KB file would otherwise ask for tens of GiB.
    Under the rule those allocations stay within a constant factor of the file's arrays plus a
    few MiB. Real datasets are far inside it: TikTok 16,018 ids for 59,541 train interactions
    (0.27 per interaction), Baby 26,495 for 118,551 (0.22), Sports 53,955 for 218,409 (0.25).
    valMat, tstMat and Similarity_*.pkl must match this (checked) shape exactly.
    """
    ids, limit = shape[0] + shape[1], IDS_PER_INTERACTION * nnz + IDS_SLACK
    if ids > limit:
        raise DatasetError(f"{path}: declares shape {shape} ({ids} users + items) for only {nnz} interactions; "
                           f"at most {IDS_PER_INTERACTION} ids per interaction + {IDS_SLACK} are accepted "
                           "(a corrupt or forged shape)")


def load_sparse_pickle(path: str | os.PathLike) -> sp.coo_matrix:
    """The scipy.sparse matrix pickled in ``path``, unpickled without running code and checked.

    Only the globals in :data:`kdiffe.safe_pickle.ALLOWED_GLOBALS` resolve, to inert stand-ins;
    index arrays must be in range and consistent, values bool, integer or real. Returns a fresh
    COO built from the checked arrays.
    """
    path = Path(path)
    data = _read_bytes(path)
    try:
        rows, cols, values, shape = safe_pickle.load_sparse(data)
    except safe_pickle.ForbiddenGlobal as exc:
        raise DatasetError(f"{path}: refuses to load global {exc.name!r} "
                           "(only scipy.sparse matrices and numpy arrays are allowed)") from None
    except safe_pickle.MalformedSparse as exc:
        raise DatasetError(f"{path}: {_one_line(exc)}") from None
    except Exception as exc:  # unpickling garbage raises many types
        raise DatasetError(f"{path}: not a readable pickle ({type(exc).__name__}: {_one_line(exc)})") from None
    return sp.coo_matrix((values.astype(np.float64), (rows, cols)), shape=shape)  # float64: no float16 in scipy


def _load_matrix(path: Path, shape: tuple[int, int] | None) -> sp.coo_matrix:
    """Binary user x item COO of one split (positive entries are interactions; may repeat).

    COO needs no per-row arrays, so a corrupt shape is caught by :func:`load_folder`'s
    comparison with the other splits before anything of that size is allocated.
    """
    coo = load_sparse_pickle(path)
    if shape is not None and coo.shape != shape:
        raise DatasetError(f"{path}: shape {coo.shape} disagrees with trnMat.pkl shape {shape}")
    values = coo.data.astype(np.float64)
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise DatasetError(f"{path}: entries must be finite and non-negative")
    keep = values > 0  # before any float32 cast, which would turn tiny values into 0
    return sp.coo_matrix((np.ones(int(keep.sum()), np.float32), (coo.row[keep], coo.col[keep])), shape=coo.shape)


def split_validation(train: sp.csr_matrix, fraction: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Move about `fraction` of each user's train items to validation (seeded, >= 1 item stays)."""
    coo = train.tocoo()
    part = _per_user_shares(coo.row, train.shape[0], (fraction,), np.random.default_rng(seed))
    return (_pairs(coo.row[part == 0], coo.col[part == 0], train.shape),
            _pairs(coo.row[part == 1], coo.col[part == 1], train.shape))


def _check_disjoint(a: sp.csr_matrix, b: sp.csr_matrix, what: str) -> None:
    overlap = a.multiply(b).nnz
    if overlap:
        raise DatasetError(f"{what}: {overlap} user-item pairs appear in both splits")


def _require_interactions(matrix: sp.spmatrix, path: Path, what: str) -> None:
    if matrix.nnz == 0:
        raise DatasetError(f"{path}: holds no interactions; {what}")


def load_folder(path: str | os.PathLike, *, seed: int = 0, val_fraction: float = 0.1,
                name: str | None = None) -> Dataset:
    """Load and validate one dataset folder in the authors' format.

    trnMat.pkl's shape must be justified by its interactions (:func:`check_declared_shape`);
    valMat.pkl, when present, and tstMat.pkl must hold at least one interaction.
    """
    folder = Path(path)
    if not _is_dir(folder):
        raise DatasetError(f"{folder}: dataset folder not found")
    notes: list[str] = []
    train = _load_matrix(folder / "trnMat.pkl", None)
    if train.nnz == 0:
        raise DatasetError(f"{folder / 'trnMat.pkl'}: the training set is empty")
    check_declared_shape(folder / "trnMat.pkl", train.shape, train.nnz)
    test = _load_matrix(folder / "tstMat.pkl", train.shape)
    _require_interactions(test, folder / "tstMat.pkl", "there is nothing to test on")
    val = _load_matrix(folder / "valMat.pkl", train.shape) if _probe(folder / "valMat.pkl") is not None else None
    if val is not None:
        _require_interactions(val, folder / "valMat.pkl", "delete it to have a seeded validation split taken "
                              "from train (as for a dataset without valMat.pkl)")
    train, test = _binary_csr(train), _binary_csr(test)  # shapes agree: now allocate per row
    _check_disjoint(train, test, f"{folder / 'tstMat.pkl'} vs trnMat.pkl")
    if val is not None:
        val = _binary_csr(val)
        _check_disjoint(train, val, f"{folder / 'valMat.pkl'} vs trnMat.pkl")
        _check_disjoint(val, test, f"{folder / 'valMat.pkl'} vs tstMat.pkl")
    else:  # derived from train, hence disjoint from test
        train, val = split_validation(train, val_fraction, seed)
        notes.append(f"no valMat.pkl: derived a validation split of {val.nnz} interactions "
                     f"({val_fraction:.0%} of train, seed {seed})")
    features = {p[: -len("_feat.npy")]: _load_features(folder / p, train.shape[1])
                for p in _list_dir(folder) if p.endswith("_feat.npy")}
    kg_file = folder / "kg.txt" if _probe(folder / "kg.txt") is not None else None
    return Dataset(name=name or folder.name, train=_freeze(train), val=_freeze(val), test=_freeze(test),
                   features=features, kg_file=kg_file, notes=tuple(notes))


def make_synthetic(n_users: int = 600, n_items: int = 400, n_clusters: int = 8,
                   interactions: int = 12, seed: int = 0, noise: float = 0.15,
                   feature_noise: float = 0.6) -> Dataset:
    """Seeded dataset with planted taste clusters and features that carry the cluster signal.

    Each item belongs to one cluster, each user prefers one cluster; a share ``1 - noise`` of a
    user's interactions falls in that cluster. Two modalities ("image" 32-d, "text" 16-d) are
    cluster centroids plus Gaussian noise. Per user one interaction goes to test, one to
    validation (users with at least 3 distinct items), the rest to train. The item clusters are
    also written as ``kg_triples`` (item, relation 0, entity = cluster).
    """
    if min(n_users, n_items, n_clusters, interactions) < 1 or n_clusters > n_items:
        raise DatasetError("synthetic: sizes must be positive and clusters <= items")
    rng = np.random.default_rng(seed)
    item_cluster = rng.integers(0, n_clusters, n_items)
    item_cluster[:n_clusters] = np.arange(n_clusters)
    by_cluster = np.argsort(item_cluster, kind="stable")
    offsets = np.searchsorted(item_cluster[by_cluster], np.arange(n_clusters + 1))
    user_cluster = rng.integers(0, n_clusters, n_users)
    counts = np.maximum(3, rng.poisson(interactions, n_users))
    users = np.repeat(np.arange(n_users), counts)
    clusters = user_cluster[users]
    sizes = offsets[clusters + 1] - offsets[clusters]
    in_cluster = by_cluster[offsets[clusters] + (rng.random(len(users)) * sizes).astype(np.int64)]
    uniform = rng.integers(0, n_items, len(users))
    items = np.where(rng.random(len(users)) < noise, uniform, in_cluster)
    pairs = np.unique(users * n_items + items)
    users, items = pairs // n_items, pairs % n_items
    per_user = np.bincount(users, minlength=n_users)
    order = np.lexsort((rng.random(len(users)), users))
    starts = np.concatenate([[0], np.cumsum(per_user)[:-1]])
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - starts[users[order]]
    eligible = per_user[users] >= 3
    split = np.where(eligible & (rank == 0), 2, np.where(eligible & (rank == 1), 1, 0))
    shape = (n_users, n_items)

    def part(k: int) -> sp.csr_matrix:
        m = split == k
        return _freeze(_binary_csr(sp.csr_matrix((np.ones(m.sum(), np.float32), (users[m], items[m])), shape=shape)))

    features = {}
    for modality, dim in (("image", 32), ("text", 16)):
        centroids = rng.normal(size=(n_clusters, dim))
        feats = (centroids[item_cluster] + feature_noise * rng.normal(size=(n_items, dim))).astype(np.float32)
        feats.flags.writeable = False
        features[modality] = feats
    kg = np.stack([np.arange(n_items), np.zeros(n_items, np.int64), item_cluster], axis=1).astype(np.int64)
    return Dataset(name="synthetic", train=part(0), val=part(1), test=part(2), features=features,
                   kg_array=kg, notes=())


def subsample_users(ds: Dataset, n_users: int, seed: int) -> Dataset:
    """Keep a seeded random subset of users with all their interactions (items unchanged)."""
    if n_users <= 0 or n_users >= ds.n_users:
        return ds
    keep = np.sort(np.random.default_rng(seed).choice(ds.n_users, n_users, replace=False))
    take = lambda m: _freeze(_binary_csr(m[keep]))  # noqa: E731
    kg = ds.kg_triples if ds.kg_loaded else ds.kg_array  # items unchanged: triples stay valid
    return replace(ds, name=f"{ds.name}[{n_users} users]", train=take(ds.train), val=take(ds.val),
                   test=take(ds.test), kg_array=kg,
                   notes=ds.notes + (f"subsampled {n_users} of {ds.n_users} users (seed {seed})",))


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, seed: int = 0,
                 val_fraction: float = 0.1, max_users: int = 0,
                 synthetic: Mapping[str, int] | None = None, resplit_seed: int = 0,
                 resplit_ratios: tuple[float, float, float] | None = None,
                 resplit_holdout: str = "shares", data_format: str = "auto") -> Dataset:
    """Resolve ``name`` ("synthetic" or a folder under the data dir) and load it; ``resplit_seed`` > 0
    re-splits its interactions (:func:`resplit`), ``max_users`` > 0 then subsamples users."""
    if name == "synthetic":
        ds = make_synthetic(seed=seed, **(synthetic or {}))
        # no user with 3 distinct items: nothing left for validation and test
        _require_split(ds, "syn_items", (synthetic or {}).get("n_items", 400), "the synthetic dataset")
    else:
        root = resolve_data_dir(data_dir)
        folder = root / name
        for place in (root, folder):  # an unreadable data dir or folder is named as such
            _probe(place)
        found = detect_format(folder) if _is_dir(folder) else None
        if found is None:
            known = available_datasets(root)
            hint = f"available: {', '.join(known + ['synthetic'])}; {searched_places(data_dir)}" if known else \
                f"no datasets there; {searched_places(data_dir)}"
            raise DatasetError(f"unknown dataset {name!r}: no {folder / 'trnMat.pkl'}, nor a .inter or "
                               f"interactions.csv/.tsv file ({hint})")
        if data_format not in ("auto", found):
            raise ConfigError(f"data_format={data_format}: {folder} holds the {found} format")
        if found == "authors":
            ds = load_folder(folder, seed=seed, val_fraction=val_fraction, name=name)
            _require_split(ds, "val_fraction", val_fraction, "the validation split derived from train")
        else:
            ds = LOADERS[found](folder, name, seed)
    if resplit_seed:
        ds = resplit(ds, resplit_seed, resplit_ratios, resplit_holdout)
        _require_split(ds, "resplit", resplit_seed, "the re-split (see resplit_ratios, resplit_holdout)")
    if max_users > 0:
        ds = subsample_users(ds, max_users, seed)
        _require_split(ds, "max_users", max_users, f"the subsample of {ds.n_users} users")
    return ds


def _require_split(ds: Dataset, parameter: str, value: object, what: str) -> None:
    """ConfigError naming ``parameter`` when ``ds`` has an empty validation or test split."""
    empty = [split for split, m in (("validation", ds.val), ("test", ds.test)) if m.nnz == 0]
    if empty:
        raise ConfigError(f"{parameter}={value!r}: {what} leaves the {' and '.join(empty)} split without "
                          f"interactions ({ds.name}: {ds.train.nnz}/{ds.val.nnz}/{ds.test.nnz} train/val/test)")
