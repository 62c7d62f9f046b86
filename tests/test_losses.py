"""The streamed InfoNCE (Eq. 13) against the plain formula, and the batch objective (Eq. 14)."""

import math

import pytest
import torch
import torch.nn.functional as F

from kdiffe.losses import (LogSumExpMean, Objective, bpr_loss, info_nce, info_nce_nodes, logsumexp_mean,
                           parameter_norm)
from kdiffe.sampling import Batch


def test_logsumexp_mean_gradcheck_in_double():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(7, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    c = torch.randn(11, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    for shift in (None, 0.0, 10.0):
        for block in (1, 3, 7, 100):  # one anchor per block, uneven blocks, exactly one, more than n
            assert torch.autograd.gradcheck(lambda a, c: LogSumExpMean.apply(a, c, shift, block), (a, c))
            torch.testing.assert_close(logsumexp_mean(a, c, shift, block),
                                       torch.logsumexp(a @ c.T, dim=1).mean())


@pytest.mark.parametrize("tau", [0.5, 0.1, 0.01])  # 0.01: 1/τ > 40, row maxima
@pytest.mark.parametrize("block", [1, 64, 128, 4096])
def test_streamed_info_nce_matches_the_plain_formula(tau, block):
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(300, 16, generator=gen, requires_grad=True)
    v = torch.randn(300, 16, generator=gen, requires_grad=True)
    nodes = torch.unique(torch.randint(0, 300, (200,), generator=gen))
    plain = info_nce(z[nodes], v[nodes], v, tau)
    grads = torch.autograd.grad(plain, (z, v))
    fast = info_nce_nodes(z, v, nodes, tau, block)
    fast_grads = torch.autograd.grad(fast, (z, v))
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    for got, want in zip(fast_grads, grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_streamed_info_nce_in_double_to_rounding():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(50, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(80, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    nodes = torch.arange(0, 50, 3)
    assert torch.autograd.gradcheck(lambda z, v: info_nce_nodes(z, v, nodes, 0.5, 4), (z, v))
    torch.testing.assert_close(info_nce_nodes(z, v, nodes, 0.5, 4), info_nce(z[nodes], v[nodes], v, 0.5),
                               rtol=1e-12, atol=1e-12)


def test_logsumexp_mean_is_stable_for_large_logits():
    a = torch.tensor([[100.0, 0.0], [-100.0, 0.0]])
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    torch.testing.assert_close(logsumexp_mean(a, c), torch.logsumexp(a @ c.T, dim=1).mean())


def test_logsumexp_mean_without_gradients_and_empty_anchors():
    c = torch.randn(5, 3)
    with torch.no_grad():
        value = logsumexp_mean(torch.randn(4, 3), c)
    assert value.shape == () and torch.isfinite(value)
    assert logsumexp_mean(torch.zeros(0, 3), c).item() == 0.0


def test_info_nce_hand_computed():
    anchor = torch.tensor([[1.0, 0.0]])
    cands = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    tau = 0.5
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0 / tau)))
    got = info_nce_nodes(anchor.expand(2, 2), cands, torch.tensor([0]), tau)
    assert math.isclose(got.item(), expected, rel_tol=1e-6)


def _batch():
    return Batch(users=torch.tensor([0, 1, 1]), pos=torch.tensor([2, 0, 3]), neg=torch.tensor([1, 1, 0]),
                 anchor_users=torch.tensor([0, 1]), anchor_items=torch.tensor([0, 2, 3]))


def test_objective_is_eq_14():
    gen = torch.Generator().manual_seed(3)
    z_u, z_i, v_u, v_i = (torch.randn(n, 4, generator=gen) for n in (3, 5, 3, 5))
    params = [torch.randn(3, 4, generator=gen), torch.randn(5, 4, generator=gen)]
    batch = _batch()
    obj = Objective(theta1=0.1, theta2=1e-3, l2="params", tau=0.5, block=2)
    loss, parts = obj(batch, (z_u, z_i), (v_u, v_i), params, tuple(params))
    bpr = bpr_loss((z_u[batch.users] * z_i[batch.pos]).sum(1), (z_u[batch.users] * z_i[batch.neg]).sum(1))
    cl = (info_nce(z_u[batch.anchor_users], v_u[batch.anchor_users], v_u, 0.5)
          + info_nce(z_i[batch.anchor_items], v_i[batch.anchor_items], v_i, 0.5))
    torch.testing.assert_close(loss, bpr + 1e-3 * parameter_norm(params) + 0.1 * cl)
    torch.testing.assert_close(parts["cl_loss"], cl)
    torch.testing.assert_close(parts["bpr_loss"], bpr)
    # batch-scope L2 (LightGCN) and no contrastive term without a view or with θ1 = 0
    loss_b, parts_b = Objective(theta2=1e-3, l2="batch")(batch, (z_u, z_i), None, params, tuple(params))
    ego = (params[0][batch.users], params[1][batch.pos], params[1][batch.neg])
    torch.testing.assert_close(loss_b, bpr + 1e-3 * sum(e.pow(2).sum() for e in ego) / 6)
    assert set(parts_b) == {"bpr_loss"}
    assert not Objective(theta1=0.0).contrastive


def test_objective_gradients_match_the_plain_formulas():
    gen = torch.Generator().manual_seed(4)
    leaves = [torch.randn(n, 4, generator=gen, requires_grad=True) for n in (3, 5, 3, 5)]
    z_u, z_i, v_u, v_i = leaves
    batch = _batch()
    loss, _ = Objective(theta1=0.5, theta2=0.0, tau=0.2, block=1)(batch, (z_u, z_i), (v_u, v_i), [], ())
    got = torch.autograd.grad(loss, leaves)
    bpr = bpr_loss((z_u[batch.users] * z_i[batch.pos]).sum(1), (z_u[batch.users] * z_i[batch.neg]).sum(1))
    cl = (info_nce(z_u[batch.anchor_users], v_u[batch.anchor_users], v_u, 0.2)
          + info_nce(z_i[batch.anchor_items], v_i[batch.anchor_items], v_i, 0.2))
    want = torch.autograd.grad(bpr + 0.5 * cl, leaves)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_normalised_logits_never_exceed_the_fixed_shift():
    gen = torch.Generator().manual_seed(5)
    a = F.normalize(torch.randn(100, 8, generator=gen) * 1e3, dim=1) / 0.5
    c = F.normalize(torch.randn(100, 8, generator=gen) * 1e-3, dim=1)
    assert (a @ c.T).max() <= 1 / 0.5 + 1e-5
    torch.testing.assert_close(logsumexp_mean(a, c, 2.0), torch.logsumexp(a @ c.T, 1).mean())


def test_in_batch_and_sampled_negatives_rank_against_their_candidates_only():
    gen = torch.Generator().manual_seed(4)
    z, v = torch.randn(9, 4, generator=gen), torch.randn(9, 4, generator=gen)
    nodes, pool = torch.tensor([1, 4, 6]), torch.tensor([1, 4, 6, 0, 0, 8])
    torch.testing.assert_close(info_nce_nodes(z, v, nodes, 0.3, 2, pool),
                               info_nce(z[nodes], v[nodes], v[pool], 0.3))
    # every node as candidates is Eq. 13's all-node form
    torch.testing.assert_close(info_nce_nodes(z, v, nodes, 0.3, 2, torch.arange(9)), info_nce_nodes(z, v, nodes, 0.3, 2))
    # hand-computed: one anchor whose only candidate is its positive has loss exp(c)/exp(c) -> 0
    assert info_nce_nodes(z, v, nodes[:1], 0.3, 2, nodes[:1]).abs().item() < 1e-6


def test_objective_candidates_per_negatives_form():
    gen = torch.Generator().manual_seed(5)
    z_u, z_i, v_u, v_i = (torch.randn(n, 4, generator=gen) for n in (3, 5, 3, 5))
    params = [torch.randn(3, 4, generator=gen), torch.randn(5, 4, generator=gen)]
    sampled = Batch(users=torch.tensor([0, 1, 1]), pos=torch.tensor([0, 2, 3]), neg=torch.tensor([4, 1, 1]),
                    anchor_users=torch.tensor([0, 1]), anchor_items=torch.tensor([0, 2, 3]),
                    sampled_users=torch.tensor([2, 2]), sampled_items=torch.tensor([4, 1]))
    for negatives, pools in (("batch", ([0, 1], [0, 2, 3])), ("sampled", ([0, 1, 2, 2], [0, 2, 3, 4, 1]))):
        obj = Objective(theta1=0.1, theta2=0.0, tau=0.5, block=2, negatives=negatives, samples=2)
        assert [c.tolist() for c in obj.candidates(sampled)] == list(pools)
        _, parts = obj(sampled, (z_u, z_i), (v_u, v_i), params, tuple(params))
        cl = (info_nce(z_u[sampled.anchor_users], v_u[sampled.anchor_users], v_u[torch.tensor(pools[0])], 0.5)
              + info_nce(z_i[sampled.anchor_items], v_i[sampled.anchor_items], v_i[torch.tensor(pools[1])], 0.5))
        torch.testing.assert_close(parts["cl_loss"], cl)
    assert Objective(negatives="all").candidates(sampled) == (None, None)
