"""Uniform negative sampling for BPR (Eq. 15): items never among the user's training positives."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch


def positive_keys(train: sp.csr_matrix) -> np.ndarray:
    """Sorted int64 keys user * n_items + item of the training positives."""
    coo = train.tocoo()
    return np.sort(coo.row.astype(np.int64) * train.shape[1] + coo.col)


def sample_negatives(keys: np.ndarray, n_items: int, users: np.ndarray,
                     rng: np.random.Generator, max_rounds: int = 100) -> np.ndarray:
    """One uniform negative item per entry of ``users``, rejecting training positives."""
    users = np.asarray(users, dtype=np.int64)
    items = rng.integers(0, n_items, len(users))
    todo = np.arange(len(users))
    for _ in range(max_rounds):
        k = users[todo] * n_items + items[todo]
        pos = np.minimum(np.searchsorted(keys, k), len(keys) - 1)
        todo = todo[keys[pos] == k]
        if todo.size == 0:
            return items
        items[todo] = rng.integers(0, n_items, todo.size)
    raise ValueError(f"could not sample negatives for users {np.unique(users[todo])[:5].tolist()}: "
                     "they interacted with (almost) every item")


def interaction_batches(train: sp.csr_matrix, keys: np.ndarray, batch_size: int,
                        rng: np.random.Generator):
    """Shuffled (users, positives, negatives) int64 batches covering every training edge once."""
    coo = train.tocoo()
    order = rng.permutation(train.nnz)
    users, items = coo.row[order].astype(np.int64), coo.col[order].astype(np.int64)
    negatives = sample_negatives(keys, train.shape[1], users, rng)
    for lo in range(0, len(users), batch_size):
        yield users[lo:lo + batch_size], items[lo:lo + batch_size], negatives[lo:lo + batch_size]


@dataclass(frozen=True)
class Batch:
    """One training batch on the device: BPR triples, plus the distinct users and items that
    anchor the contrastive terms of Eq. 13 (sorted, as ``torch.unique`` gives them)."""

    users: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor
    anchor_users: torch.Tensor | None = None
    anchor_items: torch.Tensor | None = None
    #: uniform users and items drawn for the batch: extra InfoNCE candidates (Config.cl_negatives)
    sampled_users: torch.Tensor | None = None
    sampled_items: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.users.shape[0]


def epoch_batches(train: sp.csr_matrix, keys: np.ndarray, batch_size: int, rng: np.random.Generator,
                  device: torch.device | str = "cpu", anchors: bool = False, samples: int = 0) -> list[Batch]:
    """Every batch of one epoch, drawn at once and copied to the device once.

    The same draws as :func:`interaction_batches` (one permutation, one negative per edge);
    with ``anchors`` each batch also carries its distinct users and items, found here with
    numpy once per epoch so the training loop never waits on the device (no ``torch.unique``).
    Batches are views into one device tensor: slicing them needs no synchronisation. ``samples``
    (with ``anchors``) draws that many uniform users and items per batch after the negatives.
    """
    coo = train.tocoo()
    order = rng.permutation(train.nnz)
    users, items = coo.row[order].astype(np.int64), coo.col[order].astype(np.int64)
    negatives = sample_negatives(keys, train.shape[1], users, rng)
    data = torch.from_numpy(np.stack([users, items, negatives])).to(device)
    bounds = [(lo, min(lo + batch_size, len(users))) for lo in range(0, len(users), batch_size)]
    if not anchors:
        return [Batch(data[0, lo:hi], data[1, lo:hi], data[2, lo:hi]) for lo, hi in bounds]
    distinct = [np.unique(a[lo:hi]) for lo, hi in bounds for a in (users, items)]
    offsets = np.cumsum([0] + [len(d) for d in distinct]).tolist()
    flat = torch.from_numpy(np.concatenate(distinct)).to(device)
    parts = [flat[offsets[k]:offsets[k + 1]] for k in range(len(distinct))]
    if samples:
        drawn = torch.from_numpy(np.stack([rng.integers(0, n, (len(bounds), samples)) for n in train.shape])).to(device)
        return [Batch(data[0, lo:hi], data[1, lo:hi], data[2, lo:hi], parts[2 * b], parts[2 * b + 1],
                      drawn[0, b], drawn[1, b]) for b, (lo, hi) in enumerate(bounds)]
    return [Batch(data[0, lo:hi], data[1, lo:hi], data[2, lo:hi], parts[2 * b], parts[2 * b + 1])
            for b, (lo, hi) in enumerate(bounds)]
