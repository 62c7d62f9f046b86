"""The Dataset, its splits, and safe reads of the untrusted files every dataset format is made of.

Shared by :mod:`kdiffe.data` (folders, the authors' format, synthetic data, loading by name) and
:mod:`kdiffe.formats` (MMRec, RecBole, CSV/TSV): the :class:`Dataset` every format becomes, the
:class:`DatasetError` that names a bad file on one line, regular-file-only reads, checked .npy
features, kg.txt triples, binary CSR splits and the seeded re-split (:func:`resplit`).
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
from typing import BinaryIO, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from .config import RESPLIT_HOLDOUTS
from .errors import UserError
from .files import file_kind, open_regular, read_json


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


#: The original ids of a dataset's rows, beside a saved model or a converted dataset: {"users": [...], "items": [...]}.
IDS_FILE = "ids.json"


def read_ids(folder: Path, n_users: int, n_items: int) -> tuple[list[str], list[str]] | None:
    """(user ids, item ids) from ``folder/ids.json``, None if there is none; refuses one that is not
    two lists of strings of the given lengths."""
    path = Path(folder) / IDS_FILE
    if not path.is_file():
        return None
    ids = read_json(path, DatasetError)
    users, items = (ids.get("users"), ids.get("items")) if isinstance(ids, dict) else (None, None)
    if not (isinstance(users, list) and isinstance(items, list) and len(users) == n_users and len(items) == n_items
            and all(isinstance(x, str) for x in users + items)):
        raise DatasetError(f"{path}: expected {{\"users\": [{n_users} strings], \"items\": [{n_items} strings]}}")
    return users, items


def write_ids(folder: Path, user_ids: Sequence[str], item_ids: Sequence[str]) -> Path:
    """``folder/ids.json``: the original id of each user and item row (:data:`IDS_FILE`)."""
    import json

    from .files import write_atomic

    return write_atomic(Path(folder) / IDS_FILE, json.dumps({"users": list(user_ids), "items": list(item_ids)}))


def cold_interactions(ds: Dataset) -> dict[str, tuple[int, int]]:
    """{"validation": (interactions, items), "test": (...)}: those on items never seen in training."""
    seen = np.asarray(ds.train.sum(axis=0)).ravel() > 0
    out = {}
    for label, matrix in (("validation", ds.val), ("test", ds.test)):
        cold = ~seen[matrix.indices]
        out[label] = (int(cold.sum()), len(np.unique(matrix.indices[cold])))
    return out
