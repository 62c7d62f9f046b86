"""DiffMM (Jiang et al. 2024): its forward noising has the moments of its schedule, its loss and
its denoisers' loss equal L and L_m computed by hand, each user keeps q items in a
rebuilt graph, edge dropout keeps its rate, and a dataset without item features is refused."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn

from kdiffe import Trainer, from_dict, make_synthetic
from kdiffe.config import ConfigError
from kdiffe.data import Dataset
from kdiffe.diffmm import DiffMM, drop_entries, rebuilt_graph
from kdiffe.diffusion import GaussianDiffusion, betas_for
from kdiffe.propagation import self_loop_normalized, torch_csr
from kdiffe.recommender import CheckpointError
from kdiffe.sampling import Batch

from conftest import TRIANGLE

QUIET = dict(log=lambda message: None)


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(n_users=120, n_items=60, seed=1)


def test_variance_schedule_is_linear_in_one_minus_alpha_bar_with_the_first_beta_fixed():
    ramp = 0.1 * np.linspace(1e-4, 0.02, 5)
    betas = betas_for("variance", 5, 0.1, 1e-4, 0.02).numpy()
    assert betas[0] == 1e-4
    np.testing.assert_allclose(betas[1:], 1 - (1 - ramp[1:]) / (1 - ramp[:-1]), rtol=1e-12)
    alpha_bar = np.cumprod(1 - betas)
    np.testing.assert_allclose(alpha_bar, (1 - ramp) * (1 - 1e-4) / (1 - ramp[0]), rtol=1e-12)
    np.testing.assert_allclose(betas_for("beta", 5, 0.1, 1e-4, 0.02).numpy(), ramp, rtol=1e-12)
    with pytest.raises(ValueError, match="schedule='cosine'"):
        betas_for("cosine", 5, 0.1, 1e-4, 0.02)


def test_forward_noising_has_the_schedules_moments():
    diffusion = GaussianDiffusion(5, 0.5, 1e-2, 0.9, schedule="variance")
    x0 = torch.tensor([[1.0, 0.0, 1.0, 0.0]]).repeat(200_000, 1)
    torch.manual_seed(0)
    for step in (0, 4):
        x_t = diffusion.q_sample(x0, torch.full((x0.shape[0],), step, dtype=torch.long))
        alpha_bar = float(diffusion.alpha_bar[step])
        torch.testing.assert_close(x_t.mean(0), alpha_bar ** 0.5 * x0[0], atol=0.01, rtol=0)
        torch.testing.assert_close(x_t.var(0), torch.full((4,), 1 - alpha_bar), atol=0.01, rtol=0.02)
    assert abs(1 - float(diffusion.alpha_bar[4]) - 0.5 * 0.9) < 0.01  # 1 - ᾱ_T ≈ scale · max


def test_each_user_keeps_its_q_best_items_and_dropout_keeps_its_rate():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.2], [0.8, 0.0, 0.3, 0.7]])
    graph = rebuilt_graph(scores, 2)
    assert graph.toarray().tolist() == [[0, 1, 1, 0], [1, 0, 0, 1]]
    assert rebuilt_graph(scores, 9).nnz == 8  # q beyond the items keeps them all
    matrix = sp.csr_matrix(np.full((300, 300), 2.0))
    dropped = drop_entries(matrix, 0.3, torch.Generator().manual_seed(1))
    assert abs(dropped.nnz / 90_000 - 0.7) < 0.01
    np.testing.assert_allclose(dropped.data, 2.0 / 0.7)
    again = drop_entries(matrix, 0.3, torch.Generator().manual_seed(1))
    assert (again != dropped).nnz == 0
    assert drop_entries(matrix, 0.0, torch.Generator()) is matrix


def _self_loops(a: np.ndarray) -> np.ndarray:
    m = np.block([[np.zeros((a.shape[0],) * 2), a], [a.T, np.zeros((a.shape[1],) * 2)]]) + np.eye(sum(a.shape))
    d = m.sum(1)
    return m / np.sqrt(d[:, None] * d[None, :])


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _nce(z: np.ndarray, v: np.ndarray, nodes: np.ndarray, tau: float) -> float:
    logits = _normalize(z[nodes]) @ _normalize(v).T / tau
    positive = logits[np.arange(len(nodes)), nodes]
    return float((np.log(np.exp(logits).sum(1)) - positive).mean())


@pytest.mark.parametrize("cl_pairs", ["main", "modal"])
def test_loss_is_l_by_hand(cl_pairs):
    a = np.array(TRIANGLE, dtype=float)
    rng = np.random.default_rng(0)
    feats = {"audio": rng.normal(size=(2, 3)), "image": rng.normal(size=(2, 4))}
    model = DiffMM(sp.csr_matrix(a), {m: torch.tensor(x) for m, x in feats.items()}, dim=2, layers=1,
                   ssl_weight=0.3, reg_weight=0.05, tau=0.7, ris_lambda=0.4, ris_adj_lambda=0.2, cl_pairs=cl_pairs,
                   denoiser_hidden=4, step_dim=2)
    rebuilt = {"audio": np.array([[0, 1], [1, 0], [1, 1]], float), "image": np.array([[1, 1], [0, 1], [1, 0]], float)}
    model.views = {m: torch_csr(self_loop_normalized(sp.csr_matrix(g))) for m, g in rebuilt.items()}
    w = {"e_u": rng.normal(size=(3, 2)), "e_i": rng.normal(size=(2, 2)), "modal": np.array([0.3, -0.2])}
    with torch.no_grad():
        model.user.weight.copy_(torch.tensor(w["e_u"]))
        model.item.weight.copy_(torch.tensor(w["e_i"]))
        model.modal_weight.copy_(torch.tensor(w["modal"]))
        for m in feats:
            w[m] = (rng.normal(size=(2, feats[m].shape[1])), rng.normal(size=2))
            model.projections[m].weight.copy_(torch.tensor(w[m][0]))
            model.projections[m].bias.copy_(torch.tensor(w[m][1]))
    big = _self_loops(a)
    ids = np.vstack([w["e_u"], w["e_i"]])
    softmax = np.exp(w["modal"]) / np.exp(w["modal"]).sum()
    fused, views = 0, []
    for weight, m in zip(softmax, ("audio", "image")):
        f = _normalize(feats[m] @ w[m][0].T + w[m][1])
        mixed = np.vstack([w["e_u"], f])
        h = big @ mixed
        h = h + big @ np.vstack([h[:3], w["e_i"]])
        g = _self_loops(rebuilt[m])
        fused = fused + weight * (h + 0.2 * g @ ids)
        view = g @ mixed
        views.append(view + big @ view)
    e = fused + big @ fused + 0.4 * _normalize(fused)
    batch = Batch(users=torch.tensor([0, 1, 1, 2]), pos=torch.tensor([0, 0, 1, 1]), neg=torch.tensor([1, 1, 0, 0]))
    u, i, j = (x.numpy() for x in (batch.users, batch.pos, batch.neg))
    diff = (e[u] * e[3 + i]).sum(1) - (e[u] * e[3 + j]).sum(1)
    bpr = np.log1p(np.exp(-diff)).mean()
    reg = (w["e_u"] ** 2).sum() + (w["e_i"] ** 2).sum()
    pairs = [(e, v) for v in views] if cl_pairs == "main" else [(views[0], views[1])]
    cl = sum(_nce(x[:3], y[:3], u, 0.7) + _nce(x[3:], y[3:], i, 0.7) for x, y in pairs)
    loss, parts = model.loss(batch)
    assert float(parts["bpr_loss"]) == pytest.approx(bpr, rel=1e-5)
    assert float(parts["cl_loss"]) == pytest.approx(cl, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(bpr + 0.05 * reg + 0.3 * cl, rel=1e-5)
    scores = model.scorer()(torch.arange(3))
    np.testing.assert_allclose(scores.numpy(), e[:3] @ e[3:].T, rtol=1e-5, atol=1e-6)


class _Fixed(nn.Module):
    """A denoiser that answers ``out`` whatever it is given."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out

    def forward(self, x_t, steps, guidance):
        return self.out


