"""Hyperparameter search for KDiffE as one Ray Tune experiment.

    python tune/search.py --dataset tiktok                       # default: optuna + ASHA, 24 trials, defaults first
    python tune/search.py --dataset tiktok --mode grid --params M,R --seeds 0-2   # Figure 6 data
    python tune/search.py --name tiktok-optuna --resume            # continue an interrupted run
    python tune/search.py --dataset tiktok --mode retrain --from results/tiktok-optuna --seeds 0-4

Modes: grid (the paper's one-factor-at-a-time sweeps, other parameters at their defaults),
optuna (joint search with OptunaSearch), random, retrain (a found configuration and the
published defaults, each trained with every seed). Results: <storage>/<name>/results.csv (one
row per trial x evaluation, schema kdiffe.results) and best.json. Model selection is on
validation; test metrics are those of the best validation evaluation.

An optuna or random search that ends cleanly goes on to re-train its best configuration with
--retrain-seeds (default 0-2) beside the published defaults, as the experiment <name>-retrain,
and prints the two side by side (mean +- std over seeds, and the paired difference with its 95 %
CI): a search's best trial is one lucky seed, selected on the very validation it is judged on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdiffe.config import VARIANTS, ConfigError, from_dict, parse_overrides  # noqa: E402
from kdiffe.errors import UserError  # noqa: E402
from kdiffe.results import BEST_FILE, best_rows, metric_columns  # noqa: E402
from tune.remote import Mirror  # noqa: E402
from kdiffe.catalog import MODELS  # noqa: E402

from tune.cli import (RESOURCE_OPTIONS, Plan, Script, main as run_script, non_negative, seeds_arg,  # noqa: E402
                      summary_lines)
from tune.store import RECORD_FILE, experiment_state, load_record  # noqa: E402
from tune.experiment import DEFAULT_GRACE_PERIOD  # noqa: E402
from tune.spaces import (default_point, extreme_values, grid_points, joint_space, parse_params,  # noqa: E402
                         sample_points)

#: The default budget, measured (docs/results.md, tiktok-search-kdiffe: 24 trials of at most 60 epochs
#: with ASHA took 26 min on 2 cores, two trials at a time, and its best re-run with 5 seeds reached
#: the paper's defaults trained to convergence); shorter trials rewarded the fastest learners.
DEFAULT_EPOCHS = 60
DEFAULT_SAMPLES = 24
#: Seeds of a search's closing re-training, and of --mode retrain, unless given.
RETRAIN_SEEDS = (0, 1, 2)
SEARCH_SEED = 2024
#: The arms of a re-training: the found configuration, and its searched parameters at the published defaults.
FOUND, DEFAULTS = "found", "defaults"


def validation_metric(text: str) -> str:
    """argparse type: a validation metric column such as val_recall@20 (never a test metric)."""
    if text not in metric_columns() or not text.startswith("val_"):
        raise argparse.ArgumentTypeError(f"{text}: choose a validation metric such as val_recall@20 or val_ndcg@10")
    return text


def retrain_seeds_arg(text: str) -> list[int]:
    """argparse type: seeds as --seeds takes them, or none (no re-training)."""
    return [] if text.strip().lower() == "none" else seeds_arg(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default=None, help="tiktok, baby, sports, another folder, or synthetic")
    parser.add_argument("--mode", choices=["grid", "optuna", "random", "retrain"], default="optuna",
                        help="optuna (default), random, grid, or retrain (needs --from: the found configuration "
                             "and the published defaults, each with every seed)")
    parser.add_argument("--params", default=None,
                        help="parameters that move, comma-separated, from M,R,xi,t,tau,theta1,q,variant,"
                             "theta2,lr (default: the seven of the paper; theta2 and lr, which the paper "
                             "fixes, only when named)")
    parser.add_argument("--num-samples", type=non_negative(int), default=DEFAULT_SAMPLES,
                        help=f"trials for optuna/random (default {DEFAULT_SAMPLES})")
    parser.add_argument("--first-trial", choices=["defaults", "none"], default="defaults",
                        help="optuna: the first trial is the model's published defaults (default), or a draw "
                             "like the others (none)")
    parser.add_argument("--scheduler", choices=["asha", "fifo"], default=None,
                        help="default: asha for optuna/random, fifo for grid")
    parser.add_argument("--grace-period", type=non_negative(int), default=DEFAULT_GRACE_PERIOD,
                        help=f"asha: evaluations before a trial may be stopped (default {DEFAULT_GRACE_PERIOD}; "
                             "earlier, validation Recall@20 does not predict the final ranking)")
    parser.add_argument("--metric", type=validation_metric, default="val_recall@20",
                        help="validation metric to maximise, e.g. val_recall@20 or val_ndcg@10")
    parser.add_argument("--seeds", type=seeds_arg, default=None,
                        help=f"seeds, e.g. 2024, 0,1,2 or 0-4; grid, random and retrain run every point once per "
                             f"seed (default {SEARCH_SEED}; retrain: {_seeds_text(RETRAIN_SEEDS)})")
    parser.add_argument("--retrain-seeds", type=retrain_seeds_arg, default=None,
                        help=f"optuna/random: once the search has ended, re-train its best configuration and the "
                             f"published defaults with these seeds (default {_seeds_text(RETRAIN_SEEDS)}; none: "
                             "do not)")
    parser.add_argument("--model", choices=list(MODELS), default="kdiffe",
                        help="the recommender of every trial (default kdiffe); --params defaults to its search space")
    parser.add_argument("--variant", choices=list(VARIANTS), default=None,
                        help="kdiffe's variant of every trial (default kdiffe; not with --params variant)")


def _seeds_text(seeds: tuple[int, ...] | list[int]) -> str:
    return ",".join(map(str, seeds))


def seeds_of(args: argparse.Namespace) -> list[int]:
    return list(args.seeds or (RETRAIN_SEEDS if args.mode == "retrain" else [SEARCH_SEED]))


def retrain_seeds_of(args: argparse.Namespace) -> list[int]:
    """The seeds of a search's closing re-training ([] for grid and retrain, or when refused)."""
    if args.retrain_seeds is not None:
        return list(args.retrain_seeds)
    return list(RETRAIN_SEEDS) if args.mode in ("optuna", "random") else []


