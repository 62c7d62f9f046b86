"""The KDiffE recommender (paper Section V): KG-enhanced items, S-weighted LightGCN propagation.

    z_j ← Norm(z_j + Σ a(e, r, j) z_e)                 knowledge aggregation (Eq. 1-2)
    Z = Σ_{l=0..L} L̄^l [E_u; Z_v],  L̄ from A + ξS       propagation (Eq. 3-6)
    y(u, v) = z_uᵀ z_v                                  scores (Eq. 7)

With no KG and ξ = 0 this is LightGCN with the layer sum of Eq. 6 and θ2 ||Θ||² of Eq. 14 (the
``lightgcn`` variant; the ``lightgcn`` *model*, :mod:`kdiffe.lightgcn`, is LightGCN as published).
The diffusion view that rebuilds the KG (:mod:`kdiffe.view`) is the model's own: its per-epoch
hook trains the denoiser and rebuilds Ĝ_k, and passing its triples to :meth:`KDiffE.forward`
gives the contrastive view.

A :class:`~kdiffe.recommender.Recommender` (registered as ``kdiffe``): it builds S, the KG and
the view from a Config (:meth:`KDiffE.build`), owns its objective (:meth:`KDiffE.loss`, Eq. 14
from an :class:`~kdiffe.losses.Objective`) and its scores, so the trainer is only the loop. Its
variants (Table III's ablations) are Config flags. It needs item features to build its KG
(``kg=features``): a dataset without them is refused unless the run asks for ``kg=file`` (the
dataset's kg.txt) or ``kg=none`` (the feature-free form, LightGCN + S).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from .attention import cached_attention_matrix
from .config import ConfigError
from .knowledge import KnowledgeAggregator, KnowledgeGraph, build_knowledge, default_concepts
from .losses import Objective
from .propagation import propagate, propagation_operator
from .recommender import CheckpointError, GraphEmbeddings
from .view import DiffusionView


class KDiffE(GraphEmbeddings):
    """User and item embeddings, optional knowledge aggregator, fixed propagation operator; the
    diffusion view (``self.view``) when the run contrasts against one."""

    name = "kdiffe"

    def __init__(self, n_users: int, n_items: int, operator: torch.Tensor, dim: int = 64,
                 layers: int = 2, kg: KnowledgeGraph | None = None,
                 objective: Objective | None = None) -> None:
        super().__init__(n_users, n_items, operator, dim, layers)
        self.knowledge = KnowledgeAggregator(kg, dim) if kg is not None else None
        #: the original KG's triples (the main view), or None without a KG; not a parameter
        self.register_buffer("kg_triples", None if kg is None else
                             torch.as_tensor(np.asarray(kg.triples, dtype=np.int64), device="cpu"), persistent=False)
        self.objective = objective or Objective()
        self.kg = kg
        self.view: Any = None  #: the diffusion view (kdiffe.view.DiffusionView), set by build
        self.s_seconds = 0.0  #: seconds to build (or load) S
        self.modalities = ""  #: item-feature modalities the KG was built from

    @classmethod
    def check(cls, config: Any, dataset: Any) -> None:
        """The KG must have something to come from (item features, or kg.txt with ``kg=file``), and
        q at most the concept entities of a relation."""
        cfg, ds = config, dataset
        if cfg.use_kg and cfg.kg == "features" and not ds.features:
            raise ConfigError(f"kg=features: {ds.name} has no item features to build KDiffE's knowledge graph from; "
                              "--set kg=file uses its kg.txt, --set kg=none runs the feature-free form (LightGCN + S)")
        if cfg.use_kg and cfg.kg == "file" and ds.kg_file is None and ds.kg_array is None:
            raise ConfigError(f"kg=file: {ds.name} has no kg.txt; --set kg=none runs the feature-free form "
                              "(LightGCN + S)")
        concepts = min(cfg.concepts or default_concepts(ds.n_items), ds.n_items)
        if cfg.use_kg and cfg.kg == "features" and cfg.q > concepts:
            raise ConfigError(f"q={cfg.q}: larger than the {concepts} concept entities per relation on {ds.name}")

    @classmethod
    def build(cls, config: Any, dataset: Any, device: torch.device,
              log: Callable[[str], None] = print) -> "KDiffE":
        """S (Eq. 4-5), L̄ (Eq. 4), the KG (Eq. 1-2), the model and its diffusion view (Eq. 8-12)."""
        cfg, ds = config, dataset
        cls.check(cfg, ds)
        s, s_seconds = None, 0.0
        if cfg.use_s:
            s, s_seconds = cached_attention_matrix(ds, cfg.M, cfg.R, cfg.restart, cfg.seed, cfg.cache_dir, log)
        operator = propagation_operator(ds.train, s, cfg.xi if cfg.use_s else 0.0, device)
        kg = build_knowledge(ds, cfg.kg, cfg.concepts, cfg.links, cfg.kg_iters, cfg.seed, log) if cfg.use_kg else None
        if kg is not None:
            log(kg.describe())
            if cfg.q > max(np.bincount(kg.entity_relation)):
                log(f"note: q={cfg.q} exceeds the entities of a relation; keeping all of them")
        model = cls(ds.n_users, ds.n_items, operator, cfg.dim, cfg.layers, kg,
                    Objective.from_config(cfg, device)).to(device)
        model.s_seconds = s_seconds
        model.modalities = ",".join(sorted(ds.features)) if kg is not None and cfg.kg == "features" else ""
        model.view = DiffusionView(kg, ds.train, cfg, device) if kg is not None and cfg.use_cl else None
        return model

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

    # the Recommender protocol -----------------------------------------
    @property
    def contrastive(self) -> bool:
        return self.objective.contrastive and self.view is not None

    @property
    def negative_samples(self) -> int:
        return self.objective.samples if self.contrastive else 0

    def epoch_hook(self, epoch: int) -> dict[str, torch.Tensor]:
        """The diffusion view's part of the epoch: train the denoiser, rebuild Ĝ_k when due."""
        return self.view.step(self, epoch) if self.view is not None else {}

    def loss(self, batch: Any,
             view_triples: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 14 on one batch (RecBole's ``calculate_loss``): (loss, detached parts for logging).

        BPR and L2 on the main view (the original KG); with a contrastive objective, InfoNCE
        between the main view and the diffusion view (Eq. 13), whose triples are
        ``view_triples``, by default the model's own view's.
        """
        if view_triples is None and self.view is not None:
            view_triples = self.view.triples
        if self.objective.contrastive and view_triples is not None:
            main, view = self.forward_views(self.kg_triples, view_triples)
        else:
            main, view = self.forward(self.kg_triples), None
        return self.objective(batch, main, view, self.parameters(), (self.user.weight, self.item.weight))

    @torch.no_grad()
    def get_embedding(self, triples: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward(triples)

    @torch.no_grad()
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The main view's final embeddings (the original KG), which are evaluated."""
        return self.forward(self.kg_triples)

    def recorded(self) -> dict[str, Any]:
        return {"kg_entities": self.kg.n_entities if self.kg is not None else 0, "modalities": self.modalities}

    def extra_state(self) -> dict[str, Any] | None:
        return None if self.view is None else self.view.state_dict()

    def load_extra_state(self, state: dict[str, Any] | None) -> None:
        if (state is None) != (self.view is None):
            raise CheckpointError("checkpoint and config disagree on the diffusion view (the checkpoint has "
                                  f"{'none' if state is None else 'one'}); was it written by another variant?")
        if state is not None:
            self.view.load_state_dict(state)
