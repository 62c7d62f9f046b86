"""Run a set of trials as one Ray Tune experiment and keep its tidy results.

Every experiment lives in ``<storage>/<name>/``: Ray's own files, ``results.csv`` (the tidy
schema of :mod:`kdiffe.results`, appended by a Tune callback as results arrive, so a killed run
keeps every evaluation it saw) and ``best.json``. ``--resume`` continues with ``Tuner.restore``
(finished trials kept, errored ones retried); the CSV is de-duplicated after every run, so a
resumed experiment ends with one row per trial x evaluation.

Shared by ``tune/search.py``, ``tune/scalability.py`` and ``ablations/run.py``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NoReturn

from kdiffe.config import ConfigError, from_dict
from kdiffe.data import available_datasets, load_dataset, resolve_data_dir
from kdiffe.knowledge import default_concepts
from kdiffe.results import BEST_FILE, COLUMNS, RESULTS_FILE, result_row
from kdiffe.trainer import dataset_for

from .trainable import kdiffe_trainable, resolve_trial_config

# Keep Ray quick and quiet on a laptop: no uv runtime env, no usage stats, no snapshot warnings.
RAY_ENV = {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_USAGE_STATS_ENABLED": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


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
    max_t: int = 50  # evaluations a trial reports at most (ASHA's max_t)
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


# ------------------------------------------------------------------------------ user errors
def fail(message: str) -> NoReturn:
    """A user mistake: one line ``error: ...`` on stderr, exit code 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``, exit 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        fail(message)


def non_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse type: ``kind(text)`` that must be >= 0."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by search.py, scalability.py and ablations/run.py."""
    parser.add_argument("--data-dir", default=None, help="folder of datasets (default $KDIFFE_DATA_DIR, else ./data)")
    parser.add_argument("--epochs", type=non_negative(int), default=None, help="epochs per trial")
    parser.add_argument("--cpus-per-trial", type=non_negative(float), default=1.0)
    parser.add_argument("--gpus-per-trial", type=non_negative(float), default=0.0,
                        help="fraction of a GPU per trial, e.g. 0.25 packs four trials on one GPU")
    parser.add_argument("--max-concurrent", type=non_negative(int), default=None, help="trials running at once")
    parser.add_argument("--address", default=None,
                        help="join an existing Ray cluster, e.g. auto or ray://host:10001 (default: start a local Ray)")
    parser.add_argument("--storage", default="results", help="folder holding experiments (default ./results)")
    parser.add_argument("--name", default=None, help="experiment name (folder under --storage)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted experiment --name")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="fixed kdiffe.Config override for every trial (repeatable)")


