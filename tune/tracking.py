"""Experiment tracking where researchers track: ``--tracker mlflow|tensorboard|wandb``.

Each tracker is one of Ray Tune's own logger callbacks, run by the driver:

- **mlflow** (``ray.air.integrations.mlflow.MLflowLoggerCallback``): one MLflow experiment per
  experiment of ours, one run per trial. Its parameters are the trial's resolved configuration
  (every ``kdiffe.Config`` field as the trial ran it, plus its ``sweep``), not Ray's raw trial
  config; its metrics are the numbers the trial reports at each evaluation, at step = epoch, with
  ``@`` written ``_at_`` (MLflow refuses ``@`` in names: ``val_recall@20`` is ``val_recall_at_20``).
  ``--tracker-uri`` is the tracking URI, default ``sqlite:///<storage>/mlflow.db`` (MLflow 3 keeps
  its plain-folder store in maintenance mode and refuses it by default).
- **tensorboard** (``ray.tune.logger.TBXLoggerCallback``): event files per trial in
  ``<experiment>/tensorboard/<trial key>/``, scalars ``ray/tune/<metric>`` at step = epoch (the
  metrics named as for MLflow), read by ``tensorboard --logdir <experiment>/tensorboard``.
- **wandb** (``ray.air.integrations.wandb.WandbLoggerCallback``): the project is ``--tracker-uri``
  (default the experiment's name); credentials come from wandb's own environment
  (``WANDB_API_KEY``, ``WANDB_MODE=offline``).

A trial that a ``--resume`` continues reports its earlier evaluations again, so it logs its whole
curve in a new run of the tracker.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping

from kdiffe.errors import UserError

from .keys import config_key

#: Tracker -> the package it needs (installed by ``pip install -e ".[track]"``, or on its own).
TRACKERS = {"mlflow": "mlflow", "tensorboard": "tensorboardX", "wandb": "wandb"}
TENSORBOARD_FOLDER = "tensorboard"
#: Never logged as metrics, beside what Ray adds to every result (ray.tune.result.AUTO_RESULT_KEYS).
NOT_METRICS = frozenset({"trial_id", "experiment_id", "experiment_tag", "done", "finished"})


def check_tracker(name: str | None) -> None:
    """Refuse a tracker whose package is missing, before any trial starts."""
    if name is not None and importlib.util.find_spec(TRACKERS[name]) is None:
        raise UserError(f"--tracker {name}: the {TRACKERS[name]} package is not installed "
                        f"(pip install {TRACKERS[name]}, or pip install -e \".[track]\")")


def default_mlflow_uri(storage: Path) -> str:
    return f"sqlite:///{Path(storage).resolve() / 'mlflow.db'}"


def trial_params(trial_config: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a tracker records for a trial: its resolved configuration and its sweep."""
    from .trainable import resolve_trial_config

    config, sweep = resolve_trial_config(trial_config)
    values = {k: (",".join(map(str, v)) if isinstance(v, tuple) else v) for k, v in config.to_dict().items()}
    return {**values, "sweep": sweep}


def trial_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The numbers a trial reported at one evaluation, with names every tracker accepts."""
    from ray.tune.result import AUTO_RESULT_KEYS

    skip = NOT_METRICS.union(AUTO_RESULT_KEYS)
    return {key.replace("@", "_at_"): float(value) for key, value in result.items()
            if key not in skip and isinstance(value, (int, float)) and not isinstance(value, bool)}


def tracker_callbacks(name: str | None, uri: str | None, experiment: str, storage: Path, kind: str) -> list[Any]:
    """Ray Tune logger callbacks for ``--tracker name`` (an empty list without one)."""
    if name is None:
        return []
    if name == "tensorboard":
        from ray.tune.logger import TBXLoggerCallback

        class TensorBoard(TBXLoggerCallback):
            """Ray's TBX logger, writing into <experiment>/tensorboard/<trial key> (Ray's own trial
            folders are staged elsewhere and copied late)."""

            def log_trial_start(self, trial: Any) -> None:
                if trial in self._trial_writer:
                    self._trial_writer[trial].close()
                folder = storage / experiment / TENSORBOARD_FOLDER / (config_key(trial.config) or trial.trial_id)
                self._trial_writer[trial] = self._summary_writer_cls(str(folder), flush_secs=30)
                self._trial_result[trial] = {}

            def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
                metrics = trial_metrics(result)
                super().log_trial_result(iteration, trial, {**metrics, "training_iteration": int(metrics.get("epoch", iteration))})

        return [TensorBoard()]
    if name == "wandb":
        from ray.air.integrations.wandb import WandbLoggerCallback

        return [WandbLoggerCallback(project=uri or experiment, group=experiment, tags=[kind])]
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class MLflow(MLflowLoggerCallback):
        def log_trial_start(self, trial: Any) -> None:
            if trial not in self._trial_runs:
                key = config_key(trial.config) or trial.trial_id  # the folder trials/<key> of the experiment
                run = self.mlflow_util.start_run(tags={**self.tags, "trial_name": str(trial), "trial": key},
                                                 run_name=key)
                self._trial_runs[trial] = run.info.run_id
            self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=trial_params(trial.config))

        def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
            metrics = trial_metrics(result)
            step = int(metrics.get("epoch", iteration))
            self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=metrics, step=step)

        def log_trial_end(self, trial: Any, failed: bool = False) -> None:
            if trial in self._trial_runs:
                self.mlflow_util.end_run(run_id=self._trial_runs[trial], status="FAILED" if failed else "FINISHED")

    return [MLflow(tracking_uri=uri or default_mlflow_uri(storage), experiment_name=experiment,
                   tags={"kind": kind}, save_artifact=False)]
