"""Run a set of trials as one Ray Tune experiment (start or resume) and collect its results.

The experiment folder and its files are :mod:`tune.store`; what is printed while it runs is
:mod:`tune.console`; the command lines of ``tune/search.py``, ``tune/scalability.py`` and
``ablations/run.py`` are :mod:`tune.cli`. Here: Ray's lifecycle (a local Ray, or joining a
cluster, with token authentication when the cluster uses it), resources per trial, the Tuner
(new or restored), and the results assembled from the trial folders after ``fit``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdiffe.results import RESULTS_FILE

from .store import STATUS_FILE, TRIALS, ExperimentError, assemble, error_text, write_best
from .trainable import kdiffe_trainable

#: Keep Ray quick and quiet: no uv runtime env, no usage stats, no snapshot warnings.
RAY_ENV = {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}

#: Evaluations a trial makes before ASHA may stop it. Measured on the TikTok grid (35 trials, 30
#: epochs, docs/results/tiktok-grid-e2e): the Spearman correlation between a trial's validation
#: Recall@20 at epoch k and its best is 0.22-0.53 for k <= 6 and 0.62-0.90 from k = 7 on
#: (benchmarks/early_ranking.py), so ASHA compares trials from epoch 8 on (README, "Early stopping").
DEFAULT_GRACE_PERIOD = 8


@dataclass
class Experiment:
    """What to run: a name, where, the parameter space and how to schedule it."""

    name: str
    storage: Path
    kind: str
    param_space: dict[str, Any]
    total: int  #: trials planned (for the progress line)
    params: tuple[str, ...] = ()  #: parameters that move between trials (shown in the console)
    metric: str = "val_recall@20"
    num_samples: int = 1
    search: str = "grid"  # grid | optuna | random
    scheduler: str = "fifo"  # fifo | asha
    max_t: int = 50  #: evaluations a trial reports at most (ASHA's max_t)
    grace_period: int = DEFAULT_GRACE_PERIOD
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 1
    address: str | None = None
    resume: bool = False
    seed: int = 0
    verbose: bool = False

    @property
    def path(self) -> Path:
        return self.storage / self.name


@dataclass
class Outcome:
    frame: Any  #: the tidy results (kdiffe.results schema)
    interrupted: bool


def set_ray_env(address: str | None = None, verbose: bool = False) -> None:
    """Environment for Ray, set before Ray is imported (Ray reads some of it at import); a user's
    own values win.

    RAY_ENV; the classic reporter unless ``verbose`` (silent at verbose=0, where the new one still
    draws boxes); and when joining a cluster, Ray's token authentication: it must be on in the
    client too (``RAY_AUTH_MODE=token``) for a cluster that uses it, as clusters started by
    ``ray start`` with a token do since Ray 2.52. With no mode chosen and a token at hand, token
    mode is switched on, as ``ray start`` does; a cluster without authentication accepts such a
    client as well.
    """
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    if not verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if address and "RAY_AUTH_MODE" not in os.environ and auth_token_available():
        os.environ["RAY_AUTH_MODE"] = "token"


def auth_token_available() -> bool:
    """A Ray token is at hand: $RAY_AUTH_TOKEN, the file $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return True
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser()
    try:
        return bool(path.read_text().strip())
    except OSError:
        return False


def start_ray(address: str | None, verbose: bool = False) -> None:
    """Join ``address`` or start a local Ray (no dashboard); no-op when Ray is already up.
    :func:`set_ray_env` must have run before anything imported Ray."""
    set_ray_env(address, verbose)
    import ray

    if not verbose:
        logging.getLogger("ray").setLevel(logging.ERROR)
    if ray.is_initialized():
        return
    options = dict(log_to_driver=verbose, configure_logging=verbose)
    try:
        if address:
            ray.init(address=address, **options)
        else:  # "local": never attach to a cluster that `ray start` left on this machine
            ray.init(address="local", include_dashboard=False, **options)
    except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
        raise ExperimentError(f"--address {address}: {str(exc).splitlines()[0]}") from None


