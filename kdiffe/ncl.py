"""NCL (Lin et al., WWW 2022, "Improving Graph Collaborative Filtering with Neighborhood-enriched
Contrastive Learning"), registered as ``ncl``: LightGCN with two contrastive tasks.

    E^{(l)}: LightGCN's layers (mean of the first K + 1 for the scores, Eq. 3-4 of LightGCN)
    L_S^U = Σ_u -log exp(ê_u^{(2k)}·ê_u^{(0)}/τ) / Σ_v exp(ê_u^{(2k)}·ê_v^{(0)}/τ)   structural (Eq. 8)
    L_S = L_S^U + α L_S^I                                                           (Eq. 10)
    c_u: the prototype of u, k-means on the layer-0 embeddings (E-step, once per epoch)
    L_P^U = Σ_u -log exp(ê_u·ĉ_u/τ) / Σ_j exp(ê_u·ĉ_j/τ)                         prototype (Eq. 12)
    L = L_BPR + λ1 L_S + λ2 (L_P^U + L_P^I) + λ3 ||E^{(0)}||²                        (Eq. 14)

ê is an L2-normalised embedding. The sums run over the batch's (user, positive item) pairs, as
in the paper and the authors' code, so the published weights apply unchanged; BPR is the batch
mean and the L2 term LightGCN's (½ Σ ||e⁰||² over the batch / batch size). The prototype term
starts after ``warm_up`` epochs (the authors' warm-up); until then no k-means runs.

The E-step is Lloyd's k-means on the device (as the authors' faiss one: k distinct random points
to start, a fixed number of iterations, L2 distance on the raw embeddings, centroids normalised
afterwards); an empty cluster keeps its previous centroid.

Config: ``hyper_layers`` (k), ``theta1`` (λ1), ``ncl_alpha`` (α), ``proto_weight`` (λ2),
``clusters`` (prototypes per side), ``warm_up``, ``tau`` (τ), ``theta2`` (λ3). Published
defaults (the authors' settings, RecBole's NCL; its entry in :mod:`kdiffe.catalog`): 3 layers,
k = 1, λ1 = 1e-7, α = 1, λ2 = 8e-8, 1,000 prototypes, 20 warm-up epochs, τ = 0.1, λ3 = 1e-4.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from .lightgcn import LightGCN
from .losses import Objective, info_nce_nodes
from .propagation import layer_embeddings, propagation_operator
from .recommender import own_generator

KMEANS_ITERS = 25  #: faiss.Kmeans' default, the authors' E-step


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means of the rows of ``x``: (centroids (k', dim), labels (n,)), k' = min(k, n).

    Starts at k' distinct rows drawn with ``generator`` (on the CPU, so CPU and CUDA draw the same);
    the labels are the nearest centroid of the final centroids.
    """
    n = x.shape[0]
    k = min(k, n)
    start = torch.randperm(n, generator=generator, device="cpu")[:k].to(x.device)
    centroids = x[start].clone()
    sq = (x * x).sum(dim=1, keepdim=True)

    def assign(c: torch.Tensor) -> torch.Tensor:
        return (sq - 2 * x @ c.T + (c * c).sum(dim=1)[None, :]).argmin(dim=1)

    for _ in range(iters):
        labels = assign(centroids)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        filled = counts > 0
        centroids = torch.where(filled[:, None], sums / counts.clamp(min=1)[:, None], centroids)
    return centroids, assign(centroids)


