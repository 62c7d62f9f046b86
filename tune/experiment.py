"""Run a set of trials as one Ray Tune experiment (start or resume) and collect its results.

The experiment folder and its files are :mod:`tune.store`; what is printed while it runs is
:mod:`tune.console`; the command lines of ``tune/search.py``, ``tune/scalability.py`` and
``ablations/run.py`` are :mod:`tune.cli`. Here: Ray's lifecycle (a local Ray, or joining a
cluster, with token authentication when the cluster uses it), resources per trial, the Tuner, and
the results assembled from the trial folders after ``fit``. Every run, a resume included, is a new
Tuner over the work that the trial records say is left (:func:`remaining_work`); Ray's own state
files are written (into ``ray/run-<n>/``) but never read back.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping

from kdiffe.results import RESULTS_FILE, best_evaluation

from .keys import KEY, KeyBook, config_key, keyed
from .store import (RAY_FOLDER, STOPPED, ExperimentError, TrialFiles, TrialRecord, assemble, disk_full, error_text,
                    read_trials, write_best)
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
    param_space: dict[str, Any]  #: what every trial shares (Config values and meta keys); optuna: its distributions too
    total: int  #: trials planned
    cells: list[dict[str, Any]] | None = None  #: planned experiments: the values of each trial (None: optuna)
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
    first: dict[str, Any] | None = None  #: optuna: the first trial's values (a fresh search only)
    tracker: str | None = None  #: mlflow | tensorboard | wandb (tune.tracking)
    tracker_uri: str | None = None
    mirror: Any = None  #: tune.remote.Mirror when the experiment is stored at a URI (exp.path is its local copy)
    data: Any = None  #: the dataset files shipped to the trials (tune.shipped), None: they read --data-dir

    @property
    def storage_uri(self) -> str | None:
        """The storage URI the user named, None for a local folder."""
        return self.mirror.store.uri if self.mirror is not None else None

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


#: Seconds a cluster at ``--address`` has to answer before the command gives up.
CONNECT_TIMEOUT_S = 30.0


def _token_source() -> str:
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "$RAY_AUTH_TOKEN"
    return str(Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser())


def probe_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, with one line, where ``ray.init(address=...)`` would hang or hide the reason:
    nothing listening at host:port, nothing answering within ``timeout``, or a cluster that
    refuses this client's authentication token. ``auto`` and ``ray://`` addresses are left to Ray."""
    import socket
    import threading

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=min(timeout, 5.0)).close()
    except OSError as exc:
        raise ExperimentError(f"--address {address}: no Ray cluster there ({exc.strerror or exc})") from None
    outcome: dict[str, BaseException | None] = {}

    def ask() -> None:  # a GCS request: answered at once, or refused at once for a wrong token
        try:
            from ray._raylet import GcsClient

            GcsClient(address=address).internal_kv_get(b"kdiffe-probe", namespace=None, timeout=timeout)
            outcome["error"] = None
        except Exception as exc:  # noqa: BLE001 (Ray's private client: anything it raises is reported)
            outcome["error"] = exc

    thread = threading.Thread(target=ask, daemon=True)
    saved = os.dup(2)  # Ray's C++ client logs each failed attempt to stderr: keep the error to one line
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        thread.start()
        thread.join(timeout)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    if thread.is_alive():
        raise ExperimentError(f"--address {address}: no Ray cluster answered within {timeout:g} s")
    error = outcome.get("error")
    if error is None:
        return
    import ray

    refused = isinstance(error, getattr(ray.exceptions, "AuthenticationError", ())) or "InvalidAuthToken" in str(error)
    if refused:
        has = os.environ.get("RAY_AUTH_MODE") == "token" and auth_token_available()
        raise ExperimentError(
            f"--address {address}: the cluster refused this client's authentication token (from {_token_source()}); "
            "give the client the cluster's token" if has else
            f"--address {address}: the cluster requires token authentication and this client has no token "
            f"(put the cluster's token in {_token_source()} or $RAY_AUTH_TOKEN)")
    if isinstance(error, (ImportError, TypeError, AttributeError)):
        return  # this Ray has no such client: let ray.init speak
    raise ExperimentError(f"--address {address}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")


def start_ray(address: str | None, verbose: bool = False) -> None:
    """Join ``address`` or start a local Ray (no dashboard); no-op when Ray is already up.
    :func:`set_ray_env` must have run before anything imported Ray."""
    set_ray_env(address, verbose)
    import ray

    if not verbose:
        logging.getLogger("ray").setLevel(logging.ERROR)
    if ray.is_initialized():
        return
    if address:
        probe_address(address)
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


@dataclass
class Work:
    """What is left of an experiment, from its trial records (tune.store.read_trials)."""

    records: dict[str, TrialRecord]
    left: int  #: trials still to run
    cells: list[dict[str, Any]] = field(default_factory=list)  #: planned: the keyed cells left (partial, failed, new)
    known: list[tuple[dict[str, Any], float]] = field(default_factory=list)  #: optuna: ended (values, reward)
    resumable: dict[str, dict[str, Any]] = field(default_factory=dict)  #: optuna: key -> values to continue

    @property
    def ended(self) -> list[TrialRecord]:
        return [r for r in self.records.values() if r.ended]

    def ended_rows(self, metric: str) -> list[Any]:
        """The rows of the ended trials that report ``metric``, one frame per trial."""
        return [r.rows for r in self.ended if r.rows is not None and metric in r.rows]


