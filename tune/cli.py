"""The one entry point behind ``tune/search.py``, ``tune/scalability.py`` and ``ablations/run.py``.

Each script is a :class:`Script`: its own options, a :class:`Plan` (the trials) built from the
parsed options, and the lines to print at the end. Everything else is here, once: the options
every experiment shares, ``--set`` values, the dataset and configuration checks made before any
trial starts, the experiment folder (``experiment.json`` keeps the resolved options, so
``--resume`` needs only ``--name``), Ray, the end-of-run summary and the exit code: 0 done,
1 every trial failed, 2 a user mistake (one line ``error: ...``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NoReturn, Sequence

from kdiffe.config import FIELDS, MAX_SEED, ConfigError, check_reads, from_dict, parse_overrides
from kdiffe.data import available_datasets, load_dataset, resolve_data_dir
from kdiffe.errors import EXIT_INTERRUPTED, EXIT_USAGE, UserError, report
from kdiffe.memory import check_dataset_memory
from kdiffe.paper import SWEEP_PARAMS
from kdiffe.zoo import model_class
from kdiffe.results import BEST_FILE, DEFAULT_STORAGE, RESULTS_FILE, best_evaluation
from kdiffe.storage import Remote, is_uri, mirror_root
from kdiffe.trainer import dataset_for

from .experiment import DEFAULT_GRACE_PERIOD, Experiment, Outcome, check_resources, run, set_ray_env, start_ray
from .lock import LOCK_FILE, ExperimentLock
from .remote import Mirror
from .shipped import TRANSPORTS, pack
from .store import (RECORD_FILE, ExperimentError, assemble, check_storage, disk_full, end_record, experiment_path,
                    load_record, start_record, storage_path, write_best)
from .trainable import resolve_trial_config
from .tracking import TRACKERS, check_tracker

#: Options that may change on --resume: they decide where and how fast trials run, not what they compute.
RESOURCE_OPTIONS = ("cpus_per_trial", "threads", "gpus_per_trial", "max_concurrent", "max_failures", "address", "verbose",
                    "tracker", "tracker_uri")
#: Options that name the experiment rather than describe it.
LOCATION_OPTIONS = ("storage", "name", "resume")


class Parser(argparse.ArgumentParser):
    """argparse whose mistakes raise UserError (one line ``error: ...``, exit 2) instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise UserError(message)


# ------------------------------------------------------------------------------ argument types
def non_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse type: ``kind(text)`` that must be >= 0."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


#: At most this many seeds (and trials) in one experiment: more is a typo, and would take hours to plan.
MAX_SEEDS = 10_000
MAX_TRIALS = 100_000


