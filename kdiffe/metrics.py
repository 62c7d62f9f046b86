"""Full-ranking evaluation (paper Section VI-A): Recall@K, NDCG@K, Precision@K.

Every item is ranked for every evaluated user; items seen in training (and in validation when
testing) are masked. Metrics are averaged over users with at least one held-out item. Users are
scored in batches, so at most ``batch x items`` scores exist at once.

:class:`Evaluator` prepares a split once (users, their masks, the held-out keys, on the device);
each evaluation is then one score product, one top-k and a few vector operations per batch of
users, all on the device, and a single read-back at the end. :func:`ranking_metrics` and
:func:`hit_matrix` are the same formulas in numpy (the reference the tests check it against).
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from .sampling import positive_keys


def hit_matrix(topk: np.ndarray, users: np.ndarray, keys: np.ndarray, n_items: int) -> np.ndarray:
    """hits[b, r] = 1 if item topk[b, r] is a held-out item of users[b] (keys: sorted u*J+i)."""
    query = users[:, None].astype(np.int64) * n_items + topk
    pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    return (keys[pos] == query) if len(keys) else np.zeros_like(query, dtype=bool)


def ranking_metrics(hits: np.ndarray, n_truth: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-user Recall, NDCG and Precision at each K from a hit matrix sorted by rank."""
    out: dict[str, np.ndarray] = {}
    hits = hits.astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    for k in ks:
        h = hits[:, :k]
        n_hit = h.sum(axis=1)
        out[f"recall@{k}"] = n_hit / n_truth
        out[f"precision@{k}"] = n_hit / k
        dcg = (h * discounts[:k]).sum(axis=1)
        ideal = np.cumsum(discounts[:k])[np.minimum(n_truth, k) - 1]
        out[f"ndcg@{k}"] = dcg / ideal
    return out


class Evaluator:
    """Full ranking of one held-out split (``truth``), items in ``exclude`` masked; prepared once."""

    def __init__(self, truth: sp.csr_matrix, exclude: Iterable[sp.csr_matrix], ks: Sequence[int] = (10, 20, 50),
                 batch_size: int = 1024, device: torch.device | str = "cpu") -> None:
        truth = sp.csr_matrix(truth)
        masks = [sp.csr_matrix(m) for m in exclude]
        self.ks = tuple(ks)
        self.device = torch.device(device)
        self.n_items = truth.shape[1]
        n_truth_all = np.diff(truth.indptr)
        users_all = np.flatnonzero(n_truth_all)
        self.n_users = int(users_all.size)
        self.kmax = min(max(ks), self.n_items)
        self.names = sorted(f"{m}@{k}" for k in ks for m in ("recall", "ndcg", "precision"))
        self.keys = torch.as_tensor(positive_keys(truth), device=device)
        discounts = 1.0 / np.log2(np.arange(2, self.kmax + 2))
        self.discounts = torch.as_tensor(discounts, device=device)
        self.ideal = torch.as_tensor(np.cumsum(discounts), device=device)
        self.batches = []  # (users, n_truth, mask rows, mask cols) per batch of users, on the device
        for lo in range(0, users_all.size, batch_size):
            users = users_all[lo:lo + batch_size]
            rows, cols = [], []
            for mask in masks:
                coo = mask[users].tocoo()
                rows.append(coo.row.astype(np.int64))
                cols.append(coo.col.astype(np.int64))
            self.batches.append(tuple(torch.as_tensor(a, device=device) for a in (
                users.astype(np.int64), n_truth_all[users].astype(np.float64),
                np.concatenate(rows) if rows else np.zeros(0, np.int64),
                np.concatenate(cols) if cols else np.zeros(0, np.int64))))

    def __call__(self, score_users: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
        """Average metrics over users with held-out items; ``score_users(u)`` returns (B, items) scores."""
        if self.n_users == 0:
            return {name: 0.0 for name in self.names}
        sums = torch.zeros(len(self.names), dtype=torch.float64, device=self.device)
        with torch.no_grad():
            for users, n_truth, rows, cols in self.batches:
                scores = score_users(users).float()
                scores[rows, cols] = -torch.inf
                topk = torch.topk(scores, self.kmax, dim=1).indices
                metrics = self._ranking_metrics(self._hits(users, topk), n_truth)
                sums += torch.stack([metrics[name].sum() for name in self.names])
        return {name: total / self.n_users for name, total in zip(self.names, sums.tolist())}

    def _hits(self, users: torch.Tensor, topk: torch.Tensor) -> torch.Tensor:
        """:func:`hit_matrix` on the device."""
        if self.keys.numel() == 0:
            return torch.zeros_like(topk, dtype=torch.bool)
        query = users[:, None] * self.n_items + topk
        pos = torch.searchsorted(self.keys, query).clamp_(max=self.keys.numel() - 1)
        return self.keys[pos] == query

    def _ranking_metrics(self, hits: torch.Tensor, n_truth: torch.Tensor) -> dict[str, torch.Tensor]:
        """:func:`ranking_metrics` on the device, in float64."""
        out: dict[str, torch.Tensor] = {}
        hits = hits.double()
        for k in self.ks:
            h = hits[:, :k]
            n_hit = h.sum(dim=1)
            out[f"recall@{k}"] = n_hit / n_truth
            out[f"precision@{k}"] = n_hit / k
            dcg = (h * self.discounts[:k]).sum(dim=1)
            ideal = self.ideal[:k][(torch.clamp(n_truth, max=k) - 1).long()]
            out[f"ndcg@{k}"] = dcg / ideal
        return out


def evaluate(score_users: Callable[[torch.Tensor], torch.Tensor], truth: sp.csr_matrix,
             exclude: Iterable[sp.csr_matrix], ks: Sequence[int] = (10, 20, 50),
             batch_size: int = 1024, device: torch.device | str = "cpu") -> dict[str, float]:
    """Average metrics over users with held-out items; ``score_users(u)`` returns (B, items) scores."""
    return Evaluator(truth, exclude, ks, batch_size, device)(score_users)
