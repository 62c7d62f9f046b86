"""The model registry: each recommender by name, built from a Config and a Dataset.

A model is one module holding one :class:`kdiffe.recommender.Recommender` subclass; registering
it is one line of :data:`MODELS` (name -> "module:Class"). Modules are imported when a model is
first asked for, so this registry (and :mod:`kdiffe.config`, which checks names against it)
loads no model code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    import torch

    from .data import Dataset
    from .recommender import Recommender

#: name -> "module:Class" of every registered model.
MODELS: dict[str, str] = {
    "kdiffe": "kdiffe.model:KDiffE",
    "lightgcn": "kdiffe.lightgcn:LightGCN",
    "sgl": "kdiffe.sgl:SGL",
}


def model_class(name: str) -> type["Recommender"]:
    from .config import ConfigError

    if name not in MODELS:
        raise ConfigError(f"model={name!r}: unknown model; choose from {', '.join(MODELS)}")
    module, _, attribute = MODELS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def model_defaults(name: str) -> Mapping[str, Any]:
    """The Config values a model's paper publishes where they differ from Config's own defaults."""
    return model_class(name).defaults


def build_model(config: Any, dataset: "Dataset", device: "torch.device",
                log: Callable[[str], None] = print) -> "Recommender":
    """The recommender ``config.model`` names, built on ``dataset`` and moved to ``device``."""
    return model_class(config.model).build(config, dataset, device, log)
