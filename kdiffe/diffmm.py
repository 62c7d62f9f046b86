"""DiffMM (Jiang et al., ACM MM 2024, "DiffMM: Multi-Modal Diffusion Model for Recommendation"),
registered as ``diffmm``: per-modality diffusion over each user's interactions rebuilds one
user-item graph per modality; the modality views are contrasted with the main view.

Multi-modal graph diffusion (the paper's Section 3, "Multi-Modal Graph Diffusion"), per
modality m, one denoiser f_m over x₀ = a_u, the user's row of the training matrix:

    q(x_t | x₀) = N(√ᾱ_t x₀, (1 - ᾱ_t) I), 1 - ᾱ_t linear in t        forward graph diffusion
    L_elbo = E_t [w_t ||f_m(x_t, t) - x₀||² / |I|],  w_t = SNR(t-1) - SNR(t), w_0 = 1
    L_msi  = ||f_m(x_t, t) F_m - x₀ E_I||² / d          modality-aware signal injection (MSI)
    L_m    = L_elbo + λ0 L_msi

F_m are the items' projected features of modality m and E_I the item ID embeddings (both
detached). Each epoch the denoisers train one pass over the users; then each user's row is
denoised from x₀ itself through the T reverse steps, and its q best items form the rebuilt
graph G_m (the reverse process), normalised with self loops and edge-dropped (keep 1 - ρ, kept values
scaled by 1 / (1 - ρ)).

Modality-aware views ("Cross-Modal Contrastive Augmentation" and the aggregation that fuses the
modalities), with Â the normalised user-item graph with self loops,
f̄_m = normalize(W_m x_m + b_m), [·; ·] stacking users over items:

    h_m  = Â [E_U; f̄_m] + Â [(Â [E_U; f̄_m])_U; E_I] + λ_adj Ĝ_m [E_U; E_I]
    h    = Σ_m softmax(w)_m h_m,   e = Σ_{l=0..L} Â^l h + λ_ris normalize(h)        (main view)
    e_m  = Σ_{l=0..L} Â^l Ĝ_m [E_U; f̄_m]                                       (modality view m)
    L    = BPR(e) + λ2 (||E_U||² + ||E_I||²) + λ1 Σ_m (InfoNCE_τ(e, e_m)_U + InfoNCE_τ(e, e_m)_I)

InfoNCE anchors are the batch's users and positive items, duplicates included, each against
every user / item of the other view (as the authors' code). ``cl_pairs="modal"`` contrasts the
modality views pairwise instead of with the main view (the authors' ``cl_method=0``; their
TikTok setting is 1, "main"). Scores are e_uᵀ e_i.

This is the model of the authors' code (github.com/HKUDS/DiffMM: ``Model.forward_MM``,
``forward_cl_MM``, ``GaussianDiffusion``, ``Denoise``), written from its paper and read against
it; its projection is their ``trans=1`` (linear, their TikTok setting). Config: ``layers`` (L),
``theta1`` (λ1, ssl_reg), ``theta2`` (λ2, reg), ``tau`` (temp), ``edge_drop`` (ρ = 1 - keepRate),
``t`` (steps), ``noise_scale``/``noise_min``/``noise_max``, ``q`` (rebuild_k), ``msi_weight`` (λ0,
e_loss), ``ris_lambda``, ``ris_adj_lambda``, ``denoiser_hidden`` (dims), ``step_dim``
(d_emb_size), ``diff_lr``, ``diff_batch``, ``cl_pairs``. Published defaults (its entry in
:mod:`kdiffe.catalog`): the authors' TikTok command over their Params.py.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Mapping

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

from .diffusion import Denoiser, GaussianDiffusion
from .losses import bpr_loss, default_block, info_nce_nodes
from .propagation import propagate, self_loop_normalized, torch_csr
from .recommender import CheckpointError, GraphEmbeddings, feature_tensors, own_generator

#: dropout on the denoisers' noisy input in training (fixed in the authors' ``Denoise``)
DENOISER_DROPOUT = 0.5


def rebuilt_graph(scores: torch.Tensor, q: int) -> sp.csr_matrix:
    """users x items graph linking each user to the q best-scored items of its row."""
    n_users, n_items = scores.shape
    best = torch.topk(scores, min(q, n_items), dim=1).indices.cpu().numpy()
    rows = np.repeat(np.arange(n_users), best.shape[1])
    return sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, best.ravel())), shape=(n_users, n_items))


def drop_entries(matrix: sp.csr_matrix, rate: float, generator: torch.Generator) -> sp.csr_matrix:
    """Each stored entry kept with probability 1 - rate, kept values divided by 1 - rate."""
    if rate == 0:
        return matrix
    coo = matrix.tocoo()
    keep = (torch.rand(coo.nnz, generator=generator, dtype=torch.float64, device="cpu") >= rate).numpy()
    return sp.csr_matrix((coo.data[keep] / (1 - rate), (coo.row[keep], coo.col[keep])), shape=matrix.shape)


class DiffMM(GraphEmbeddings):
    """ID embeddings, projected modality features, one denoiser and one rebuilt graph per modality."""

    name = "diffmm"

    def __init__(self, train: sp.csr_matrix, features: Mapping[str, torch.Tensor], dim: int = 64,
                 layers: int = 1, *, ssl_weight: float = 1e-2, reg_weight: float = 1e-4, tau: float = 0.5,
                 edge_drop: float = 0.5, steps: int = 5, noise_scale: float = 0.1, noise_min: float = 1e-4,
                 noise_max: float = 0.02, rebuild_k: int = 5, msi_weight: float = 0.1, ris_lambda: float = 0.5,
                 ris_adj_lambda: float = 0.2, cl_pairs: str = "main", denoiser_hidden: int = 1000,
                 step_dim: int = 10, diff_lr: float = 1e-3, diff_batch: int = 1024, block: int = 128,
                 seed: int = 0) -> None:
        if not features:
            raise ValueError("DiffMM needs at least one modality of item features")
        if not 0 <= edge_drop < 1 or cl_pairs not in ("main", "modal") or rebuild_k < 1:
            raise ValueError(f"edge_drop={edge_drop}, cl_pairs={cl_pairs!r}, rebuild_k={rebuild_k}: need "
                             "edge_drop in [0, 1), cl_pairs main or modal, rebuild_k >= 1")
        n_users, n_items = train.shape
        super().__init__(n_users, n_items, torch_csr(self_loop_normalized(train)), dim, layers)
        self.train_graph = sp.csr_matrix(train, dtype=np.float32)
        self.modality_names = tuple(sorted(features))
        self.features = {m: features[m].float() for m in self.modality_names}  #: fixed inputs, not parameters
        self.projections = nn.ModuleDict({m: nn.Linear(features[m].shape[1], dim) for m in self.modality_names})
        self.modal_weight = nn.Parameter(torch.full((len(self.modality_names),), 1.0 / len(self.modality_names), device="cpu"))
        self.ssl_weight, self.reg_weight, self.tau, self.block = ssl_weight, reg_weight, tau, block
        self.edge_drop, self.rebuild_k, self.msi_weight = edge_drop, rebuild_k, msi_weight
        self.ris_lambda, self.ris_adj_lambda, self.cl_pairs = ris_lambda, ris_adj_lambda, cl_pairs
        self.diff_batch = diff_batch
        self.noise = (steps, noise_scale, noise_min, noise_max)
        self.diffusion = GaussianDiffusion(*self.noise, schedule="variance")
        # the denoisers train with their own optimiser, so they are not parameters of the recommender
        self.denoisers = {m: Denoiser(n_items, 0, denoiser_hidden, step_dim, step_projection=True,
                                      input_dropout=DENOISER_DROPOUT) for m in self.modality_names}
        self.denoiser_optimizer = torch.optim.Adam(
            itertools.chain.from_iterable(d.parameters() for d in self.denoisers.values()), lr=diff_lr)
        #: edge dropout of the rebuilt graphs: a stream apart from the trainer's and the initialisation's
        self.generator = own_generator(seed, 5)
        #: Ĝ_m per modality (edge-dropped), rebuilt by :meth:`epoch_hook`
        self.views: dict[str, torch.Tensor] | None = None

    @classmethod
    def build(cls, config: Any, dataset: Any, device: torch.device,
              log: Callable[[str], None] = print) -> "DiffMM":
        features = feature_tensors(cls.name, dataset)
        c = config
        return cls(dataset.train, features, c.dim, c.layers, ssl_weight=c.theta1, reg_weight=c.theta2, tau=c.tau,
                   edge_drop=c.edge_drop, steps=c.t, noise_scale=c.noise_scale, noise_min=c.noise_min,
                   noise_max=c.noise_max, rebuild_k=c.q, msi_weight=c.msi_weight, ris_lambda=c.ris_lambda,
                   ris_adj_lambda=c.ris_adj_lambda, cl_pairs=c.cl_pairs, denoiser_hidden=c.denoiser_hidden,
                   step_dim=c.step_dim, diff_lr=c.diff_lr, diff_batch=c.diff_batch,
                   block=c.cl_block or default_block(device), seed=c.seed).to(device)

    def to(self, *args: Any, **kwargs: Any) -> "DiffMM":
        super().to(*args, **kwargs)
        device = self.user.weight.device
        self.features = {m: x.to(device) for m, x in self.features.items()}
        for denoiser in self.denoisers.values():
            denoiser.to(device)
        self.diffusion = GaussianDiffusion(*self.noise, device=device, schedule="variance")
        if self.views is not None:
            self.views = {m: v.to(device) for m, v in self.views.items()}
        return self

    # embeddings ---------------------------------------------------------
    def modality_features(self, name: str) -> torch.Tensor:
        """W_m x_m + b_m for every item."""
        return self.projections[name](self.features[name])

    def _layer_sum(self, x: torch.Tensor) -> torch.Tensor:
        return propagate(self.operator, x, self.layers)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = x.split([self.n_users, self.n_items])
        return users, items

    def _require_views(self) -> dict[str, torch.Tensor]:
        if self.views is None:
            raise RuntimeError("DiffMM: no rebuilt graphs yet; the trainer calls epoch_hook before the batches")
        return self.views

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The main view e."""
        views = self._require_views()
        ids = torch.cat([self.user.weight, self.item.weight])
        weights = torch.softmax(self.modal_weight, dim=0)
        fused = 0
        for w, m in zip(weights, self.modality_names):
            mixed = torch.cat([self.user.weight, F.normalize(self.modality_features(m))])
            h = self.operator @ mixed
            h = h + self.operator @ torch.cat([h[: self.n_users], self.item.weight])
            fused = fused + w * (h + self.ris_adj_lambda * (views[m] @ ids))
        return self._split(self._layer_sum(fused) + self.ris_lambda * F.normalize(fused))

    def modality_views(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """e_m per modality: the layers over Â of Ĝ_m [E_U; f̄_m]."""
        views = self._require_views()
        return {m: self._split(self._layer_sum(
            views[m] @ torch.cat([self.user.weight, F.normalize(self.modality_features(m))])))
            for m in self.modality_names}

    # training -----------------------------------------------------------
    def denoiser_loss(self, name: str, x0: torch.Tensor, item_ids: torch.Tensor,
                      features: torch.Tensor) -> torch.Tensor:
        """L_elbo + λ0 L_msi of modality ``name`` on the rows ``x0``."""
        d = self.diffusion
        steps = torch.randint(0, d.steps, (x0.shape[0],), device=x0.device)
        x0_hat = self.denoisers[name](d.q_sample(x0, steps), steps, None)
        elbo = (d.elbo_weight[steps] * (x0_hat - x0).pow(2).mean(dim=1)).mean()
        msi = (x0_hat @ features - x0 @ item_ids).pow(2).mean(dim=1).mean()
        return elbo + self.msi_weight * msi

    def _rows(self, users: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.train_graph[users].toarray()).to(self.user.weight.device)

    def epoch_hook(self, epoch: int) -> dict[str, torch.Tensor]:
        """One pass of the denoisers over the users, then every modality's graph rebuilt."""
        device = self.user.weight.device
        with torch.no_grad():
            item_ids = self.item.weight.detach().clone()
            features = {m: self.modality_features(m).detach() for m in self.modality_names}
        for denoiser in self.denoisers.values():
            denoiser.train()
        order = torch.randperm(self.n_users, device=device).cpu().numpy()
        total = torch.zeros((), device=device)
        batches = 0
        for lo in range(0, self.n_users, self.diff_batch):
            x0 = self._rows(order[lo:lo + self.diff_batch])
            loss = sum(self.denoiser_loss(m, x0, item_ids, features[m]) for m in self.modality_names)
            self.denoiser_optimizer.zero_grad()
            loss.backward()
            self.denoiser_optimizer.step()
            total += loss.detach()
            batches += 1
        self.views = self.rebuild()
        return {"diffusion_loss": total / max(batches, 1)}

    @torch.no_grad()
    def rebuild(self) -> dict[str, torch.Tensor]:
        """Ĝ_m per modality: each user's q best items of its row denoised from x₀ (the reverse process)."""
        device = self.user.weight.device
        parts: dict[str, list[sp.csr_matrix]] = {m: [] for m in self.modality_names}
        for denoiser in self.denoisers.values():
            denoiser.eval()
        for lo in range(0, self.n_users, self.diff_batch):
            x0 = self._rows(np.arange(lo, min(lo + self.diff_batch, self.n_users)))
            for m in self.modality_names:
                scores = self.diffusion.reconstruct(self.denoisers[m], x0, None, noised=False)
                parts[m].append(rebuilt_graph(scores, self.rebuild_k))
        return {m: torch_csr(drop_entries(self_loop_normalized(sp.vstack(parts[m])), self.edge_drop,
                                          self.generator), device)
                for m in self.modality_names}

    def contrast(self, a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor],
                 batch: Any) -> torch.Tensor:
        return (info_nce_nodes(a[0], b[0], batch.users, self.tau, self.block)
                + info_nce_nodes(a[1], b[1], batch.pos, self.tau, self.block))

    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L on one batch: BPR and L2 on the main view, InfoNCE between the views."""
        z_u, z_i = self.forward()
        users = z_u[batch.users]
        bpr = bpr_loss((users * z_i[batch.pos]).sum(1), (users * z_i[batch.neg]).sum(1))
        reg = self.user.weight.pow(2).sum() + self.item.weight.pow(2).sum()
        loss = bpr + self.reg_weight * reg
        parts = {"bpr_loss": bpr.detach()}
        if self.ssl_weight > 0:
            views = list(self.modality_views().values())
            pairs = ([((z_u, z_i), v) for v in views] if self.cl_pairs == "main"
                     else list(itertools.combinations(views, 2)))
            cl = sum(self.contrast(a, b, batch) for a, b in pairs)
            loss = loss + self.ssl_weight * cl
            parts["cl_loss"] = cl.detach()
        return loss, parts

    @torch.no_grad()
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward()

    def recorded(self) -> dict[str, Any]:
        return {"kg_entities": 0, "modalities": ",".join(self.modality_names)}

    # checkpoints --------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        views = None if self.views is None else {
            m: {"crow": v.crow_indices().cpu(), "col": v.col_indices().cpu(), "values": v.values().cpu()}
            for m, v in self.views.items()}
        return {"generator": self.generator.get_state(), "views": views,
                "denoisers": {m: d.state_dict() for m, d in self.denoisers.items()},
                "denoiser_optimizer": self.denoiser_optimizer.state_dict()}

    def load_extra_state(self, state: dict[str, Any] | None) -> None:
        super().load_extra_state(state)
        try:
            for m, d in self.denoisers.items():
                d.load_state_dict(state["denoisers"][m])
            self.denoiser_optimizer.load_state_dict(state["denoiser_optimizer"])
            views = state["views"]
            size = self.n_users + self.n_items
            device = self.user.weight.device
            self.views = None if views is None else {
                m: torch.sparse_csr_tensor(views[m]["crow"], views[m]["col"], views[m]["values"], (size, size),
                                           check_invariants=True, device="cpu").to(device)
                for m in self.modality_names}
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"model=diffmm: the checkpoint's denoisers or rebuilt graphs do not fit this "
                                  f"model: {' '.join(str(exc).split())[:200]}") from None
