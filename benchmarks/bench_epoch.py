"""Benchmark: seconds per training epoch and peak memory, per dataset and variant (or model).

Each (dataset, variant) runs in a fresh process: build everything, train --epochs epochs, report
the median epoch time and the peak RSS. Usage:
KDIFFE_DATA_DIR=../shared/datasets python benchmarks/bench_epoch.py --datasets tiktok sports --epochs 3
``--models diffmm bm3`` times registered models (at their published defaults) beside the variants.
``--set key=value`` overrides Config fields (e.g. ``--set theta2=4e-5``). ``--code DIR`` times the
kdiffe package in DIR instead (a copy of an older version), and ``--rounds N`` alternates the runs
N times, so before and after are measured in the same time window on a noisy machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, in_subprocess, machine  # noqa: E402
from kdiffe.catalog import MODELS  # noqa: E402
from kdiffe.config import parse_overrides  # noqa: E402

RUN = """
import json, statistics, sys
sys.path.insert(0, {code!r})
from kdiffe import Trainer, from_dict
from kdiffe.trainer import peak_memory_mb
tr = Trainer(from_dict(dict({overrides!r}, dataset={dataset!r}, model={model!r}, variant={variant!r}, epochs={epochs},
                            device={device!r})), log=lambda m: None)
times = [tr.train_epoch()["epoch_seconds"] for _ in range({epochs})]
print(json.dumps(dict(median=statistics.median(times), times=times, peak_mb=peak_memory_mb(tr.device),
                      device=str(tr.device))))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=["tiktok", "sports"])
    parser.add_argument("--variants", nargs="*", default=["lightgcn", "lightgcn_s", "kdiffe", "no_s", "unguided", "no_cl"])
    parser.add_argument("--models", nargs="+", default=[],
                        help="registered models timed beside the variants; 'all': every one but kdiffe")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--code", action="append", default=None,
                        help="folder holding a kdiffe package to time (repeatable; default this checkout)")
    parser.add_argument("--rounds", type=int, default=1, help="alternate all runs this many times")
    args = parser.parse_args()
    overrides = parse_overrides(args.overrides)
    codes = [str(Path(c).resolve()) for c in args.code] if args.code else [str(ROOT)]
    models = [m for m in MODELS if m != "kdiffe"] if args.models == ["all"] else args.models
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise SystemExit(f"error: --models {' '.join(unknown)}: unknown; choose from {', '.join(MODELS)} or all")
    print(f"machine: {machine()}")
    print("| dataset | variant | code | s/epoch (median) | epochs timed | peak RSS MB | device |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for _ in range(args.rounds):
        for dataset in args.datasets:
            for model, variant in [("kdiffe", v) for v in args.variants] + [(m, "kdiffe") for m in models]:
                for code in codes:
                    r = in_subprocess(RUN.format(dataset=dataset, model=model, variant=variant, epochs=args.epochs,
                                                 device=args.device, overrides=overrides, code=code))
                    label = variant if model == "kdiffe" else model
                    print(f"| {dataset} | {label} | {code} | {r['median']:.2f} | {len(r['times'])} | "
                          f"{r['peak_mb']:.0f} | {r['device']} |", flush=True)


if __name__ == "__main__":
    main()
