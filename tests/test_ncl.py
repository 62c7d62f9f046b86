"""NCL (Lin et al. 2022): k-means recovers planted clusters, the structural and prototype losses
equal their formulas computed by hand (sums over the batch, duplicates included), the prototype
loss waits for the warm-up, and without its two contrasts NCL trains exactly as LightGCN."""

import numpy as np
import pytest
import torch

from kdiffe import Trainer, from_dict, make_synthetic
from kdiffe.config import ConfigError
from kdiffe.losses import Objective
from kdiffe.ncl import NCL, kmeans
from kdiffe.propagation import propagation_operator
from kdiffe.sampling import Batch

from conftest import triangle_operator

QUIET = dict(log=lambda message: None)


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(n_users=120, n_items=60, seed=1)


def test_kmeans_recovers_planted_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    truth = np.repeat(np.arange(3), 40)
    x = torch.tensor(centres[truth] + rng.normal(0, 0.5, (120, 2)), dtype=torch.float32)
    recovered = 0
    for seed in range(20):
        centroids, labels = kmeans(x, 3, 25, torch.Generator().manual_seed(seed))
        means = np.stack([x.numpy()[labels.numpy() == c].mean(axis=0) for c in range(3)])
        np.testing.assert_allclose(centroids.numpy(), means, rtol=1e-5, atol=1e-5)  # a fixed point of Lloyd
        starts = torch.randperm(120, generator=torch.Generator().manual_seed(seed))[:3].numpy()
        if len(set(truth[starts])) < 3:  # two starts in one blob: a local optimum, as for any Lloyd
            continue
        pairs = set(zip(truth.tolist(), labels.tolist()))  # the truth's partition, up to names
        assert len(pairs) == 3 and len({p[1] for p in pairs}) == 3
        order = [dict((b, a) for a, b in pairs)[c] for c in range(3)]
        np.testing.assert_allclose(centroids.numpy(), centres[order], atol=0.3)
        recovered += 1
    assert recovered >= 3
    again = kmeans(x, 3, 25, torch.Generator().manual_seed(19))[1]
    assert torch.equal(again, labels)  # seeded: the same answer again
    few = kmeans(x[:2], 5, 3, torch.Generator().manual_seed(0))
    assert few[0].shape == (2, 2) and sorted(few[1].tolist()) == [0, 1]  # k beyond n: one cluster per row


def _triangle_model(**kwargs) -> tuple[NCL, np.ndarray, np.ndarray, np.ndarray]:
    """3 users, 2 items (u0-i0, u1-i0, u1-i1, u2-i1), fixed embeddings; the layers by numpy."""
    train, big = triangle_operator()
    model = NCL(3, 2, propagation_operator(train, None, 0.0), dim=2, layers=2,
                objective=Objective(theta1=0.5, theta2=0.0, l2="batch", tau=0.3), **kwargs)
    e_u = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    e_i = np.array([[0.5, -1.0], [2.0, 0.0]])
    with torch.no_grad():
        model.user.weight.copy_(torch.tensor(e_u))
        model.item.weight.copy_(torch.tensor(e_i))
    e0 = np.vstack([e_u, e_i])
    e2 = big @ big @ e0
    return model, e0, e2, big


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _nce_sum(anchor: np.ndarray, candidates: np.ndarray, positives: np.ndarray, tau: float) -> float:
    """Σ_a -log exp(anchor_a · candidates[positives_a] / τ) / Σ_w exp(anchor_a · candidates_w / τ)."""
    logits = _unit(anchor) @ _unit(candidates).T / tau
    return float(np.sum(np.log(np.exp(logits).sum(1)) - logits[np.arange(len(anchor)), positives]))


