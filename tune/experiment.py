"""Run a set of trials as one Ray Tune experiment and keep its tidy results.

Every experiment lives in ``<storage>/<name>/``: Ray's own files, ``results.csv`` (the tidy
schema of :mod:`kdiffe.results`, appended as results arrive so a killed run keeps every finished
evaluation) and ``best.json``. ``--resume`` continues with ``Tuner.restore``.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from kdiffe.config import ConfigError, from_dict
from kdiffe.data import DatasetError, load_dataset
from kdiffe.knowledge import default_concepts
from kdiffe.results import BEST_FILE, COLUMNS, RESULTS_FILE, result_row

from .trainable import kdiffe_trainable, resolve_trial_config


@dataclass
class Experiment:
    """What to run: a name, where, the parameter space and how to schedule it."""

    name: str
    storage: Path
    kind: str
    param_space: dict[str, Any]
    metric: str = "val_recall@20"
    num_samples: int = 1
    search: str = "grid"  # grid | optuna | random
    scheduler: str = "fifo"  # fifo | asha
    max_t: int = 50
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    address: str | None = None
    resume: bool = False
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.storage / self.name


def fail(message: str) -> None:
    """A user mistake: one line on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def validate_configs(candidates: Iterable[Mapping[str, Any]]) -> None:
    """Reject a configuration that can never be valid before any trial starts."""
    datasets: dict[tuple[str, Any], Any] = {}
    for values in candidates:
        config, _ = resolve_trial_config(values)
        key = (config.dataset, config.data_dir)
        if key not in datasets:
            datasets[key] = load_dataset(config.dataset, config.data_dir, seed=config.seed,
                                         synthetic=dict(n_users=config.syn_users, n_items=config.syn_items,
                                                        n_clusters=config.syn_clusters,
                                                        interactions=config.syn_interactions))
        ds = datasets[key]
        concepts = min(config.concepts or default_concepts(ds.n_items), ds.n_items)
        if config.use_kg and ds.features and config.q > concepts:
            raise ConfigError(f"q={config.q}: larger than the {concepts} concept entities per relation "
                              f"on {config.dataset}")
        if config.max_users > ds.n_users:
            raise ConfigError(f"max_users={config.max_users}: {config.dataset} has only {ds.n_users} users")


def results_callback(experiment: str, kind: str, path: Path):
    """A Ray callback writing one kdiffe.results row per reported evaluation and per error."""
    from ray.tune import Callback

    class TidyResults(Callback):
        def _append(self, row: dict[str, Any]) -> None:
            new = not path.exists()
            with open(path, "a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
                if new:
                    writer.writeheader()
                writer.writerow(row)

        def _row(self, trial: Any, metrics: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
            config, sweep = resolve_trial_config(trial.config)
            return result_row(experiment, trial.trial_id, config.to_dict(), metrics, kind=kind, sweep=sweep,
                              n_users=metrics.get("n_users"), n_items=metrics.get("n_items"), **extra)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "epoch" in result:
                self._append(self._row(trial, result, wall_time=result.get("time_total_s")))

        def on_trial_error(self, iteration, trials, trial, **info):
            self._append(self._row(trial, {}, status="error", error=_error_text(trial)))

    return TidyResults()


def _error_text(trial: Any) -> str:
    """The last line of a failed trial's traceback (Ray's error object, else its error file)."""
    text = ""
    try:
        error = trial.get_error()
        text = str(error) if error else ""
    except Exception:  # the accessor differs between Ray versions
        pass
    path = getattr(trial, "error_file", None)
    if not text and path and Path(path).exists():
        text = Path(path).read_text()
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "trial failed"


def tidy_frame(path: Path):
    """The results CSV without the duplicates a resume can leave.

    Evaluations keep their last copy per (trial, epoch); an error row is dropped when the same
    trial reported again after it (it was retried by ``--resume`` and went on).
    """
    import pandas as pd

    frame = pd.read_csv(path).reset_index(drop=True)
    position = pd.Series(range(len(frame)), index=frame.index)
    is_ok = frame["status"] == "ok"
    last_ok = position[is_ok].groupby(frame.loc[is_ok, "trial_id"]).max()
    last_ok_of_trial = frame["trial_id"].map(last_ok).astype(float).fillna(-1.0)
    errors = frame[~is_ok & (position.astype(float) > last_ok_of_trial)]
    errors = errors.drop_duplicates(["trial_id"], keep="last")
    ok = frame[is_ok].drop_duplicates(["trial_id", "epoch"], keep="last")
    return pd.concat([ok, errors], ignore_index=True)


def best_trial(frame, metric: str) -> dict[str, Any] | None:
    """The evaluation with the highest validation ``metric``; test metrics are read there."""
    ok = frame[(frame["status"] == "ok") & frame[metric].notna()]
    if ok.empty:
        return None
    row = ok.loc[ok[metric].idxmax()]
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.to_dict().items()}


def start_ray(address: str | None) -> None:
    import ray

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)


