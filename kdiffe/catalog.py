"""The registered models by name, as plain data: where each one's code lives, the hyperparameters
its paper publishes where they differ from Config's defaults, and the parameters a search of it
moves by default. :mod:`kdiffe.config` reads the names and defaults, :mod:`kdiffe.zoo` builds
the models, and this module imports nothing, so neither depends on the other.

Registering a model is one entry here; its code is one module holding one
:class:`kdiffe.recommender.Recommender` subclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Entry:
    code: str  #: "module:Class"
    defaults: Mapping[str, Any] = field(default_factory=dict)  #: published values that differ from Config's
    search: tuple[str, ...] = ()  #: parameters a search moves by default (ranges: kdiffe.paper.JOINT_RANGES)


MODELS: dict[str, Entry] = {
    # KDiffE: Config's defaults are its paper's; its search space is tune.spaces' (the seven of the paper)
    "kdiffe": Entry("kdiffe.model:KDiffE"),
    # LightGCN (He et al. 2020), Section 4.1: 3 layers, λ = 1e-4, the mean of the layers, L2 on the batch
    "lightgcn": Entry("kdiffe.lightgcn:LightGCN", {"layers": 3, "theta2": 1e-4, "l2": "batch", "layer_combine": "mean"},
                      ("theta2", "lr")),
    # SGL-ED (Wu et al. 2021), the authors' Yelp2018 settings: LightGCN's plus ρ = 0.1, τ = 0.2, λ1 = 0.1
    "sgl": Entry("kdiffe.sgl:SGL", {"layers": 3, "theta2": 1e-4, "l2": "batch", "layer_combine": "mean",
                                    "edge_drop": 0.1, "tau": 0.2, "theta1": 0.1},
                 ("theta1", "tau", "theta2", "lr")),
}


def published_defaults(name: str) -> Mapping[str, Any]:
    """The Config values model ``name``'s paper publishes (empty for an unknown name)."""
    entry = MODELS.get(name)
    return entry.defaults if entry is not None else {}
