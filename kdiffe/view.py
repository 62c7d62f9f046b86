"""The diffusion view Ĝ_k: the KG rebuilt by user-guided diffusion (paper Section V-B, Eq. 8-12).

:class:`DiffusionView` owns everything that keeps the view: the denoiser and its optimiser, the
Gaussian diffusion, x₀ (each item's entity vector r_j, Eq. 8), the relation of every entity,
and the operator giving the user guidance z̃_j (Eq. 11). Each epoch (:meth:`DiffusionView.step`)

1. computes the guidance z̃_j from the current main-view user embeddings (detached),
2. trains the denoiser for one pass over the items (ELBO-weighted MSE on x̂₀, Eq. 8-9),
3. every ``kg_every`` epochs rebuilds Ĝ_k: reverse diffusion from x_T (Eq. 10, 12) and the top-q
   entities of each relation per item.

The trainer contrasts the main view with the model run on :attr:`DiffusionView.triples`
(InfoNCE, Eq. 13). Nothing here reads a value back from the device per batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .diffusion import Denoiser, GaussianDiffusion, relation_groups, top_q_per_relation, user_guidance_operator
from .knowledge import KnowledgeGraph, entity_rows


class DiffusionView:
    """Denoiser, diffusion and the current rebuilt triples of one run; resumable."""

    def __init__(self, kg: KnowledgeGraph, train: sp.csr_matrix, cfg: Any,
                 device: torch.device | str = "cpu") -> None:
        self.config = cfg
        self.device = torch.device(device)
        self.diffusion = GaussianDiffusion(cfg.t, cfg.noise_scale, cfg.noise_min, cfg.noise_max, device)
        self.denoiser = Denoiser(kg.n_entities, cfg.dim, cfg.denoiser_hidden, cfg.step_dim).to(device)
        self.optimizer = torch.optim.Adam(self.denoiser.parameters(), lr=cfg.diff_lr)
        #: x₀ rows in sparse form: each item's entities, padded (never a dense items x entities matrix)
        self.item_entities = torch.as_tensor(kg.item_entity_lists(), device=device)
        self.n_entities = kg.n_entities
        self.entity_relation = torch.as_tensor(kg.entity_relation, device=device)
        self.groups = relation_groups(self.entity_relation)
        self.guidance_op = user_guidance_operator(train, device) if cfg.guided else None
        #: Ĝ_k as (item, relation, entity) triples; the original KG until the first rebuild
        self.triples = torch.as_tensor(np.asarray(kg.triples, dtype=np.int64), device=device)

    def x0(self, items: torch.Tensor) -> torch.Tensor:
        """Dense x₀ rows r_j (Eq. 8) of ``items``."""
        return entity_rows(self.item_entities, items, self.n_entities)

    # Eq. 11 -------------------------------------------------------------
    @torch.no_grad()
    def guidance(self, model: torch.nn.Module) -> torch.Tensor | None:
        """z̃_j = mean main-view embedding of item j's training users (Eq. 11); None if unguided."""
        if self.guidance_op is None:
            return None
        users, _ = model.get_embedding(model.kg_triples)
        return torch.sparse.mm(self.guidance_op, users)

    # Eq. 8-9 ------------------------------------------------------------
    def train_denoiser(self, guidance: torch.Tensor | None) -> torch.Tensor:
        """One pass over the items in shuffled batches; the mean loss, left on the device."""
        cfg = self.config
        self.denoiser.train()
        order = torch.randperm(self.item_entities.shape[0], device=self.device)
        total = torch.zeros((), device=self.device)
        batches = 0
        for lo in range(0, order.numel(), cfg.diff_batch):
            idx = order[lo:lo + cfg.diff_batch]
            loss = self.diffusion.loss(self.denoiser, self.x0(idx), None if guidance is None else guidance[idx])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += loss.detach()
            batches += 1
        return total / max(batches, 1)

    # Eq. 10, 12 ---------------------------------------------------------
    @torch.no_grad()
    def rebuild(self, guidance: torch.Tensor | None) -> torch.Tensor:
        """Ĝ_k: top-q entities per relation of the reverse-diffused entity vectors (Eq. 10-12)."""
        cfg = self.config
        self.denoiser.eval()
        parts = []
        n_items = self.item_entities.shape[0]
        for lo in range(0, n_items, cfg.diff_batch):
            x0 = self.x0(torch.arange(lo, min(lo + cfg.diff_batch, n_items), device=self.device))
            g = None if guidance is None else guidance[lo:lo + cfg.diff_batch]
            scores = self.diffusion.reconstruct(self.denoiser, x0, g)
            triples = top_q_per_relation(scores, self.entity_relation, cfg.q, self.groups)
            triples[:, 0] += lo
            parts.append(triples)
        return torch.cat(parts)

    def step(self, model: torch.nn.Module, epoch: int) -> dict[str, torch.Tensor]:
        """The view's part of epoch ``epoch`` (0-based): train the denoiser, rebuild if due."""
        guidance = self.guidance(model)
        loss = self.train_denoiser(guidance)
        if epoch % self.config.kg_every == 0:
            self.triples = self.rebuild(guidance)
        return {"diffusion_loss": loss}

    # checkpoints --------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"denoiser": self.denoiser.state_dict(), "optimizer": self.optimizer.state_dict(),
                "triples": self.triples.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.denoiser.load_state_dict(state["denoiser"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.triples = state["triples"].to(self.device)
