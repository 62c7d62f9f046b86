"""BM3 (Zhou et al., WWW 2023, "Bootstrap Latent Representations for Multi-modal
Recommendation"), registered as ``bm3``: a multimodal baseline of Table II that learns without
negative samples, by bootstrapping its own embeddings.

    h_u, h_i = LightGCN(E) (mean of the L + 1 layers), h_i += e_i            (Section 3.1)
    h_{m,i} = W_m x_{m,i} + b_m        each modality's features, fine-tuned  (Section 3.1)
    h̃ = sg(dropout_p(h))              the target: the online embedding, perturbed (Eq. 4)
    f: one shared linear predictor                                            (Eq. 5)
    L_rec   = 1 - cos(f(h_u), h̃_i) + 1 - cos(f(h_i), h̃_u)                   (Eq. 6)
    L_align = Σ_m 1 - cos(f(h_{m,i}), h̃_i)     inter-modality alignment      (Eq. 7)
    L_mask  = Σ_m 1 - cos(f(h_{m,i}), h̃_{m,i})  intra-modality masking       (Eq. 8)
    L = L_rec + λ_cl (L_align + L_mask) + λ_reg (||H_U|| + ||H_I||) / |I|     (Eq. 9)
    ŷ_ui = f(h_u)ᵀ f(h_i)

Every term is a mean over the batch's (user, positive item) pairs; the batch's negatives are
not used (the logged ``bpr_loss`` is BPR of the current scores on them, a diagnostic that is not
optimised). The regulariser is the authors' (MMRec's ``EmbLoss``): Frobenius norms, not squared,
of the whole online embedding matrices, divided by the number of items. Dropout masks are drawn
for the batch's rows only (the same distribution as masking every row), from the model's own
generator, so a resumed run draws what an uninterrupted one does.

Config: ``layers`` (L), ``target_dropout`` (p), ``theta1`` (λ_cl), ``theta2`` (λ_reg). Defaults
(its entry in :mod:`kdiffe.catalog`): L = 1, p = 0.3, λ_reg = 0.1, λ_cl = 2 — the first value of
each grid the authors search (MMRec's BM3.yaml: L in {1, 2}, p in {0.3, 0.5}, λ_reg in
{0.1, 0.01}), which the paper tunes per dataset.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from .losses import bpr_loss
from .lightgcn import LightGCN
from .propagation import propagation_operator
from .recommender import feature_tensors, own_generator


def _distance(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean of 1 - cos(online, target) over rows; no gradient reaches the target."""
    return 1 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


class BM3(LightGCN):
    """A LightGCN backbone (mean of layers) over IDs, projected modality features, one predictor,
    no negatives."""

    name = "bm3"

    def __init__(self, n_users: int, n_items: int, operator: torch.Tensor, features: Mapping[str, torch.Tensor],
                 dim: int = 64, layers: int = 1, dropout: float = 0.3, cl_weight: float = 2.0,
                 reg_weight: float = 0.1, seed: int = 0) -> None:
        super().__init__(n_users, n_items, operator, dim, layers, combine="mean")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout={dropout}: must be in [0, 1)")
        self.modality_names = tuple(sorted(features))
        self.features = nn.ParameterDict({m: nn.Parameter(features[m].float()) for m in self.modality_names})
        self.projections = nn.ModuleDict({m: nn.Linear(features[m].shape[1], dim) for m in self.modality_names})
        self.predictor = nn.Linear(dim, dim)
        for layer in (*self.projections.values(), self.predictor):
            nn.init.xavier_normal_(layer.weight)
        self.dropout, self.cl_weight, self.reg_weight = dropout, cl_weight, reg_weight
        #: the targets' dropout masks: a stream apart from the trainer's and the initialisation's
        self.generator = own_generator(seed, 4)

    @classmethod
    def build(cls, config: Any, dataset: Any, device: torch.device,
              log: Callable[[str], None] = print) -> "BM3":
        features = feature_tensors(cls.name, dataset)
        operator = propagation_operator(dataset.train, None, 0.0, device)
        return cls(dataset.n_users, dataset.n_items, operator, features, config.dim, config.layers,
                   config.target_dropout, config.theta1, config.theta2, config.seed).to(device)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Online (h_u, h_i): the mean of the layers, plus the item's own ID embedding."""
        users, items = self._combine(self.operator)
        return users, items + self.item.weight

    def modality(self, name: str, items: torch.Tensor) -> torch.Tensor:
        """h_{m,i} for the rows ``items``."""
        return self.projections[name](self.features[name][items])

    def _target(self, x: torch.Tensor) -> torch.Tensor:
        """sg(dropout_p(x)); the 1 / (1 - p) scale is left out, cosine does not see it."""
        if not self.dropout:
            return x.detach()
        keep = torch.rand(x.shape, generator=self.generator, device="cpu") >= self.dropout
        return x.detach() * keep.to(x.device, x.dtype)

    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 9 on one batch of (user, positive item) pairs."""
        h_u, h_i = self.forward()
        u, i = batch.users, batch.pos
        f = self.predictor
        item_target = self._target(h_i[i])  # one mask per batch for the item, as the authors draw it
        rec = _distance(f(h_u[u]), item_target) + _distance(f(h_i[i]), self._target(h_u[u]))
        modal = h_u.new_zeros(())
        for m in self.modality_names:
            h_m = self.modality(m, i)
            modal = modal + _distance(f(h_m), item_target) + _distance(f(h_m), self._target(h_m))
        reg = (h_u.norm() + h_i.norm()) / self.n_items
        loss = rec + self.cl_weight * modal + self.reg_weight * reg
        with torch.no_grad():
            z_u = f(h_u[u])
            bpr = bpr_loss((z_u * f(h_i[i])).sum(1), (z_u * f(h_i[batch.neg])).sum(1))
        return loss, {"bpr_loss": bpr, "cl_loss": (rec + modal).detach()}

    @torch.no_grad()
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """f(h_u), f(h_i): the scores are their dot products."""
        h_u, h_i = self.forward()
        return self.predictor(h_u), self.predictor(h_i)

    def recorded(self) -> dict[str, Any]:
        return {"kg_entities": 0, "modalities": ",".join(self.modality_names)}
