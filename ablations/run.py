"""The ablation suite of Table III as one Ray Tune experiment.

    python ablations/run.py --dataset tiktok --seeds 0-4
    python ablations/run.py --dataset tiktok baby --seeds 0-2 --epochs 30
    python ablations/run.py --dataset tiktok --seeds 0,7,42 --variants kdiffe,no_cl

Runs kdiffe, no_s (KDiffE_1), unguided (KDiffE_2), no_cl (KDiffE_3) and lightgcn x seeds x
datasets (kind "ablation"), and beside them any registered baseline models (``--models
lightgcn,sgl,ncl``: each with its own published defaults, the same seeds and epochs); writes <storage>/<name>/results.csv, best.json, and table_iii.md /
table_iii.csv: per dataset, mean ± std over seeds of test Recall@20 / NDCG@20 at each trial's best
validation epoch, with a paired t-test (over seeds) of each ablation against the full model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdiffe.config import VARIANTS, ConfigError  # noqa: E402
from kdiffe.catalog import MODELS  # noqa: E402
from plots.tables import (format_table_ii, table_ii, table_iii, table_iii_markdown, to_markdown,  # noqa: E402
                          write_table_ii, write_table_iii)
from tune.cli import Plan, Script, main as run_script, seeds_arg, trial_lines  # noqa: E402

ABLATION_VARIANTS = ("kdiffe", "no_s", "unguided", "no_cl", "lightgcn")
DEFAULT_EPOCHS = 30


def variants_arg(text: str) -> list[str]:
    """argparse type: 'kdiffe,no_cl' -> ['kdiffe', 'no_cl'], each a kdiffe variant; 'none' -> [] (only
    the --models run)."""
    if text.strip() == "none":
        return []
    variants = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        names = ", ".join(unknown) if unknown else repr(text)
        raise argparse.ArgumentTypeError(f"unknown variant {names}; choose from {', '.join(VARIANTS)}")
    return variants


def models_arg(text: str) -> list[str]:
    """argparse type: 'lightgcn,sgl' -> those, each a registered model other than kdiffe."""
    models = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in models if m not in MODELS or m == "kdiffe"]
    if unknown or not models:
        names = ", ".join(unknown) if unknown else repr(text)
        baselines = ", ".join(m for m in MODELS if m != "kdiffe")
        raise argparse.ArgumentTypeError(f"unknown baseline model {names}; choose from {baselines} "
                                         "(KDiffE's own ablations are --variants)")
    return models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", nargs="+", default=None, help="one or more datasets")
    parser.add_argument("--seeds", type=seeds_arg, default=seeds_arg("0-4"),
                        help="seeds, e.g. 0-4 (the default), 0,7,42 or 3")
    parser.add_argument("--variants", type=variants_arg, default=list(ABLATION_VARIANTS),
                        help="comma-separated variants (default: the five of Table III); none: only --models")
    parser.add_argument("--models", type=models_arg, default=[],
                        help="baseline models run beside the variants, e.g. lightgcn,sgl,ncl (default: none)")


def plan(args: argparse.Namespace, base: dict[str, Any]) -> Plan:
    datasets = tuple(dict.fromkeys(args.dataset))
    if not args.variants and not args.models:
        raise ConfigError("--variants none: nothing to run; name baseline models with --models")
    methods = [{"variant": v} for v in args.variants] + [{"model": m} for m in args.models]
    cells = [{"dataset": d, **method, "seed": s} for d in datasets for method in methods for s in args.seeds]
    return Plan(kind="ablation", name=f"ablation-{'-'.join(datasets)}", param_space=base, cells=cells,
                candidates=[{**base, "dataset": d, **method, "seed": args.seeds[0]}
                            for d in datasets for method in methods],
                params=("dataset", "variant", "model", "seed"), datasets=datasets)


def finish(outcome: Any, exp: Any, args: argparse.Namespace) -> tuple[list[str], int]:
    """Table III of the kdiffe model's variants that ran, and Table II of every model that ran
    (baseline models beside them, each with its paired p against KDiffE where KDiffE ran too)."""
    lines = trial_lines(outcome.frame)
    table = table_iii(outcome.frame)
    written = []
    if not table.empty:
        md, csv = write_table_iii(table, exp.path)
        lines += [table_iii_markdown(table)]
        written.append(f"Table III: {md} and {csv}")
    if args.models:
        models = table_ii(outcome.frame)
        if not models.empty:
            md, csv = write_table_ii(models, exp.path)
            lines += [to_markdown(format_table_ii(models))]
            written.append(f"Table II: {md} and {csv}")
    if not written:
        return lines + ["no successful trial: no table"], 1
    return lines + [f"{'; '.join(written)}; results: {exp.path / 'results.csv'}"], 0


SCRIPT = Script(prog="ablations/run.py", doc=__doc__, add_arguments=add_arguments, plan=plan, finish=finish,
                defaults=lambda args: {"epochs": DEFAULT_EPOCHS},
                fixed=(("dataset", "--dataset"), ("variant", "--variants"), ("model", "--models"),
                       ("seed", "--seeds")))


def main(argv: list[str] | None = None) -> int:
    return run_script(SCRIPT, argv)


if __name__ == "__main__":
    sys.exit(main())
