"""A trained model as files anyone can read, and recommendations from it.

A saved model is a folder:

- ``user_embeddings.npy`` and ``item_embeddings.npy``: the final embeddings (users x d, items x d,
  float32) of the run's best validation evaluation, the ones its reported test numbers come from;
  every registered model ranks by their dot product (Eq. 7 for KDiffE);
- ``model.json``: the resolved Config, that evaluation's metrics, the dataset's name and sizes;
- ``ids.json`` (datasets with ids of their own, :mod:`kdiffe.formats`): ``{"users": [...], "items":
  [...]}``, the original id of each embedding row; ``recommend`` takes and prints those ids.

Nothing in it is pickled: ``numpy.load(allow_pickle=False)`` and ``json`` read it, so an untrusted
folder cannot run code. :func:`export_checkpoint` writes one from a trainer checkpoint
(``trainer.pt``, a trial's ``state`` folder), which keeps the same best embeddings, and the
ids.json that :meth:`kdiffe.trainer.Trainer.save` writes beside it.

    python -m kdiffe train --dataset tiktok --out runs/kdiffe        # trains, saves the model there
    python -m kdiffe recommend --model runs/kdiffe --users 0,5 --k 20
    python -m kdiffe export --checkpoint results/<experiment>/trials/<trial>/state --out runs/best
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from .errors import UserError
from .dataset import read_ids, write_ids
from .files import read_json, save_npy, write_atomic

FORMAT = 1
MODEL_FILE = "model.json"
USERS_FILE, ITEMS_FILE = "user_embeddings.npy", "item_embeddings.npy"


class ModelError(UserError):
    """A saved model folder that is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class SavedModel:
    config: dict[str, Any]  #: the resolved Config of the run (Config.to_dict)
    users: np.ndarray  #: (n_users, d) float32
    items: np.ndarray  #: (n_items, d) float32
    evaluation: dict[str, Any]  #: the best validation evaluation: epoch and metrics
    dataset: str

    @property
    def n_users(self) -> int:
        return int(self.users.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.items.shape[0])


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def save_model(folder: str | Path, users: np.ndarray, items: np.ndarray, config: Mapping[str, Any],
               evaluation: Mapping[str, Any], dataset: str, user_ids: Sequence[str] | None = None,
               item_ids: Sequence[str] | None = None) -> Path:
    """Write a saved model folder (see the module docstring); returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in ((USERS_FILE, users), (ITEMS_FILE, items)):
        save_npy(folder / name, np.asarray(array, np.float32))
    meta = {"format": FORMAT, "dataset": dataset, "n_users": int(users.shape[0]), "n_items": int(items.shape[0]),
            "dim": int(users.shape[1]), "config": dict(config), "evaluation": dict(evaluation),
            "scores": "dot product of user_embeddings.npy and item_embeddings.npy rows"}
    if user_ids is not None and item_ids is not None:
        write_ids(folder, user_ids, item_ids)
    write_atomic(folder / MODEL_FILE, json.dumps(_plain(meta), indent=2, default=str))
    return folder


def _array(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ModelError(f"{path}: missing; not a saved model folder (python -m kdiffe train --out DIR)") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable .npy array ({' '.join(str(exc).split())[:160]})") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        raise ModelError(f"{path}: expected a 2-d array of finite floats, got {array.dtype} {array.shape}")
    return array


def load_model(folder: str | Path) -> SavedModel:
    """Read a saved model folder, checking that its parts agree."""
    folder = Path(folder)
    path = folder / MODEL_FILE
    if not folder.is_dir():
        raise ModelError(f"--model {folder}: no such folder")
    meta = read_json(path, ModelError, f"{path}: missing; not a saved model folder (python -m kdiffe train --out DIR)")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("config"), dict):
        raise ModelError(f"{path}: not a kdiffe model description (format {FORMAT})")
    users, items = _array(folder / USERS_FILE), _array(folder / ITEMS_FILE)
    if users.shape[1] != items.shape[1] or (users.shape[0], items.shape[0]) != (meta.get("n_users"), meta.get("n_items")):
        raise ModelError(f"{folder}: embeddings {users.shape} and {items.shape} disagree with {MODEL_FILE} "
                         f"({meta.get('n_users')} users, {meta.get('n_items')} items)")
    return SavedModel(meta["config"], users, items, dict(meta.get("evaluation") or {}), str(meta.get("dataset", "")))


def recommend(model: SavedModel, users: Sequence[int], k: int, exclude: sp.csr_matrix | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(items, scores), each (len(users), k): every user's top-k items by score, best first, items in
    ``exclude`` (the user's training interactions) never among them; ties go to the lower id."""
    users = np.asarray(users, dtype=np.int64)
    if users.size and (users.min() < 0 or users.max() >= model.n_users):
        bad = users[(users < 0) | (users >= model.n_users)][0]
        raise ModelError(f"--users: user {bad} is not among the model's {model.n_users} users (0..{model.n_users - 1})")
    if not 1 <= k <= model.n_items:
        raise ModelError(f"--k {k}: must be between 1 and the {model.n_items} items")
    scores = model.users[users] @ model.items.T
    if exclude is not None:
        rows = sp.csr_matrix(exclude)[users].tocoo()
        scores[rows.row, rows.col] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> Path:
    """A saved model folder from a trainer checkpoint folder (``trainer.pt``), read with
    ``weights_only=True``: the embeddings of its best validation evaluation."""
    import torch

    path = Path(checkpoint)
    path = path / "trainer.pt" if path.is_dir() else path
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"--checkpoint {path}: no checkpoint there (a trial's folder holds state/trainer.pt)") from None
    except Exception as exc:  # not plain data: refused
        raise ModelError(f"--checkpoint {path}: cannot be loaded safely ({' '.join(str(exc).split())[:200]})") from None
    best = state.get("best_embeddings") if isinstance(state, dict) else None
    if best is None:
        raise ModelError(f"--checkpoint {path}: holds no best embeddings (written before they were kept, or before "
                         "the first evaluation); re-run the trial or train with --out")
    history = state.get("history") or {}
    config = state.get("config") or {}
    ids = read_ids(path.parent, best["users"].shape[0], best["items"].shape[0])
    return save_model(out, best["users"].numpy(), best["items"].numpy(), config, history.get("best") or {},
                      str(best.get("dataset", config.get("dataset", ""))), *(ids or (None, None)))