def test_denoiser_loss_is_l_elbo_plus_msi_by_hand():
    a = np.array(TRIANGLE, dtype=float)
    model = DiffMM(sp.csr_matrix(a), {"image": torch.ones(2, 3)}, dim=2, steps=4, msi_weight=0.25,
                   denoiser_hidden=4, step_dim=2)
    out = torch.tensor([[0.2, 0.9], [0.6, 0.1], [0.4, 0.4]])
    model.denoisers["image"] = _Fixed(out)
    x0 = torch.tensor(a, dtype=torch.float32)
    item_ids, features = torch.tensor([[1.0, -1.0], [0.5, 2.0]]), torch.tensor([[0.3, 0.1], [-0.2, 0.4]])
    torch.manual_seed(5)
    loss = model.denoiser_loss("image", x0, item_ids, features)
    torch.manual_seed(5)
    steps = torch.randint(0, 4, (3,))
    weight = model.diffusion.elbo_weight[steps].numpy()
    snr = (model.diffusion.alpha_bar / (1 - model.diffusion.alpha_bar)).numpy()
    expect_w = np.where(steps.numpy() == 0, 1.0, snr[np.maximum(steps.numpy() - 1, 0)] - snr[steps.numpy()])
    np.testing.assert_allclose(weight, expect_w, rtol=1e-3)  # float32 ᾱ near 1
    elbo = (weight * ((out.numpy() - a) ** 2).mean(1)).mean()
    msi = ((out.numpy() @ features.numpy() - a @ item_ids.numpy()) ** 2).mean(1).mean()
    assert float(loss) == pytest.approx(elbo + 0.25 * msi, rel=1e-5)


