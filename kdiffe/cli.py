"""Command line: ``python -m kdiffe train|attention ...``; user mistakes exit 2 with one line."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np

from .attention import attention_matrix
from .config import VARIANTS, ConfigError, from_dict, parse_overrides
from .catalog import MODELS
from .data import load_dataset
from .errors import UserError, report
from .memory import check_dataset_memory


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="synthetic",
                        help="folder under the data dir (tiktok, baby, sports, your own) or 'synthetic'")
    parser.add_argument("--data-dir", default=None, help="folder of datasets (default: $KDIFFE_DATA_DIR, else ./data)")
    parser.add_argument("--seed", type=int, default=2024)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kdiffe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train and evaluate one model")
    _common(tr)
    tr.add_argument("--model", default="kdiffe", choices=list(MODELS),
                    help="the recommender (default kdiffe; lightgcn: He et al. 2020 as published)")
    tr.add_argument("--variant", default=None, choices=list(VARIANTS), help="kdiffe's ablation (default: full)")
    tr.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 50)")
    tr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    tr.add_argument("--select-on", choices=["val", "test"], default="val",
                    help="model selection split; 'test' is the authors' (optimistic) protocol")
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="any Config field, e.g. --set xi=0.7 --set M=50 (repeatable)")
    tr.add_argument("--out", default=None, help="write the JSON summary here")
    at = sub.add_parser("attention", help="build the attention matrix S and print statistics")
    _common(at)
    at.add_argument("--M", type=int, default=50, help="walk length")
    at.add_argument("--R", type=int, default=12, help="walks per node")
    at.add_argument("--restart", type=float, default=0.2, help="restart probability")
    return parser


def _train(args: argparse.Namespace) -> int:
    from .trainer import train

    values = {"dataset": args.dataset, "data_dir": args.data_dir, "seed": args.seed, "model": args.model,
              "device": args.device, "select_on": args.select_on}
    if args.variant is not None:
        values["variant"] = args.variant
    if args.epochs is not None:
        values["epochs"] = args.epochs
    values.update(parse_overrides(args.overrides))
    config = from_dict(values)
    summary = train(config, out=args.out)
    test = summary["test"]
    print(f"best epoch {summary['best_epoch']} (selected on {summary['selected_on']}): "
          f"test recall@20 {test.get('recall@20', float('nan')):.4f} ndcg@20 {test.get('ndcg@20', float('nan')):.4f}; "
          f"{summary['seconds_per_epoch']:.2f} s/epoch")
    if args.out:
        print(f"summary written to {args.out}")
    return 0


def _attention(args: argparse.Namespace) -> int:
    if args.M < 1 or args.R < 1 or not 0 <= args.restart < 1:
        raise ConfigError("need --M >= 1, --R >= 1 and 0 <= --restart < 1")
    ds = load_dataset(args.dataset, args.data_dir, seed=args.seed)
    print(ds.summary())
    walks = from_dict(dict(dataset=args.dataset, M=args.M, R=args.R, restart=args.restart, seed=args.seed,
                           variant="lightgcn_s"))
    check_dataset_memory(walks, ds, "cpu")
    start = time.perf_counter()
    s = attention_matrix(ds.train, args.M, args.R, args.restart, args.seed)
    seconds = time.perf_counter() - start
    q = np.quantile(s.data, [0.0, 0.25, 0.5, 0.75, 1.0])
    print(f"S (M={args.M}, R={args.R}, c={args.restart:g}): {seconds:.2f} s, nnz {s.nnz} "
          f"(= train edges: {s.nnz == ds.train.nnz})")
    print(f"values: mean {s.data.mean():.4f}, min {q[0]:.4f}, q25 {q[1]:.4f}, median {q[2]:.4f}, "
          f"q75 {q[3]:.4f}, max {q[4]:.4f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _train(args) if args.command == "train" else _attention(args)
    except UserError as exc:
        return report(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
