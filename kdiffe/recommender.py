"""The protocol every recommender of the bench follows, so the trainer is only a loop.

A model (one module, registered in :mod:`kdiffe.catalog`) is an ``nn.Module`` that

- builds itself from a Config and a Dataset (:meth:`Recommender.build`), including whatever
  graph operators, knowledge graphs or auxiliary views it needs;
- owns its objective: :meth:`Recommender.loss` of one batch of (user, positive, negative)
  triples (RecBole's ``calculate_loss``);
- owns its scores: :meth:`Recommender.embeddings` and :meth:`Recommender.scorer` for the
  full-ranking evaluator (RecBole's ``full_sort_predict``, PyG's ``get_embedding``);
- has an optional per-epoch hook (:meth:`Recommender.epoch_hook`), which the trainer calls
  before the epoch's batches without knowing what it does (KDiffE rebuilds its diffusion view
  there, SGL resamples its dropped graphs, NCL runs its k-means step);
- keeps any state outside its parameters in :meth:`Recommender.extra_state` (plain values and
  tensors, for ``torch.load(weights_only=True)`` checkpoints);
- says what actually ran (:meth:`Recommender.recorded`), which every result row carries.

Its published hyperparameters that differ from Config's defaults, and its default search space,
are its entry in :mod:`kdiffe.catalog`.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn

from .catalog import MODELS
from .errors import UserError

Scorer = Callable[[torch.Tensor], torch.Tensor]


class CheckpointError(UserError):
    """A checkpoint that cannot be read safely, or that belongs to another run."""


class Recommender(nn.Module):
    """Base of every model; see the module docstring for the protocol."""

    name: ClassVar[str] = ""

    @classmethod
    def check(cls, config: Any, dataset: Any) -> None:
        """Raise ConfigError when ``config`` cannot run on ``dataset`` (cheap: nothing is built);
        the runners call it for every planned configuration before any trial starts."""
        entry = MODELS.get(cls.name)
        if entry is not None and entry.needs_features:
            feature_tensors(cls.name, dataset)

    @classmethod
    def build(cls, config: Any, dataset: Any, device: torch.device,
              log: Callable[[str], None] = print) -> "Recommender":
        raise NotImplementedError

    # training -----------------------------------------------------------
    @property
    def contrastive(self) -> bool:
        """Whether :meth:`loss` needs the batch's distinct users and items as anchors."""
        return False

    @property
    def negative_samples(self) -> int:
        """Uniform users and items each batch should carry as extra InfoNCE candidates (0: none)."""
        return 0

    def epoch_hook(self, epoch: int) -> dict[str, torch.Tensor]:
        """Work of the model before the batches of epoch ``epoch`` (0-based); device scalars to log."""
        return {}

    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss of one batch, detached parts for logging; ``bpr_loss`` always among them)."""
        raise NotImplementedError

    # scores -------------------------------------------------------------
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (users, items) embeddings the model ranks with."""
        raise NotImplementedError

    @torch.no_grad()
    def scorer(self) -> Scorer:
        """users -> (len(users), items) scores, embeddings computed once (dot product, Eq. 7)."""
        z_u, z_i = self.embeddings()
        return lambda users: z_u[users] @ z_i.T

    @torch.no_grad()
    def recommend(self, users: torch.Tensor, k: int, exclude: sp.csr_matrix | None = None) -> torch.Tensor:
        """Top-k item ids per user; items in ``exclude`` (e.g. training items) never recommended."""
        scores = self.scorer()(users)
        if exclude is not None:
            rows = sp.csr_matrix(exclude)[users.cpu().numpy()].tocoo()
            scores[torch.as_tensor(rows.row, device=scores.device),
                   torch.as_tensor(rows.col, device=scores.device)] = -torch.inf
        return torch.topk(scores, k, dim=1).indices

    # what ran, checkpoints ----------------------------------------------
    def recorded(self) -> dict[str, Any]:
        """What this run actually used, for every result row: ``kg_entities`` (0: no KG) and
        ``modalities`` (the item-feature modalities it read, comma-separated, "" for none)."""
        return {"kg_entities": 0, "modalities": ""}

    #: a model's own random stream (:func:`own_generator`), kept in its checkpoints; None: none
    generator: torch.Generator | None = None

    def extra_state(self) -> dict[str, Any] | None:
        """State outside the parameters (an auxiliary view and its optimiser, the state of the
        model's own generator), or None."""
        return None if self.generator is None else {"generator": self.generator.get_state()}

    def load_extra_state(self, state: dict[str, Any] | None) -> None:
        if self.generator is None:
            if state is not None:
                raise ValueError(f"{self.name}: a checkpoint with extra state, but this model keeps none")
            return
        if not isinstance(state, dict) or "generator" not in state:
            raise CheckpointError(f"model={self.name}: the checkpoint holds no state of the model's random stream; "
                                  "was it written by another model?")
        try:
            self.generator.set_state(state["generator"])
        except (RuntimeError, TypeError) as exc:
            raise CheckpointError(f"model={self.name}: the checkpoint's random-stream state is not one: "
                                  f"{' '.join(str(exc).split())[:200]}") from None


def feature_tensors(model: str, dataset: Any) -> dict[str, torch.Tensor]:
    """The dataset's item features per modality as float32 tensors, for a multimodal ``model``;
    a ConfigError naming the model and the dataset when it has none."""
    from .config import ConfigError  # config -> catalog; catalog imports no model module

    if not dataset.features:
        raise ConfigError(f"model={model}: {dataset.name} has no item features (image, audio or text "
                          f"*_feat.npy); it is a multimodal model")
    return {m: torch.from_numpy(np.array(x, dtype=np.float32)) for m, x in dataset.features.items()}


def own_generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for a model's own draws (k-means starts, dropout masks), seeded from
    (seed, stream): apart from the trainer's stream and the initialisation's, the same on any device."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stream]).generate_state(1)[0]))


class GraphEmbeddings(Recommender):
    """The part KDiffE and LightGCN-style models share: user and item embeddings (Xavier-uniform,
    users first) over a fixed, symmetric (users + items) propagation ``operator``, which moves
    with the model although it is not a parameter."""

    def __init__(self, n_users: int, n_items: int, operator: torch.Tensor, dim: int, layers: int) -> None:
        super().__init__()
        if operator.shape != (n_users + n_items, n_users + n_items):
            raise ValueError(f"operator shape {tuple(operator.shape)} != ({n_users + n_items}, {n_users + n_items})")
        self.n_users, self.n_items, self.layers = n_users, n_items, layers
        self.operator = operator
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.xavier_uniform_(self.user.weight)
        nn.init.xavier_uniform_(self.item.weight)

    def to(self, *args: Any, **kwargs: Any) -> "GraphEmbeddings":
        super().to(*args, **kwargs)
        self.operator = self.operator.to(self.user.weight.device)
        return self