def run(exp: Experiment) -> Any:
    """Run (or resume) the experiment; returns the tidy DataFrame of its results."""
    from ray import tune

    exp.storage.mkdir(parents=True, exist_ok=True)
    csv_path = exp.path / RESULTS_FILE
    if exp.path.exists() and not exp.resume and any(exp.path.iterdir()):
        fail(f"{exp.path} exists; continue it with --resume or choose another --name")
    start_ray(exp.address)
    trainable = tune.with_resources(kdiffe_trainable, {"cpu": exp.cpus_per_trial, "gpu": exp.gpus_per_trial})
    callbacks = [results_callback(exp.name, exp.kind, csv_path)]
    run_config = tune.RunConfig(
        name=exp.name, storage_path=str(exp.storage), callbacks=callbacks, verbose=1,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=0),
    )
    if exp.resume:
        if not tune.Tuner.can_restore(str(exp.path)):
            fail(f"--resume: no experiment to resume at {exp.path}")
        tuner = tune.Tuner.restore(str(exp.path), trainable, resume_errored=True, param_space=exp.param_space)
        # Tuner.restore takes no RunConfig: re-attach our callback so resumed trials keep writing rows.
        local = getattr(tuner, "_local_tuner", None)
        if local is not None and hasattr(local, "_run_config"):
            local._run_config.callbacks = callbacks
    else:
        tuner = tune.Tuner(trainable, param_space=exp.param_space,
                           tune_config=_tune_config(exp), run_config=run_config)
    exp.path.mkdir(parents=True, exist_ok=True)
    tuner.fit()
    if not csv_path.exists():
        fail(f"{exp.name}: no trial reported a result; see Ray's logs in {exp.path}")
    frame = tidy_frame(csv_path)
    frame.to_csv(csv_path, index=False)
    best = best_trial(frame, exp.metric)
    (exp.path / BEST_FILE).write_text(json.dumps({"metric": exp.metric, "best": best}, indent=2, default=str))
    return frame


def _tune_config(exp: Experiment):
    from ray import tune

    search_alg = scheduler = None
    if exp.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch
        import optuna

        search_alg = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=exp.seed))
    if exp.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max(exp.max_t, 1),
                                  grace_period=1, reduction_factor=2)
    return tune.TuneConfig(metric=exp.metric, mode="max", num_samples=exp.num_samples, search_alg=search_alg,
                           scheduler=scheduler, max_concurrent_trials=exp.max_concurrent)


def summary_line(frame, metric: str) -> str:
    best = best_trial(frame, metric)
    if best is None:
        return "no successful trial"
    moved = {k: best[k] for k in ("variant", "M", "R", "xi", "t", "tau", "theta1", "q", "seed")}
    return (f"best (by {metric}): trial {best['trial_id']} epoch {int(best['epoch'])} {moved}\n"
            f"  validation recall@20 {best['val_recall@20']:.4f} ndcg@20 {best['val_ndcg@20']:.4f} | "
            f"test recall@20 {best['test_recall@20']:.4f} ndcg@20 {best['test_ndcg@20']:.4f} "
            f"(test at the best validation evaluation)")


def base_values(args: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Config values shared by every trial, with paths made absolute (Tune changes directories)."""
    from kdiffe.attention import default_cache_dir
    from kdiffe.data import resolve_data_dir

    values = {"data_dir": str(resolve_data_dir(getattr(args, "data_dir", None))),
              "cache_dir": str(default_cache_dir(overrides.get("cache_dir"))), "device": "auto"}
    if getattr(args, "epochs", None) is not None:
        values["epochs"] = args.epochs
    values.update(overrides)
    from_dict({k: v for k, v in values.items()})  # fail fast on a bad override
    return values


def check_dataset(name: str, data_dir: str) -> None:
    try:
        if name != "synthetic":
            load_dataset(name, data_dir)
    except DatasetError as exc:
        fail(str(exc))
