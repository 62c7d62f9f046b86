"""The Ray Tune trainable: one trial = one ``kdiffe.Trainer`` run, checkpointed at every report.

Ray stays here; ``kdiffe`` never imports it. A trial's config is a flat dict of Config fields plus
the meta keys of :data:`META_KEYS` (where the trial sits in the experiment).
"""

from __future__ import annotations

import tempfile
from typing import Any, Mapping

from kdiffe.config import Config, from_dict

#: Keys of a trial config that are not Config fields.
META_KEYS = ("point", "sweep", "kind", "experiment")


def resolve_trial_config(trial_config: Mapping[str, Any]) -> tuple[Config, str]:
    """(Config, sweep) of a trial: flat Config fields, overridden by the grid ``point`` if any."""
    values = {k: v for k, v in trial_config.items() if k not in META_KEYS}
    point = dict(trial_config.get("point") or {})
    sweep = str(point.pop("sweep", trial_config.get("sweep", "")))
    values.update(point)
    return from_dict(values), sweep


def kdiffe_trainable(trial_config: dict[str, Any]) -> None:
    """Train one configuration, reporting every evaluation with a checkpoint; resumes from one."""
    import ray
    import torch
    from ray import tune

    from kdiffe.trainer import Trainer

    config, _ = resolve_trial_config(trial_config)
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    trainer = Trainer(config)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load(folder)
    sizes = {"n_users": trainer.dataset.n_users, "n_items": trainer.dataset.n_items}

    def report(metrics: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as folder:
            trainer.save(folder)
            tune.report({**metrics, **sizes}, checkpoint=tune.Checkpoint.from_directory(folder))

    if trainer.finished and trainer.history.evaluations:
        # restored from the checkpoint of its last evaluation (the run was cut off right after it):
        # report that evaluation again so Ray records the trial as finished; rows are de-duplicated
        last = trainer.history.evaluations[-1]
        report({**last, "best_epoch": trainer.history.best["epoch"], "done": True})
        return
    trainer.run(report)
