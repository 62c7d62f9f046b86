"""User-guided diffusion over each item's entity-relation vector (paper Eq. 8-12).

x₀ = r_j ∈ {0, 1}^|E| marks the entities linked to item j. Forward process with a linear β
schedule over T = t steps:

    q(x_t | x₀) = N(√ᾱ_t x₀, (1 - ᾱ_t) I)                                   (Eq. 8, 9)

The denoiser f(x_t, t, z̃_j) predicts x̂₀; z̃_j is the mean embedding of the users who
interacted with item j (Eq. 11), the user guidance. The reverse process (Eq. 10, 12) starts
from x_T ~ q(x_T | x₀) and follows the posterior means μ(x_t, x̂₀) down to step 0. Keeping the
top-q entities of each relation per item (Section V-B3) gives the rebuilt graph Ĝ_k.
Loss: ELBO-weighted MSE on x̂₀ (DiffRec). The unguided variant (KDiffE_2) feeds zeros as z̃.

DiffMM (:mod:`kdiffe.diffmm`) reuses the diffusion with DiffRec's other schedule, linear in the
variance 1 - ᾱ_t instead of in β_t (``schedule="variance"``), and a denoiser that projects its
step embedding and drops out its input (:class:`Denoiser` options).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn

from .propagation import scipy_to_torch


def step_embedding(steps: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps, (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=steps.device, dtype=torch.float32) / half)
    angles = steps.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    return emb if dim % 2 == 0 else torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)


class Denoiser(nn.Module):
    """MLP on [x_t ‖ step embedding ‖ z̃_j] predicting x̂₀.

    ``step_projection`` passes the step embedding through a linear layer first and
    ``input_dropout`` drops out x_t in training (DiffMM's denoiser; KDiffE's has neither).
    """

    def __init__(self, n_entities: int, guidance_dim: int, hidden: int = 256, step_dim: int = 16,
                 step_projection: bool = False, input_dropout: float = 0.0) -> None:
        super().__init__()
        if not 0 <= input_dropout < 1:
            raise ValueError(f"input_dropout={input_dropout}: must be in [0, 1)")
        self.step_dim = step_dim
        self.guidance_dim = guidance_dim
        self.input_dropout = input_dropout
        self.step_layer = nn.Linear(step_dim, step_dim) if step_projection else None
        self.net = nn.Sequential(
            nn.Linear(n_entities + step_dim + guidance_dim, hidden), nn.Tanh(),
            nn.Linear(hidden, n_entities),
        )
        for layer in (*self.net, self.step_layer):
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x_t: torch.Tensor, steps: torch.Tensor, guidance: torch.Tensor | None) -> torch.Tensor:
        if guidance is None:
            guidance = x_t.new_zeros(x_t.shape[0], self.guidance_dim)
        emb = step_embedding(steps, self.step_dim)
        if self.step_layer is not None:
            emb = self.step_layer(emb)
        if self.input_dropout and self.training:
            x_t = nn.functional.dropout(x_t, self.input_dropout)
        return self.net(torch.cat([x_t, emb, guidance], dim=1))


SCHEDULES = ("beta", "variance")


def betas_for(schedule: str, steps: int, noise_scale: float, noise_min: float, noise_max: float) -> torch.Tensor:
    """β_1..β_T (float64). ``"beta"``: β = scale · linspace(min, max, T) (KDiffE). ``"variance"``:
    1 - ᾱ = scale · linspace(min, max, T), β_t = min(1 - ᾱ_t / ᾱ_{t-1}, 0.999), with the first β
    fixed at 1e-4 (DiffRec's "linear-var" with ``beta_fixed``, as DiffMM runs it)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r}: choose from {', '.join(SCHEDULES)}")
    ramp = noise_scale * torch.linspace(noise_min, noise_max, steps, dtype=torch.float64, device="cpu")
    if schedule == "beta":
        return ramp
    alpha_bar = 1.0 - ramp
    betas = torch.cat([ramp[:1], (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)])
    betas[0] = 1e-4
    return betas


class GaussianDiffusion:
    """Gaussian diffusion with T steps and a linear schedule (:func:`betas_for`)."""

    def __init__(self, steps: int, noise_scale: float = 0.1, noise_min: float = 1e-4,
                 noise_max: float = 0.02, device: torch.device | str = "cpu", schedule: str = "beta") -> None:
        self.steps = steps
        betas = betas_for(schedule, steps, noise_scale, noise_min, noise_max)
        alphas = 1.0 - betas
        self.alpha_bar = torch.cumprod(alphas, dim=0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64, device="cpu"), self.alpha_bar[:-1]])
        self.betas = betas
        self.posterior_coef_x0 = betas * prev.sqrt() / (1.0 - self.alpha_bar)
        self.posterior_coef_xt = (1.0 - prev) * alphas.sqrt() / (1.0 - self.alpha_bar)
        snr = self.alpha_bar / (1.0 - self.alpha_bar)
        self.elbo_weight = torch.cat([torch.ones(1, dtype=torch.float64, device="cpu"), snr[:-1] - snr[1:]])
        for name in ("betas", "alpha_bar", "posterior_coef_x0", "posterior_coef_xt", "elbo_weight"):
            setattr(self, name, getattr(self, name).float().to(device))

    def q_sample(self, x0: torch.Tensor, steps: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """x_t = √ᾱ_t x₀ + √(1 - ᾱ_t) ε (Eq. 9)."""
        noise = torch.randn_like(x0) if noise is None else noise
        ab = self.alpha_bar[steps].unsqueeze(1)
        return ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise

    def posterior_mean(self, x_t: torch.Tensor, x0_hat: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """μ(x_t, x̂₀) of q(x_{t-1} | x_t, x₀) (Eq. 10, 12)."""
        return (self.posterior_coef_x0[steps].unsqueeze(1) * x0_hat
                + self.posterior_coef_xt[steps].unsqueeze(1) * x_t)

    def loss(self, denoiser: Denoiser, x0: torch.Tensor, guidance: torch.Tensor | None) -> torch.Tensor:
        """ELBO-weighted MSE between x̂₀ and x₀ at uniformly drawn steps."""
        steps = torch.randint(0, self.steps, (x0.shape[0],), device=x0.device)
        x0_hat = denoiser(self.q_sample(x0, steps), steps, guidance)
        mse = (x0_hat - x0).pow(2).mean(dim=1)
        weight = self.elbo_weight[steps]
        return (weight * mse).sum() / weight.sum()

    @torch.no_grad()
    def reconstruct(self, denoiser: Denoiser, x0: torch.Tensor, guidance: torch.Tensor | None,
                    noised: bool = True) -> torch.Tensor:
        """Reverse process through posterior means from x_T ~ q(x_T | x₀), or from x₀ itself
        (``noised=False``, DiffMM's ``sampling_steps = 0``); returns x̂₀."""
        x_t = (self.q_sample(x0, torch.full((x0.shape[0],), self.steps - 1, device=x0.device, dtype=torch.long))
               if noised else x0)
        x0_hat = x_t
        for step in reversed(range(self.steps)):
            steps = torch.full((x0.shape[0],), step, device=x0.device, dtype=torch.long)
            x0_hat = denoiser(x_t, steps, guidance)
            x_t = self.posterior_mean(x_t, x0_hat, steps) if step > 0 else x0_hat
        return x0_hat


def relation_groups(entity_relation: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """(relation id, its entity ids) per relation present; computed once per view (it syncs)."""
    return [(rel, torch.nonzero(entity_relation == rel).squeeze(1))
            for rel in torch.unique(entity_relation).tolist()]


def top_q_per_relation(scores: torch.Tensor, entity_relation: torch.Tensor, q: int,
                       groups: list[tuple[int, torch.Tensor]] | None = None) -> torch.Tensor:
    """(item, relation, entity) triples of the q best-scored entities of each relation per item.

    ``groups`` (from :func:`relation_groups`) saves finding each relation's entities per call;
    with it the selection never waits on the device.
    """
    parts = []
    rows = torch.arange(scores.shape[0], device=scores.device)
    for rel, members in relation_groups(entity_relation) if groups is None else groups:
        k = min(q, members.numel())
        best = members[torch.topk(scores[:, members], k, dim=1).indices]
        items = rows.repeat_interleave(k)
        parts.append(torch.stack([items, torch.full_like(items, rel), best.reshape(-1)], dim=1))
    return torch.cat(parts)


def user_guidance_operator(train: sp.csr_matrix, device: torch.device | str = "cpu") -> torch.Tensor:
    """Items x users sparse operator D_v^{-1} Aᵀ: applied to user embeddings gives z̃_j (Eq. 11)."""
    items_users = sp.csr_matrix(train.T, dtype=np.float32)
    deg = np.asarray(items_users.sum(axis=1)).ravel()
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    return scipy_to_torch(sp.diags(inv) @ items_users, device)
