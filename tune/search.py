"""Hyperparameter search for KDiffE as one Ray Tune experiment.

    python tune/search.py --dataset tiktok                       # default: optuna + ASHA, 24 trials, defaults first
    python tune/search.py --dataset tiktok --mode grid --params M,R --seeds 0-2   # Figure 6 data
    python tune/search.py --name tiktok-optuna --resume            # continue an interrupted run

Modes: grid (the paper's one-factor-at-a-time sweeps, other parameters at their defaults),
optuna (joint search with OptunaSearch), random. Results: <storage>/<name>/results.csv (one row
per trial x evaluation, schema kdiffe.results) and best.json. Model selection is on validation;
test metrics are those of the best validation evaluation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdiffe.config import VARIANTS, ConfigError, parse_overrides  # noqa: E402
from kdiffe.results import metric_columns  # noqa: E402
from kdiffe.catalog import MODELS  # noqa: E402

from tune.cli import Plan, Script, main as run_script, non_negative, seeds_arg, summary_lines  # noqa: E402
from tune.experiment import DEFAULT_GRACE_PERIOD  # noqa: E402
from tune.spaces import (default_point, extreme_values, grid_points, joint_space, parse_params,  # noqa: E402
                         sample_points)

#: The default budget, measured (docs/results.md, tiktok-search-kdiffe: 24 trials of at most 60 epochs
#: with ASHA took 26 min on 2 cores, two trials at a time, and its best re-run with 5 seeds reached
#: the paper's defaults trained to convergence); shorter trials rewarded the fastest learners.
DEFAULT_EPOCHS = 60
DEFAULT_SAMPLES = 24


def validation_metric(text: str) -> str:
    """argparse type: a validation metric column such as val_recall@20 (never a test metric)."""
    if text not in metric_columns() or not text.startswith("val_"):
        raise argparse.ArgumentTypeError(f"{text}: choose a validation metric such as val_recall@20 or val_ndcg@10")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default=None, help="tiktok, baby, sports, another folder, or synthetic")
    parser.add_argument("--mode", choices=["grid", "optuna", "random"], default="optuna")
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
    parser.add_argument("--seeds", type=seeds_arg, default=[2024],
                        help="seeds, e.g. 2024, 0,1,2 or 0-4; grid and random run every point once per seed")
    parser.add_argument("--model", choices=list(MODELS), default="kdiffe",
                        help="the recommender of every trial (default kdiffe); --params defaults to its search space")
    parser.add_argument("--variant", choices=list(VARIANTS), default=None,
                        help="kdiffe's variant of every trial (default kdiffe; not with --params variant)")


def defaults(args: argparse.Namespace) -> dict[str, Any]:
    return {"dataset": args.dataset, "model": args.model, "variant": args.variant or "kdiffe",
            "metric": args.metric[len("val_"):], "epochs": DEFAULT_EPOCHS}


def plan(args: argparse.Namespace, base: dict[str, Any]) -> Plan:
    params = parse_params(args.params, args.model)
    clash = [key for key in parse_overrides(args.overrides) if key in params]
    if clash:
        raise ConfigError(f"--set {clash[0]}=...: {clash[0]} is searched (--params); fix it with --set or "
                          f"search it, not both")
    if "variant" in params and args.variant:
        raise ConfigError(f"--variant {args.variant}: the variant is searched (--params variant)")
    name = f"{args.dataset}-{args.mode}" + (f"-{args.model}" if args.model != "kdiffe" else "") + \
        (f"-{args.variant}" if args.variant not in (None, "kdiffe") else "")
    common = dict(kind="grid" if args.mode == "grid" else "search", name=name,
                  params=params, metric=args.metric, search=args.mode, seed=args.seeds[0], datasets=(args.dataset,))
    if args.mode == "grid":
        points = grid_points(params, base)
        candidates = [{**base, "point": p, "seed": args.seeds[0]} for p in points]
        return Plan(param_space=base, cells=[{**p, "seed": s} for p in points for s in args.seeds],
                    candidates=candidates, scheduler=args.scheduler or "fifo", **common)
    if args.mode == "optuna" and len(args.seeds) > 1:
        raise ConfigError("--mode optuna takes one seed (OptunaSearch cannot grid over seeds)")
    if args.num_samples < 1:
        raise ConfigError("--num-samples must be at least 1")
    candidates = [{**base, **corner, "seed": args.seeds[0]} for corner in extreme_values(params, args.model)]
    schedule = dict(scheduler=args.scheduler or "asha", grace_period=max(1, args.grace_period))
    if args.mode == "random":  # drawn here, seeded, so a resume plans the very same trials
        points = sample_points(params, args.num_samples, args.seeds[0], args.model)
        return Plan(param_space=base, cells=[{**p, "seed": s} for p in points for s in args.seeds],
                    candidates=candidates, num_samples=args.num_samples, **schedule, **common)
    first = default_point(params, base, args.model) if args.first_trial == "defaults" else None
    return Plan(param_space={**base, **joint_space(params, args.model), "seed": args.seeds[0]}, candidates=candidates,
                num_samples=args.num_samples, first=first, **schedule, **common)


def finish(outcome: Any, exp: Any, args: argparse.Namespace) -> tuple[list[str], int]:
    lines = summary_lines(outcome.frame, args.metric, parse_params(args.params, args.model))
    return lines, 1 if lines[-1] == "no successful trial" else 0


SCRIPT = Script(prog="tune/search.py", doc=__doc__, add_arguments=add_arguments, plan=plan, finish=finish,
                defaults=defaults)


def main(argv: list[str] | None = None) -> int:
    return run_script(SCRIPT, argv)


if __name__ == "__main__":
    sys.exit(main())