def seeds_arg(text: str) -> list[int]:
    """argparse type, the same in every script: '2024' -> [2024]; '0,7,42' -> those; '0-4' -> 0..4."""
    spans: list[tuple[int, int]] = []
    try:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            low, dash, high = part.partition("-") if not part.startswith("-") else (part, "", "")
            spans.append((int(low), int(high)) if dash else (int(part), int(part)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds such as 0,1,2 or 0-4, got {text!r}") from None
    if not spans or min(low for low, _ in spans) < 0:
        raise argparse.ArgumentTypeError(f"expected seeds >= 0 such as 0,1,2 or 0-4, got {text!r}")
    if max(high for _, high in spans) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text}: seeds must be at most {MAX_SEED} (numpy's 32-bit seeds)")
    count = sum(max(0, high - low + 1) for low, high in spans)
    if count > MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"{text}: {count:,} seeds; at most {MAX_SEEDS:,} in one experiment")
    seeds = [seed for low, high in spans for seed in range(low, high + 1)]
    if not seeds:
        raise argparse.ArgumentTypeError(f"expected seeds such as 0,1,2 or 0-4, got {text!r}")
    return list(dict.fromkeys(seeds))


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse type: ``kind(text)`` that must be >= 1."""
    base = non_negative(kind)

    def parse(text: str) -> Any:
        value = base(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options every experiment shares."""
    parser.add_argument("--data-dir", default=None, help="folder of datasets (default $KDIFFE_DATA_DIR, else ./data)")
    parser.add_argument("--epochs", type=non_negative(int), default=None, help="epochs per trial")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="fixed kdiffe.Config value for every trial (repeatable)")
    parser.add_argument("--from", dest="source", default=None, metavar="PATH",
                        help="every trial starts from a found configuration (a best.json, an experiment folder "
                             "holding one, a saved model folder): its model and settings, under --set and what "
                             "the experiment moves; not its dataset or seed")
    parser.add_argument("--cpus-per-trial", type=non_negative(float), default=None,
                        help="CPU threads per trial (default: up to 4, as many trials as the CPUs hold)")
    parser.add_argument("--threads", type=positive(int), default=None,
                        help="torch CPU threads of each trial (default: the CPUs the trial was given)")
    parser.add_argument("--gpus-per-trial", type=non_negative(float), default=0.0,
                        help="fraction of a GPU per trial, e.g. 0.25 packs four trials on one GPU")
    parser.add_argument("--max-concurrent", type=positive(int), default=None,
                        help="trials running at once (default: as many as the CPUs hold)")
    parser.add_argument("--max-failures", type=non_negative(int), default=1,
                        help="times Ray restarts a failed trial from its last checkpoint (default 1)")
    parser.add_argument("--address", default=None,
                        help="join an existing Ray cluster, e.g. auto or 10.0.0.5:6379 (default: start a local Ray)")
    parser.add_argument("--storage", default=DEFAULT_STORAGE,
                        help=f"folder holding experiments (default ./{DEFAULT_STORAGE}), or a URI pyarrow.fs opens "
                             "(s3://bucket/path, gs://...): no shared disk needed (credentials from the environment)")
    parser.add_argument("--data-transport", choices=list(TRANSPORTS), default="auto",
                        help="how trials get the data: folder (each node reads --data-dir), ray (the driver ships "
                             "the dataset files through Ray's object store); auto: ray when --storage is a URI")
    parser.add_argument("--name", default=None, help="experiment name (folder under --storage)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the experiment --name with the options it was started with")
    parser.add_argument("--tracker", choices=list(TRACKERS), default=None,
                        help="also log every trial's parameters and evaluations to mlflow, tensorboard or wandb "
                             "(through Ray Tune's logger callbacks; pip install -e \".[track]\")")
    parser.add_argument("--tracker-uri", default=None, metavar="URI",
                        help="mlflow: its tracking URI (default sqlite:///<storage>/mlflow.db); wandb: the project "
                             "(default the experiment name)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Ray's own output and the trials' logs")


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> dict[str, Any]:
    """The options written on the command line (not their defaults)."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    return vars(parser.parse_args(argv))


# ------------------------------------------------------------------------------ plan and checks
@dataclass
class Plan:
    """The trials of one experiment, as a script defines them: a list of cells (the values each
    trial sets over ``param_space``), or, for optuna, ``param_space`` holding the distributions."""

    kind: str
    name: str  #: default experiment name
    param_space: dict[str, Any]  #: Config values every trial shares (and optuna's distributions)
    candidates: list[dict[str, Any]]  #: configurations checked before any trial starts
    cells: list[dict[str, Any]] | None = None  #: planned trials (None: optuna suggests them)
    params: tuple[str, ...] = ()  #: parameters that move between trials
    metric: str = "val_recall@20"
    num_samples: int = 1
    search: str = "grid"
    scheduler: str = "fifo"
    seed: int = 0
    max_concurrent: int | None = None  #: the script's default (scalability: 1)
    grace_period: int = DEFAULT_GRACE_PERIOD  #: ASHA: evaluations before a trial may be stopped
    datasets: tuple[str, ...] = ()
    first: dict[str, Any] | None = None  #: optuna: the values of the first trial (the defaults)

    @property
    def total(self) -> int:
        """Trials planned."""
        return len(self.cells) if self.cells is not None else self.num_samples


@dataclass
class Script:
    """One experiment command: its options, its plan, its end-of-run report."""

    prog: str  #: e.g. "tune/search.py"
    doc: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    plan: Callable[[argparse.Namespace, dict[str, Any]], Plan]
    finish: Callable[[Outcome, Experiment, argparse.Namespace], tuple[list[str], int]]
    defaults: Callable[[argparse.Namespace], dict[str, Any]] = lambda args: {}  #: Config values every trial starts from
    fixed: tuple[tuple[str, str], ...] = ()  #: Config fields the script sets itself -> its option
    #: What runs after a clean end: (the line announcing it, the argv of this script), or None.
    follow_up: Callable[[Experiment, argparse.Namespace], tuple[str, list[str]] | None] = lambda exp, args: None
    free_on_resume: tuple[str, ...] = ()  #: options --resume may change: they decide what follows the run


#: What --from never carries over: where and on what a run happens, which the experiment decides.
FROM_KEPT = ("dataset", "seed", "data_dir", "cache_dir", "device", "epochs")


def base_values(args: argparse.Namespace, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Config values shared by every trial: the script's defaults, ``--set`` values, ``--epochs``;
    data_dir and cache_dir made absolute (Tune changes each trial's working directory)."""
    from kdiffe.attention import default_cache_dir

    found: dict[str, Any] = {}
    if getattr(args, "source", None):
        from kdiffe.results import found_config

        found = {k: v for k, v in found_config(args.source).items() if k not in FROM_KEPT}
        for key in ("model", "variant"):
            theirs, ours = found.get(key, FIELDS[key].default), defaults.get(key)
            if ours is not None and theirs != ours:
                raise ConfigError(f"--from {args.source}: its {key} is {theirs}, this experiment's {ours}; "
                                  f"pass --{key} {theirs}")
    values: dict[str, Any] = {"device": "auto", **defaults, **found, **parse_overrides(args.overrides)}
    if args.epochs is not None:
        values["epochs"] = args.epochs
    values["data_dir"] = str(resolve_data_dir(args.data_dir or values.get("data_dir")))
    values["cache_dir"] = str(default_cache_dir(values.get("cache_dir")))
    from_dict(values)  # fail fast on a bad --set
    return values


