"""The ablation suite of Table III as one Ray Tune experiment.

    python ablations/run.py --dataset tiktok --seeds 5
    python ablations/run.py --dataset tiktok baby --seeds 3 --epochs 30

Runs kdiffe, no_s (KDiffE_1), unguided (KDiffE_2), no_cl (KDiffE_3) and lightgcn x seeds x
datasets; writes <storage>/<name>/results.csv, best.json, and table_iii.md / table_iii.csv:
mean ± std over seeds of test Recall@20 / NDCG@20 at each trial's best validation epoch, with a
paired t-test of each ablation against the full model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdiffe.config import ConfigError, parse_overrides  # noqa: E402
from kdiffe.data import DatasetError  # noqa: E402
from plots.tables import format_table_iii, table_iii, to_markdown, write_table_iii  # noqa: E402
from tune.experiment import Experiment, base_values, check_dataset, fail, run, validate_configs  # noqa: E402
from tune.search import add_run_options, positive  # noqa: E402

ABLATION_VARIANTS = ("kdiffe", "no_s", "unguided", "no_cl", "lightgcn")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ablations/run.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", nargs="+", required=True, help="one or more datasets")
    parser.add_argument("--seeds", type=positive(int), default=5, help="number of seeds (0..N-1)")
    parser.add_argument("--variants", default=",".join(ABLATION_VARIANTS),
                        help="comma-separated variants (default: the five of Table III)")
    add_run_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ray import tune

    args = build_parser().parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.seeds < 1:
        fail("--seeds must be at least 1")
    try:
        overrides = parse_overrides(args.overrides)
        base = base_values(args, overrides)
        base.setdefault("epochs", 30)
        for dataset in args.dataset:
            check_dataset(dataset, base["data_dir"])
        validate_configs({**base, "dataset": d, "variant": v} for d in args.dataset for v in variants)
    except (ConfigError, DatasetError) as exc:
        fail(str(exc))
    space = {**base, "dataset": tune.grid_search(args.dataset), "variant": tune.grid_search(variants),
             "seed": tune.grid_search(list(range(args.seeds)))}
    name = args.name or f"ablation-{'-'.join(args.dataset)}"
    exp = Experiment(name=name, storage=Path(args.storage).resolve(), kind="ablation", param_space=space,
                     max_t=base["epochs"], cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                     max_concurrent=args.max_concurrent, address=args.address, resume=args.resume)
    frame = run(exp)
    table = table_iii(frame)
    md, csv = write_table_iii(table, exp.path)
    print(to_markdown(format_table_iii(table)))
    print(f"Table III: {md} and {csv}; results: {exp.path / 'results.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
