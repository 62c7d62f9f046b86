"""The ablation suite of Table III as one Ray Tune experiment.

    python ablations/run.py --dataset tiktok --seeds 5
    python ablations/run.py --dataset tiktok baby --seeds 3 --epochs 30
    python ablations/run.py --dataset tiktok --seeds 0,7,42 --variants kdiffe,no_cl

Runs kdiffe, no_s (KDiffE_1), unguided (KDiffE_2), no_cl (KDiffE_3) and lightgcn x seeds x
datasets (kind "ablation"); writes <storage>/<name>/results.csv, best.json, and table_iii.md /
table_iii.csv: per dataset, mean ± std over seeds of test Recall@20 / NDCG@20 at each trial's best
validation epoch, with a paired t-test (over seeds) of each ablation against the full model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdiffe.config import VARIANTS, ConfigError, parse_overrides  # noqa: E402
from kdiffe.data import DatasetError  # noqa: E402
from plots.tables import table_iii, table_iii_markdown, write_table_iii  # noqa: E402
from tune.experiment import (Experiment, Parser, add_run_options, base_values, check_dataset,  # noqa: E402
                             evaluations, fail, interrupted_line, run, trial_lines,
                             validate_configs)

ABLATION_VARIANTS = ("kdiffe", "no_s", "unguided", "no_cl", "lightgcn")
DEFAULT_EPOCHS = 30


def seeds_arg(text: str) -> list[int]:
    """argparse type: 'N' -> seeds 0..N-1; 'a,b,c' -> those seeds."""
    try:
        if "," in text:
            seeds = list(dict.fromkeys(int(s) for s in text.split(",") if s.strip()))
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or comma-separated seeds, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"need at least one seed, got {text!r}")
    return seeds


def variants_arg(text: str) -> list[str]:
    """argparse type: 'kdiffe,no_cl' -> ['kdiffe', 'no_cl'], each a kdiffe variant."""
    variants = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        names = ", ".join(unknown) if unknown else repr(text)
        raise argparse.ArgumentTypeError(f"unknown variant {names}; choose from {', '.join(VARIANTS)}")
    return variants


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ablations/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", nargs="+", required=True, help="one or more datasets")
    parser.add_argument("--seeds", type=seeds_arg, default=seeds_arg("5"),
                        help="number of seeds N (0..N-1), or comma-separated seeds (default 5)")
    parser.add_argument("--variants", type=variants_arg, default=list(ABLATION_VARIANTS),
                        help="comma-separated variants (default: the five of Table III)")
    add_run_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ray import tune

    args = build_parser().parse_args(argv)
    datasets = list(dict.fromkeys(args.dataset))
    try:
        overrides = parse_overrides(args.overrides)
        for key, option in (("dataset", "--dataset"), ("variant", "--variants"), ("seed", "--seeds")):
            if key in overrides:
                fail(f"--set {key}=...: the suite sets {key} itself; use {option}")
        base = base_values(args, overrides, {"epochs": DEFAULT_EPOCHS})
        for dataset in datasets:
            check_dataset(dataset, base["data_dir"])
        validate_configs({**base, "dataset": d, "variant": v, "seed": args.seeds[0]}
                         for d in datasets for v in args.variants)
    except (ConfigError, DatasetError) as exc:
        fail(str(exc))
    space = {**base, "dataset": tune.grid_search(datasets), "variant": tune.grid_search(args.variants),
             "seed": tune.grid_search(args.seeds)}
    exp = Experiment(name=args.name or f"ablation-{'-'.join(datasets)}", storage=Path(args.storage).resolve(),
                     kind="ablation", param_space=space, max_t=evaluations(base["epochs"], base.get("eval_every", 1)),
                     cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                     max_concurrent=args.max_concurrent, address=args.address, resume=args.resume)
    frame = run(exp)
    print("\n".join(trial_lines(frame) + interrupted_line(exp, "ablations/run.py")))
    table = table_iii(frame)
    if table.empty:
        print("no successful trial: no Table III")
        return 1
    md, csv = write_table_iii(table, exp.path)
    print(table_iii_markdown(table))
    print(f"Table III: {md} and {csv}; results: {exp.path / 'results.csv'}")
    return 130 if exp.extra.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
