import numpy as np
import pytest
import torch

from kdiffe.data import load_dataset, make_synthetic
from kdiffe.knowledge import (KnowledgeAggregator, KnowledgeGraph, build_from_features, build_knowledge, entity_rows,
                              from_triples, is_degenerate, kmeans, segment_softmax)


def test_segment_softmax_sums_to_one_per_segment():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(50, generator=gen) * 10
    segments = torch.randint(0, 7, (50,), generator=gen)
    weights = segment_softmax(logits, segments, 9)
    totals = torch.zeros(9).index_add(0, segments, weights)
    present = torch.bincount(segments, minlength=9) > 0
    torch.testing.assert_close(totals[present], torch.ones(int(present.sum())))
    assert torch.all(totals[~present] == 0)
    seg0 = segments == segments[0]
    torch.testing.assert_close(weights[seg0], torch.softmax(logits[seg0], 0))


def test_kmeans_separates_well_spaced_blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=float)
    labels = np.repeat(np.arange(3), 30)
    x = centres[labels] + rng.normal(size=(90, 2))
    _, found = kmeans(x, 3, 20, seed=0)
    for c in range(3):  # each planted blob maps onto one found cluster
        assert len(np.unique(found[labels == c])) == 1
    assert len(np.unique(found)) == 3


def test_feature_kg_recovers_planted_clusters():
    ds = make_synthetic(n_users=100, n_items=300, n_clusters=6, seed=1, feature_noise=0.3)
    kg = build_from_features(ds.features, concepts=6, links=1, seed=0)
    planted = ds.kg_triples[:, 2]
    assert kg.n_entities == 12 and kg.relation_names == ("image", "text")
    for rel in range(2):
        rows = kg.triples[kg.triples[:, 1] == rel]
        concept = np.empty(ds.n_items, dtype=int)
        concept[rows[:, 0]] = rows[:, 2]
        # purity: the share of items whose concept's majority cluster equals their own cluster
        majority = {c: np.bincount(planted[concept == c]).argmax() for c in np.unique(concept)}
        purity = np.mean([majority[c] == p for c, p in zip(concept, planted)])
        assert purity > 0.95
    assert np.array_equal(np.bincount(kg.triples[:, 0]), np.full(ds.n_items, 2))
    assert set(np.unique(kg.entity_relation[kg.triples[:, 2]] == kg.triples[:, 1])) == {True}


def test_links_per_item_and_separate_id_spaces():
    ds = make_synthetic(n_users=50, n_items=60, seed=0)
    kg = build_from_features(ds.features, concepts=5, links=3, seed=0)
    assert len(kg.triples) == 60 * 2 * 3
    assert kg.triples[:, 2].max() == kg.n_entities - 1 == 9
    x0 = kg.item_entity_matrix()
    assert x0.shape == (60, 10) and np.all(x0.sum(1) == 6)


def test_degenerate_kg_file_is_detected(datasets_dir):
    ds = load_dataset("tiktok", datasets_dir)
    logs = []
    kg = build_knowledge(ds, "file", 0, 3, 5, 0, logs.append)
    assert kg.n_entities == 3 and is_degenerate(kg)
    assert "degenerate" in logs[0]
    features_kg = build_knowledge(ds, "features", 0, 3, 5, 0, logs.append)
    assert not is_degenerate(features_kg) and features_kg.n_relations == 2


def test_no_features_and_no_kg_switches_knowledge_off(datasets_dir):
    ds = load_dataset("sports", datasets_dir)
    logs = []
    assert build_knowledge(ds, "features", 0, 3, 5, 0, logs.append) is None
    assert build_knowledge(ds, "file", 0, 3, 5, 0, logs.append) is None
    assert all("switched off" in line for line in logs) and len(logs) == 2


def test_from_triples_compacts_ids():
    kg = from_triples(np.array([[0, 5, 100], [1, 5, 100], [1, 9, 7], [1, 9, 7]]), n_items=3)
    assert kg.n_entities == 2 and kg.n_relations == 2 and len(kg.triples) == 3
    assert kg.triples[:, 2].max() == 1


def test_aggregator_shapes_and_items_without_triples_unchanged():
    ds = make_synthetic(n_users=40, n_items=30, seed=0)
    kg = build_from_features(ds.features, concepts=4, links=2, seed=0)
    agg = KnowledgeAggregator(kg, dim=8)
    items = torch.randn(30, 8)
    triples = torch.as_tensor(kg.triples[kg.triples[:, 0] < 20])
    out = agg(items, triples)
    assert out.shape == (30, 8)
    torch.testing.assert_close(out[20:], items[20:])
    assert not torch.allclose(out[:20], items[:20])
    torch.testing.assert_close(out.norm(dim=1), items.norm(dim=1))
    out.sum().backward()
    assert agg.projections[0].weight.grad is not None and agg.relation.weight.grad is not None


def test_distinct_entity_sets_match_a_dense_count_without_building_one():
    from kdiffe.knowledge import _distinct_entity_sets

    rng = np.random.default_rng(1)
    for _ in range(200):
        n_items, n_entities = int(rng.integers(1, 30)), int(rng.integers(1, 20))
        m = int(rng.integers(0, 3 * n_items + 1))
        items, entities = rng.integers(0, n_items, m), rng.integers(0, n_entities, m)
        dense = np.zeros((n_items, n_entities), bool)
        dense[items, entities] = True
        linked = dense.any(axis=1)
        expected = np.unique(dense[linked], axis=0).shape[0] if linked.any() else 0
        assert _distinct_entity_sets(items, entities) == expected
    assert _distinct_entity_sets(np.array([0, 0, 1, 1, 2]), np.array([3, 4, 4, 3, 3])) == 2  # {3,4} twice, {3}


def test_item_entity_lists_are_the_sparse_rows_of_x0():
    # item 0: entities 2, 2 (a repeated triple), 0; item 1: none; item 2: entity 1
    triples = np.array([[0, 0, 2], [0, 0, 2], [0, 1, 0], [2, 1, 1]], dtype=np.int64)
    kg = KnowledgeGraph(n_items=3, n_entities=3, relation_names=("a", "b"), triples=triples,
                        entity_relation=np.array([1, 1, 0]))
    np.testing.assert_array_equal(kg.item_entity_lists(), [[0, 2], [3, 3], [1, 3]])
    np.testing.assert_array_equal(kg.item_entity_matrix(), [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    rows = entity_rows(torch.as_tensor(kg.item_entity_lists()), torch.tensor([2, 0, 2]), 3)
    np.testing.assert_array_equal(rows.numpy(), [[0, 1, 0], [1, 0, 1], [0, 1, 0]])


def test_the_diffusion_view_holds_no_dense_items_by_entities_matrix():
    from kdiffe.config import Config
    from kdiffe.view import DiffusionView
    ds = make_synthetic(n_users=80, n_items=120, seed=0)
    kg = build_from_features(ds.features, concepts=100, links=3, seed=0)
    view = DiffusionView(kg, ds.train, Config(dataset="synthetic", diff_batch=32), "cpu")
    tensors = [t for t in vars(view).values() if isinstance(t, torch.Tensor) and t.layout == torch.strided]
    assert tensors and max(t.numel() for t in tensors) < kg.n_items * kg.n_entities / 4
    np.testing.assert_array_equal(view.x0(torch.arange(kg.n_items)).numpy(), kg.item_entity_matrix())
