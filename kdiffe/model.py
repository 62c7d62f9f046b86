"""The KDiffE recommender (paper Section V): KG-enhanced items, S-weighted LightGCN propagation.

    z_j ← Norm(z_j + Σ a(e, r, j) z_e)                 knowledge aggregation (Eq. 1-2)
    Z = Σ_{l=0..L} L̄^l [E_u; Z_v],  L̄ from A + ξS       propagation (Eq. 3-6)
    y(u, v) = z_uᵀ z_v                                  scores (Eq. 7)

With no KG and ξ = 0 this is exactly LightGCN. The diffusion view that rebuilds the KG lives in
:mod:`kdiffe.view`; passing its triples to :meth:`KDiffE.forward` gives the contrastive view.

The model owns its training objective (:meth:`KDiffE.loss`, the Eq. 14 loss of a batch from an
:class:`~kdiffe.losses.Objective`), so the trainer is only the loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn

from .knowledge import KnowledgeAggregator, KnowledgeGraph
from .losses import Objective
from .propagation import propagate


class KDiffE(nn.Module):
    """User and item embeddings, optional knowledge aggregator, fixed propagation operator."""

    def __init__(self, n_users: int, n_items: int, operator: torch.Tensor, dim: int = 64,
                 layers: int = 2, kg: KnowledgeGraph | None = None,
                 objective: Objective | None = None) -> None:
        super().__init__()
        if operator.shape != (n_users + n_items, n_users + n_items):
            raise ValueError(f"operator shape {tuple(operator.shape)} != ({n_users + n_items}, {n_users + n_items})")
        self.n_users, self.n_items, self.layers = n_users, n_items, layers
        self.operator = operator
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.xavier_uniform_(self.user.weight)
        nn.init.xavier_uniform_(self.item.weight)
        self.knowledge = KnowledgeAggregator(kg, dim) if kg is not None else None
        #: the original KG's triples (the main view), or None without a KG; not a parameter
        self.register_buffer("kg_triples", None if kg is None else
                             torch.as_tensor(np.asarray(kg.triples, dtype=np.int64)), persistent=False)
        self.objective = objective or Objective()

    def to(self, *args, **kwargs) -> "KDiffE":  # the sparse operator is not a parameter
        super().to(*args, **kwargs)
        self.operator = self.operator.to(self.user.weight.device)
        return self

    def item_ego(self, triples: torch.Tensor | None) -> torch.Tensor:
        """Layer-0 item embeddings, KG-enhanced when a KG and its triples are given."""
        if self.knowledge is None or triples is None:
            return self.item.weight
        return self.knowledge(self.item.weight, triples)

    def forward(self, triples: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (users, items) embeddings after propagation, for the KG view ``triples``."""
        return self._propagate(self.item_ego(triples))

    def _propagate(self, items_ego: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user.weight, items_ego], dim=0)
        users, items = propagate(self.operator, ego, self.layers).split([self.n_users, self.n_items])
        return users, items

    def forward_views(self, triples: torch.Tensor | None,
                      view_triples: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """(main, view) embeddings, equal to ``(self(triples), self(view_triples))``.

        The two views share the entity embeddings and the attention score tables of Eq. 1 (they
        depend on the parameters only); the propagations stay separate (one product of twice the
        width is slower on CPU).
        """
        if self.knowledge is None or triples is None:
            return self.forward(triples), self.forward(view_triples)
        main, view = self.knowledge.forward_views(self.item.weight, [triples, view_triples])
        return self._propagate(main), self._propagate(view)

    def loss(self, batch: Any,
             view_triples: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 14 on one batch (RecBole's ``calculate_loss``): (loss, detached parts for logging).

        BPR and L2 on the main view (the original KG); with a contrastive objective and the
        diffusion view's ``view_triples``, InfoNCE between the two views (Eq. 13).
        """
        if self.objective.contrastive and view_triples is not None:
            main, view = self.forward_views(self.kg_triples, view_triples)
        else:
            main, view = self.forward(self.kg_triples), None
        return self.objective(batch, main, view, self.parameters(), (self.user.weight, self.item.weight))

    @torch.no_grad()
    def get_embedding(self, triples: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward(triples)

    @torch.no_grad()
    def recommend(self, users: torch.Tensor, k: int, triples: torch.Tensor | None = None,
                  exclude: sp.csr_matrix | None = None) -> torch.Tensor:
        """Top-k item ids per user, items in ``exclude`` (e.g. training items) never recommended."""
        z_u, z_i = self.get_embedding(triples)
        scores = z_u[users] @ z_i.T
        if exclude is not None:
            rows = sp.csr_matrix(exclude)[users.cpu().numpy()].tocoo()
            scores[torch.as_tensor(rows.row, device=scores.device),
                   torch.as_tensor(rows.col, device=scores.device)] = -torch.inf
        return torch.topk(scores, k, dim=1).indices
