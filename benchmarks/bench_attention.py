"""Benchmark: building S (Eq. 5) on TikTok and Sports, against a naive per-edge reference.

Each measurement runs in a fresh process (so peak memory is that build's); medians of --runs.
Usage: KDIFFE_DATA_DIR=../shared/datasets python benchmarks/bench_attention.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from benchmarks._common import in_subprocess, machine  # noqa: E402

BUILD = """
import json, resource, time
from kdiffe.data import load_dataset
from kdiffe.attention import attention_matrix
ds = load_dataset({name!r}, seed=0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
s = attention_matrix(ds.train, M={M}, R={R}, restart=0.2, seed={seed})
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(dict(seconds=seconds, peak_mb=peak, loaded_mb=before, nnz=s.nnz, mean=float(s.data.mean()))))
"""


def naive_attention(train: sp.csr_matrix, M: int, R: int, restart: float, seed: int) -> np.ndarray:
    """Per-edge Python reference: R walks of M steps from each endpoint, Jaccard of Python sets."""
    rng = np.random.default_rng(seed)
    n_users = train.shape[0]
    adj = sp.bmat([[None, train], [train.T, None]], format="csr")
    neighbours = [adj.indices[adj.indptr[v]:adj.indptr[v + 1]].tolist() for v in range(adj.shape[0])]

    def visits(start: int) -> set[int]:
        seen = {start}
        for _ in range(R):
            node = start
            for _ in range(M):
                if rng.random() < restart or not neighbours[node]:
                    node = start
                else:
                    nbrs = neighbours[node]
                    node = nbrs[int(rng.random() * len(nbrs))]
                seen.add(node)
        return seen

    coo = train.tocoo()
    out = np.empty(coo.nnz)
    for k, (u, i) in enumerate(zip(coo.row, coo.col)):
        a, b = visits(int(u)), visits(int(i) + n_users)
        out[k] = len(a & b) / len(a | b)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--M", type=int, default=50)
    parser.add_argument("--R", type=int, default=12)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    for name in ("tiktok", "sports"):
        rows = [in_subprocess(BUILD.format(name=name, M=args.M, R=args.R, seed=seed)) for seed in range(args.runs)]
        secs = [r["seconds"] for r in rows]
        print(f"{name}: S (M={args.M}, R={args.R}) median {statistics.median(secs):.2f} s over {args.runs} runs "
              f"(min {min(secs):.2f}, max {max(secs):.2f}); nnz {rows[0]['nnz']}; "
              f"peak RSS {statistics.median(r['peak_mb'] for r in rows):.0f} MB "
              f"(after loading the data: {statistics.median(r['loaded_mb'] for r in rows):.0f} MB)")
    from kdiffe.attention import attention_matrix
    from kdiffe.data import load_dataset
    ds = load_dataset("tiktok", seed=0)
    sub = ds.train[:300]
    sub = sub[:, np.flatnonzero(np.asarray(sub.sum(axis=0)).ravel())]
    start = time.perf_counter()
    naive = naive_attention(sub, args.M, args.R, 0.2, 0)
    naive_s = time.perf_counter() - start
    fast = []
    for seed in range(args.runs):
        start = time.perf_counter()
        vec = attention_matrix(sp.csr_matrix(sub), args.M, args.R, 0.2, seed)
        fast.append(time.perf_counter() - start)
    print(f"subgraph (300 TikTok users, {sub.shape[1]} items, {sub.nnz} edges): naive per-edge Python "
          f"{naive_s:.2f} s, vectorised median {statistics.median(fast) * 1000:.1f} ms, ratio "
          f"{naive_s / statistics.median(fast):.0f}x; mean S naive {naive.mean():.4f} vs vectorised {vec.data.mean():.4f}")


if __name__ == "__main__":
    main()
