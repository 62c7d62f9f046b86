"""Hyperparameter search for KDiffE as a Ray Tune experiment.

    python tune/search.py --dataset tiktok                       # default: optuna + ASHA, 16 trials
    python tune/search.py --dataset tiktok --mode grid --params M,R --seeds 0,1,2   # Figure 6 data
    python tune/search.py --dataset tiktok --name my-run --resume  # continue an interrupted run

Results: <storage>/<name>/results.csv (one row per trial x evaluation) and best.json. Model
selection is on validation; test metrics are those of the best validation evaluation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdiffe.config import VARIANTS, ConfigError, parse_overrides  # noqa: E402
from kdiffe.data import DatasetError  # noqa: E402
from kdiffe.results import metric_columns  # noqa: E402

from tune.experiment import Experiment, base_values, check_dataset, fail, run, summary_line, validate_configs  # noqa: E402
from tune.spaces import extreme_values, grid_points, joint_space, parse_params  # noqa: E402


def seeds_arg(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("need at least one seed")
    return seeds


def positive(kind):
    def parse(text: str):
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value
    return parse


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by search.py, ablations/run.py and scalability.py."""
    parser.add_argument("--data-dir", default=None, help="folder of datasets (default $KDIFFE_DATA_DIR, else ./data)")
    parser.add_argument("--epochs", type=positive(int), default=None)
    parser.add_argument("--cpus-per-trial", type=positive(float), default=1.0)
    parser.add_argument("--gpus-per-trial", type=positive(float), default=0.0,
                        help="fraction of a GPU per trial, e.g. 0.25 packs four trials on one GPU")
    parser.add_argument("--max-concurrent", type=positive(int), default=None)
    parser.add_argument("--address", default=None, help="join an existing Ray cluster (default: start a local Ray)")
    parser.add_argument("--storage", default="results", help="folder holding experiments (default ./results)")
    parser.add_argument("--name", default=None, help="experiment name (folder under --storage)")
    parser.add_argument("--resume", action="store_true", help="continue the experiment --name")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="fixed Config override for every trial (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tune/search.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="tiktok, baby, sports, your folder, or synthetic")
    parser.add_argument("--mode", choices=["grid", "optuna", "random"], default="optuna")
    parser.add_argument("--params", default=None,
                        help="parameters that move, comma-separated, from M,R,xi,t,tau,theta1,q,variant (default: the seven)")
    parser.add_argument("--num-samples", type=positive(int), default=16, help="trials for optuna/random")
    parser.add_argument("--scheduler", choices=["asha", "fifo"], default=None,
                        help="default: asha for optuna/random, fifo for grid")
    parser.add_argument("--metric", default="val_recall@20", help="validation metric to maximise")
    parser.add_argument("--seeds", type=seeds_arg, default=[2024], help="comma-separated seeds (grid/random)")
    parser.add_argument("--variant", choices=list(VARIANTS), default="kdiffe")
    add_run_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.metric not in metric_columns() or not args.metric.startswith("val_"):
        fail(f"--metric {args.metric!r}: choose a validation metric such as val_recall@20 or val_ndcg@10")
    try:
        params = parse_params(args.params)
        overrides = parse_overrides(args.overrides)
        base = base_values(args, {"dataset": args.dataset, "variant": args.variant, **overrides})
        if args.epochs is None and "epochs" not in overrides:
            base["epochs"] = 20
        check_dataset(args.dataset, base["data_dir"])
        if args.mode == "grid":
            points = grid_points(params, base)
            space = {**base, "point": _grid(points), "seed": _grid(args.seeds)}
            candidates = [{**base, "point": p} for p in points]
            num_samples = 1
        else:
            if args.mode == "optuna" and len(args.seeds) > 1:
                fail("--mode optuna takes one seed (OptunaSearch cannot grid over seeds)")
            space = {**base, **joint_space(params),
                     "seed": _grid(args.seeds) if args.mode == "random" else args.seeds[0]}
            candidates = [{**base, **corner} for corner in extreme_values(params)]
            num_samples = args.num_samples
        validate_configs({**c, "seed": args.seeds[0]} for c in candidates)
    except (ConfigError, DatasetError) as exc:
        fail(str(exc))
    scheduler = args.scheduler or ("fifo" if args.mode == "grid" else "asha")
    name = args.name or f"{args.dataset}-{args.mode}"
    exp = Experiment(name=name, storage=Path(args.storage).resolve(), kind="grid" if args.mode == "grid" else "search",
                     param_space=space, metric=args.metric, num_samples=num_samples, search=args.mode,
                     scheduler=scheduler, max_t=base["epochs"], cpus_per_trial=args.cpus_per_trial,
                     gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
                     address=args.address, resume=args.resume, seed=args.seeds[0])
    frame = run(exp)
    print(f"results: {exp.path / 'results.csv'} ({frame['trial_id'].nunique()} trials, {len(frame)} rows)")
    print(summary_line(frame, args.metric))
    return 0


def _grid(values):
    from ray import tune

    return tune.grid_search(list(values))


if __name__ == "__main__":
    sys.exit(main())