def test_an_epoch_trains_the_denoisers_and_rebuilds_q_items_per_user(synthetic):
    cfg = from_dict({"model": "diffmm", "edge_drop": 0.0, "q": 3, "denoiser_hidden": 32, "epochs": 1})
    trainer = Trainer(cfg, synthetic, **QUIET)
    model = trainer.model
    before = {m: [p.detach().clone() for p in d.parameters()] for m, d in model.denoisers.items()}
    stats = model.epoch_hook(0)
    assert set(model.views) == set(synthetic.features) and float(stats["diffusion_loss"]) > 0
    for m, d in model.denoisers.items():
        assert all(not torch.equal(p, q) for p, q in zip(before[m], d.parameters()))
    for view in model.views.values():
        dense = view.to_dense()
        per_user = (dense[: synthetic.n_users, synthetic.n_users:] != 0).sum(1)
        assert per_user.tolist() == [3] * synthetic.n_users
        torch.testing.assert_close(dense, dense.T)  # no dropout: symmetric, self loops included
        assert (dense.diagonal() > 0).all()
    assert model.recorded() == {"kg_entities": 0, "modalities": ",".join(sorted(synthetic.features))}


def test_a_dataset_without_item_features_is_refused_and_a_foreign_checkpoint_named(synthetic):
    bare = Dataset(name="bare", train=synthetic.train, val=synthetic.val, test=synthetic.test)
    with pytest.raises(ConfigError, match="model=diffmm: bare has no item features"):
        Trainer(from_dict({"model": "diffmm"}), bare, **QUIET)
    model = Trainer(from_dict({"model": "diffmm", "denoiser_hidden": 8}), synthetic, **QUIET).model
    state = model.extra_state()
    del state["denoisers"]
    with pytest.raises(CheckpointError, match="model=diffmm: the checkpoint's denoisers"):
        model.load_extra_state(state)
    with pytest.raises(RuntimeError, match="no rebuilt graphs yet"):
        model.forward()