class NCL(LightGCN):
    """LightGCN (mean of layers) plus NCL's structural and prototype contrast."""

    name = "ncl"

    def __init__(self, n_users: int, n_items: int, operator: torch.Tensor, dim: int = 64, layers: int = 3,
                 combine: str = "mean", objective: Objective | None = None, hyper_layers: int = 1,
                 alpha: float = 1.0, proto_weight: float = 8e-8, clusters: int = 1000, warm_up: int = 20,
                 seed: int = 0) -> None:
        super().__init__(n_users, n_items, operator, dim, layers, combine,
                         objective or Objective(theta1=1e-7, theta2=1e-4, l2="batch", tau=0.1))
        if hyper_layers < 1 or clusters < 1 or warm_up < 0:
            raise ValueError(f"hyper_layers={hyper_layers}, clusters={clusters}, warm_up={warm_up}: "
                             "need hyper_layers >= 1, clusters >= 1, warm_up >= 0")
        self.hyper_layers, self.alpha, self.proto_weight = hyper_layers, alpha, proto_weight
        self.clusters, self.warm_up = clusters, warm_up
        #: the E-step's own stream, apart from the trainer's and the initialisation's
        self.generator = own_generator(seed, 3)
        #: (user centroids, user labels, item centroids, item labels) of the last E-step
        self.prototypes: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def build(cls, config: Any, dataset: Any, device: torch.device,
              log: Callable[[str], None] = print) -> "NCL":
        objective = Objective.from_config(config, device, contrastive=True)
        operator = propagation_operator(dataset.train, None, 0.0, device)
        return cls(dataset.n_users, dataset.n_items, operator, config.dim, config.layers, config.layer_combine,
                   objective, config.hyper_layers, config.ncl_alpha, config.proto_weight, config.clusters,
                   config.warm_up, config.seed).to(device)

    @property
    def uses_prototypes(self) -> bool:
        return self.proto_weight > 0

    def epoch_hook(self, epoch: int) -> dict[str, torch.Tensor]:
        """The E-step: k-means of the layer-0 user and item embeddings, once the warm-up is over."""
        self.prototypes = None
        if self.uses_prototypes and epoch >= self.warm_up:
            with torch.no_grad():
                c_u, l_u = kmeans(self.user.weight.detach(), self.clusters, KMEANS_ITERS, self.generator)
                c_i, l_i = kmeans(self.item.weight.detach(), self.clusters, KMEANS_ITERS, self.generator)
            self.prototypes = (F.normalize(c_u, dim=1), l_u, F.normalize(c_i, dim=1), l_i)
        return {}

    def _layers(self) -> list[torch.Tensor]:
        ego = torch.cat([self.user.weight, self.item.weight], dim=0)
        return layer_embeddings(self.operator, ego, max(self.layers, 2 * self.hyper_layers))

    def _final(self, layers: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        total = sum(layers[: self.layers + 1])
        if self.combine == "mean":
            total = total / (self.layers + 1)
        users, items = total.split([self.n_users, self.n_items])
        return users, items

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._final(self._layers())

    def structural_loss(self, layers: list[torch.Tensor], users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """L_S^U + α L_S^I (Eq. 8-10), summed over the batch's users and positive items."""
        o = self.objective
        x_u, x_i = layers[2 * self.hyper_layers].split([self.n_users, self.n_items])
        c_u, c_i = layers[0].split([self.n_users, self.n_items])
        return (info_nce_nodes(x_u, c_u, users, o.tau, o.block) * len(users)
                + self.alpha * info_nce_nodes(x_i, c_i, items, o.tau, o.block) * len(items))

    def prototype_loss(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """L_P^U + L_P^I (Eq. 11-13), summed over the batch's users and positive items."""
        if self.prototypes is None:
            raise RuntimeError("NCL: no prototypes; the trainer calls epoch_hook before the batches")
        c_u, l_u, c_i, l_i = self.prototypes
        tau = self.objective.tau
        e_u = F.normalize(self.user.weight[users], dim=1)
        e_i = F.normalize(self.item.weight[items], dim=1)
        return (F.cross_entropy(e_u @ c_u.T / tau, l_u[users], reduction="sum")
                + F.cross_entropy(e_i @ c_i.T / tau, l_i[items], reduction="sum"))

    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 14 on one batch."""
        layers = self._layers()
        loss, parts = self.objective(batch, self._final(layers), None, self.parameters(),
                                     (self.user.weight, self.item.weight))
        extra = []
        if self.objective.theta1 > 0:
            ssl = self.structural_loss(layers, batch.users, batch.pos)
            loss = loss + self.objective.theta1 * ssl
            extra.append(ssl.detach())
        if self.prototypes is not None:
            proto = self.prototype_loss(batch.users, batch.pos)
            loss = loss + self.proto_weight * proto
            extra.append(proto.detach())
        if extra:
            parts["cl_loss"] = sum(extra)
        return loss, parts
