"""FREEDOM (Zhou & Shen 2023): its frozen kNN item graph on planted features, the degree-sensitive
pruning's count and law, the loss and the scores by hand, the pruned graph redrawn each epoch and
restored from a checkpoint, and a dataset without features refused."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from kdiffe import Trainer, from_dict, make_synthetic
from kdiffe.config import ConfigError
from kdiffe.data import Dataset
from kdiffe.freedom import FREEDOM, degree_sensitive_keep, item_graph, knn_graph, modality_weights
from kdiffe.losses import Objective
from kdiffe.propagation import propagation_operator
from kdiffe.recommender import own_generator
from kdiffe.sampling import Batch

from conftest import triangle_operator

QUIET = dict(log=lambda message: None)


def test_knn_graph_links_each_item_to_its_k_most_similar_with_weight_one_over_k():
    # two planted directions: items 0-2 along x, items 3-5 along y, each a little apart
    x = torch.tensor([[1.0, 0.00], [1.0, 0.05], [1.0, 0.10], [0.00, 1.0], [0.05, 1.0], [0.10, 1.0]])
    graph = knn_graph(x, 2).toarray()
    assert (np.count_nonzero(graph, axis=1) == 2).all()
    np.testing.assert_allclose(graph[graph != 0], 0.5)  # every row holds k edges: 1/√k · 1/√k
    for i in range(6):
        assert graph[i, i] == pytest.approx(0.5)  # itself, cosine 1
        neighbour = int(np.flatnonzero(graph[i])[np.flatnonzero(graph[i]) != i][0])
        assert (neighbour < 3) == (i < 3)  # the other one of its own direction
    assert graph[0, 1] and graph[2, 1] and graph[5, 4] and graph[3, 4]  # the nearest of each
    assert knn_graph(x, 100).shape == (6, 6)  # k beyond the items: every item


def test_modality_graphs_are_weighted_image_first():
    assert modality_weights(("image",), 0.1) == {"image": 1.0}
    assert modality_weights(("image", "text"), 0.1) == {"image": 0.1, "text": pytest.approx(0.9)}
    assert modality_weights(("audio", "image", "text"), 0.2) == {"audio": 0.4, "image": 0.2, "text": 0.4}
    assert modality_weights(("audio", "text"), 0.1) == {"audio": 0.5, "text": 0.5}
    rng = np.random.default_rng(0)
    feats = {"image": torch.tensor(rng.normal(size=(7, 3))), "text": torch.tensor(rng.normal(size=(7, 4)))}
    want = 0.1 * knn_graph(feats["image"], 3) + 0.9 * knn_graph(feats["text"], 3)
    np.testing.assert_allclose(item_graph(feats, 3, 0.1).toarray(), want.toarray(), rtol=1e-12)


def test_degree_sensitive_pruning_keeps_its_count_and_prefers_low_degree_edges():
    # user 0 with 3 items, users 1 and 2 with one each: d_u = (3, 1, 1), d_i = (2, 2, 1)
    train = sp.csr_matrix(np.array([[1, 1, 1], [1, 0, 0], [0, 1, 0]], dtype=np.float32))
    gen = own_generator(0, 5)
    kept = degree_sensitive_keep(train, 0.4, gen)
    assert kept.nnz == int(5 * (1 - 0.4)) and (kept - kept.multiply(train)).nnz == 0
    # one edge kept: the exponential race picks edge e with probability p_e ∝ 1 / √(d_u d_i)
    coo = train.tocoo()
    d_u, d_i = np.asarray(train.sum(1)).ravel(), np.asarray(train.sum(0)).ravel()
    p = 1 / np.sqrt(d_u[coo.row] * d_i[coo.col])
    p /= p.sum()
    draws = 4000
    counts = np.zeros(coo.nnz)
    index = {(r, c): e for e, (r, c) in enumerate(zip(coo.row, coo.col))}
    for _ in range(draws):
        one = degree_sensitive_keep(train, 0.75, gen).tocoo()  # int(5 * 0.25) = 1 edge
        counts[index[(one.row[0], one.col[0])]] += 1
    np.testing.assert_allclose(counts / draws, p, atol=4 * np.sqrt(p.max() * (1 - p.min()) / draws))


def _tiny(edge_drop: float = 0.0) -> tuple[FREEDOM, dict]:
    """3 users, 2 items (u0-i0, u1-i0, u1-i1, u2-i1), one 3-d modality, a fixed item graph."""
    train, big = triangle_operator()
    rng = np.random.default_rng(1)
    w = {"e_u": rng.normal(size=(3, 2)), "e_i": rng.normal(size=(2, 2)), "x": rng.normal(size=(2, 3)),
         "W": rng.normal(size=(2, 3)), "b": rng.normal(size=2), "S": np.array([[0.5, 0.5], [0.2, 0.8]])}
    items = torch.tensor(w["S"], dtype=torch.float32).to_sparse()
    model = FREEDOM(train, propagation_operator(train, None, 0.0), items, {"image": torch.tensor(w["x"])}, dim=2,
                    layers=2, mm_layers=1, edge_drop=edge_drop, modal_weight=0.3,
                    objective=Objective(theta2=0.0, l2="batch"))
    with torch.no_grad():
        model.user.weight.copy_(torch.tensor(w["e_u"]))
        model.item.weight.copy_(torch.tensor(w["e_i"]))
        model.projections["image"].weight.copy_(torch.tensor(w["W"]))
        model.projections["image"].bias.copy_(torch.tensor(w["b"]))
    e0 = np.vstack([w["e_u"], w["e_i"]])
    e1 = big @ e0
    final = (e0 + e1 + big @ e1) / 3  # the mean of the L_ui + 1 = 3 layers
    w["h_u"], w["h_i"] = final[:3], final[3:] + w["S"] @ w["e_i"]  # plus S E_I (L_ii = 1)
    return model, w


def test_loss_and_scores_by_hand():
    model, w = _tiny()
    model.epoch_hook(0)  # ρ = 0: the whole graph
    batch = Batch(users=torch.tensor([0, 1, 2]), pos=torch.tensor([0, 1, 1]), neg=torch.tensor([1, 0, 0]))
    loss, parts = model.loss(batch)
    u, i, j = batch.users.numpy(), batch.pos.numpy(), batch.neg.numpy()

    def bpr(pos, neg):
        return np.mean(np.log1p(np.exp(neg - pos)))

    h_u, h_i = w["h_u"], w["h_i"]
    main = bpr((h_u[u] * h_i[i]).sum(1), (h_u[u] * h_i[j]).sum(1))
    proj = w["x"] @ w["W"].T + w["b"]
    modal = bpr((h_u[u] * proj[i]).sum(1), (h_u[u] * proj[j]).sum(1))
    assert float(parts["bpr_loss"]) == pytest.approx(main, rel=1e-5)
    assert float(parts["modal_loss"]) == pytest.approx(modal, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(main + 0.3 * modal, rel=1e-5)
    np.testing.assert_allclose(model.scorer()(torch.arange(3)).numpy(), h_u @ h_i.T, rtol=1e-5)
    grads = torch.autograd.grad(loss, [model.features["image"], model.projections["image"].weight])
    assert all(float(g.abs().sum()) > 0 for g in grads)  # the features are fine-tuned


def test_training_uses_a_pruned_graph_redrawn_each_epoch_and_restored_from_a_checkpoint():
    ds = make_synthetic(n_users=80, n_items=50, seed=3)
    trainer = Trainer(from_dict({"model": "freedom", "epochs": 1}), ds, **QUIET)
    model = trainer.model
    state = model.extra_state()
    model.epoch_hook(0)
    first = model.pruned.to_dense()
    full = model.operator.to_dense()
    kept_edges = int((first[:ds.n_users] != 0).sum())
    assert kept_edges == int(ds.train.nnz * (1 - 0.8))  # ρ = 0.8, the published default (the authors' int())
    assert ((first != 0) & (full == 0)).sum() == 0  # only edges of the graph
    model.epoch_hook(1)
    assert not torch.equal(model.pruned.to_dense(), first)  # redrawn
    model.load_extra_state(state)
    model.epoch_hook(0)
    assert torch.equal(model.pruned.to_dense(), first)  # the same draw after a restore
    scores_before = model.scorer()(torch.arange(4))
    model.epoch_hook(2)
    assert torch.equal(model.scorer()(torch.arange(4)), scores_before)  # scores see the whole graph


def test_published_defaults_a_dataset_without_features_and_bad_values_are_refused():
    cfg = from_dict({"model": "freedom"})
    assert (cfg.layers, cfg.mm_layers, cfg.knn_k, cfg.image_weight, cfg.edge_drop, cfg.theta1, cfg.theta2) == \
        (2, 1, 10, 0.1, 0.8, 1e-4, 0.0)
    ds = make_synthetic(n_users=60, n_items=40, seed=2)
    bare = Dataset(name="bare", train=ds.train, val=ds.val, test=ds.test)
    with pytest.raises(ConfigError, match="model=freedom: bare has no item features"):
        Trainer(from_dict({"model": "freedom"}), bare, **QUIET)
    trainer = Trainer(from_dict({"model": "freedom", "epochs": 1}), ds, **QUIET)
    assert trainer.model.recorded() == {"kg_entities": 0, "modalities": ",".join(sorted(ds.features))}
    with pytest.raises(ConfigError, match="^image_weight=1.5: must be in"):
        from_dict({"model": "freedom", "image_weight": 1.5})
    with pytest.raises(ConfigError, match="^knn_k=0: must be a positive integer"):
        from_dict({"model": "freedom", "knn_k": 0})
