"""LightGCN as published (He et al., SIGIR 2020, "LightGCN: Simplifying and Powering Graph
Convolution Network for Recommendation"), registered as ``lightgcn``.

    E^{(k+1)} = D^{-1/2} A D^{-1/2} E^{(k)}                  light graph convolution (Eq. 3, 7)
    e = Σ_{k=0..K} α_k E^{(k)},  α_k = 1 / (K + 1)           layer combination (Eq. 4)
    ŷ_ui = e_uᵀ e_i                                          prediction (Eq. 5)
    L = Σ -ln σ(ŷ_ui - ŷ_uj) + λ ||E^{(0)}||²                BPR with L2 on the batch's layer-0
                                                             embeddings (Eq. 15)

Published defaults (Section 4.1; its entry in :mod:`kdiffe.catalog`): embedding size 64, K = 3
layers, λ = 1e-4, Adam with lr 1e-3, Xavier initialisation. The L2 term is the reference implementation's: ½ Σ ||e⁰||² over the
batch's user, positive and negative embeddings, divided by the batch size.

``--set layer_combine=sum --set l2=params`` (with ``layers=2``, ``theta2=1e-5``) gives the form
KDiffE builds on (its ``lightgcn`` variant: layer sum, θ2 ||Θ||² over every parameter).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .losses import Objective
from .propagation import propagate, propagation_operator
from .recommender import GraphEmbeddings


class LightGCN(GraphEmbeddings):
    """User and item embeddings, the normalised bipartite operator, the mean (or sum) of layers."""

    name = "lightgcn"

    def __init__(self, n_users: int, n_items: int, operator: torch.Tensor, dim: int = 64, layers: int = 3,
                 combine: str = "mean", objective: Objective | None = None) -> None:
        if combine not in ("mean", "sum"):
            raise ValueError(f"combine={combine!r}: mean or sum")
        super().__init__(n_users, n_items, operator, dim, layers)
        self.combine = combine
        self.objective = objective or Objective(theta2=1e-4, l2="batch")

    @classmethod
    def build(cls, config: Any, dataset: Any, device: torch.device,
              log: Callable[[str], None] = print) -> "LightGCN":
        operator = propagation_operator(dataset.train, None, 0.0, device)
        objective = Objective(theta1=0.0, theta2=config.theta2, l2=config.l2)
        return cls(dataset.n_users, dataset.n_items, operator, config.dim, config.layers,
                   config.layer_combine, objective).to(device)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (users, items) embeddings: Eq. 4's mean of the K + 1 layers (or their sum)."""
        return self._combine(self.operator)

    def _combine(self, operator: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The layers over ``operator`` (the graph, or a view of it), combined."""
        ego = torch.cat([self.user.weight, self.item.weight], dim=0)
        total = propagate(operator, ego, self.layers)
        if self.combine == "mean":
            total = total / (self.layers + 1)
        users, items = total.split([self.n_users, self.n_items])
        return users, items

    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """BPR + θ2 L2 (Eq. 15 of the LightGCN paper) on one batch."""
        return self.objective(batch, self.forward(), None, self.parameters(), (self.user.weight, self.item.weight))

    @torch.no_grad()
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward()
