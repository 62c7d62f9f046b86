import numpy as np
import pytest
import scipy.sparse as sp
import torch

from kdiffe.propagation import normalized_interactions, propagate, propagation_operator

A = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=np.float32)  # deg_u = 2,2,1; deg_v = 1,2,2


def test_lightgcn_normalisation_3x3():
    got = normalized_interactions(sp.csr_matrix(A)).toarray()
    r = 1 / np.sqrt(2)
    expected = [[r, 1 / 2, 0], [0, 1 / 2, 1 / 2], [0, 0, r]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_s_weighting_uses_degrees_of_a():
    s = sp.csr_matrix(A * 0.5)
    got = normalized_interactions(sp.csr_matrix(A), s, xi=1.0).toarray()
    expected = [[1.5 / np.sqrt(2), 0.75, 0], [0, 0.75, 0.75], [0, 0, 1.5 / np.sqrt(2)]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_isolated_nodes_get_zero_rows():
    a = np.array([[1, 0], [0, 0]], dtype=np.float32)
    np.testing.assert_allclose(normalized_interactions(sp.csr_matrix(a)).toarray(), [[1, 0], [0, 0]])


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("layers", [0, 1, 3])
def test_propagate_equals_dense_layer_sum(seed, layers):
    rng = np.random.default_rng(seed)
    a = sp.csr_matrix((rng.random((7, 5)) < 0.4).astype(np.float32))
    op = propagation_operator(a, sp.csr_matrix(a * 0.3), 0.7)
    emb = torch.randn(12, 4, generator=torch.Generator().manual_seed(seed))
    dense = op.to_dense()
    expected = sum(torch.linalg.matrix_power(dense, l) @ emb for l in range(layers + 1))
    torch.testing.assert_close(propagate(op, emb, layers), expected, rtol=1e-5, atol=1e-5)
    assert torch.allclose(dense, dense.T)


def test_gradient_through_propagation_matches_dense():
    rng = np.random.default_rng(3)
    a = sp.csr_matrix((rng.random((6, 4)) < 0.5).astype(np.float32))
    op = propagation_operator(a)
    emb = torch.randn(10, 3, requires_grad=True)
    weights = torch.randn(10, 3)
    (propagate(op, emb, 2) * weights).sum().backward()
    dense_emb = emb.detach().clone().requires_grad_(True)
    d = op.to_dense()
    ((dense_emb + d @ dense_emb + d @ d @ dense_emb) * weights).sum().backward()
    torch.testing.assert_close(emb.grad, dense_emb.grad, rtol=1e-5, atol=1e-5)
