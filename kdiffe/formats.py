"""Dataset formats researchers already hold, each read into the one :class:`kdiffe.Dataset`.

==========  ==================================================================================
format      a dataset folder holding
==========  ==================================================================================
authors     ``trnMat.pkl``, ``valMat.pkl`` (optional), ``tstMat.pkl``, ``<modality>_feat.npy``,
            ``kg.txt`` (KDiffE's and DiffMM's releases; :func:`kdiffe.load_folder`)
mmrec       ``<name>.inter``: tab-separated with a header holding ``userID``, ``itemID`` and
            ``x_label`` (0 train, 1 valid, 2 test), as MMRec (Zhou et al.) ships Amazon Baby,
            Sports and Clothing; ``image_feat.npy``, ``text_feat.npy`` (any
            ``<modality>_feat.npy``) with row i the features of item i
recbole     RecBole's atomic files: ``<name>.inter`` (tab-separated, typed header such as
            ``user_id:token  item_id:token  rating:float``), or pre-split ``<name>.train.inter``,
            ``<name>.valid.inter``, ``<name>.test.inter``; optionally a KG as ``<name>.kg``
            (``head_id``, ``relation_id``, ``tail_id``) with ``<name>.link`` (``item_id``,
            ``entity_id``), read as (item, relation, entity) triples (``--set kg=file``)
csv         ``interactions.csv`` (comma) or ``interactions.tsv`` (tab): a header with ``user``,
            ``item`` and optionally ``split`` (train, valid, test); ids are any strings. Features
            as ``<modality>_feat.npy`` with row r the item on row r of ``items.csv`` (one
            column ``item``), which they need
==========  ==================================================================================

The format is detected from the folder's files (authors first), or named with
``--set data_format=...``. In every format:

- ids are mapped to indices (mmrec: its integer ids are the indices, so features stay aligned;
  csv: ``items.csv``'s order, else first appearance; users by first appearance) and the original
  ids are kept on the Dataset (``user_ids``, ``item_ids``);
- a (user, item) pair given more than once is kept once, in its earliest split (train, then
  valid, then test), and the count is reported;
- items of validation or test never seen in training (cold items) are kept, and counted;
- without a split column every interaction is pooled and split with the seeded re-split
  (:func:`kdiffe.resplit`, 80/10/10 per user), and the tool says so;
- a bad file is one line naming it (and the line of a bad row): a missing column, a split label
  outside the format's, a non-integer mmrec id, a feature file whose rows disagree with the items.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .config import DATA_FORMATS
from .dataset import (Dataset, DatasetError, _freeze, _is_dir, _list_dir, _load_features, _one_line, _open_regular,
                      _pairs, _check_npy_header, _probe, _read_bytes, _why, cold_interactions, replace, resplit,
                      write_ids)

FORMATS = DATA_FORMATS[1:]
SPLITS = ("train", "valid", "test")
MMREC_COLUMNS = ("userID", "itemID", "x_label")
CSV_FILES = (("interactions.csv", ","), ("interactions.tsv", "\t"))
#: Shares (train, valid, test) of the seeded re-split that gives a dataset without a split column its split.
DERIVED_SPLIT = (0.8, 0.1, 0.1)


def detect_format(folder: Path) -> str | None:
    """The format of a dataset folder (None: none of :data:`FORMATS`)."""
    if _probe(folder / "trnMat.pkl") is not None:
        return "authors"
    try:
        names = _list_dir(folder) if _is_dir(folder) else []
    except DatasetError:
        return None
    inters = sorted(name for name in names if name.endswith(".inter"))
    if inters:
        return "recbole" if ":" in _header(folder / inters[0]) else "mmrec"
    if any(name in names for name, _ in CSV_FILES):
        return "csv"
    return None


def _header(path: Path) -> str:
    """The first line of a text file (at most 64 KiB read)."""
    with _open_regular(path) as fh:
        try:
            return fh.read(65536).split(b"\n", 1)[0].decode("utf-8", "replace")
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read ({_why(exc)})") from None


def _read_table(path: Path, sep: str, required: tuple[str, ...]):
    """A delimited text file with a header, every value read as text (nothing in it is executed)."""
    import io

    import pandas as pd

    raw = _read_bytes(path)
    try:
        frame = pd.read_csv(io.BytesIO(raw), sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                            engine="c")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DatasetError(f"{path}: not a readable {'tab' if sep == chr(9) else 'comma'}-separated file "
                                f"({_one_line(exc)})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: line 1: no column {missing[0]!r} (columns: {', '.join(frame.columns)})")
    if frame.empty:
        raise DatasetError(f"{path}: holds no interactions")
    return frame


def _bad_row(path: Path, rows: np.ndarray, what: str, values) -> None:
    """DatasetError at the first row flagged in ``rows`` (line = row + 2: the header is line 1)."""
    first = int(np.flatnonzero(rows)[0])
    raise DatasetError(f"{path}: line {first + 2}: {what} {values[first]!r}")


def _index(values: np.ndarray, known: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Indices of ``values``: ``known`` first (in its order), then new ids by first appearance."""
    import pandas as pd

    listed = set(known or [])
    order = list(known or []) + [v for v in pd.unique(values) if v not in listed]
    return pd.Index(order).get_indexer(values).astype(np.int64), order