# ------------------------------------------------------------------------------ validation
def base_values(args: argparse.Namespace, overrides: Mapping[str, Any],
                defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Config values shared by every trial: ``defaults``, then ``--set`` overrides, then ``--epochs``;
    data_dir and cache_dir made absolute (Tune changes each trial's working directory)."""
    from kdiffe.attention import default_cache_dir

    values: dict[str, Any] = {"device": "auto", **(defaults or {}), **overrides}
    if getattr(args, "epochs", None) is not None:
        values["epochs"] = args.epochs
    values["data_dir"] = str(resolve_data_dir(getattr(args, "data_dir", None) or values.get("data_dir")))
    values["cache_dir"] = str(default_cache_dir(values.get("cache_dir")))
    from_dict(values)  # fail fast on a bad override
    return values


def check_dataset(name: str, data_dir: str) -> None:
    """Refuse an unknown dataset before Ray starts (the full load happens in validate_configs)."""
    if name != "synthetic" and name not in available_datasets(data_dir):
        load_dataset(name, data_dir)  # raises DatasetError with the folder and the datasets available


def validate_configs(candidates: Iterable[Mapping[str, Any]]) -> None:
    """Reject a configuration that can never be valid before any trial starts.

    Each candidate (flat Config fields, optionally a grid ``point``) goes through
    ``kdiffe.config.from_dict``; its dataset is loaded once per (dataset, size) to check q
    against the concept entities per relation and max_users against the users.
    """
    datasets: dict[tuple[Any, ...], Any] = {}
    for values in candidates:
        config, _ = resolve_trial_config(values)
        sizes = (config.syn_users, config.syn_items, config.syn_clusters, config.syn_interactions)
        key = (config.dataset, config.data_dir, config.val_fraction, sizes if config.dataset == "synthetic" else ())
        if key not in datasets:
            datasets[key] = dataset_for(config.replace(max_users=0))
        ds = datasets[key]
        concepts = min(config.concepts or default_concepts(ds.n_items), ds.n_items)
        if config.use_kg and config.kg == "features" and ds.features and config.q > concepts:
            raise ConfigError(f"q={config.q}: larger than the {concepts} concept entities per relation "
                              f"on {config.dataset}")
        if config.max_users > ds.n_users:
            raise ConfigError(f"max_users={config.max_users}: {config.dataset} has only {ds.n_users} users")


def check_resources(exp: Experiment) -> None:
    """On a local Ray, refuse trials that ask for more CPUs or GPUs than this machine has."""
    if exp.address:
        return  # a cluster may autoscale: let Ray wait for the resources
    import ray

    have = ray.cluster_resources()
    for what, want in (("CPU", exp.cpus_per_trial), ("GPU", exp.gpus_per_trial)):
        if want > have.get(what, 0.0):
            fail(f"--{what.lower()}s-per-trial {want:g}: this machine has {have.get(what, 0.0):g} {what}s "
                 f"(use --address to run on a cluster)")


# ------------------------------------------------------------------------------ tidy results
def results_callback(experiment: str, kind: str, path: Path) -> Any:
    """A Ray Tune callback appending one kdiffe.results row per reported evaluation and per error."""
    from ray.tune import Callback

    class TidyResults(Callback):
        """Also notes whether the run ended with trials still open (interrupted: Ctrl-C, SIGUSR1)."""

        def __init__(self) -> None:
            self.open: set[str] = set()
            self.interrupted = False

        def _append(self, row: dict[str, Any]) -> None:
            new = not path.exists() or path.stat().st_size == 0
            with open(path, "a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
                if new:
                    writer.writeheader()
                writer.writerow(row)

        def _row(self, trial: Any, metrics: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
            config, sweep = resolve_trial_config(trial.config)
            return result_row(experiment, trial.trial_id, config.to_dict(), metrics, kind=kind, sweep=sweep,
                              n_users=metrics.get("n_users"), n_items=metrics.get("n_items"), **extra)

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if "epoch" in result:
                self._append(self._row(trial, result, wall_time=result.get("time_total_s")))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.open.discard(trial.trial_id)
            self._append(self._row(trial, {}, status="error", error=_error_text(trial)))

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.open.add(trial.trial_id)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.open.discard(trial.trial_id)

        def on_experiment_end(self, trials: list, **info: Any) -> None:
            self.interrupted = bool(self.open) or any(t.status == "PENDING" for t in trials)

    return TidyResults()


def _error_text(trial: Any) -> str:
    """The last line of a failed trial's error (the exception and its message)."""
    text = ""
    local = getattr(trial, "error_file", None)  # written on the driver before callbacks run
    if local and Path(local).exists():
        text = Path(local).read_text(errors="replace")
    else:
        try:
            text = str(trial.get_error() or "")  # the synced copy in storage
        except Exception:  # noqa: BLE001 - the error text is a courtesy, never a crash
            text = ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "trial failed (see Ray's error.txt of the trial)"


def tidy_frame(path: Path) -> Any:
    """The results CSV without the duplicates a resume can leave.

    Evaluations keep their last copy per (trial, epoch); a trial's error row is dropped when the
    trial reported again after it (``--resume`` retried it and it went on); a line torn by a kill
    is skipped. A CSV written before a column existed gets that column, empty.
    """
    import pandas as pd

    frame = pd.read_csv(path, on_bad_lines="skip", engine="python")
    frame = frame[frame["trial_id"].notna() & frame["status"].isin(["ok", "error"])].reset_index(drop=True)
    position = pd.Series(range(len(frame)), index=frame.index, dtype=float)
    is_ok = frame["status"] == "ok"
    last_ok = position[is_ok].groupby(frame.loc[is_ok, "trial_id"]).max()
    last_ok_of_trial = frame["trial_id"].map(last_ok).astype(float).fillna(-1.0)
    errors = frame[~is_ok & (position > last_ok_of_trial)].drop_duplicates(["trial_id"], keep="last")
    ok = frame[is_ok].drop_duplicates(["trial_id", "epoch"], keep="last")
    return pd.concat([ok, errors], ignore_index=True).reindex(columns=list(COLUMNS))


def best_evaluation(frame: Any, metric: str) -> dict[str, Any] | None:
    """The evaluation with the highest validation ``metric``; its test metrics are the ones to quote."""
    ok = frame[(frame["status"] == "ok") & frame[metric].notna()]
    if ok.empty:
        return None
    row = ok.loc[ok[metric].idxmax()]
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.to_dict().items()}


def write_best(frame: Any, exp: Experiment) -> dict[str, Any] | None:
    """best.json: the metric, the best evaluation (config, validation and test metrics), trial counts."""
    best = best_evaluation(frame, exp.metric)
    trials = frame.drop_duplicates("trial_id", keep="last")
    payload = {"experiment": exp.name, "kind": exp.kind, "metric": exp.metric,
               "selection": "best validation evaluation; test metrics read at that evaluation",
               "trials": int(len(trials)), "failed_trials": int((trials["status"] == "error").sum()),
               "best": best}
    (exp.path / BEST_FILE).write_text(json.dumps(payload, indent=2, default=str))
    return best


# ------------------------------------------------------------------------------ running
def _set_ray_env() -> None:
    """RAY_ENV defaults, set before Ray is imported (a user's own values win)."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)


def start_ray(address: str | None) -> None:
    """Join ``address``, or start a local Ray without dashboard; no-op when Ray is already up."""
    _set_ray_env()
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)


def run(exp: Experiment) -> Any:
    """Run (or resume) the experiment; returns the tidy DataFrame of its results."""
    _set_ray_env()
    from ray import tune

    csv_path = exp.path / RESULTS_FILE
    if exp.resume and not exp.path.is_dir():
        fail(f"--resume: no experiment at {exp.path}")
    if not exp.resume and exp.path.exists() and any(exp.path.iterdir()):
        fail(f"{exp.path} exists; continue it with --resume or choose another --name")
    if exp.resume and not tune.Tuner.can_restore(str(exp.path)):
        fail(f"--resume: {exp.path} holds no Ray Tune state to resume")
    start_ray(exp.address)
    check_resources(exp)
    exp.storage.mkdir(parents=True, exist_ok=True)
    if exp.resume and csv_path.exists():
        tidy_frame(csv_path).to_csv(csv_path, index=False)  # drop a line torn by the kill
    trainable = tune.with_resources(kdiffe_trainable, {"cpu": exp.cpus_per_trial, "gpu": exp.gpus_per_trial})
    callbacks = [results_callback(exp.name, exp.kind, csv_path)]
    if exp.resume:
        tuner = tune.Tuner.restore(str(exp.path), trainable, resume_errored=True, param_space=exp.param_space)
        _attach_callbacks(tuner, callbacks)
    else:
        run_config = tune.RunConfig(
            name=exp.name, storage_path=str(exp.storage), callbacks=callbacks, verbose=1,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=0))
        tuner = tune.Tuner(trainable, param_space=exp.param_space, tune_config=_tune_config(exp),
                           run_config=run_config)
    tuner.fit()
    exp.extra["interrupted"] = bool(getattr(callbacks[0], "interrupted", False))
    if not csv_path.exists():
        fail(f"{exp.name}: no trial reported a result; see Ray's logs in {exp.path}")
    frame = tidy_frame(csv_path)
    frame.to_csv(csv_path, index=False)
    write_best(frame, exp)
    return frame


def trial_dirname(trial: Any) -> str:
    """Short trial folders (Ray's default name lists every config value, paths included)."""
    return f"trial_{trial.trial_id}"


def interrupted_line(exp: Experiment, script: str) -> list[str]:
    """A hint to resume, when the run stopped before every trial ended."""
    if not exp.extra.get("interrupted"):
        return []
    return [f"interrupted: continue with python {script} ... --storage {exp.storage} --name {exp.name} --resume"]


def _attach_callbacks(tuner: Any, callbacks: list) -> None:
    """Tuner.restore takes no RunConfig: put our callback on the restored one so rows keep coming."""
    local = getattr(tuner, "_local_tuner", None)
    run_config = getattr(local, "_run_config", None)
    if run_config is None:
        raise RuntimeError("this Ray version hides the restored RunConfig; cannot re-attach the results callback")
    run_config.callbacks = callbacks


def _tune_config(exp: Experiment) -> Any:
    from ray import tune

    search_alg = scheduler = None
    if exp.search == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=exp.seed))
    if exp.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max(exp.max_t, 1),
                                  grace_period=1, reduction_factor=2)
    return tune.TuneConfig(metric=exp.metric, mode="max", num_samples=exp.num_samples, search_alg=search_alg,
                           scheduler=scheduler, max_concurrent_trials=exp.max_concurrent or None,
                           reuse_actors=True, trial_dirname_creator=trial_dirname)


def evaluations(epochs: int, eval_every: int) -> int:
    """How many reports a trial of ``epochs`` makes (the last epoch is always evaluated)."""
    return max(1, math.ceil(epochs / max(1, eval_every)))


def trial_lines(frame: Any) -> list[str]:
    """Trial counts, and one line per failed trial with its error."""
    trials = frame.drop_duplicates("trial_id", keep="last")
    failed = trials[trials["status"] == "error"]
    return [f"{len(trials)} trials, {len(failed)} failed"] + \
        [f"  failed {row.trial_id}: {row.error}" for row in failed.itertuples()]


def summary_lines(frame: Any, metric: str, moved: Iterable[str] = ()) -> list[str]:
    """The end-of-run report: trial counts, then the best configuration with validation and test metrics."""
    lines = trial_lines(frame)
    best = best_evaluation(frame, metric)
    if best is None:
        return lines + ["no successful trial"]
    keys = dict.fromkeys(["dataset", "variant", "seed", "M", "R", "xi", "t", "tau", "theta1", "q", *moved])
    config = ", ".join(f"{k}={best[k]}" for k in keys if k in best)
    k = metric.split("@")[1]
    return lines + [
        f"best by {metric}: trial {best['trial_id']}, epoch {int(best['epoch'])}: {config}",
        f"  validation recall@{k} {best[f'val_recall@{k}']:.4f}  ndcg@{k} {best[f'val_ndcg@{k}']:.4f}",
        f"  test       recall@{k} {best[f'test_recall@{k}']:.4f}  ndcg@{k} {best[f'test_ndcg@{k}']:.4f}"
        f"  (at the best validation {metric[4:]} evaluation)"]
