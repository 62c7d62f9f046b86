import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from kdiffe.losses import bpr_loss, info_nce, l2_penalty, parameter_norm
from kdiffe.metrics import Evaluator, evaluate, hit_matrix, ranking_metrics
from kdiffe.sampling import epoch_batches, interaction_batches, positive_keys, sample_negatives


def test_ranking_metrics_hand_computed():
    hits = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], dtype=bool)
    n_truth = np.array([2, 1, 4])
    m = ranking_metrics(hits, n_truth, ks=(1, 3))
    np.testing.assert_allclose(m["recall@1"], [0.5, 0, 0])
    np.testing.assert_allclose(m["recall@3"], [1.0, 0, 0.25])
    np.testing.assert_allclose(m["precision@3"], [2 / 3, 0, 1 / 3])
    ndcg_user0 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    ndcg_user2 = (1 / math.log2(3)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    np.testing.assert_allclose(m["ndcg@3"], [ndcg_user0, 0, ndcg_user2])
    np.testing.assert_allclose(m["ndcg@1"], [1.0, 0, 0])


def test_hit_matrix():
    truth = sp.csr_matrix(np.array([[0, 1, 0, 1], [1, 0, 0, 0]], dtype=np.float32))
    hits = hit_matrix(np.array([[3, 0, 1], [2, 0, 1]]), np.array([0, 1]), positive_keys(truth), 4)
    np.testing.assert_array_equal(hits, [[1, 0, 1], [0, 1, 0]])


def test_evaluate_masks_training_items_and_skips_users_without_truth():
    # 3 users, 4 items; scores prefer item 0 > 1 > 2 > 3 for everyone
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0]] * 3)
    train = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0]], dtype=np.float32))
    truth = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=np.float32))
    m = evaluate(lambda u: scores[u], truth, [train], ks=(1, 2), batch_size=1)
    # user 0: item 0 masked, ranking 1,2,3 -> hit at rank 1; user 1: ranking 0,1 -> miss; user 2 skipped
    assert m["recall@1"] == 0.5 and m["recall@2"] == 0.5
    assert m["precision@2"] == 0.25
    assert m["ndcg@1"] == 0.5


def test_negatives_never_hit_positives():
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 12)) < 0.7).astype(np.float32)
    dense[0, :11], dense[0, 11] = 1, 0  # user 0 has a single negative: item 11
    train = sp.csr_matrix(dense)
    keys = positive_keys(train)
    users = np.repeat(np.arange(30), 50)
    neg = sample_negatives(keys, 12, users, rng)
    assert not np.any(train[users, neg].A1)
    assert np.all(neg[users == 0] == 11)


def test_batches_cover_every_edge_once():
    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((20, 15)) < 0.3).astype(np.float32))
    seen = []
    for u, i, j in interaction_batches(train, positive_keys(train), 7, rng):
        assert len(u) <= 7
        assert np.all(train[u, i].A1 == 1) and not np.any(train[u, j].A1)
        seen += list(zip(u, i))
    assert sorted(seen) == sorted(zip(*train.nonzero()))


def test_epoch_batches_are_the_same_draws_with_distinct_anchors():
    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((20, 15)) < 0.3).astype(np.float32))
    keys = positive_keys(train)
    plain = list(interaction_batches(train, keys, 7, np.random.default_rng(5)))
    batches = epoch_batches(train, keys, 7, np.random.default_rng(5), anchors=True)
    assert len(batches) == len(plain)
    for batch, (u, i, j) in zip(batches, plain):
        np.testing.assert_array_equal(batch.users.numpy(), u)
        np.testing.assert_array_equal(batch.pos.numpy(), i)
        np.testing.assert_array_equal(batch.neg.numpy(), j)
        assert torch.equal(batch.anchor_users, torch.unique(torch.as_tensor(u)))
        assert torch.equal(batch.anchor_items, torch.unique(torch.as_tensor(i)))
    assert epoch_batches(train, keys, 7, np.random.default_rng(5))[0].anchor_users is None