def _assemble(path: Path, name: str, users: np.ndarray, items: np.ndarray, split: np.ndarray | None,
              shape: tuple[int, int], features: dict, user_ids, item_ids, seed: int, notes: list[str]):
    """The Dataset of (user, item, split) triples: duplicates kept once in their earliest split,
    cold items counted, a missing split derived."""
    if split is None:
        split = np.zeros(len(users), np.int64)
    keys = users * shape[1] + items
    order = np.lexsort((split, keys))
    first = np.ones(len(order), bool)
    first[1:] = keys[order][1:] != keys[order][:-1]
    keep = order[first]
    if len(keep) < len(keys):
        notes.append(f"{path.name}: {len(keys) - len(keep)} repeated (user, item) pairs kept once, in their "
                     f"earliest split")
    users, items, split = users[keep], items[keep], split[keep]

    def part(k: int) -> sp.csr_matrix:
        m = split == k
        return _freeze(_pairs(users[m], items[m], shape))

    train, val, test = part(0), part(1), part(2)
    if train.nnz == 0:
        raise DatasetError(f"{path}: no training interactions")
    ds = Dataset(name=name, train=train, val=val, test=test, features=features, notes=(),
                      user_ids=tuple(user_ids), item_ids=tuple(item_ids))
    if val.nnz == 0 and test.nnz == 0:
        ds = resplit(ds, seed, DERIVED_SPLIT, "shares")
        notes.append(f"{path.name}: no split given: derived with the seeded re-split "
                     f"{'/'.join(f'{r:g}' for r in DERIVED_SPLIT)} (train/valid/test) per user, seed {seed}")
    else:
        for matrix, label in ((val, "validation"), (test, "test")):
            if matrix.nnz == 0:
                raise DatasetError(f"{path}: the {label} split holds no interactions")
    for label, (count, items) in cold_interactions(ds).items():
        if count:
            notes.append(f"{label}: {count} interactions on {items} items never seen in training (cold items: kept)")
    return replace(ds, notes=ds.notes + tuple(notes))


def _features(folder: Path, n_items: int, names: list[str]) -> dict:
    """``<modality>_feat.npy`` of ``names``, checked against ``n_items``, by modality."""
    return {p[: -len("_feat.npy")]: _load_features(folder / p, n_items) for p in sorted(names)
            if p.endswith("_feat.npy")}


def _one_inter(folder: Path, names: list[str]) -> Path:
    """The folder's one ``.inter`` file (several are refused: which would be the dataset?)."""
    inters = sorted(n for n in names if n.endswith(".inter"))
    if len(inters) > 1:
        raise DatasetError(f"{folder}: {len(inters)} .inter files ({', '.join(inters)}); keep one")
    return folder / inters[0]


def load_mmrec(folder: Path, name: str, seed: int = 0):
    """MMRec's ``<name>.inter`` (userID, itemID, x_label) and its aligned ``*_feat.npy``."""
    names = _list_dir(folder)
    path = _one_inter(folder, names)
    frame = _read_table(path, "\t", MMREC_COLUMNS)
    ids = {}
    for column in ("userID", "itemID"):
        text = frame[column].to_numpy()
        bad = ~np.char.isdigit(text.astype(str))
        if bad.any():
            _bad_row(path, bad, f"{column} is not a non-negative integer:", text)
        ids[column] = text.astype(np.int64)
    labels = frame["x_label"].str.strip().to_numpy()
    bad = ~np.isin(labels, ("0", "1", "2"))
    if bad.any():
        _bad_row(path, bad, "x_label is not 0, 1 or 2 (train, valid, test):", labels)
    features = {}
    feature_files = [n for n in names if n.endswith("_feat.npy")]
    n_items = int(ids["itemID"].max()) + 1
    if feature_files:  # the features fix the item count: row i is item i
        rows = {f: _peek_rows(folder / f) for f in feature_files}
        n_items = max(rows.values())
        too_far = ids["itemID"] >= min(rows.values())
        if too_far.any():
            short = min(rows, key=rows.get)
            _bad_row(path, too_far, f"itemID beyond the {rows[short]} rows of {short}:", frame["itemID"].to_numpy())
        features = _features(folder, n_items, feature_files)
    n_users = int(ids["userID"].max()) + 1
    return _assemble(path, name, ids["userID"], ids["itemID"], labels.astype(np.int64), (n_users, n_items),
                     features, map(str, range(n_users)), map(str, range(n_items)), seed, [])