def check_dataset(name: str, data_dir: str) -> None:
    """Refuse an unknown dataset before Ray starts (the full load happens in validate_configs)."""
    if name != "synthetic" and name not in available_datasets(data_dir):
        load_dataset(name, data_dir)  # raises DatasetError with the folder and the datasets available


def validate_configs(candidates: Iterable[Mapping[str, Any]]) -> None:
    """Reject a configuration that can never be valid before any trial starts.

    Each candidate (flat Config fields, optionally a grid ``point``) goes through
    ``kdiffe.config.from_dict``; its dataset is loaded once per (dataset, size) for the model's
    own check (KDiffE: a KG source the dataset has, q against the concept entities per relation),
    max_users against the users, and the memory a trial would need against this machine's
    (kdiffe.memory).
    """
    datasets: dict[tuple[Any, ...], Any] = {}
    for values in candidates:
        config, _ = resolve_trial_config(values)
        sizes = (config.syn_users, config.syn_items, config.syn_clusters, config.syn_interactions)
        key = (config.dataset, config.data_dir, config.val_fraction, sizes if config.dataset == "synthetic" else ())
        if key not in datasets:
            datasets[key] = dataset_for(config.replace(max_users=0))
        ds = datasets[key]
        model_class(config.model).check(config, ds)
        if config.max_users > ds.n_users:
            raise ConfigError(f"max_users={config.max_users}: {config.dataset} has only {ds.n_users} users")
        if config.device in ("auto", "cpu"):  # a GPU trial's memory is checked where it runs
            check_dataset_memory(config, ds, "cpu")


def evaluations(epochs: int, eval_every: int) -> int:
    """How many reports a trial of ``epochs`` makes (the last epoch is always evaluated)."""
    return max(1, math.ceil(epochs / max(1, eval_every)))


