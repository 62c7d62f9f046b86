"""Attention-aware matrix S (paper Eq. 4-5).

For every training edge (u, v) of the bipartite user-item graph,

    S(u, v) = |W_u ∩ W_v| / |W_u ∪ W_v|                                   (Eq. 5)

where W_x is the set of nodes visited by R random walks with restart of M steps started at x.
Each step a walker jumps back to its start with probability c, else moves to a uniform random
neighbour (textbook RWR). All N·R walkers advance together as numpy arrays over the CSR graph;
visit sets become one sparse matrix; intersections on edges come from sparse row products in
chunks. S has exactly the sparsity of the training matrix A and is cached on disk.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp

from .data import Dataset, DatasetError, load_sparse_pickle


def bipartite_graph(train: sp.csr_matrix) -> sp.csr_matrix:
    """Symmetric (users + items) square adjacency [[0, A], [Aᵀ, 0]] in CSR."""
    adj = sp.bmat([[None, train], [train.T, None]], format="csr", dtype=np.float32)
    adj.sort_indices()
    return adj


def random_walk_paths(graph: sp.csr_matrix, M: int, R: int, restart: float,
                      seed: int) -> np.ndarray:
    """Positions of all walkers, shape (M + 1, R * N); walker w starts at node w % N.

    Row 0 is the start. A node with no neighbour restarts.
    """
    rng = np.random.default_rng(seed)
    n = graph.shape[0]
    indptr = graph.indptr.astype(np.int64)
    indices = graph.indices.astype(np.int32)
    degree = np.diff(indptr)
    starts = np.tile(np.arange(n, dtype=np.int32), R)
    paths = np.empty((M + 1, starts.size), dtype=np.int32)
    paths[0] = pos = starts
    for step in range(1, M + 1):
        deg = degree[pos]
        offset = (rng.random(pos.size) * deg).astype(np.int64)
        neighbour = indices[np.minimum(indptr[pos] + offset, len(indices) - 1)]
        jump = (rng.random(pos.size) < restart) | (deg == 0)
        pos = np.where(jump, starts, neighbour)
        paths[step] = pos
    return paths


def visit_sets(paths: np.ndarray, n_nodes: int) -> sp.csr_matrix:
    """Binary N x N matrix: row x holds the distinct nodes visited by walks started at x."""
    steps, walkers = paths.shape
    repeats = walkers // n_nodes
    per_start = paths.reshape(steps, repeats, n_nodes).transpose(2, 1, 0).reshape(n_nodes, -1)
    ordered = np.sort(per_start, axis=1)
    keep = np.ones_like(ordered, dtype=bool)
    keep[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    indices = ordered[keep]
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int64)
    data = np.ones(indices.size, dtype=np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(n_nodes, n_nodes))


def jaccard_on_edges(visits: sp.csr_matrix, heads: np.ndarray, tails: np.ndarray,
                     chunk: int = 65536) -> np.ndarray:
    """|W_h ∩ W_t| / |W_h ∪ W_t| for each pair (heads[k], tails[k]), in chunks of pairs."""
    sizes = np.diff(visits.indptr)
    out = np.empty(len(heads), dtype=np.float64)
    for lo in range(0, len(heads), chunk):
        h, t = heads[lo:lo + chunk], tails[lo:lo + chunk]
        inter = np.asarray(visits[h].multiply(visits[t]).sum(axis=1)).ravel()
        union = sizes[h] + sizes[t] - inter
        out[lo:lo + chunk] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return out


def attention_matrix(train: sp.csr_matrix, M: int = 50, R: int = 12, restart: float = 0.2,
                     seed: int = 0) -> sp.csr_matrix:
    """S on the training edges (users x items CSR with the sparsity of ``train``), Eq. 5."""
    n_users = train.shape[0]
    graph = bipartite_graph(train)
    visits = visit_sets(random_walk_paths(graph, M, R, restart, seed), graph.shape[0])
    coo = train.tocoo()
    order = np.lexsort((coo.col, coo.row))
    users, items = coo.row[order].astype(np.int64), coo.col[order].astype(np.int64)
    values = jaccard_on_edges(visits, users, items + n_users).astype(np.float32)
    s = sp.csr_matrix((values, (users, items)), shape=train.shape)
    s.sort_indices()
    return s


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir or os.environ.get("KDIFFE_CACHE_DIR") or Path.home() / ".cache" / "kdiffe").expanduser().resolve()


def cached_attention_matrix(ds: Dataset, M: int, R: int, restart: float, seed: int,
                            cache_dir: str | os.PathLike | None = None,
                            log: Callable[[str], None] | None = None) -> tuple[sp.csr_matrix, float]:
    """S for ``ds`` from the disk cache, or built and stored. Returns (S, seconds to build or load)."""
    folder = default_cache_dir(cache_dir)
    path = folder / f"S_{ds.fingerprint}_M{M}_R{R}_c{restart:g}_seed{seed}.npz"
    start = time.perf_counter()
    try:
        cached = path.is_file()
    except OSError:  # an unreadable cache folder: build S, as without a cache
        cached = False
    if cached:
        try:
            s = sp.load_npz(path).tocsr()
            if s.shape == ds.train.shape and s.nnz == ds.train.nnz:
                if log:
                    log(f"S loaded from cache {path}")
                return s, time.perf_counter() - start
        except Exception:  # a corrupt cache entry is rebuilt
            pass
    if log:
        log(f"building S (M={M}, R={R}, c={restart:g}) on {ds.train.nnz} edges ...")
    s = attention_matrix(ds.train, M, R, restart, seed)
    seconds = time.perf_counter() - start
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        sp.save_npz(tmp, s)
        os.replace(tmp, path)
    except OSError as exc:
        if log:
            log(f"could not cache S in {folder}: {exc}")
    if log:
        log(f"S built in {seconds:.2f}s")
    return s, seconds


def load_authors_similarity(path: str | os.PathLike, n_users: int, n_items: int) -> sp.csr_matrix:
    """Users x items block of an authors' ``Similarity_*.pkl`` (square over users + items).

    Unpickled by :func:`kdiffe.data.load_sparse_pickle`: no code from the file runs.
    """
    obj = load_sparse_pickle(path)
    n = n_users + n_items
    if obj.shape != (n, n):
        raise DatasetError(f"{path}: expected a sparse {n} x {n} matrix, got {obj.shape}")
    values = obj.data.astype(np.float64)
    if not np.all((values >= 0) & (values <= 1)):  # Jaccard indices (Eq. 5); also rules out NaN
        raise DatasetError(f"{path}: entries must lie in [0, 1] (Jaccard similarities, Eq. 5)")
    full = obj.tocsr()  # sums repeated entries
    if full.nnz != obj.nnz:
        raise DatasetError(f"{path}: {obj.nnz - full.nnz} repeated (row, column) entries")
    block = full[:n_users, n_users:].astype(np.float32)
    block.sort_indices()
    return block
