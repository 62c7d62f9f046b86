"""KDiffE: knowledge-aware diffusion-enhanced multimedia recommendation, in plain PyTorch.

Modules follow the paper: :mod:`~kdiffe.attention` (S, Eq. 5), :mod:`~kdiffe.propagation`
(Eq. 3-7), :mod:`~kdiffe.knowledge` (Eq. 1-2), :mod:`~kdiffe.diffusion` (Eq. 8-12),
:mod:`~kdiffe.losses` (Eq. 13-15), :mod:`~kdiffe.metrics`, :mod:`~kdiffe.data`,
:mod:`~kdiffe.view` (the diffusion view, Eq. 8-12), :mod:`~kdiffe.paper` (the paper's numbers),
:mod:`~kdiffe.trainer`. ``kdiffe.train(config, report=callback)`` runs one trial.
"""

from .threads import passive_wait

passive_wait()  # before torch loads: OpenMP threads sleep rather than spin on a shared machine

from .config import VARIANTS, Config, ConfigError, from_dict, parse_overrides  # noqa: E402
from .data import Dataset, DatasetError, load_dataset, make_synthetic  # noqa: E402
from .trainer import Trainer, train  # noqa: E402

__all__ = ["Config", "ConfigError", "Dataset", "DatasetError", "Trainer", "VARIANTS", "from_dict",
           "load_dataset", "make_synthetic", "parse_overrides", "train"]
__version__ = "0.1.0"