def _last_value(rows: Any, metric: str) -> float | None:
    if rows is None or metric not in rows or not rows[metric].notna().any():
        return None
    return float(rows[metric].dropna().iloc[-1])


def best_before(work: Work, metric: str) -> float | None:
    """The best ``metric`` that the trials ended in earlier runs reached (None before any)."""
    import pandas as pd

    frames = work.ended_rows(metric)
    best = best_evaluation(pd.concat(frames, ignore_index=True), metric) if frames else None
    return None if best is None else best[metric]


def remaining_work(exp: Experiment) -> Work:
    """The trials still to run, rebuilt from the trial folders alone: a planned cell whose trial
    ended is done; every other cell (never started, partial, failed) runs, continuing from its own
    checkpoint. An optuna search keeps the ended trials as evaluated points of its sampler and
    suggests the partial and failed ones first, each under its old key."""
    records = read_trials(exp.path)
    legacy = [r.key for r in records.values() if not r.keyed and len(r.rows)]
    if exp.resume and legacy:
        raise ExperimentError(f"--resume: {exp.path} was started by an older version of this tool (trial {legacy[0]} "
                              f"has no trial.json), whose trials cannot be matched to its plan; its rows are in "
                              f"{exp.path / RESULTS_FILE}: start it again under a new --name")
    if exp.cells is not None:
        cells = [c for c in keyed(exp.cells) if not (c[KEY] in records and records[c[KEY]].ended)]
        return Work(records=records, left=len(cells), cells=cells)
    ended = [r for r in records.values() if r.ended]
    known = [(dict(r.values), v) for r in ended if r.values and (v := _last_value(r.rows, exp.metric)) is not None]
    resumable = {r.key: dict(r.values) for r in records.values()
                 if not r.ended and r.values and set(r.values) == set(exp.params)}
    return Work(records=records, left=max(0, exp.num_samples - len(ended)), known=known, resumable=resumable)