def _peek_rows(path: Path) -> int:
    """Rows an .npy file declares (its header, checked against the file's size when loaded)."""
    with _open_regular(path) as fh:
        _check_npy_header(path, fh)
        try:
            version = np.lib.format.read_magic(fh)
            shape, _, _ = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)(fh)
        except Exception as exc:
            raise DatasetError(f"{path}: not a readable .npy array ({_one_line(exc)})") from None
    if len(shape) != 2:
        raise DatasetError(f"{path}: expected shape (items, dim), got {shape}")
    return int(shape[0])


def load_csv(folder: Path, name: str, seed: int = 0):
    """``interactions.csv`` / ``.tsv`` (user, item[, split]) with optional ``items.csv`` and features."""
    names = _list_dir(folder)
    path, sep = next((folder / n, s) for n, s in CSV_FILES if n in names)
    frame = _read_table(path, sep, ("user", "item"))
    split = None
    if "split" in frame.columns:
        labels = frame["split"].str.strip().str.lower().to_numpy()
        bad = ~np.isin(labels, SPLITS)
        if bad.any():
            _bad_row(path, bad, "split is not train, valid or test:", frame["split"].to_numpy())
        split = np.select([labels == "train", labels == "valid"], [0, 1], 2).astype(np.int64)
    known = None
    feature_files = [n for n in names if n.endswith("_feat.npy")]
    if "items.csv" in names:
        listed = _read_table(folder / "items.csv", ",", ("item",))["item"]
        if listed.duplicated().any():
            _bad_row(folder / "items.csv", listed.duplicated().to_numpy(), "item listed twice:", listed.to_numpy())
        listed = listed.to_numpy()
        known = list(listed)
        unlisted = ~np.isin(frame["item"].to_numpy(), listed)
        if unlisted.any():
            _bad_row(path, unlisted, "item not in items.csv:", frame["item"].to_numpy())
    elif feature_files:
        raise DatasetError(f"{folder / feature_files[0]}: features need items.csv (the item of each row)")
    users, user_ids = _index(frame["user"].to_numpy())
    items, item_ids = _index(frame["item"].to_numpy(), known)
    features = _features(folder, len(item_ids), feature_files)
    return _assemble(path, name, users, items, split, (len(user_ids), len(item_ids)), features, user_ids,
                     item_ids, seed, [])


RECBOLE_SPLITS = (".train.inter", ".valid.inter", ".test.inter")


