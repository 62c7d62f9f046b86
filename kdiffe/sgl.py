"""SGL-ED (Wu et al., SIGIR 2021, "Self-supervised Graph Learning for Recommendation"),
registered as ``sgl``: LightGCN with a contrastive task between two edge-dropout views.

    s'(G), s''(G): (1 - ρ) of the edges of G, drawn independently per view,
                   resampled every epoch                                      (Eq. 2, ED)
    Z', Z'' = LightGCN(s'(G)), LightGCN(s''(G))  (mean of layers, own degrees)
    L_ssl^user = Σ_u -log exp(cos(z'_u, z''_u)/τ) / Σ_{v ∈ U} exp(cos(z'_u, z''_v)/τ)   (Eq. 10)
    L = L_main + λ1 (L_ssl^user + L_ssl^item) + λ2 ||Θ||²                            (Eq. 12)

L_main is BPR on the whole graph's LightGCN embeddings (Eq. 11); the anchors of L_ssl are the
batch's users and positive items, one per (user, item) pair, duplicates included, as in the
authors' code (each against every user / item of the other view, computed exactly by
:func:`kdiffe.losses.info_nce_nodes`). Each node once instead (the batch's distinct users and
items) is not the published model: on TikTok it stalls, validation Recall@20 0.005 after one
epoch against 0.070, and 0.010 at its best. λ2 ||Θ||² is LightGCN's L2 on the batch's layer-0
embeddings; every term is a mean over the batch (the authors sum them; the same ratios).

Config: ``edge_drop`` (ρ), ``tau`` (τ), ``theta1`` (λ1), ``theta2`` (λ2). Published defaults
(the authors' SGL-ED settings for Yelp2018, 3 layers; its entry in :mod:`kdiffe.catalog`):
ρ = 0.1, τ = 0.2, λ1 = 0.1, λ2 = 1e-4.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch

from .lightgcn import LightGCN
from .losses import Objective, info_nce_nodes
from .propagation import propagation_operator


def drop_edges(train: sp.csr_matrix, rate: float, rng: np.random.Generator) -> sp.csr_matrix:
    """``train`` with ``int(nnz * (1 - rate))`` of its edges, drawn without replacement (as the
    authors' SGL-ED does)."""
    coo = train.tocoo()
    keep = np.sort(rng.choice(coo.nnz, size=int(coo.nnz * (1 - rate)), replace=False))
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=train.shape)


class SGL(LightGCN):
    """LightGCN (mean of layers) plus the self-supervised task over two edge-dropout views."""

    name = "sgl"

    def __init__(self, train: sp.csr_matrix, operator: torch.Tensor, dim: int = 64, layers: int = 3,
                 combine: str = "mean", objective: Objective | None = None, edge_drop: float = 0.1,
                 seed: int = 0) -> None:
        super().__init__(train.shape[0], train.shape[1], operator, dim, layers, combine,
                         objective or Objective(theta1=0.1, theta2=1e-4, l2="batch", tau=0.2))
        if not 0 <= edge_drop < 1:
            raise ValueError(f"edge_drop={edge_drop}: must be in [0, 1)")
        self.train_graph, self.edge_drop = train, edge_drop
        self.rng = np.random.default_rng([seed, 1])  #: the views' own stream, apart from the trainer's
        self.views: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def build(cls, config: Any, dataset: Any, device: torch.device,
              log: Callable[[str], None] = print) -> "SGL":
        objective = Objective.from_config(config, device, contrastive=True)
        return cls(dataset.train, propagation_operator(dataset.train, None, 0.0, device), config.dim, config.layers,
                   config.layer_combine, objective, config.edge_drop, config.seed).to(device)

    def epoch_hook(self, epoch: int) -> dict[str, torch.Tensor]:
        """Two fresh edge-dropout views of the training graph, their operators normalised anew."""
        device = self.user.weight.device
        if self.objective.contrastive:
            self.views = tuple(propagation_operator(drop_edges(self.train_graph, self.edge_drop, self.rng), None,
                                                    0.0, device) for _ in range(2))
        return {}

    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 12 on one batch: BPR + λ2 L2 on the whole graph, λ1 InfoNCE between the two views."""
        loss, parts = self.objective(batch, self.forward(), None, self.parameters(),
                                     (self.user.weight, self.item.weight))
        if self.objective.contrastive:
            if self.views is None:
                raise RuntimeError("SGL: no views yet; the trainer calls epoch_hook before the batches")
            (a_u, a_i), (b_u, b_i) = (self._combine(view) for view in self.views)
            o = self.objective
            ssl = (info_nce_nodes(a_u, b_u, batch.users, o.tau, o.block)
                   + info_nce_nodes(a_i, b_i, batch.pos, o.tau, o.block))
            loss = loss + o.theta1 * ssl
            parts["cl_loss"] = ssl.detach()
        return loss, parts

    def extra_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_extra_state(self, state: dict[str, Any] | None) -> None:
        if state is None or "rng" not in state:
            raise ValueError("sgl: the checkpoint holds no state of the dropout views")
        self.rng.bit_generator.state = state["rng"]
