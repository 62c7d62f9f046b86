"""Uniform negative sampling for BPR (Eq. 15): items never among the user's training positives."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


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