# ------------------------------------------------------------------------------ resume
def resolve_resume(args: argparse.Namespace, given: Mapping[str, Any], path: Path,
                   free: Iterable[str] = ()) -> tuple[argparse.Namespace, dict]:
    """The stored options of the experiment at ``path``, with resource options (and ``free`` ones)
    from this command.

    An option given now that would change what the trials compute is refused, not ignored.
    """
    record = load_record(path)
    stored = record["settings"]
    now = (*RESOURCE_OPTIONS, *free)
    for key, value in given.items():
        if key in now or key in LOCATION_OPTIONS or key not in stored:
            continue
        if value != stored[key] and not (key == "data_dir" and str(resolve_data_dir(value)) == stored[key]):
            option = "--" + ("set" if key == "overrides" else key.replace("_", "-"))
            raise ExperimentError(f"{option} {_show(value)}: {path.name} was started with {_show(stored[key])}; "
                                  "--resume continues it as started (choose another --name for a new experiment)")
    merged = {**vars(args), **stored, **{k: v for k, v in given.items() if k in now}}
    return argparse.Namespace(**{**merged, "resume": True, "name": args.name, "storage": args.storage}), record


def open_storage(text: str) -> tuple[Path, Remote | None]:
    """(the local folder the driver works in, the store behind it or None): a local --storage is
    itself; a URI (tune.remote) is mirrored in a local folder."""
    if is_uri(text):
        remote = Remote(text)
        remote.check_writable()
        return mirror_root(remote.uri), remote
    storage = storage_path(text)
    check_storage(storage)
    return storage, None


def next_steps(path: Path, storage: Path | str, seconds: float) -> list[str]:
    """The end of a run that finished: its wall time and what a researcher does next."""
    from .console import duration

    return [f"done in {duration(seconds)}. Next:",
            f"  python -m kdiffe train --from {path} --seed 1 --out runs/{path.name}-seed1   # re-train the best",
            f"  python plots/figures.py --results {storage}   # figures and tables of everything stored there"]