def default_resources(cpus: float, cpus_per_trial: float | None, max_concurrent: int | None,
                      gpus_per_trial: float, trials: int = 1) -> tuple[float, int | None]:
    """(CPUs per trial, trials at once). Unless given: the CPUs shared among the planned trials, 1 to
    4 threads each, and as many trials at once as the CPUs hold. Measured on 2 cores (TikTok,
    KDiffE): two 1-thread trials deliver 1.24x the epochs per second of one 2-thread trial after
    the other, since a trial's threads scale sublinearly (docs/benchmarks.md)."""
    if cpus_per_trial is None:
        cpus_per_trial = float(max(1, min(4, int(cpus) // max(trials, 1)))) if not gpus_per_trial else 1.0
    if max_concurrent is None and not gpus_per_trial:
        max_concurrent = max(1, int(cpus // cpus_per_trial))
    return cpus_per_trial, max_concurrent


def check_resources(exp: Experiment) -> str:
    """Refuse trials larger than this machine (on a local Ray); the line describing the choice."""
    import ray

    have = ray.cluster_resources()
    exp.cpus_per_trial, exp.max_concurrent = default_resources(
        have.get("CPU", 1.0), exp.cpus_per_trial, exp.max_concurrent, exp.gpus_per_trial, exp.total)
    if not exp.address:  # a cluster may autoscale: let Ray wait for the resources there
        for what, want in (("CPU", exp.cpus_per_trial), ("GPU", exp.gpus_per_trial)):
            if want > have.get(what, 0.0):
                raise ExperimentError(f"--{what.lower()}s-per-trial {want:g}: this machine has "
                                      f"{have.get(what, 0.0):g} {what}s (use --address to run on a cluster)")
    fits = [math.floor(have.get("CPU", 1.0) / exp.cpus_per_trial)]
    if exp.gpus_per_trial:
        fits.append(math.floor(have.get("GPU", 0.0) / exp.gpus_per_trial))
    at_once = max(1, min(fits + ([exp.max_concurrent] if exp.max_concurrent else [])))
    gpu = f", {exp.gpus_per_trial:g} GPU" if exp.gpus_per_trial else ""
    cpus = f"{exp.cpus_per_trial:g} CPU{'' if exp.cpus_per_trial == 1 else 's'}"
    return (f"{at_once} trial{'s' if at_once > 1 else ''} at a time, {cpus}{gpu} each "
            f"(Ray sees {have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} GPUs)")


def trial_dirname(trial: Any) -> str:
    """Short trial folders (Ray's default name lists every config value, paths included)."""
    return f"trial_{trial.trial_id}"


def _tune_config(exp: Experiment) -> Any:
    from ray import tune

    search_alg = scheduler = None
    if exp.search == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        if not exp.verbose:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        search_alg = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=exp.seed))
    if exp.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max(exp.max_t, 1),
                                  grace_period=max(1, min(exp.grace_period, exp.max_t)), reduction_factor=2)
    return tune.TuneConfig(metric=exp.metric, mode="max", num_samples=exp.num_samples, search_alg=search_alg,
                           scheduler=scheduler, max_concurrent_trials=exp.max_concurrent or None,
                           reuse_actors=True, trial_dirname_creator=trial_dirname)


def run(exp: Experiment) -> Outcome:
    """Run (or resume) the experiment on a started Ray (:func:`start_ray`, :func:`check_resources`);
    returns its tidy results, assembled from the trial folders."""
    from ray import tune

    from .console import Console

    restore = exp.resume and tune.Tuner.can_restore(str(exp.path))
    if exp.resume and not restore:  # stopped before Ray saved anything: its trials cannot come back
        print(f"{exp.name} stopped before Ray Tune saved its state; starting it again", flush=True)
        shutil.rmtree(exp.path / TRIALS, ignore_errors=True)
    trainable = tune.with_resources(kdiffe_trainable, {"cpu": exp.cpus_per_trial, "gpu": exp.gpus_per_trial})
    (exp.path / STATUS_FILE).unlink(missing_ok=True)
    if restore:
        tuner = tune.Tuner.restore(str(exp.path), trainable, resume_errored=True, param_space=exp.param_space)
    else:
        run_config = tune.RunConfig(
            name=exp.name, storage_path=str(exp.storage), verbose=2 if exp.verbose else 0,
            callbacks=[Console(str(exp.path), exp.params, exp.metric, exp.total)],
            failure_config=tune.FailureConfig(max_failures=exp.max_failures))
        tuner = tune.Tuner(trainable, param_space=exp.param_space, tune_config=_tune_config(exp),
                           run_config=run_config)
    grid = tuner.fit()
    lost = {Path(r.path).name.removeprefix("trial_"): error_text(str(r.error)) for r in grid if r.error is not None}
    frame = assemble(exp.path, lost)
    if not len(frame):
        raise ExperimentError(f"{exp.name}: no trial reported a result; see Ray's logs in {exp.path}")
    write_best(frame, exp.path, exp.name, exp.kind, exp.metric)
    try:
        interrupted = bool(json.loads((exp.path / STATUS_FILE).read_text())["interrupted"])
    except (OSError, ValueError, KeyError):
        interrupted = True  # the run ended before Tune could say how
    return Outcome(frame=frame, interrupted=interrupted)


def results_path(exp: Experiment) -> Path:
    return exp.path / RESULTS_FILE