def test_structural_loss_is_the_papers_sum_over_the_batch():
    model, e0, e2, _ = _triangle_model(alpha=0.7, proto_weight=0.0)
    users, items = torch.tensor([0, 2, 2]), torch.tensor([0, 1, 1])  # a user twice counts twice
    with torch.no_grad():
        got = model.structural_loss(model._layers(), users, items)
    u, i = users.numpy(), items.numpy()
    want = (_nce_sum(e2[:3][u], e0[:3], u, 0.3)  # layer 2 of u against layer 0 of every user
            + 0.7 * _nce_sum(e2[3:][i], e0[3:], i, 0.3))
    assert float(got) == pytest.approx(want, rel=1e-5)
    batch = Batch(users=users, pos=items, neg=torch.tensor([1, 0, 0]))
    loss, parts = model.loss(batch)  # no prototypes: BPR + θ1 L_S
    assert float(parts["cl_loss"]) == pytest.approx(want, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(float(parts["bpr_loss"]) + 0.5 * want, rel=1e-5)


def test_prototype_loss_against_the_centroids_by_hand():
    model, e0, _, _ = _triangle_model(proto_weight=0.2, clusters=2, warm_up=1)
    model.epoch_hook(0)
    assert model.prototypes is None  # warm-up: no E-step, no prototype loss
    model.epoch_hook(1)
    c_u, l_u, c_i, l_i = (t.numpy() for t in model.prototypes)
    assert c_u.shape == (2, 2) and c_i.shape == (2, 2)
    np.testing.assert_allclose(np.linalg.norm(c_u, axis=1), 1, rtol=1e-6)  # normalised centroids
    users, items = torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0])
    with torch.no_grad():
        got = model.prototype_loss(users, items)
    u, i = users.numpy(), items.numpy()
    want = _nce_sum(e0[:3][u], c_u, l_u[u], 0.3) + _nce_sum(e0[3:][i], c_i, l_i[i], 0.3)
    assert float(got) == pytest.approx(want, rel=1e-5)
    batch = Batch(users=users, pos=items, neg=torch.tensor([1, 0, 1]))
    loss, parts = model.loss(batch)
    structural = float(model.structural_loss(model._layers(), users, items).detach())
    assert float(parts["cl_loss"]) == pytest.approx(structural + want, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(float(parts["bpr_loss"]) + 0.5 * structural + 0.2 * want, rel=1e-5)


def test_e_step_assigns_each_node_to_its_nearest_raw_centroid(synthetic):
    trainer = Trainer(from_dict({"model": "ncl", "warm_up": 0, "clusters": 7}), synthetic, **QUIET)
    model = trainer.model
    model.epoch_hook(0)
    _, labels, _, _ = model.prototypes
    x = model.user.weight.detach()
    assert labels.shape == (synthetic.n_users,) and int(labels.max()) < 7
    # a fixed point: every user is nearest to the mean of its own cluster
    means = torch.stack([x[labels == c].mean(0) for c in range(7) if (labels == c).any()])
    nearest = torch.cdist(x, means).argmin(1)
    present = [c for c in range(7) if (labels == c).any()]
    assert torch.equal(torch.tensor(present)[nearest], labels)


def test_prototypes_start_after_the_warm_up_in_training(synthetic):
    trainer = Trainer(from_dict({"model": "ncl", "warm_up": 2, "clusters": 5, "epochs": 3, "patience": 0}),
                      synthetic, **QUIET)
    seen = []
    for _ in range(3):
        trainer.train_epoch()
        seen.append(trainer.model.prototypes is not None)
    assert seen == [False, False, True]


def test_ncl_without_its_contrasts_is_lightgcn(synthetic, one_thread):
    common = dict(epochs=3, patience=0, seed=3, tau=0.1)
    ncl = Trainer(from_dict({"model": "ncl", "theta1": 0.0, "proto_weight": 0.0, **common}), synthetic,
                  **QUIET).run()
    lightgcn = Trainer(from_dict({"model": "lightgcn", **common}), synthetic, **QUIET).run()
    keys = ["val_recall@20", "test_ndcg@20", "bpr_loss"]
    assert [[r[k] for k in keys] for r in ncl["history"]] == [[r[k] for k in keys] for r in lightgcn["history"]]


def test_published_defaults_and_impossible_values():
    cfg = from_dict({"model": "ncl"})
    assert (cfg.layers, cfg.tau, cfg.theta1, cfg.proto_weight, cfg.clusters, cfg.warm_up, cfg.hyper_layers,
            cfg.theta2, cfg.l2, cfg.layer_combine) == (3, 0.1, 1e-7, 8e-8, 1000, 20, 1, 1e-4, "batch", "mean")
    for name, value in (("clusters", 0), ("hyper_layers", 0), ("warm_up", -1), ("proto_weight", -1e-8)):
        with pytest.raises(ConfigError, match=f"^{name}="):
            from_dict({"model": "ncl", name: value})
