"""Hyperparameter search for KDiffE as one Ray Tune experiment.

    python tune/search.py --dataset tiktok                       # default: optuna + ASHA, 16 trials
    python tune/search.py --dataset tiktok --mode grid --params M,R --seeds 0,1,2   # Figure 6 data
    python tune/search.py --dataset tiktok --name my-run --resume  # continue an interrupted run

Modes: grid (the paper's one-factor-at-a-time sweeps, other parameters at their defaults),
optuna (joint search with OptunaSearch), random. Results: <storage>/<name>/results.csv (one row
per trial x evaluation, schema kdiffe.results) and best.json. Model selection is on validation;
test metrics are those of the best validation evaluation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterable

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdiffe.config import VARIANTS, ConfigError, parse_overrides  # noqa: E402
from kdiffe.data import DatasetError  # noqa: E402
from kdiffe.results import metric_columns  # noqa: E402

from tune.experiment import (Experiment, Parser, add_run_options, base_values, check_dataset,  # noqa: E402
                             evaluations, fail, interrupted_line, non_negative, run, summary_lines,
                             validate_configs)
from tune.spaces import extreme_values, grid_points, joint_space, parse_params  # noqa: E402

DEFAULT_EPOCHS = 20
DEFAULT_SAMPLES = 16


def seeds_arg(text: str) -> list[int]:
    """argparse type: '0,1,2' -> [0, 1, 2]."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("need at least one seed")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tune/search.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="tiktok, baby, sports, another folder, or synthetic")
    parser.add_argument("--mode", choices=["grid", "optuna", "random"], default="optuna")
    parser.add_argument("--params", default=None,
                        help="parameters that move, comma-separated, from M,R,xi,t,tau,theta1,q,variant "
                             "(default: the seven of the paper)")
    parser.add_argument("--num-samples", type=non_negative(int), default=DEFAULT_SAMPLES,
                        help=f"trials for optuna/random (default {DEFAULT_SAMPLES})")
    parser.add_argument("--scheduler", choices=["asha", "fifo"], default=None,
                        help="default: asha for optuna/random, fifo for grid")
    parser.add_argument("--metric", default="val_recall@20", help="validation metric to maximise")
    parser.add_argument("--seeds", type=seeds_arg, default=[2024],
                        help="comma-separated seeds; grid and random run every point once per seed")
    parser.add_argument("--variant", choices=list(VARIANTS), default="kdiffe", help="variant of every trial "
                        "(unless --params has variant)")
    add_run_options(parser)
    return parser


def _grid(values: Iterable[Any]) -> Any:
    from ray import tune

    return tune.grid_search(list(values))


def build_space(args: argparse.Namespace, params: tuple[str, ...], base: dict[str, Any]
                ) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """(Ray param_space, candidate configs to validate, num_samples) for the chosen mode."""
    if args.mode == "grid":
        points = grid_points(params, base)
        space = {**base, "point": _grid(points), "seed": _grid(args.seeds)}
        return space, [{**base, "point": p} for p in points], 1
    if args.mode == "optuna" and len(args.seeds) > 1:
        fail("--mode optuna takes one seed (OptunaSearch cannot grid over seeds)")
    if args.num_samples < 1:
        fail("--num-samples must be at least 1")
    seed = _grid(args.seeds) if args.mode == "random" and len(args.seeds) > 1 else args.seeds[0]
    space = {**base, **joint_space(params), "seed": seed}
    return space, [{**base, **corner} for corner in extreme_values(params)], args.num_samples


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.metric not in metric_columns() or not args.metric.startswith("val_"):
        fail(f"--metric {args.metric}: choose a validation metric such as val_recall@20 or val_ndcg@10")
    try:
        params = parse_params(args.params)
        overrides = parse_overrides(args.overrides)
        defaults = {"dataset": args.dataset, "variant": args.variant, "metric": args.metric[len("val_"):],
                    "epochs": DEFAULT_EPOCHS}
        base = base_values(args, overrides, defaults)
        check_dataset(base["dataset"], base["data_dir"])
        space, candidates, num_samples = build_space(args, params, base)
        validate_configs({**c, "seed": args.seeds[0]} for c in candidates)
    except (ConfigError, DatasetError) as exc:
        fail(str(exc))
    exp = Experiment(name=args.name or f"{args.dataset}-{args.mode}", storage=Path(args.storage).resolve(),
                     kind="grid" if args.mode == "grid" else "search", param_space=space, metric=args.metric,
                     num_samples=num_samples, search=args.mode,
                     scheduler=args.scheduler or ("fifo" if args.mode == "grid" else "asha"),
                     max_t=evaluations(base["epochs"], base.get("eval_every", 1)),
                     cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                     max_concurrent=args.max_concurrent, address=args.address, resume=args.resume,
                     seed=args.seeds[0])
    frame = run(exp)
    print(f"results: {exp.path / 'results.csv'} ({len(frame)} rows); best: {exp.path / 'best.json'}")
    lines = summary_lines(frame, args.metric, params)
    print("\n".join(lines + interrupted_line(exp, "tune/search.py")))
    if exp.extra.get("interrupted"):
        return 130
    return 1 if lines[-1] == "no successful trial" else 0


if __name__ == "__main__":
    sys.exit(main())
