"""Benchmark: seconds per training epoch and peak memory, per dataset and variant.

Each (dataset, variant) runs in a fresh process: build everything, train --epochs epochs, report
the median epoch time and the peak RSS. Usage:
KDIFFE_DATA_DIR=../shared/datasets python benchmarks/bench_epoch.py --datasets tiktok sports --epochs 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import in_subprocess, machine  # noqa: E402

RUN = """
import json, statistics
from kdiffe import Config, Trainer
from kdiffe.trainer import peak_memory_mb
tr = Trainer(Config(dataset={dataset!r}, variant={variant!r}, epochs={epochs}, device={device!r}), log=lambda m: None)
times = [tr.train_epoch()["epoch_seconds"] for _ in range({epochs})]
print(json.dumps(dict(median=statistics.median(times), times=times, peak_mb=peak_memory_mb(tr.device),
                      device=str(tr.device))))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=["tiktok", "sports"])
    parser.add_argument("--variants", nargs="+", default=["lightgcn", "lightgcn_s", "kdiffe", "no_s", "unguided", "no_cl"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print("| dataset | variant | s/epoch (median) | epochs timed | peak RSS MB | device |")
    print("| --- | --- | --- | --- | --- | --- |")
    for dataset in args.datasets:
        for variant in args.variants:
            r = in_subprocess(RUN.format(dataset=dataset, variant=variant, epochs=args.epochs, device=args.device))
            print(f"| {dataset} | {variant} | {r['median']:.2f} | {len(r['times'])} | {r['peak_mb']:.0f} | {r['device']} |",
                  flush=True)


if __name__ == "__main__":
    main()