def _recbole_table(path: Path, fields: tuple[str, ...]):
    """A RecBole atomic file with its typed header (``name:type``) read by field name."""
    frame = _read_table(path, "\t", ())
    frame.columns = [c.split(":", 1)[0] for c in frame.columns]
    missing = [f for f in fields if f not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: line 1: no field {missing[0]!r} (fields: {', '.join(frame.columns)})")
    return frame


def load_recbole(folder: Path, name: str, seed: int = 0):
    """RecBole's atomic ``.inter`` files (one, or pre-split train/valid/test), with an optional ``.kg`` + ``.link``."""
    import pandas as pd

    names = _list_dir(folder)
    split_files = [next((n for n in names if n.endswith(end)), None) for end in RECBOLE_SPLITS]
    if all(split_files):
        parts = [(folder / f, k) for k, f in enumerate(split_files)]
    elif any(split_files):
        given = [f for f in split_files if f]
        raise DatasetError(f"{folder / given[0]}: a pre-split RecBole dataset needs all of "
                                f"{', '.join('<name>' + e for e in RECBOLE_SPLITS)}")
    else:
        parts = [(_one_inter(folder, names), -1)]
    frames = []
    for path, k in parts:
        frame = _recbole_table(path, ("user_id", "item_id"))[["user_id", "item_id"]]
        frames.append(frame.assign(split=max(k, 0)))
    table = pd.concat(frames, ignore_index=True)
    users, user_ids = _index(table["user_id"].to_numpy())
    items, item_ids = _index(table["item_id"].to_numpy())
    split = None if parts[0][1] < 0 else table["split"].to_numpy(np.int64)
    ds = _assemble(parts[0][0], name, users, items, split, (len(user_ids), len(item_ids)), {}, user_ids,
                   item_ids, seed, [])
    kg_name, link_name = next((n for n in names if n.endswith(".kg")), None), next(
        (n for n in names if n.endswith(".link")), None)
    if kg_name and link_name:
        return replace(ds, kg_array=_recbole_kg(folder / kg_name, folder / link_name, item_ids))
    if kg_name or link_name:
        raise DatasetError(f"{folder / (kg_name or link_name)}: a RecBole KG needs both a .kg and a .link file")
    return ds


def _recbole_kg(kg_path: Path, link_path: Path, item_ids: list[str]) -> np.ndarray:
    """(item, relation, entity) int64 triples: each .kg triple whose head is an item's entity (.link)."""
    import pandas as pd

    link = _recbole_table(link_path, ("item_id", "entity_id"))
    kg = _recbole_table(kg_path, ("head_id", "relation_id", "tail_id"))
    item_index = pd.Index(item_ids).get_indexer(link["item_id"].to_numpy())
    link = link.assign(item=item_index)[item_index >= 0]  # items the interactions never name are dropped
    joined = kg.merge(link[["entity_id", "item"]], left_on="head_id", right_on="entity_id")
    if joined.empty:
        raise DatasetError(f"{kg_path}: no triple's head_id is an entity of an item in {link_path.name}")
    relations, _ = _index(joined["relation_id"].to_numpy())
    entities, _ = _index(joined["tail_id"].to_numpy())
    return np.unique(np.stack([joined["item"].to_numpy(np.int64), relations, entities], axis=1), axis=0)


#: The reader of each format but the authors' (kdiffe.load_folder).
LOADERS = {"mmrec": load_mmrec, "recbole": load_recbole, "csv": load_csv}


#: Formats a dataset can be written in (``python -m kdiffe data convert``).
WRITABLE = ("authors", "mmrec")


def write_dataset(ds, out: Path, to: str) -> list[Path]:
    """Write ``ds`` (its splits, features and KG triples) to the empty or new folder ``out`` in the
    format ``to``; returns the files written. Original ids, where the dataset has them, go to
    ``ids.json`` beside (neither format has a place for them)."""
    import pickle

    from .files import replace_atomic, save_npy, write_atomic

    if to not in WRITABLE:
        raise DatasetError(f"--to {to}: choose from {', '.join(WRITABLE)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"--out {out}: exists and is not an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(path: Path, write) -> None:
        replace_atomic(path, write)
        written.append(path)

    def binary(payload: bytes):
        def write(tmp: Path) -> None:
            tmp.write_bytes(payload)
        return write

    splits = (("trnMat.pkl", ds.train), ("valMat.pkl", ds.val), ("tstMat.pkl", ds.test))
    if to == "authors":
        for file, matrix in splits:
            save(out / file, binary(pickle.dumps(sp.coo_matrix(matrix, dtype=np.float32), protocol=4)))
        if ds.kg_triples is not None:
            text = "".join(f"{i} {r} {e}\n" for i, r, e in np.asarray(ds.kg_triples).tolist())
            write_atomic(out / "kg.txt", text)
            written.append(out / "kg.txt")
    else:
        rows = []
        for label, (_, matrix) in enumerate(splits):
            coo = matrix.tocoo()
            rows.append(np.stack([coo.row, coo.col, np.full(coo.nnz, label)], axis=1))
        table = np.concatenate(rows)
        text = "userID\titemID\tx_label\n" + "".join(f"{u}\t{i}\t{k}\n" for u, i, k in table.tolist())
        write_atomic(out / f"{out.name}.inter", text)
        written.append(out / f"{out.name}.inter")
    for modality, feats in sorted(ds.features.items()):
        written.append(save_npy(out / f"{modality}_feat.npy", np.asarray(feats, np.float32)))
    if ds.user_ids is not None:
        written.append(write_ids(out, ds.user_ids, ds.item_ids))
    return written
