"""Benchmark: test accuracy at the best validation epoch, mean of several seeds, per variant.

Usage: KDIFFE_DATA_DIR=../shared/datasets python benchmarks/bench_accuracy.py --dataset tiktok \\
           --variants lightgcn lightgcn_s --seeds 3 --epochs 30 [--set key=value ...]
Prints one markdown row per variant: mean ± std of test Recall@20 / NDCG@20 and validation Recall@20.
``--set VARIANT.key=value`` applies to one variant only (e.g. each variant's validation-chosen θ₂).
``--jsonl FILE`` also appends every run's summary (one JSON object per line) as soon as it ends.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine  # noqa: E402
from kdiffe import train  # noqa: E402
from kdiffe.config import VARIANTS, ConfigError, from_dict, parse_overrides  # noqa: E402
from kdiffe.data import DatasetError  # noqa: E402


def fmt(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="tiktok")
    parser.add_argument("--variants", nargs="+", default=["lightgcn", "lightgcn_s", "kdiffe"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--jsonl", type=Path, default=None, help="append each run's summary here")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    shared, scoped = [], {v: [] for v in VARIANTS}
    for pair in args.overrides:
        prefix, dot, rest = pair.partition(".")
        if dot and prefix in VARIANTS:
            scoped[prefix].append(rest)
        else:
            shared.append(pair)
    overrides = parse_overrides(shared)
    per_variant = {v: parse_overrides(pairs) for v, pairs in scoped.items()}
    print("| dataset | variant | settings | seeds | epochs | test Recall@20 | test NDCG@20 | val Recall@20 | best epochs | s/epoch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for variant in args.variants:
        rows = []
        for seed in range(args.seeds):
            cfg = from_dict({"dataset": args.dataset, "variant": variant, "epochs": args.epochs, "seed": seed,
                             **overrides, **per_variant[variant]})
            rows.append(train(cfg, log=lambda m: None))
            if args.jsonl:
                with args.jsonl.open("a") as fh:
                    fh.write(json.dumps(rows[-1]) + "\n")
        recall = [r["test"]["recall@20"] for r in rows]
        ndcg = [r["test"]["ndcg@20"] for r in rows]
        val = [r["val"]["recall@20"] for r in rows]
        settings = " ".join(f"{k}={v}" for k, v in {**overrides, **per_variant[variant]}.items())
        print(f"| {args.dataset} | {variant} | {settings} | {args.seeds} | {args.epochs} | {fmt(recall)} | {fmt(ndcg)} | {fmt(val)} | "
              f"{', '.join(str(r['best_epoch']) for r in rows)} | "
              f"{statistics.median(r['seconds_per_epoch'] for r in rows):.2f} |", flush=True)


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DatasetError) as exc:
        sys.exit(f"error: {exc}")
