"""BM3 (Zhou et al. 2023): its loss equals Eq. 6-9 computed by hand, no gradient reaches a target,
the targets' dropout keeps its rate and is reproducible, and a dataset without item features is
refused."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdiffe import Trainer, from_dict, make_synthetic
from kdiffe.bm3 import BM3
from kdiffe.config import ConfigError
from kdiffe.data import Dataset
from kdiffe.propagation import propagation_operator
from kdiffe.sampling import Batch

from conftest import triangle_operator

QUIET = dict(log=lambda message: None)


def _tiny(dropout: float = 0.0) -> tuple[BM3, dict]:
    """3 users, 2 items (u0-i0, u1-i0, u1-i1, u2-i1), one 3-d modality, every weight fixed."""
    train, big = triangle_operator()
    rng = np.random.default_rng(0)
    w = {"e_u": rng.normal(size=(3, 2)), "e_i": rng.normal(size=(2, 2)), "x": rng.normal(size=(2, 3)),
         "W_m": rng.normal(size=(2, 3)), "b_m": rng.normal(size=2), "W_p": rng.normal(size=(2, 2)),
         "b_p": rng.normal(size=2)}
    model = BM3(3, 2, propagation_operator(train, None, 0.0), {"image": torch.tensor(w["x"])}, dim=2, layers=1,
                dropout=dropout, cl_weight=0.7, reg_weight=0.3)
    with torch.no_grad():
        model.user.weight.copy_(torch.tensor(w["e_u"]))
        model.item.weight.copy_(torch.tensor(w["e_i"]))
        model.projections["image"].weight.copy_(torch.tensor(w["W_m"]))
        model.projections["image"].bias.copy_(torch.tensor(w["b_m"]))
        model.predictor.weight.copy_(torch.tensor(w["W_p"]))
        model.predictor.bias.copy_(torch.tensor(w["b_p"]))
    e0 = np.vstack([w["e_u"], w["e_i"]])
    h = (e0 + big @ e0) / 2
    w["h_u"], w["h_i"] = h[:3], h[3:] + w["e_i"]
    return model, w


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_loss_is_eq_9_by_hand():
    model, w = _tiny()
    batch = Batch(users=torch.tensor([0, 1, 2]), pos=torch.tensor([0, 1, 1]), neg=torch.tensor([1, 0, 0]))
    loss, parts = model.loss(batch)
    u, i = batch.users.numpy(), batch.pos.numpy()

    def f(x):
        return x @ w["W_p"].T + w["b_p"]

    h_m = w["x"][i] @ w["W_m"].T + w["b_m"]
    rec = (1 - _cos(f(w["h_u"][u]), w["h_i"][i]).mean()) + (1 - _cos(f(w["h_i"][i]), w["h_u"][u]).mean())
    modal = (1 - _cos(f(h_m), w["h_i"][i]).mean()) + (1 - _cos(f(h_m), h_m).mean())
    reg = (np.linalg.norm(w["h_u"]) + np.linalg.norm(w["h_i"])) / 2
    assert float(loss.detach()) == pytest.approx(rec + 0.7 * modal + 0.3 * reg, rel=1e-5)
    assert float(parts["cl_loss"]) == pytest.approx(rec + modal, rel=1e-5)
    z_u, z_i = f(w["h_u"]), f(w["h_i"])  # scores: f(h_u)·f(h_i)
    np.testing.assert_allclose(model.scorer()(torch.arange(3)).numpy(), z_u @ z_i.T, rtol=1e-5)
    pos, neg = (z_u[u] * z_i[i]).sum(1), (z_u[u] * z_i[batch.neg.numpy()]).sum(1)
    assert float(parts["bpr_loss"]) == pytest.approx(np.mean(np.log1p(np.exp(neg - pos))), rel=1e-5)


def test_no_gradient_reaches_a_target():
    model, _ = _tiny()
    batch = Batch(users=torch.tensor([0, 2]), pos=torch.tensor([0, 1]), neg=torch.tensor([1, 0]))
    loss, _ = model.loss(batch)
    got = torch.autograd.grad(loss, [model.user.weight, model.item.weight])

    def hand(stop: bool) -> torch.Tensor:  # Eq. 9 written out, targets stopped or not
        h_u, h_i = model.forward()
        sg = (lambda x: x.detach()) if stop else (lambda x: x)
        f, u, i = model.predictor, batch.users, batch.pos
        h_m = model.modality("image", i)
        d = lambda a, b: 1 - F.cosine_similarity(a, b, dim=-1).mean()  # noqa: E731
        return (d(f(h_u[u]), sg(h_i[i])) + d(f(h_i[i]), sg(h_u[u]))
                + 0.7 * (d(f(h_m), sg(h_i[i])) + d(f(h_m), sg(h_m)))
                + 0.3 * (h_u.norm() + h_i.norm()) / 2)

    stopped = torch.autograd.grad(hand(True), [model.user.weight, model.item.weight])
    through = torch.autograd.grad(hand(False), [model.user.weight, model.item.weight])
    for a, b in zip(got, stopped):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(got[1], through[1])  # the test would see a gradient through the targets


def test_target_dropout_keeps_its_rate_and_repeats_after_a_restore():
    model, _ = _tiny(dropout=0.3)
    x = torch.ones(200, 100)
    state = model.extra_state()
    first = model._target(x)
    assert not first.requires_grad
    assert abs(float((first == 0).float().mean()) - 0.3) < 0.01
    assert not torch.equal(model._target(x), first)  # a fresh mask per call
    model.load_extra_state(state)
    assert torch.equal(model._target(x), first)  # the same masks after a restore


def test_a_dataset_without_features_is_refused_and_modalities_are_recorded():
    ds = make_synthetic(n_users=60, n_items=40, seed=2)
    bare = Dataset(name="bare", train=ds.train, val=ds.val, test=ds.test)
    with pytest.raises(ConfigError, match="model=bm3: bare has no item features"):
        Trainer(from_dict({"model": "bm3"}), bare, **QUIET)
    trainer = Trainer(from_dict({"model": "bm3", "epochs": 1}), ds, **QUIET)
    assert trainer.model.recorded()["modalities"] == ",".join(sorted(ds.features))
    cfg = from_dict({"model": "bm3"})
    assert (cfg.layers, cfg.target_dropout, cfg.theta1, cfg.theta2) == (1, 0.3, 2.0, 0.1)
    with pytest.raises(ConfigError, match="^target_dropout="):
        from_dict({"model": "bm3", "target_dropout": 1.0})


def test_a_checkpoint_without_or_with_a_bad_stream_state_is_one_line_refused():
    from kdiffe.recommender import CheckpointError

    model, _ = _tiny(dropout=0.3)
    with pytest.raises(CheckpointError, match="holds no state of the model's random stream"):
        model.load_extra_state(None)
    with pytest.raises(CheckpointError, match="random-stream state is not one"):
        model.load_extra_state({"generator": torch.zeros(3, dtype=torch.uint8)})
