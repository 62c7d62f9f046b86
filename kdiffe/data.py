"""Datasets: the authors' on-disk format, validation at load, derived splits, synthetic data.

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

import hashlib
import math
import os
import stat
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, Mapping

import numpy as np
import scipy.sparse as sp

from . import safe_pickle
from .config import RESPLIT_HOLDOUTS, ConfigError
from .errors import UserError
from .files import file_kind, open_regular
from .formats import LOADERS, detect_format


class DatasetError(UserError):
    """A dataset that is missing or malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class Dataset:
    """One recommendation dataset: binary user x item splits, item features, optional KG.

    The KG is either given as triples (``kg_array``) or read from ``kg_file`` (the folder's
    kg.txt) on first access of :attr:`kg_triples`.
    """

    name: str
    train: sp.csr_matrix
    val: sp.csr_matrix
    test: sp.csr_matrix
    features: Mapping[str, np.ndarray] = field(default_factory=dict)
    kg_array: np.ndarray | None = None  # (n, 3) int64: item, relation, entity
    kg_file: Path | None = None  # kg.txt, parsed and checked when kg_triples is first used
    notes: tuple[str, ...] = ()
    user_ids: tuple[str, ...] | None = None  #: the original id of each user index (None: the index is the id)
    item_ids: tuple[str, ...] | None = None  #: the original id of each item index (kdiffe.formats)

    @cached_property
    def kg_triples(self) -> np.ndarray | None:
        """(n, 3) int64 triples (item, relation, entity): ``kg_array``, else ``kg_file`` parsed once."""
        if self.kg_array is not None or self.kg_file is None:
            return self.kg_array
        return load_kg_file(self.kg_file, self.n_items)

    @property
    def kg_loaded(self) -> bool:
        """Whether :attr:`kg_triples` is available without reading a file."""
        return self.kg_file is None or self.kg_array is not None or "kg_triples" in self.__dict__

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]

    @property
    def fingerprint(self) -> str:
        """Stable hash of the training graph, used to key caches (S)."""
        h = hashlib.sha1()
        h.update(np.asarray(self.train.shape, dtype=np.int64).tobytes())
        h.update(self.train.indptr.astype(np.int64).tobytes())
        h.update(self.train.indices.astype(np.int64).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> str:
        mods = ", ".join(f"{k} {v.shape[1]}-d" for k, v in self.features.items()) or "none"
        if not self.kg_loaded:  # do not parse kg.txt just to count it
            kg = "present"
        else:
            kg = "none" if self.kg_triples is None else f"{len(self.kg_triples)} triples"
        return (f"{self.name}: {self.n_users} users, {self.n_items} items, "
                f"{self.train.nnz}/{self.val.nnz}/{self.test.nnz} train/val/test; "
                f"features: {mods}; kg.txt: {kg}")


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


def _one_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's text on one line, shortened: it goes into a DatasetError message."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _why(exc: BaseException) -> str:
    """``PermissionError: Permission denied``: an OSError's kind and reason, without its path."""
    reason = getattr(exc, "strerror", None) or _one_line(exc)
    return f"{type(exc).__name__}: {reason}"


def _probe(path: Path) -> os.stat_result | None:
    """``os.stat(path)`` (symlinks followed), None when nothing is there; any other failure
    (permission denied, a loop of links, a name the system refuses) is a DatasetError naming it."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError as exc:  # name the folder that cannot be searched, when it is the parent
        blocked = path.parent if path.parent != path and not os.access(path.parent, os.X_OK) else path
        raise DatasetError(f"{blocked}: cannot access ({_why(exc)})") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise DatasetError(f"{path}: cannot access ({_why(exc)})") from None


def _is_dir(path: Path) -> bool:
    st = _probe(path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def _list_dir(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{folder}: cannot list the folder ({_why(exc)})") from None


def _open_regular(path: Path) -> BinaryIO:
    """``path`` opened for binary reading; it must be a regular file once symlinks are followed:
    checked before opening (so a device is never opened) and again on the open descriptor
    (:func:`kdiffe.files.open_regular`)."""
    st = _probe(path)
    if st is None:
        raise DatasetError(f"{path}: file not found")
    kind = file_kind(st.st_mode)
    if kind is not None:
        raise DatasetError(f"{path}: not a regular file ({kind})")
    try:
        return open_regular(path, DatasetError)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read ({_why(exc)})") from None


def _read_bytes(path: Path) -> bytes:
    with _open_regular(path) as fh:
        try:
            return fh.read()
        except (OSError, MemoryError) as exc:
            raise DatasetError(f"{path}: cannot read ({_why(exc)})") from None


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


def _binary_csr(matrix: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float32)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.data[:] = 1.0
    out.sort_indices()
    return out


def _freeze(matrix: sp.csr_matrix) -> sp.csr_matrix:
    for arr in (matrix.data, matrix.indices, matrix.indptr):
        arr.flags.writeable = False
    return matrix


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


def _check_npy_header(path: Path, fh) -> None:
    """Compare the size an .npy header declares with the data the file holds, before reading.

    ``np.load`` allocates the declared shape first (or fails with a MemoryError); ``np.save``
    writes exactly header + data, so anything else is a corrupt or forged header. Leaves ``fh``
    at the start; files that are not .npy (an .npz) are left to ``np.load``.
    """
    fmt = np.lib.format
    if fh.read(len(fmt.MAGIC_PREFIX)) != fmt.MAGIC_PREFIX:
        fh.seek(0)
        return
    try:
        fh.seek(0)
        version = fmt.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy format version {version}")
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read_header(fh)
    except Exception as exc:
        raise DatasetError(f"{path}: not a readable .npy array ({type(exc).__name__}: {_one_line(exc)})") from None
    held = os.fstat(fh.fileno()).st_size - fh.tell()
    fh.seek(0)
    if dtype.hasobject:  # np.load refuses it (allow_pickle=False) before allocating
        return
    declared = math.prod(shape) * dtype.itemsize
    if declared != held:
        raise DatasetError(f"{path}: header declares shape {shape} of {dtype} ({declared} bytes) "
                           f"but the file holds {held} bytes of data")


def _load_features(path: Path, n_items: int) -> np.ndarray:
    with _open_regular(path) as fh:
        _check_npy_header(path, fh)
        try:
            feats = np.load(fh, allow_pickle=False)
        except Exception as exc:
            raise DatasetError(f"{path}: not a readable .npy array ({type(exc).__name__}: {_one_line(exc)})") from None
    if not isinstance(feats, np.ndarray):  # an .npz archive
        raise DatasetError(f"{path}: expected one .npy array, got {type(feats).__name__}")
    if feats.ndim != 2 or feats.shape[0] != n_items or feats.shape[1] == 0:
        raise DatasetError(f"{path}: expected shape ({n_items}, dim) for {n_items} items, got {feats.shape}")
    if feats.dtype.kind not in "iuf":  # complex would lose its imaginary part silently
        raise DatasetError(f"{path}: expected real numeric features, got dtype {feats.dtype}")
    if feats.dtype.kind == "f" and not np.all(np.isfinite(feats)):
        raise DatasetError(f"{path}: contains NaN or infinite values")
    with np.errstate(over="ignore"):
        feats = feats.astype(np.float32)
    if not np.all(np.isfinite(feats)):
        raise DatasetError(f"{path}: values beyond the float32 range")
    feats.flags.writeable = False
    return feats


def load_kg_file(path: Path, n_items: int) -> np.ndarray:
    """Read ``item relation entity`` triples; duplicates are dropped."""
    try:
        with _open_regular(path) as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = np.loadtxt(fh, dtype=np.int64, ndmin=2)
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{path}: expected lines of three integers 'head relation tail' "
                           f"({_one_line(exc)})") from None
    if raw.size == 0:
        raise DatasetError(f"{path}: no triples")
    if raw.shape[1] != 3:
        raise DatasetError(f"{path}: expected 3 columns, got {raw.shape[1]}")
    if raw.min() < 0:
        raise DatasetError(f"{path}: negative id")
    if raw[:, 0].max() >= n_items:
        raise DatasetError(f"{path}: item id {raw[:, 0].max()} out of range for {n_items} items")
    return np.unique(raw, axis=0)


def _random_rank(users: np.ndarray, n_users: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Interactions per user, and each interaction's position (0, 1, ...) in a random order of its
    user's interactions."""
    counts = np.bincount(users, minlength=n_users)
    order = np.lexsort((rng.random(len(users)), users))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - starts[users[order]]
    return counts, rank


def _per_user_shares(users: np.ndarray, n_users: int, fractions: tuple[float, ...],
                     rng: np.random.Generator) -> np.ndarray:
    """Part index (1..len(fractions)) or 0 for each interaction: about ``fractions[k]`` of each
    user's interactions go to part k + 1 (rounded up or down at random), in a random order, and at
    least one interaction of every user stays in part 0."""
    counts, rank = _random_rank(users, n_users, rng)
    part = np.zeros(len(users), dtype=np.int64)
    room = np.maximum(counts - 1, 0)
    offset = np.zeros(n_users, dtype=np.int64)
    for k, fraction in enumerate(fractions, start=1):
        take = np.minimum(np.floor(counts * fraction + rng.random(n_users)).astype(np.int64), room - offset)
        chosen = (rank >= offset[users]) & (rank < (offset + take)[users])
        part[chosen] = k
        offset += take
    return part


def _pairs(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    return _binary_csr(sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape))


def split_validation(train: sp.csr_matrix, fraction: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Move about `fraction` of each user's train items to validation (seeded, >= 1 item stays)."""
    coo = train.tocoo()
    part = _per_user_shares(coo.row, train.shape[0], (fraction,), np.random.default_rng(seed))
    return (_pairs(coo.row[part == 0], coo.col[part == 0], train.shape),
            _pairs(coo.row[part == 1], coo.col[part == 1], train.shape))


def _one_per_user(users: np.ndarray, n_users: int, val_share: float, rng: np.random.Generator) -> np.ndarray:
    """Part index (0 train, 1 validation, 2 test) for each interaction: one random interaction of
    every user with at least two is held out, in validation with probability ``val_share``, else in
    test (the structure of the published TikTok split: one held-out item per user)."""
    counts, rank = _random_rank(users, n_users, rng)
    to_val = rng.random(n_users) < val_share
    held = (rank == 0) & (counts[users] >= 2)
    return np.where(held, np.where(to_val[users], 1, 2), 0)


def resplit(ds: Dataset, seed: int, ratios: tuple[float, float, float] | None = None,
            holdout: str = "shares") -> Dataset:
    """The union of a dataset's train, validation and test interactions split again per user.

    ``ratios`` (train, validation, test) default to the shares of the dataset's own split. With
    ``holdout="shares"`` about those shares of every user's interactions go to each part (so users
    with few interactions rarely reach validation or test); with ``holdout="one"`` every user with
    at least two interactions has exactly one held out, in validation or test in the proportion
    val : test of the ratios (the published TikTok split's structure). Each user keeps at least one
    training interaction; seeded, so a re-split is a reproducible draw.
    """
    if holdout not in RESPLIT_HOLDOUTS:
        raise DatasetError(f"resplit holdout {holdout!r}: choose from {', '.join(RESPLIT_HOLDOUTS)}")
    if ratios is None:
        sizes = np.array([ds.train.nnz, ds.val.nnz, ds.test.nnz], dtype=np.float64)
        ratios = tuple(sizes / sizes.sum())
    if len(ratios) != 3 or min(ratios) < 0 or not np.isclose(sum(ratios), 1.0) or ratios[0] <= 0:
        raise DatasetError(f"resplit ratios {ratios}: need three shares (train, val, test) >= 0 summing to 1")
    union = (ds.train + ds.val + ds.test).tocoo()
    rng = np.random.default_rng(seed)
    if holdout == "one":
        if ratios[1] + ratios[2] <= 0:
            raise DatasetError(f"resplit ratios {ratios}: holdout 'one' needs a validation or test share > 0")
        val_share = ratios[1] / (ratios[1] + ratios[2])
        part = _one_per_user(union.row, ds.n_users, val_share, rng)
        how = f"one interaction per user held out, val:test {val_share:.3f}"
        name = f"{ds.name}[resplit {seed}, one held out]"
    else:
        part = _per_user_shares(union.row, ds.n_users, tuple(ratios[1:]), rng)
        how, name = "/".join(f"{r:.3f}" for r in ratios) + " (train/val/test)", f"{ds.name}[resplit {seed}]"
    train, val, test = (_freeze(_pairs(union.row[part == k], union.col[part == k], ds.train.shape)) for k in range(3))
    return replace(ds, name=name, train=train, val=val, test=test,
                   notes=ds.notes + (f"re-split every user's interactions, {how}, seed {seed}",))


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