def defaults(args: argparse.Namespace) -> dict[str, Any]:
    return {"dataset": args.dataset, "model": args.model, "variant": args.variant or "kdiffe",
            "metric": args.metric[len("val_"):], "epochs": DEFAULT_EPOCHS}


def source_params(source: str) -> str | None:
    """The parameters a found configuration's search moved (its experiment.json), if known."""
    path = Path(source)
    folder = path.parent if path.is_file() else path
    if not (folder / RECORD_FILE).is_file():
        return None
    try:
        params = load_record(folder).get("settings", {}).get("params")
    except UserError:
        return None
    return params if isinstance(params, str) else None


def retrain_name(source: str) -> str:
    """<the source experiment>-retrain (a best.json's or model.json's folder; another file's stem)."""
    path = Path(source).resolve()
    if path.name in (BEST_FILE, "model.json"):
        path = path.parent
    return f"{path.stem if path.is_file() else path.name}-retrain"


def retrain_plan(args: argparse.Namespace, base: dict[str, Any], common: dict[str, Any]) -> Plan:
    """The found configuration (``base`` holds it, from --from) and, when they differ, its searched
    parameters at the published defaults (under --set), each trained with every seed."""
    params = common["params"]
    published = from_dict({"model": args.model, **({"variant": args.variant} if args.variant else {}),
                           **parse_overrides(args.overrides)}).to_dict()
    found = from_dict(base).to_dict()
    arms = [{"sweep": FOUND}]
    if any(published[p] != found[p] for p in params):
        arms.append({"sweep": DEFAULTS, **{p: published[p] for p in params}})
    seeds = seeds_of(args)
    candidates = [{**base, "point": arm, "seed": seeds[0]} for arm in arms]
    return Plan(param_space=base, cells=[{**arm, "seed": s} for arm in arms for s in seeds], candidates=candidates,
                scheduler="fifo", **{**common, "kind": "retrain", "search": "retrain",
                                     "name": retrain_name(args.source)})


