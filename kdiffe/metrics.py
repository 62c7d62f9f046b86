"""Full-ranking evaluation (paper Section VI-A): Recall@K, NDCG@K, Precision@K.

Every item is ranked for every evaluated user; items seen in training (and in validation when
testing) are masked. Metrics are averaged over users with at least one held-out item. Users are
scored in batches, so at most ``batch x items`` scores exist at once.
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


def evaluate(score_users: Callable[[torch.Tensor], torch.Tensor], truth: sp.csr_matrix,
             exclude: Iterable[sp.csr_matrix], ks: Sequence[int] = (10, 20, 50),
             batch_size: int = 1024, device: torch.device | str = "cpu") -> dict[str, float]:
    """Average metrics over users with held-out items; ``score_users(u)`` returns (B, items) scores."""
    truth = sp.csr_matrix(truth)
    masks = [sp.csr_matrix(m) for m in exclude]
    n_truth_all = np.diff(truth.indptr)
    users_all = np.flatnonzero(n_truth_all)
    if users_all.size == 0:
        return {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "precision")}
    kmax = min(max(ks), truth.shape[1])
    keys = positive_keys(truth)
    sums: dict[str, float] = {}
    for lo in range(0, users_all.size, batch_size):
        users = users_all[lo:lo + batch_size]
        with torch.no_grad():
            scores = score_users(torch.as_tensor(users, device=device)).float()
            for mask in masks:
                rows = mask[users].tocoo()
                scores[torch.as_tensor(rows.row, device=scores.device),
                       torch.as_tensor(rows.col, device=scores.device)] = -torch.inf
            topk = torch.topk(scores, kmax, dim=1).indices.cpu().numpy()
        per_user = ranking_metrics(hit_matrix(topk, users, keys, truth.shape[1]), n_truth_all[users], ks)
        for name, values in per_user.items():
            sums[name] = sums.get(name, 0.0) + float(values.sum())
    return {name: total / users_all.size for name, total in sorted(sums.items())}
