import numpy as np
import pytest
import scipy.sparse as sp

from kdiffe.attention import (attention_matrix, bipartite_graph, cached_attention_matrix, jaccard_on_edges,
                              load_authors_similarity, random_walk_paths, visit_sets)
from kdiffe.data import load_dataset, make_synthetic


def test_jaccard_on_hand_made_visit_sets():
    visits = sp.csr_matrix(np.array([[1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1]], dtype=np.float32))
    got = jaccard_on_edges(visits, np.array([0, 0, 1, 3]), np.array([1, 2, 2, 0]), chunk=2)
    np.testing.assert_allclose(got, [2 / 3, 1 / 4, 1 / 3, 0.0])


def test_visit_sets_are_distinct_nodes_per_start():
    # 2 nodes, R = 2 walkers each (walker w starts at w % 2), 3 positions per walk
    paths = np.array([[0, 1, 0, 1], [1, 0, 0, 1], [0, 0, 0, 1]], dtype=np.int32)
    visits = visit_sets(paths, 2).toarray()
    np.testing.assert_array_equal(visits, [[1, 1], [1, 1]])
    paths = np.array([[0, 1, 0, 1], [0, 1, 0, 1]], dtype=np.int32)
    np.testing.assert_array_equal(visit_sets(paths, 2).toarray(), [[1, 0], [0, 1]])


def test_walks_follow_edges_or_restart():
    train = make_synthetic(n_users=50, n_items=40, seed=0).train
    graph = bipartite_graph(train)
    paths = random_walk_paths(graph, M=20, R=3, restart=0.3, seed=1)
    n = graph.shape[0]
    starts = np.tile(np.arange(n), 3)
    assert paths.shape == (21, 3 * n) and np.array_equal(paths[0], starts)
    dense = graph.toarray() > 0
    for a, b in zip(paths[:-1], paths[1:]):
        assert np.all(dense[a, b] | (b == starts))
    restarts = np.mean([(b == starts).mean() for b in paths[1:]])
    assert 0.2 < restarts < 0.6


def test_two_separate_edges_have_similarity_one():
    train = sp.csr_matrix(np.eye(2, dtype=np.float32))
    s = attention_matrix(train, M=5, R=2, restart=0.0, seed=0)
    np.testing.assert_allclose(s.toarray(), np.eye(2))


def test_always_restarting_walks_give_zero_similarity():
    train = sp.csr_matrix(np.ones((2, 2), dtype=np.float32))
    s = attention_matrix(train, M=5, R=2, restart=1.0, seed=0)
    assert s.nnz == 4 and np.all(s.data == 0)


def test_path_graph_known_values():
    # u0 - i0 - u1 - i1 with no restarts and long walks: everything reachable is visited
    train = sp.csr_matrix(np.array([[1, 0], [1, 1]], dtype=np.float32))
    s = attention_matrix(train, M=200, R=4, restart=0.0, seed=0)
    np.testing.assert_allclose(s.toarray(), [[1, 0], [1, 1]])


def test_s_has_the_sparsity_of_a_and_is_seeded():
    train = make_synthetic(seed=0).train
    a = attention_matrix(train, M=10, R=4, seed=5)
    b = attention_matrix(train, M=10, R=4, seed=5)
    assert (a != b).nnz == 0
    assert np.array_equal(a.indptr, train.indptr) and np.array_equal(a.indices, train.indices)
    assert np.all((a.data >= 0) & (a.data <= 1)) and a.data.mean() > 0.05


def test_cache_round_trip(tmp_path):
    ds = make_synthetic(seed=0)
    logs = []
    s1, _ = cached_attention_matrix(ds, 10, 4, 0.2, 0, tmp_path, logs.append)
    s2, _ = cached_attention_matrix(ds, 10, 4, 0.2, 0, tmp_path, logs.append)
    assert (s1 != s2).nnz == 0
    assert any("loaded from cache" in m for m in logs)
    assert len(list(tmp_path.glob("S_*_M10_R4_c0.2_seed0.npz"))) == 1


def test_real_tiktok_s_and_authors_matrix(datasets_dir):
    ds = load_dataset("tiktok", datasets_dir)
    ours = attention_matrix(ds.train, M=50, R=12, seed=0)
    assert ours.nnz == ds.train.nnz and 0 < ours.data.mean() < 1
    theirs = load_authors_similarity(datasets_dir / "tiktok" / "Similarity_130_6.pkl", ds.n_users, ds.n_items)
    assert theirs.shape == ds.train.shape
    assert (theirs != 0).multiply(ds.train).nnz == theirs.nnz == ds.train.nnz
