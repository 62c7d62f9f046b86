import numpy as np
import pytest
import torch

from kdiffe.diffusion import (Denoiser, GaussianDiffusion, relation_groups, top_q_per_relation,
                             user_guidance_operator)
import scipy.sparse as sp


def test_forward_marginals_match_the_closed_form():
    torch.manual_seed(0)
    diff = GaussianDiffusion(steps=8, noise_scale=1.0, noise_min=0.01, noise_max=0.2)
    x0 = torch.tensor([1.0, 0.0, 0.5]).repeat(40000, 1)
    x = x0.clone()
    for beta in diff.betas:  # step by step: x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps
        x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn_like(x)
    ab = diff.alpha_bar[-1]
    torch.testing.assert_close(x.mean(0), ab.sqrt() * x0[0], atol=0.02, rtol=0)
    torch.testing.assert_close(x.var(0), (1 - ab).expand(3), atol=0.02, rtol=0)
    closed = diff.q_sample(x0, torch.full((40000,), 7))
    torch.testing.assert_close(closed.mean(0), x.mean(0), atol=0.02, rtol=0)
    torch.testing.assert_close(closed.var(0), x.var(0), atol=0.02, rtol=0)


def test_posterior_mean_of_exact_x0_moves_towards_x0():
    diff = GaussianDiffusion(steps=5, noise_scale=1.0, noise_min=0.05, noise_max=0.3)
    x0 = torch.tensor([[1.0, 0.0]])
    step = torch.tensor([3])
    x_t = diff.q_sample(x0, step, torch.zeros_like(x0))
    mean = diff.posterior_mean(x_t, x0, step)
    expected = diff.alpha_bar[2].sqrt() * x0  # noiseless chain: mean of x_{t-1} is sqrt(ab_{t-1}) x0
    torch.testing.assert_close(mean, expected, atol=1e-6, rtol=1e-5)


class Oracle(torch.nn.Module):
    """A denoiser that always predicts the true x0."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0

    def forward(self, x_t, steps, guidance):
        return self.x0


def test_reverse_process_with_oracle_recovers_top_q():
    torch.manual_seed(0)
    x0 = torch.zeros(4, 6)
    x0[0, [0, 4]] = 1
    x0[1, [2, 3]] = 1
    x0[2, [1, 5]] = 1
    x0[3, [0, 5]] = 1
    diff = GaussianDiffusion(steps=10)
    recon = diff.reconstruct(Oracle(x0), x0, None)
    torch.testing.assert_close(recon, x0)
    relation = torch.tensor([0, 0, 0, 1, 1, 1])  # entities 0-2: relation 0; 3-5: relation 1
    triples = top_q_per_relation(recon, relation, q=1)
    got = {(i, r, e) for i, r, e in triples.tolist()}
    assert got == {(0, 0, 0), (0, 1, 4), (1, 0, 2), (1, 1, 3), (2, 0, 1), (2, 1, 5), (3, 0, 0), (3, 1, 5)}


def test_top_q_clamps_to_the_relation_size():
    scores = torch.tensor([[0.1, 0.9, 0.5]])
    triples = top_q_per_relation(scores, torch.tensor([0, 0, 1]), q=5)
    assert sorted(triples[:, 2].tolist()) == [0, 1, 2]


def test_guided_and_unguided_denoisers_differ_only_by_guidance():
    torch.manual_seed(0)
    den = Denoiser(n_entities=6, guidance_dim=4, hidden=16, step_dim=8)
    x = torch.randn(3, 6)
    steps = torch.tensor([0, 3, 9])
    unguided = den(x, steps, None)
    torch.testing.assert_close(unguided, den(x, steps, torch.zeros(3, 4)))
    assert not torch.allclose(unguided, den(x, steps, torch.randn(3, 4)))


def test_training_loss_decreases_on_a_fixed_target():
    torch.manual_seed(0)
    x0 = (torch.rand(64, 10) < 0.2).float()
    diff = GaussianDiffusion(steps=5)
    den = Denoiser(10, 4, hidden=32, step_dim=8)
    opt = torch.optim.Adam(den.parameters(), lr=1e-2)
    guidance = torch.randn(64, 4)
    first = diff.loss(den, x0, guidance).item()
    for _ in range(200):
        loss = diff.loss(den, x0, guidance)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


def test_user_guidance_is_the_mean_of_interacting_users():
    train = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 0]], dtype=np.float32))
    users = torch.tensor([[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]])
    got = torch.sparse.mm(user_guidance_operator(train), users)
    torch.testing.assert_close(got, torch.tensor([[2.0, 1.0], [3.0, 2.0]]))


def test_precomputed_relation_groups_give_the_same_view():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(9, 12, generator=gen)
    relation = torch.tensor([2, 0, 0, 1, 2, 1, 0, 2, 1, 1, 0, 2])
    groups = relation_groups(relation)
    assert [rel for rel, _ in groups] == [0, 1, 2]
    for q in (1, 2, 5):
        assert torch.equal(top_q_per_relation(scores, relation, q, groups), top_q_per_relation(scores, relation, q))
