"""FREEDOM (Zhou & Shen, ACM MM 2023, "A Tale of Two Graphs: Freezing and Denoising Graph
Structures for Multimodal Recommendation"), registered as ``freedom``: LightGCN over a user-item
graph pruned anew each epoch, plus an item-item graph built once from the items' features.

    S^m_ij = cos(x^m_i, x^m_j);  Ŝ^m = kNN_k(S^m)    each item's k most similar items (itself
                                                    among them), as 0/1 edges (Section 3.1)
    S̃^m = D^{-1/2} Ŝ^m D^{-1/2},  S = Σ_m α_m S̃^m   frozen: never rebuilt, never learned
    ρ-pruning: keep (1 - ρ)|E| edges, drawn without replacement with p_(u,i) ∝ 1 / √(d_u d_i),
               renormalised, redrawn every epoch     degree-sensitive edge pruning (Section 3.2)
    h̃_i = (S^{L_ii} E_I)_i                          item-item convolution of the item IDs
    h_u, ĥ_i = LightGCN(pruned graph), mean of the L_ui + 1 layers;  h_i = ĥ_i + h̃_i  (Section 3.3)
    L = BPR(h_u, h_i) + λ Σ_m BPR(h_u, W_m x^m + b_m) + θ2 L2           (Section 3.4)
    ŷ_ui = h_uᵀ h_i on the whole (unpruned) graph

The features x^m are fine-tuned (the authors' ``from_pretrained(freeze=False)``); S stays the
graph of the raw features. D is the degree of Ŝ^m's rows, on both sides (as the authors'
``compute_normalized_laplacian``: every row has k edges, so each is 1/k). The modality weights
α: the image graph ``image_weight`` (the authors' ``mm_image_weight``), the other modalities'
share the rest equally; a single modality has α = 1. The pruning draw is the exponential race
(Efraimidis & Spirakis 2006): the (1 - ρ)|E| smallest Exp(1) / p, the law of successive draws
without replacement that the authors' ``torch.multinomial`` makes, in one vectorised step.

Config: ``layers`` (L_ui), ``mm_layers`` (L_ii), ``knn_k`` (k), ``image_weight`` (α_image),
``edge_drop`` (ρ), ``theta1`` (λ), ``theta2`` (an L2 the authors do not use, 0: off; ``l2``
chooses its form). Defaults (its entry in :mod:`kdiffe.catalog`), from the authors' MMRec
``FREEDOM.yaml``: L_ui = 2, L_ii = 1, k = 10, α_image = 0.1, ρ = 0.8 (the first of their grid
{0.8, 0.9}), λ = 1e-4 (their grid {0, 1e-5, 1e-4, 1e-3}; they tune both per dataset).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

from .lightgcn import LightGCN
from .losses import Objective, bpr_loss
from .propagation import propagation_operator, scipy_to_torch
from .recommender import feature_tensors, own_generator

KNN_BLOCK = 1024  #: items whose similarity rows are held at once while building the kNN graph


def knn_graph(features: torch.Tensor, k: int) -> sp.csr_matrix:
    """D^{-1/2} Ŝ D^{-1/2} of the cosine k-nearest-neighbour graph of ``features`` (rows: items),
    D the row degrees of Ŝ, as a scipy matrix; never more than KNN_BLOCK x items dense."""
    n = features.shape[0]
    k = min(k, n)
    unit = F.normalize(features.float(), dim=1)
    neighbours = torch.cat([torch.topk(unit[start:start + KNN_BLOCK] @ unit.T, k, dim=1).indices
                            for start in range(0, n, KNN_BLOCK)]).numpy()
    rows = np.repeat(np.arange(n), k)
    edges = sp.csr_matrix((np.ones(n * k), (rows, neighbours.ravel())), shape=(n, n))
    inv = 1.0 / np.sqrt(np.maximum(np.asarray(edges.sum(axis=1)).ravel(), 1e-12))
    return sp.csr_matrix(sp.diags(inv) @ edges @ sp.diags(inv))


def modality_weights(names: tuple[str, ...], image_weight: float) -> dict[str, float]:
    """α per modality: ``image_weight`` for "image" (when there are others), the rest shared equally."""
    if len(names) == 1:
        return {names[0]: 1.0}
    if "image" not in names:
        return {m: 1.0 / len(names) for m in names}
    rest = (1.0 - image_weight) / (len(names) - 1)
    return {m: image_weight if m == "image" else rest for m in names}


def item_graph(features: Mapping[str, torch.Tensor], k: int, image_weight: float) -> sp.csr_matrix:
    """S = Σ_m α_m S̃^m, the frozen item-item graph."""
    weights = modality_weights(tuple(sorted(features)), image_weight)
    return sum((weights[m] * knn_graph(features[m], k) for m in weights), start=sp.csr_matrix(
        (next(iter(features.values())).shape[0],) * 2))


def degree_sensitive_keep(train: sp.csr_matrix, drop: float, generator: torch.Generator) -> sp.csr_matrix:
    """``train`` with int(|E| (1 - drop)) of its edges, drawn without replacement with probability
    proportional to 1 / √(d_u d_i) (high-degree pairs, more likely noise, are pruned more)."""
    coo = sp.coo_matrix(train)
    n_keep = int(coo.nnz * (1 - drop))
    d_u = np.asarray(train.sum(axis=1)).ravel()
    d_i = np.asarray(train.sum(axis=0)).ravel()
    weight = torch.from_numpy(1.0 / np.sqrt(d_u[coo.row] * d_i[coo.col]))
    race = torch.empty(coo.nnz, dtype=torch.float64, device="cpu").exponential_(generator=generator) / weight
    keep = np.sort(torch.topk(race, n_keep, largest=False).indices.numpy())
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=train.shape)


class FREEDOM(LightGCN):
    """LightGCN (mean of layers) on a pruned graph, plus a frozen item-item graph of the features."""

    name = "freedom"

    def __init__(self, train: sp.csr_matrix, operator: torch.Tensor, items: torch.Tensor,
                 features: Mapping[str, torch.Tensor], dim: int = 64, layers: int = 2, mm_layers: int = 1,
                 edge_drop: float = 0.8, modal_weight: float = 1e-4, objective: Objective | None = None,
                 seed: int = 0) -> None:
        super().__init__(train.shape[0], train.shape[1], operator, dim, layers, "mean",
                         objective or Objective(theta2=0.0, l2="batch"))
        if not 0 <= edge_drop < 1:
            raise ValueError(f"edge_drop={edge_drop}: must be in [0, 1)")
        if items.shape != (self.n_items, self.n_items):
            raise ValueError(f"item graph shape {tuple(items.shape)} != ({self.n_items}, {self.n_items})")
        self.train_graph, self.edge_drop, self.mm_layers, self.modal_weight = train, edge_drop, mm_layers, modal_weight
        self.items = items
        self.modality_names = tuple(sorted(features))
        self.features = nn.ParameterDict({m: nn.Parameter(features[m].float()) for m in self.modality_names})
        self.projections = nn.ModuleDict({m: nn.Linear(features[m].shape[1], dim) for m in self.modality_names})
        self.generator = own_generator(seed, 5)  #: the pruning draws, apart from the trainer's stream
        self.pruned: torch.Tensor | None = None

    @classmethod
    def build(cls, config: Any, dataset: Any, device: torch.device,
              log: Callable[[str], None] = print) -> "FREEDOM":
        features = feature_tensors(cls.name, dataset)
        items = scipy_to_torch(item_graph(features, config.knn_k, config.image_weight), device)
        objective = Objective(theta2=config.theta2, l2=config.l2)
        return cls(dataset.train, propagation_operator(dataset.train, None, 0.0, device), items, features,
                   config.dim, config.layers, config.mm_layers, config.edge_drop, config.theta1, objective,
                   config.seed).to(device)

    def to(self, *args: Any, **kwargs: Any) -> "FREEDOM":
        super().to(*args, **kwargs)
        self.items = self.items.to(self.user.weight.device)
        return self

    def epoch_hook(self, epoch: int) -> dict[str, torch.Tensor]:
        """This epoch's pruned user-item graph, normalised anew."""
        device = self.user.weight.device
        kept = degree_sensitive_keep(self.train_graph, self.edge_drop, self.generator) if self.edge_drop else \
            self.train_graph
        self.pruned = propagation_operator(kept, None, 0.0, device)
        return {}

    def forward_on(self, operator: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_u, h_i) over the user-item ``operator``: LightGCN's mean plus the item-item term."""
        users, items = self._combine(operator)
        h = self.item.weight
        for _ in range(self.mm_layers):
            h = torch.sparse.mm(self.items, h)
        return users, items + h

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_on(self.operator)

    def modality(self, name: str, items: torch.Tensor) -> torch.Tensor:
        """W_m x^m + b_m for the rows ``items``."""
        return self.projections[name](self.features[name][items])

    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """BPR on the pruned graph + λ Σ_m BPR against each modality's projected features (+ θ2 L2)."""
        if self.pruned is None:
            raise RuntimeError("FREEDOM: no pruned graph yet; the trainer calls epoch_hook before the batches")
        h_u, h_i = self.forward_on(self.pruned)
        loss, parts = self.objective(batch, (h_u, h_i), None, self.parameters(), (self.user.weight, self.item.weight))
        users = h_u[batch.users]
        modal = h_u.new_zeros(())
        for m in self.modality_names:
            modal = modal + bpr_loss((users * self.modality(m, batch.pos)).sum(1),
                                     (users * self.modality(m, batch.neg)).sum(1))
        parts["modal_loss"] = modal.detach()
        return loss + self.modal_weight * modal, parts

    def recorded(self) -> dict[str, Any]:
        return {"kg_entities": 0, "modalities": ",".join(self.modality_names)}
