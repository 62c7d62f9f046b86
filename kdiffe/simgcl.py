"""SimGCL (Yu et al., SIGIR 2022, "Are Graph Augmentations Necessary? Simple Graph Contrastive
Learning for Recommendation"), registered as ``simgcl``: LightGCN whose contrastive views come
from uniform noise added to every layer's embeddings, not from a perturbed graph.

    Δ = ε · normalize(ω) ⊙ sign(e),  ω ~ U(0, 1)^d    ||Δ||₂ = ε, in e's own orthant  (Eq. 7)
    E'^{(l)} = Ā E'^{(l-1)} + Δ'^{(l)},  z' = mean_{l=1..L} E'^{(l)}  (Eq. 8; E^{(0)} skipped)
    L_cl = mean_{i ∈ B} -log exp(z'_iᵀz''_i / τ) / Σ_{j ∈ B} exp(z'_iᵀz''_j / τ)   (Eq. 1; cosine)
    L = L_rec + λ (L_cl^user + L_cl^item) + θ2 L2                                   (Eq. 2)

L_rec is BPR on the noise-free encoder (the same mean of layers 1..L); B is the batch's distinct
users (items: its distinct positive items), each ranked against the other view of B only, and
every term is a mean, as in the authors' SELFRec code (``SimGCL.cal_cl_loss``, ``InfoNCE``). The
L2 is LightGCN's on the batch's layer-0 embeddings (``l2="batch"``, as RecBole-GNN's SimGCL);
the authors' takes the unsquared norms of the final embeddings, a term of the order of 1e-4 of
the loss either way. The noise is drawn from the model's own generator (CPU, then moved), so a
resumed run draws what an uninterrupted one does, on any device.

Config: ``layers`` (L), ``noise_eps`` (ε), ``tau`` (τ), ``theta1`` (λ), ``theta2``. Published
defaults (SELFRec's SimGCL.yaml and its fixed τ; its entry in :mod:`kdiffe.catalog`): L = 2,
ε = 0.1, τ = 0.2, λ = 0.5, θ2 = 1e-4.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from .lightgcn import LightGCN
from .losses import Objective, info_nce
from .propagation import layer, propagation_operator
from .recommender import own_generator


class SimGCL(LightGCN):
    """LightGCN (mean of layers 1..L) plus InfoNCE between two noise-perturbed encodings."""

    name = "simgcl"

    def __init__(self, n_users: int, n_items: int, operator: torch.Tensor, dim: int = 64, layers: int = 2,
                 eps: float = 0.1, objective: Objective | None = None, seed: int = 0) -> None:
        super().__init__(n_users, n_items, operator, dim, layers, "mean",
                         objective or Objective(theta1=0.5, theta2=1e-4, l2="batch", tau=0.2))
        if eps < 0:
            raise ValueError(f"eps={eps}: must be >= 0")
        self.eps = eps
        self.generator = own_generator(seed, 6)  #: the views' noise, apart from the trainer's stream

    @classmethod
    def build(cls, config: Any, dataset: Any, device: torch.device,
              log: Callable[[str], None] = print) -> "SimGCL":
        objective = Objective(theta1=config.theta1, theta2=config.theta2, l2=config.l2, tau=config.tau)
        return cls(dataset.n_users, dataset.n_items, propagation_operator(dataset.train, None, 0.0, device),
                   config.dim, config.layers, config.noise_eps, objective, config.seed).to(device)

    @property
    def contrastive(self) -> bool:
        return self.objective.contrastive

    def noise(self, like: torch.Tensor) -> torch.Tensor:
        """Δ for every row of ``like``: ε times a uniform unit vector, signed as ``like``."""
        uniform = torch.rand(like.shape, generator=self.generator, device="cpu").to(like.device, like.dtype)
        return self.eps * F.normalize(uniform, dim=-1) * torch.sign(like)

    def encode(self, perturbed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(users, items): the mean of layers 1..L, each perturbed by fresh noise when ``perturbed``."""
        current = torch.cat([self.user.weight, self.item.weight], dim=0)
        total = torch.zeros_like(current)
        for _ in range(self.layers):
            current = layer(self.operator, current)
            if perturbed:
                current = current + self.noise(current)
            total = total + current
        return (total / self.layers).split([self.n_users, self.n_items])

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode()

    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 2 on one batch: BPR + θ2 L2 on the noise-free encoder, λ InfoNCE between two noisy ones."""
        loss, parts = self.objective(batch, self.encode(), None, self.parameters(),
                                     (self.user.weight, self.item.weight))
        if self.objective.contrastive:
            (a_u, a_i), (b_u, b_i) = self.encode(perturbed=True), self.encode(perturbed=True)
            users, items, tau = batch.anchor_users, batch.anchor_items, self.objective.tau
            cl = (info_nce(a_u[users], b_u[users], b_u[users], tau)
                  + info_nce(a_i[items], b_i[items], b_i[items], tau))
            loss = loss + self.objective.theta1 * cl
            parts["cl_loss"] = cl.detach()
        return loss, parts
