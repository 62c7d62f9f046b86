"""Training objectives (paper Eq. 13-15).

    L_r = Σ -log σ(y_ui - y_uj)                      BPR (Eq. 15; the paper omits σ, a typo)
    L_s = Σ -log exp(cos(z, z')/τ) / Σ_w exp(cos(z, z'_w)/τ)         InfoNCE (Eq. 13)
    L = L_r + θ1 (L_s^u + L_s^v) + θ2 ||Θ||²                          (Eq. 14)

Θ is every parameter of the recommender (as in the authors' code); ``l2_penalty`` is the
LightGCN alternative, the batch's ego embeddings only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Mean of -log σ(y_ui - y_uj)."""
    return F.softplus(neg_scores - pos_scores).mean()


def parameter_norm(parameters) -> torch.Tensor:
    """||Θ||² = Σ ||W||² over every parameter tensor (Eq. 14 as written)."""
    return sum(w.pow(2).sum() for w in parameters)


def l2_penalty(*embeddings: torch.Tensor) -> torch.Tensor:
    """½ Σ ||e||² over the batch's ego embeddings, divided by the batch size (LightGCN style)."""
    batch = embeddings[0].shape[0]
    return sum(e.pow(2).sum() for e in embeddings) / (2 * batch)


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, candidates: torch.Tensor,
             tau: float) -> torch.Tensor:
    """Eq. 13 for a batch: anchor[k] should match positive[k] against every row of candidates.

    ``positive`` rows must be among ``candidates`` (the other view of all nodes of the type);
    similarity is cosine, divided by the temperature τ.
    """
    a = F.normalize(anchor, dim=1) / tau
    pos = (a * F.normalize(positive, dim=1)).sum(dim=1)
    logits = a @ F.normalize(candidates, dim=1).T
    return (torch.logsumexp(logits, dim=1) - pos).mean()
