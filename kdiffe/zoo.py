"""The model registry: each recommender by name (:data:`kdiffe.catalog.MODELS`), built from a
Config and a Dataset. A model's module is imported when it is first asked for.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

from .catalog import MODELS, published_defaults
from .config import ConfigError

__all__ = ["MODELS", "build_model", "model_class", "model_defaults"]


def model_class(name: str) -> type:
    """The Recommender subclass registered as ``name``."""
    if name not in MODELS:
        raise ConfigError(f"model={name!r}: unknown model; choose from {', '.join(MODELS)}")
    module, _, attribute = MODELS[name].code.partition(":")
    return getattr(importlib.import_module(module), attribute)


def model_defaults(name: str) -> Mapping[str, Any]:
    """The Config values a model's paper publishes where they differ from Config's own defaults."""
    model_class(name)  # an unknown name is refused, not answered with nothing
    return published_defaults(name)


def build_model(config: Any, dataset: Any, device: Any, log: Callable[[str], None] = print) -> Any:
    """The recommender ``config.model`` names, built on ``dataset`` and moved to ``device``."""
    return model_class(config.model).build(config, dataset, device, log)