def _show(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


# ------------------------------------------------------------------------------ main
def build_parser(script: Script) -> Parser:
    parser = Parser(prog=script.prog, description=script.doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    script.add_arguments(parser)
    add_run_options(parser)
    return parser


def main(script: Script, argv: Sequence[str] | None = None) -> int:
    """Parse, check, run, report; user mistakes become ``error: ...`` and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(script, argv)
    except UserError as exc:
        return report(exc)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before any trial started
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


class SigtermStop:
    """SIGTERM (``kill``, systemd, a cluster scheduler) stops the experiment as Ctrl-C does: Ray
    Tune's SIGINT handler ends the run cleanly and ``--resume`` continues it. Installed after
    ``ray.init``, whose own handler would abort the driver with a core dump.

    When the signal went to Ray's own processes too (``kill`` of the process group, systemd's
    stop), Ray cannot end the run cleanly. So if the run has not ended ``grace`` seconds after the
    signal (default 20, ``$KDIFFE_STOP_GRACE_S``; or at a second SIGTERM), the driver ends it
    itself: results.csv and best.json from the trial records (they need no Ray), the run closed
    in experiment.json with exit 130, the resume command, and exit 130.
    """

    def __init__(self, close: Callable[[], None], grace: float | None = None) -> None:
        grace = float(os.environ.get("KDIFFE_STOP_GRACE_S", 20.0)) if grace is None else grace
        self.close, self.grace, self.signalled = close, grace, False
        self.timer: threading.Timer | None = None
        self.previous: Any = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self.handler)

    def handler(self, signum: int, frame: Any) -> None:
        if self.signalled:
            self.end()
        self.signalled = True
        self.timer = threading.Timer(self.grace, self.end)
        self.timer.daemon = True
        self.timer.start()
        signal.raise_signal(signal.SIGINT)

    def cancel(self) -> None:
        """The run ended by itself: no forced end any more."""
        if self.timer is not None:
            self.timer.cancel()
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)

    def end(self) -> None:
        try:
            self.close()
        finally:
            sys.stdout.flush()
            os._exit(EXIT_INTERRUPTED)


def _main(script: Script, argv: list[str], started: float | None = None) -> int:
    started = time.monotonic() if started is None else started
    args = build_parser(script).parse_args(argv)
    given = given_options(build_parser(script), argv)
    storage, remote = open_storage(args.storage)
    where = remote.uri if remote else storage  # what the user names: the URI, not its mirror
    mirror: Mirror | None = None
    command = " ".join([script.prog, *argv])
    with ExitStack() as stack:
        record = None
        if args.resume:
            if not args.name:
                raise ExperimentError("--resume needs --name (the experiment folder under --storage)")
            path = experiment_path(storage, args.name)
            if remote is not None:
                mirror = Mirror(remote, args.name, path)
                mirror.pull()
                if not (path / RECORD_FILE).is_file():
                    raise ExperimentError(f"--resume: no experiment at {mirror.uri}")
            if not path.is_dir():
                raise ExperimentError(f"--resume: no experiment at {path}")
            stack.enter_context(ExperimentLock(path, command))
            args, record = resolve_resume(args, given, path, script.free_on_resume)
        elif getattr(args, "dataset", None) is None:
            raise UserError("--dataset is required")
        elif args.name:
            experiment_path(storage, args.name)
        check_tracker(args.tracker)
        set_ray_env(args.address, args.verbose)  # with the stored --address on resume; before anything imports Ray
        args.data_dir = str(resolve_data_dir(args.data_dir))
        overrides = parse_overrides(args.overrides)
        for key, option in script.fixed:
            if key in overrides:
                raise ConfigError(f"--set {key}=...: {script.prog} sets {key} itself; use {option}")
        base = base_values(args, script.defaults(args))
        plan = script.plan(args, base)
        check_reads([c.get("model", FIELDS["model"].default) for c in plan.candidates], overrides)
        if plan.total > MAX_TRIALS:
            raise ConfigError(f"{plan.total:,} trials planned; at most {MAX_TRIALS:,} in one experiment")
        name = args.name or plan.name
        path = experiment_path(storage, name)
        if remote is not None and mirror is None:
            mirror = Mirror(remote, name, path)
            mirror.pull()
        if not args.resume:
            stack.enter_context(ExperimentLock(path, command))
            if any(p.name != LOCK_FILE for p in path.iterdir()):
                raise ExperimentError(f"{path} exists; continue it with --name {name} --resume, "
                                      "or choose another --name")
        for dataset in plan.datasets:
            check_dataset(dataset, base["data_dir"])
        validate_configs(plan.candidates)
        transport = args.data_transport if args.data_transport != "auto" else ("ray" if remote else "folder")
        exp = Experiment(name=name, storage=storage, kind=plan.kind, total=plan.total, params=plan.params,
                         param_space={**plan.param_space, "experiment": name, "kind": plan.kind,
                                      "results_dir": str(path), "threads": args.threads,
                                      **({"results_uri": mirror.uri} if mirror else {})},
                         cells=plan.cells, metric=plan.metric, num_samples=plan.num_samples, search=plan.search,
                         scheduler=plan.scheduler, max_t=evaluations(base["epochs"], base.get("eval_every", 1)),
                         seed=plan.seed, grace_period=plan.grace_period, first=plan.first,
                         cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                         max_concurrent=args.max_concurrent or plan.max_concurrent, max_failures=args.max_failures,
                         address=args.address, resume=args.resume, verbose=args.verbose,
                         tracker=args.tracker, tracker_uri=args.tracker_uri, mirror=mirror,
                         data=pack(plan.datasets, base["data_dir"]) if transport == "ray" else None)
        resume_hint = f"python {script.prog} --storage {where} --name {name} --resume"
        stopped_line = f"interrupted: continue with {resume_hint}"
        opened: dict[str, Any] = {}

        def push(*names: str) -> None:
            if mirror is not None:
                mirror.push(*names)

        def close_without_ray() -> None:
            if "record" in opened:
                try:
                    if mirror is not None:
                        mirror.pull()
                    frame = assemble(path)
                    write_best(frame, path, name, plan.kind, plan.metric)
                    print("\n".join(trial_lines(frame)), flush=True)
                except (OSError, UserError):
                    pass
                end_record(path, opened["record"], EXIT_INTERRUPTED, time.monotonic() - started)
                push(RESULTS_FILE, BEST_FILE, RECORD_FILE)
            print(stopped_line, flush=True)

        start_ray(args.address, args.verbose)
        stopper = SigtermStop(close_without_ray)
        stopper.install()
        print(check_resources(exp), flush=True)
        settings = {k: v for k, v in vars(args).items() if k not in LOCATION_OPTIONS}
        try:
            record = opened["record"] = start_record(path, script.prog, [script.prog, *argv], settings, record)
        except OSError as exc:
            raise ExperimentError(f"{path / RECORD_FILE}: cannot write ({exc.strerror or exc})") from None
        push(RECORD_FILE, *(run["patch"] for run in record["runs"][-1:] if run.get("patch")))
        code, problem, follow = 1, None, None
        try:
            outcome = run(exp)
            shown = mirror.uri if mirror else exp.path
            print(f"results: {shown}/{RESULTS_FILE} ({len(outcome.frame)} rows); best: {shown}/{BEST_FILE}")
            lines, code = script.finish(outcome, exp, args)
            push(*(p.name for p in path.iterdir() if p.is_file() and p.name != LOCK_FILE))  # table_iii.md, ...
            if outcome.interrupted:
                lines.append(stopped_line)
                code = EXIT_INTERRUPTED
            elif code == 0:
                follow = script.follow_up(exp, args)
                lines += [follow[0]] if follow else next_steps(exp.path, where, time.monotonic() - started)
            print("\n".join(lines), flush=True)
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
            print(stopped_line)
        except OSError as exc:
            if not disk_full(exc):
                raise
            code, problem = EXIT_USAGE, exc
        finally:
            stopper.cancel()
            unrecorded = end_record(path, record, code, time.monotonic() - started)
            push(RECORD_FILE)
        problem = problem or unrecorded
        if problem is not None:
            raise ExperimentError(f"{problem.filename or path}: {problem.strerror or problem}; nothing that "
                                  f"finished is lost: free some space, then {resume_hint}")
    if follow is None:
        return code
    return _main(script, follow[1], started)  # its lock taken now that this one is released


# ------------------------------------------------------------------------------ summaries
def trial_lines(frame: Any) -> list[str]:
    """Trial counts (with those cut short, which --resume continues), and one line per failed
    trial with its error."""
    trials = frame.drop_duplicates("trial_id", keep="last")
    failed = trials[trials["status"] == "error"]
    partial = int((trials["status"] == "partial").sum())
    counts = f"{len(trials)} trials, {len(failed)} failed" + (f", {partial} cut short" if partial else "")
    return [counts] + [f"  failed {row.trial_id}: {row.error}" for row in failed.itertuples()]


def _short(value: Any) -> str:
    """A value as the end report shows it: floats with 4 significant digits (0.0007291835 -> 0.0007292)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_lines(frame: Any, metric: str, moved: Iterable[str] = ()) -> list[str]:
    """The end-of-run report: trial counts, then the best configuration with validation and test metrics."""
    lines = trial_lines(frame)
    best = best_evaluation(frame, metric)
    if best is None:
        return lines + ["no successful trial"]
    paper = SWEEP_PARAMS if best.get("model", "kdiffe") in ("kdiffe", None) else ()
    keys = dict.fromkeys(["dataset", "variant", "seed", *paper, *moved])
    config = ", ".join(f"{k}={_short(best[k])}" for k in keys if k in best)
    k = metric.split("@")[1]
    return lines + [
        f"best by {metric}: trial {best['trial_id']}, epoch {int(best['epoch'])}: {config}",
        f"  validation recall@{k} {best[f'val_recall@{k}']:.4f}  ndcg@{k} {best[f'val_ndcg@{k}']:.4f}",
        f"  test       recall@{k} {best[f'test_recall@{k}']:.4f}  ndcg@{k} {best[f'test_ndcg@{k}']:.4f}"
        f"  (at the best validation {metric[4:]} evaluation)"]