class _Ledger:
    """What happened to trials in this run, as the driver saw it (shared by the scheduler and the
    console): the ones the scheduler stopped, and the ones that failed for good, with their error."""

    def __init__(self, folder: Path, mirror: Any = None) -> None:
        self.folder = folder
        self.mirror = mirror
        self.stopped: set[str] = set()
        self.failed: dict[str, str] = {}

    def fail(self, trial: Any) -> None:
        text = ""
        try:  # Ray's text file of the error (never its pickle)
            text = Path(trial.error_file).read_text(errors="replace") if trial.error_file else ""
        except OSError:
            pass
        self.failed[config_key(trial.config or {}) or trial.trial_id] = error_text(text)

    def stop(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        key = config_key(config)
        if not key:
            return
        self.stopped.add(key)
        try:
            files = TrialFiles(self.folder, key)
            files.ended(STOPPED, result.get("epoch"))
            if self.mirror is not None:
                self.mirror.push(str(files.end.relative_to(self.folder)))
        except (OSError, ExperimentError):
            pass  # left partial: resume continues it and the scheduler judges it again


def _scheduler(exp: Experiment, work: Work, ledger: _Ledger) -> Any:
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    histories = [list(rows[exp.metric].dropna()) for rows in work.ended_rows(exp.metric)]

    class RecordingASHA(ASHAScheduler):
        """ASHA that writes its stops into the trials' records, and starts from the rungs the
        trials that ended in earlier runs of the experiment reached."""

        def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
            ok = super().set_search_properties(metric, mode, **spec)
            if ok and self._metric_op is not None:
                for index, history in enumerate(histories):
                    ghost = SimpleNamespace(trial_id=f"ended-{index}")
                    for iteration, value in enumerate(history, start=1):
                        self._brackets[0].on_result(ghost, iteration, self._metric_op * value)
            return ok

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            action = super().on_trial_result(tune_controller, trial, result)
            if action == TrialScheduler.STOP and not result.get("finished"):
                ledger.stop(trial.config, result)
            return action

    return RecordingASHA(time_attr="training_iteration", max_t=max(exp.max_t, 1),
                         grace_period=max(1, min(exp.grace_period, exp.max_t)), reduction_factor=2)


def _searcher(exp: Experiment, work: Work) -> Any:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    if not exp.verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    book = KeyBook(taken=work.records, resumable=work.resumable)
    known = work.known

    class KeyedOptuna(OptunaSearch):
        """OptunaSearch that names each suggestion with its trial key and is warm-started with
        the trials that ended before (documented API: ``points_to_evaluate`` for the trials to
        continue, ``add_evaluated_point`` for the ended ones)."""

        def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
            ok = super().set_search_properties(metric, mode, config, **spec)
            if ok:
                for values, reward in known:
                    self.add_evaluated_point(values, reward)
            return ok

        def suggest(self, trial_id: str) -> Any:
            config = super().suggest(trial_id)
            if isinstance(config, dict):
                config = {**config, KEY: book.key(config)}
            return config

    # The sampler's seed moves with what it already knows, so a resumed search draws afresh,
    # and the same records always give the same draws.
    sampler = optuna.samplers.TPESampler(seed=exp.seed + len(known))
    points = list(work.resumable.values())
    if not points and not known and exp.first:  # a fresh search: the defaults are its first trial
        points = [dict(exp.first)]
    return KeyedOptuna(sampler=sampler, points_to_evaluate=points or None)


def resume_line(name: str, total: Any, work: Work) -> str:
    """What a resume keeps and what it runs again: a cut trial continues from its checkpoint where
    one is kept, and starts over where none is (its records came without one: another machine,
    or a checkout of the committed records); the rest of what is left never began."""
    cut = [r for r in work.records.values() if not r.ended]
    kept = sum(r.checkpointed for r in cut)
    over = f", {len(cut) - kept} start over (no checkpoint kept)" if len(cut) > kept else ""
    fresh = f", {work.left - len(cut)} new" if work.left > len(cut) else ""
    return (f"{name}: {len(work.ended)} of {total} trials ended before; {work.left} to run "
            f"({kept} of them continue from their checkpoints{over}{fresh})")


def run(exp: Experiment) -> Outcome:
    """Run what is left of the experiment (all of it when new) on a started Ray
    (:func:`start_ray`, :func:`check_resources`); returns its tidy results, assembled from the
    trial folders, and whether it was cut short."""
    from ray import tune

    from .console import Console
    from .tracking import tracker_callbacks

    work = remaining_work(exp)
    if exp.resume:
        print(resume_line(exp.name, exp.total, work), flush=True)
    failed_now: dict[str, str] = {}
    if work.left:
        ledger = _Ledger(exp.path, exp.mirror)
        runs = exp.path / RAY_FOLDER
        index = 1 + max((int(p.name[4:]) for p in runs.glob("run-*") if p.name[4:].isdigit()), default=0)
        while True:  # a folder of Ray's made now, never one that was there before
            try:
                (runs / f"run-{index}").mkdir(parents=True)
                break
            except FileExistsError:
                index += 1
        if exp.cells is not None:
            space = {**exp.param_space, "point": tune.grid_search(work.cells)}
            search_alg, samples = None, 1
        else:
            space = {**exp.param_space, "searched": list(exp.params)}
            search_alg, samples = _searcher(exp, work), work.left
        run_config = tune.RunConfig(
            name=f"run-{index}", storage_path=str(runs), verbose=2 if exp.verbose else 0,
            callbacks=[Console(exp.params, exp.metric, exp.total, ledger, done_before=len(work.ended),
                               max_t=exp.max_t, best_before=best_before(work, exp.metric)),
                       *tracker_callbacks(exp.tracker, exp.tracker_uri, exp.name, exp.storage, exp.kind)],
            failure_config=tune.FailureConfig(max_failures=exp.max_failures))
        tune_config = tune.TuneConfig(
            metric=exp.metric, mode="max", num_samples=samples, search_alg=search_alg,
            scheduler=_scheduler(exp, work, ledger) if exp.scheduler == "asha" else None,
            max_concurrent_trials=exp.max_concurrent or None, reuse_actors=True, trial_dirname_creator=trial_dirname)
        trainable = tune.with_parameters(kdiffe_trainable, data=exp.data) if exp.data else kdiffe_trainable
        trainable = tune.with_resources(trainable, {"cpu": exp.cpus_per_trial, "gpu": exp.gpus_per_trial})
        tuner = tune.Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config)
        try:
            tuner.fit()  # its ResultGrid is not used: the trial records are the results
        except Exception as exc:  # noqa: BLE001 (Ray's own failure, e.g. its files on a full disk)
            if disk_full(exc):
                raise
            message = str(exc).strip().splitlines()[-1:] or [""]
            print(f"warning: Ray Tune ended with an error of its own ({type(exc).__name__}: {message[0][:300]}); "
                  "the results below come from the trial records", file=sys.stderr, flush=True)
        failed_now = ledger.failed
    if exp.mirror is not None:  # the trials wrote into the store
        exp.mirror.pull()
    records = read_trials(exp.path)
    frame = assemble(exp.path, failed_now, records)
    if not len(frame):
        raise ExperimentError(f"{exp.name}: no trial reported a result; see Ray's logs in {exp.path / RAY_FOLDER}")
    write_best(frame, exp.path, exp.name, exp.kind, exp.metric)
    if exp.mirror is not None:
        exp.mirror.push(RESULTS_FILE, "best.json")
    settled = sum(r.ended for r in records.values()) + sum(
        key not in records or not records[key].ended for key in failed_now)
    return Outcome(frame=frame, interrupted=settled < exp.total)


def results_path(exp: Experiment) -> Path:
    return exp.path / RESULTS_FILE