def test_bpr_and_l2_known_values():
    assert math.isclose(bpr_loss(torch.tensor([1.0]), torch.tensor([0.0])).item(), math.log1p(math.exp(-1)), rel_tol=1e-6)
    e = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    assert l2_penalty(e, e).item() == 3.0  # (5 + 1) * 2 / (2 * 2)
    assert parameter_norm([e, torch.tensor([3.0])]).item() == 15.0  # 1 + 4 + 0 + 1 + 9


def test_info_nce_hand_computed():
    anchor = torch.tensor([[1.0, 0.0]])
    cands = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    tau = 0.5
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0 / tau)))
    assert math.isclose(info_nce(anchor, cands[:1], cands, tau).item(), expected, rel_tol=1e-6)


def _reference_evaluate(scores, truth, exclude, ks):
    """The previous numpy evaluation: mask, top-k, hit matrix, per-user metrics, mean."""
    truth = sp.csr_matrix(truth)
    scores = scores.clone()
    for mask in exclude:
        rows, cols = sp.csr_matrix(mask).nonzero()
        scores[rows, cols] = -torch.inf
    users = np.flatnonzero(np.diff(truth.indptr))
    topk = torch.topk(scores[users], min(max(ks), truth.shape[1]), dim=1).indices.numpy()
    per_user = ranking_metrics(hit_matrix(topk, users, positive_keys(truth), truth.shape[1]),
                               np.diff(truth.indptr)[users], ks)
    return {name: float(values.sum()) / len(users) for name, values in sorted(per_user.items())}


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_evaluator_matches_the_numpy_reference(batch_size):
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 90
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.1).astype(np.float32))
    rest = (rng.random((n_users, n_items)) < 0.08) & (train.toarray() == 0)
    val = sp.csr_matrix((rest & (rng.random((n_users, n_items)) < 0.5)).astype(np.float32))
    test = sp.csr_matrix((rest & (val.toarray() == 0)).astype(np.float32))
    scores = torch.as_tensor(rng.normal(size=(n_users, n_items)), dtype=torch.float32)
    scores[:, :5] = 0.5  # ties
    ks = (1, 5, 20, 50)
    for truth, exclude in ((val, [train]), (test, [train, val])):
        evaluator = Evaluator(truth, exclude, ks, batch_size)
        got = evaluator(lambda u: scores[u])
        want = _reference_evaluate(scores, truth, exclude, ks)
        assert list(got) == list(want)
        for name in want:
            assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-15), name
        assert evaluator(lambda u: scores[u]) == got  # prepared once, evaluated again


def test_evaluator_more_cutoff_than_items_and_empty_truth():
    truth = sp.csr_matrix(np.array([[0, 1, 1], [0, 0, 0]], dtype=np.float32))
    m = evaluate(lambda u: torch.tensor([[3.0, 2.0, 1.0], [1.0, 1.0, 1.0]])[u], truth, [], ks=(2, 5))
    assert m["recall@5"] == 1.0 and m["precision@5"] == 2 / 5 and m["ndcg@5"] == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    empty = evaluate(lambda u: torch.zeros(len(u), 3), sp.csr_matrix((2, 3), dtype=np.float32), [], ks=(2,))
    assert empty == {"ndcg@2": 0.0, "precision@2": 0.0, "recall@2": 0.0}


def test_sampled_contrastive_candidates_are_seeded_uniform_and_leave_the_triples_alone():
    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((20, 15)) < 0.3).astype(np.float32))
    keys = positive_keys(train)
    plain = epoch_batches(train, keys, 7, np.random.default_rng(5), anchors=True)
    drawn = epoch_batches(train, keys, 7, np.random.default_rng(5), anchors=True, samples=400)
    again = epoch_batches(train, keys, 7, np.random.default_rng(5), anchors=True, samples=400)
    for a, b, c in zip(plain, drawn, again):
        assert torch.equal(a.users, b.users) and torch.equal(a.neg, b.neg) and a.sampled_users is None
        assert b.sampled_users.shape == b.sampled_items.shape == (400,)
        assert torch.equal(b.sampled_users, c.sampled_users) and torch.equal(b.sampled_items, c.sampled_items)
        assert set(b.sampled_users.tolist()) == set(range(20)) and set(b.sampled_items.tolist()) == set(range(15))
    assert not torch.equal(drawn[0].sampled_items, drawn[1].sampled_items)
