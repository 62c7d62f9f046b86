"""SimGCL (Yu et al. 2022): its noise has norm ε in the embedding's own orthant and is redrawn
(and restored from a checkpoint), the encoder is the mean of layers 1..L, and the loss equals
Eq. 1-2 computed by hand with the same draws."""

import numpy as np
import pytest
import torch

from kdiffe import Trainer, from_dict, make_synthetic
from kdiffe.losses import Objective
from kdiffe.propagation import propagation_operator
from kdiffe.sampling import Batch
from kdiffe.simgcl import SimGCL

from conftest import triangle_operator

QUIET = dict(log=lambda message: None)


def _tiny(theta1: float = 0.7, eps: float = 0.1) -> tuple[SimGCL, dict]:
    train, big = triangle_operator()
    rng = np.random.default_rng(2)
    w = {"e_u": rng.normal(size=(3, 2)), "e_i": rng.normal(size=(2, 2)), "big": big}
    model = SimGCL(3, 2, propagation_operator(train, None, 0.0), dim=2, layers=2, eps=eps,
                   objective=Objective(theta1=theta1, theta2=0.1, l2="batch", tau=0.3))
    with torch.no_grad():
        model.user.weight.copy_(torch.tensor(w["e_u"]))
        model.item.weight.copy_(torch.tensor(w["e_i"]))
    return model, w


def test_noise_has_norm_eps_in_the_embeddings_orthant_and_restores():
    model, _ = _tiny(eps=0.2)
    x = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    state = model.extra_state()
    delta = model.noise(x)
    np.testing.assert_allclose(delta.norm(dim=1).numpy(), 0.2, rtol=1e-5)
    assert bool(((delta * x) >= 0).all())  # sign(Δ) = sign(e)
    assert not torch.equal(model.noise(x), delta)  # fresh draws
    model.load_extra_state(state)
    assert torch.equal(model.noise(x), delta)  # the same draws after a restore


def test_encoder_skips_layer_zero_and_the_loss_is_eq_2_by_hand():
    model, w = _tiny()
    big, e0 = w["big"], np.vstack([w["e_u"], w["e_i"]])
    e1 = big @ e0
    clean = (e1 + big @ e1) / 2  # mean of layers 1 and 2: E^(0) skipped
    users, items = model.forward()
    np.testing.assert_allclose(np.vstack([users.detach().numpy(), items.detach().numpy()]), clean, rtol=1e-6)
    np.testing.assert_allclose(model.scorer()(torch.arange(3)).numpy(), clean[:3] @ clean[3:].T, rtol=1e-5)

    batch = Batch(users=torch.tensor([0, 1, 1]), pos=torch.tensor([0, 0, 1]), neg=torch.tensor([1, 1, 0]),
                  anchor_users=torch.tensor([0, 1]), anchor_items=torch.tensor([0, 1]))
    state = model.extra_state()
    loss, parts = model.loss(batch)
    # the same draws, replayed: two views, two layers each, in that order
    replay = torch.Generator()
    replay.set_state(state["generator"])

    def view() -> np.ndarray:
        current, total = e0, np.zeros_like(e0)
        for _ in range(2):
            current = big @ current
            u = torch.rand(current.shape, generator=replay).double().numpy()
            current = current + 0.1 * u / np.linalg.norm(u, axis=1, keepdims=True) * np.sign(current)
            total = total + current
        return total / 2

    a, b = view(), view()

    def nce(x, y):
        x = x / np.linalg.norm(x, axis=1, keepdims=True) / 0.3
        y = y / np.linalg.norm(y, axis=1, keepdims=True)
        logits = x @ y.T
        return np.mean(np.log(np.exp(logits).sum(1)) - np.diag(logits))

    au, ai, bu, bi = a[:3], a[3:], b[:3], b[3:]
    cl = nce(au[[0, 1]], bu[[0, 1]]) + nce(ai[[0, 1]], bi[[0, 1]])  # each against the batch's others only
    u, i, j = batch.users.numpy(), batch.pos.numpy(), batch.neg.numpy()
    cu, ci = clean[:3], clean[3:]
    bpr = np.mean(np.log1p(np.exp((cu[u] * ci[j]).sum(1) - (cu[u] * ci[i]).sum(1))))
    reg = 0.5 * (np.sum(w["e_u"][u] ** 2) + np.sum(w["e_i"][i] ** 2) + np.sum(w["e_i"][j] ** 2)) / 3
    assert float(parts["bpr_loss"]) == pytest.approx(bpr, rel=1e-5)
    assert float(parts["cl_loss"]) == pytest.approx(cl, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(bpr + 0.1 * reg + 0.7 * cl, rel=1e-5)


def test_published_defaults_and_training_without_the_contrast():
    cfg = from_dict({"model": "simgcl"})
    assert (cfg.layers, cfg.noise_eps, cfg.tau, cfg.theta1, cfg.theta2, cfg.l2) == (2, 0.1, 0.2, 0.5, 1e-4, "batch")
    ds = make_synthetic(n_users=80, n_items=50, seed=4)
    plain = Trainer(from_dict({"model": "simgcl", "theta1": 0.0, "epochs": 2, "patience": 0}), ds, **QUIET)
    assert not plain.model.contrastive  # λ = 0: no anchors, no noisy views, no draws
    state = plain.model.extra_state()["generator"]
    row = plain.run()["history"][-1]
    assert row["cl_loss"] == 0.0 and torch.equal(plain.model.generator.get_state(), state)
