"""Graph propagation (paper Eq. 3, 4, 6, 7).

    L̄ = D_u^{-1/2} (A + ξ S) D_v^{-1/2}                                    (Eq. 4)
    E^{l+1} = L̄ E^l,   z = Σ_l E^l                                          (Eq. 3, 6)
    y(u, v) = z_uᵀ z_v                                                      (Eq. 7)

D holds the degrees of A (not of A + ξS), so ξ = 0 gives LightGCN's symmetric normalisation
(KDiffE_1). The operator is the symmetric (users + items) square matrix [[0, L̄], [L̄ᵀ, 0]]
as a torch sparse tensor; nothing N x N is dense.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch


def normalized_interactions(train: sp.csr_matrix, s: sp.csr_matrix | None = None,
                            xi: float = 0.0) -> sp.csr_matrix:
    """Users x items block of L̄ = D_u^{-1/2}(A + ξS)D_v^{-1/2}, degrees from A (Eq. 4)."""
    weights = sp.csr_matrix(train, dtype=np.float64)
    if s is not None and xi:
        if s.shape != train.shape:
            raise ValueError(f"S has shape {s.shape}, A has {train.shape}")
        weights = weights + xi * sp.csr_matrix(s, dtype=np.float64)
    deg_u = np.asarray(train.sum(axis=1)).ravel()
    deg_v = np.asarray(train.sum(axis=0)).ravel()
    inv_u = np.divide(1.0, np.sqrt(deg_u), out=np.zeros_like(deg_u, dtype=np.float64), where=deg_u > 0)
    inv_v = np.divide(1.0, np.sqrt(deg_v), out=np.zeros_like(deg_v, dtype=np.float64), where=deg_v > 0)
    out = sp.diags(inv_u) @ weights @ sp.diags(inv_v)
    return sp.csr_matrix(out, dtype=np.float32)


def scipy_to_torch(matrix: sp.spmatrix, device: torch.device | str = "cpu") -> torch.Tensor:
    """Coalesced torch COO tensor of a scipy sparse matrix."""
    coo = matrix.tocoo()
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(index, values, coo.shape, check_invariants=False, device="cpu").coalesce().to(device)


def propagation_operator(train: sp.csr_matrix, s: sp.csr_matrix | None = None, xi: float = 0.0,
                         device: torch.device | str = "cpu") -> torch.Tensor:
    """Symmetric (users + items) operator [[0, L̄], [L̄ᵀ, 0]] as a torch sparse CSR tensor.

    CSR is about twice as fast as COO for the forward and backward products on CPU.
    """
    block = normalized_interactions(train, s, xi)
    return torch_csr(sp.bmat([[None, block], [block.T, None]], format="csr"), device)


def self_loop_normalized(interactions: sp.spmatrix) -> sp.csr_matrix:
    """D^{-1/2} (Ā + I) D^{-1/2} of the (users + items) bipartite graph Ā of ``interactions``
    (any nonzero is an edge), D the degrees of Ā + I: the operator of DiffMM (Jiang et al. 2024),
    its user-item graph and each rebuilt modality graph alike; symmetric."""
    edges = (sp.csr_matrix(interactions) != 0).astype(np.float64)
    square = sp.bmat([[None, edges], [edges.T, None]], format="csr") + sp.identity(sum(edges.shape), format="csr")
    inv = 1.0 / np.sqrt(np.asarray(square.sum(axis=1)).ravel())  # >= 1: the self loop
    return sp.csr_matrix(sp.diags(inv) @ square @ sp.diags(inv))


def torch_csr(square: sp.spmatrix, device: torch.device | str = "cpu") -> torch.Tensor:
    """A scipy sparse matrix as a float32 torch sparse CSR tensor on ``device``."""
    square = sp.csr_matrix(square)
    square.sort_indices()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(torch.from_numpy(square.indptr.astype(np.int64)),
                                       torch.from_numpy(square.indices.astype(np.int64)),
                                       torch.from_numpy(square.data.astype(np.float32)),
                                       square.shape, check_invariants=False, device="cpu").to(device)


class _SymmetricProduct(torch.autograd.Function):
    """y = L x for a symmetric sparse L; the backward is L g, so L is never transposed."""

    @staticmethod
    def forward(ctx, operator: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.operator = operator
        return operator @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, ctx.operator @ grad


def layer_embeddings(operator: torch.Tensor, embeddings: torch.Tensor, layers: int) -> list[torch.Tensor]:
    """[E^0, L̄ E^0, ..., L̄^layers E^0]: every layer kept (NCL contrasts layer 0 with layer 2k)."""
    out = [embeddings]
    for _ in range(layers):
        out.append(_SymmetricProduct.apply(operator, out[-1]))
    return out


def propagate(operator: torch.Tensor, embeddings: torch.Tensor, layers: int) -> torch.Tensor:
    """Layer sum Σ_{l=0..layers} L̄^l E^0 (Eq. 3 and 6); ``operator`` must be symmetric."""
    total = current = embeddings
    for _ in range(layers):
        current = layer(operator, current)
        total = total + current
    return total


def layer(operator: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """One layer E^{l+1} = L̄ E^l (Eq. 3); ``operator`` must be symmetric."""
    return _SymmetricProduct.apply(operator, embeddings)


def score(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """y = z_uᵀ z_v for every pair of rows (Eq. 7): (B, d) x (J, d) -> (B, J)."""
    return users @ items.T