def plan(args: argparse.Namespace, base: dict[str, Any]) -> Plan:
    if args.mode == "retrain" and not args.source:
        raise ConfigError("--mode retrain needs --from (a search's experiment folder or best.json)")
    if args.retrain_seeds and args.mode not in ("optuna", "random"):
        raise ConfigError(f"--retrain-seeds: --mode {args.mode} ends without a re-training (optuna and random do)")
    seeds = seeds_of(args)
    text = args.params if args.params or args.mode != "retrain" else source_params(args.source)
    params = parse_params(text, args.model)
    clash = [key for key in parse_overrides(args.overrides) if key in params]
    if clash:
        raise ConfigError(f"--set {clash[0]}=...: {clash[0]} is searched (--params); fix it with --set or "
                          f"search it, not both")
    if "variant" in params and args.variant:
        raise ConfigError(f"--variant {args.variant}: the variant is searched (--params variant)")
    name = f"{args.dataset}-{args.mode}" + (f"-{args.model}" if args.model != "kdiffe" else "") + \
        (f"-{args.variant}" if args.variant not in (None, "kdiffe") else "")
    common = dict(kind="grid" if args.mode == "grid" else "search", name=name,
                  params=params, metric=args.metric, search=args.mode, seed=seeds[0], datasets=(args.dataset,))
    if args.mode == "retrain":
        return retrain_plan(args, base, common)
    if args.mode == "grid":
        points = grid_points(params, base)
        candidates = [{**base, "point": p, "seed": seeds[0]} for p in points]
        return Plan(param_space=base, cells=[{**p, "seed": s} for p in points for s in seeds],
                    candidates=candidates, scheduler=args.scheduler or "fifo", **common)
    if args.mode == "optuna" and len(seeds) > 1:
        raise ConfigError("--mode optuna takes one seed (OptunaSearch cannot grid over seeds)")
    if args.num_samples < 1:
        raise ConfigError("--num-samples must be at least 1")
    candidates = [{**base, **corner, "seed": seeds[0]} for corner in extreme_values(params, args.model)]
    schedule = dict(scheduler=args.scheduler or "asha", grace_period=max(1, args.grace_period))
    if args.mode == "random":  # drawn here, seeded, so a resume plans the very same trials
        points = sample_points(params, args.num_samples, seeds[0], args.model)
        return Plan(param_space=base, cells=[{**p, "seed": s} for p in points for s in seeds],
                    candidates=candidates, num_samples=args.num_samples, **schedule, **common)
    first = default_point(params, base, args.model) if args.first_trial == "defaults" else None
    return Plan(param_space={**base, **joint_space(params, args.model), "seed": seeds[0]}, candidates=candidates,
                num_samples=args.num_samples, first=first, **schedule, **common)


RETRAIN_FILE = "retrain.md"


def finish(outcome: Any, exp: Any, args: argparse.Namespace) -> tuple[list[str], int]:
    if args.mode == "retrain":
        return finish_retrain(outcome, exp, args)
    lines = summary_lines(outcome.frame, args.metric, parse_params(args.params, args.model))
    return lines, 1 if lines[-1] == "no successful trial" else 0


def finish_retrain(outcome: Any, exp: Any, args: argparse.Namespace) -> tuple[list[str], int]:
    """The side by side of the arms (plots.retraining), printed and written to <experiment>/retrain.md."""
    from kdiffe.files import write_atomic
    from plots.retraining import retrain_table

    if best_rows(outcome.frame, args.metric).empty:
        return ["no successful trial"], 1
    table = retrain_table(outcome.frame, args.metric, exp.params)
    title = f"Re-training of {args.source} on {args.dataset} with seeds {_seeds_text(seeds_of(args))}"
    write_atomic(exp.path / RETRAIN_FILE, f"# {title}\n\n" + "\n".join(table) + "\n")
    return [f"{title} (each run at its best validation {args.metric[4:]}):", *table,
            f"table: {exp.path / RETRAIN_FILE}"], 0


def _option(name: str, value: Any) -> list[str]:
    return [f"--{name.replace('_', '-')}", str(value)]


def follow_up(exp: Any, args: argparse.Namespace) -> tuple[str, list[str]] | None:
    """After an optuna or random search that ended cleanly: the re-training of its best configuration
    beside the published defaults (experiment <name>-retrain), or its --resume when an earlier run
    of it did not end; None when there is none to run (grid, retrain, --retrain-seeds none, done)."""
    seeds = retrain_seeds_of(args)
    if not seeds:
        return None
    name = f"{exp.name}-retrain"
    resources = [x for key in RESOURCE_OPTIONS if key != "verbose" and getattr(args, key, None) is not None
                 for x in _option(key, getattr(args, key))] + (["--verbose"] if args.verbose else [])
    where = ["--storage", exp.storage_uri or str(exp.storage), "--name", name]
    if exp.mirror is not None:  # its record is in the store
        Mirror(exp.mirror.store, name, exp.storage / name).pull()
    state = experiment_state(exp.storage / name)
    if state == "done":
        return None
    if state == "resume":
        return f"re-training the best configuration: continuing {name}", [*where, "--resume", *resources]
    argv = ["--dataset", args.dataset, "--model", args.model, "--mode", "retrain", "--from", str(exp.path / BEST_FILE),
            "--seeds", _seeds_text(seeds), "--metric", args.metric, "--data-dir", args.data_dir,
            "--params", ",".join(exp.params), *(_option("variant", args.variant) if args.variant else []),
            *(_option("epochs", args.epochs) if args.epochs is not None else []),
            *(x for pair in args.overrides for x in ("--set", pair)), *where, *resources]
    return (f"re-training the best configuration and the published defaults with seeds {_seeds_text(seeds)} "
            f"({name}; --retrain-seeds none skips this)"), argv


SCRIPT = Script(prog="tune/search.py", doc=__doc__, add_arguments=add_arguments, plan=plan, finish=finish,
                defaults=defaults, follow_up=follow_up, free_on_resume=("retrain_seeds",))


def main(argv: list[str] | None = None) -> int:
    return run_script(SCRIPT, argv)


if __name__ == "__main__":
    sys.exit(main())
