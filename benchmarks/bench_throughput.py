"""Benchmark: aggregate trial-epochs per second through the real runner, by concurrency.

For each N in --concurrency (default 1, 2, 4, ... up to the CPUs), one experiment of --trials
trials (default: the largest N) runs through ``tune/search.py`` (its code, in a fresh process:
``--mode random --params tau --scheduler fifo``) with N trials at a time and CPUs / N threads each,
for --epochs epochs, early stopping off. Throughput = trial-epochs / wall seconds of the whole
command (Ray start, data loading and S included: what a user waits for). Also runs the runner's
default resources (no --cpus-per-trial / --max-concurrent) and prints its ratio to N = 1.
With --gpus, N trials share one GPU (--gpus-per-trial 1/N) instead.

KDIFFE_DATA_DIR=../shared/datasets python benchmarks/bench_throughput.py --dataset tiktok --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, machine  # noqa: E402


def run(dataset: str, epochs: int, trials: int, concurrent: int | None, cpus: float | None, gpus: float,
        extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as storage:
        argv = [sys.executable, str(ROOT / "tune" / "search.py"), "--dataset", dataset, "--mode", "random",
                "--params", "tau", "--num-samples", str(trials), "--scheduler", "fifo", "--epochs", str(epochs),
                "--set", "patience=0", "--storage", storage, "--name", "bench", *extra]
        if concurrent is not None:
            argv += ["--max-concurrent", str(concurrent)]
        if cpus is not None:
            argv += ["--cpus-per-trial", f"{cpus:g}"]
        if gpus:
            argv += ["--gpus-per-trial", f"{gpus:g}"]
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"error: runner failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        choice = proc.stdout.splitlines()[0]
        import pandas as pd

        frame = pd.read_csv(Path(storage) / "bench" / "results.csv")
        per_trial = frame.groupby("trial_id")["epoch_seconds"].median()
    done = int(frame["epoch"].count())
    return {"wall": wall, "trial_epochs": done, "per_second": done / wall, "choice": choice,
            "epoch_seconds": float(per_trial.median())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="tiktok")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--concurrency", default=None, help="comma-separated N (default 1, 2, 4, ... up to the CPUs)")
    parser.add_argument("--trials", type=int, default=None, help="trials per experiment (default: the largest N)")
    parser.add_argument("--gpus", action="store_true", help="pack N trials on one GPU instead of splitting the CPUs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Config value for every trial")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    if args.concurrency:
        levels = [int(n) for n in args.concurrency.split(",")]
    else:
        levels, n = [], 1
        while n <= (16 if args.gpus else cpus):
            levels.append(n)
            n *= 2
    trials = args.trials or max(levels)
    extra = [x for pair in args.overrides for x in ("--set", pair)]
    print(f"machine: {machine()}; {args.dataset}, {trials} trials x {args.epochs} epochs each", flush=True)
    print("| trials at once | CPUs each | GPU each | wall s | trial-epochs/s | vs 1 at a time | median s/epoch of a trial |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows, base = [], None
    for n in levels:
        gpus = 1.0 / n if args.gpus else 0.0
        each = float(max(1, cpus // n))
        r = run(args.dataset, args.epochs, trials, n, each, gpus, extra)
        base = base or r["per_second"]
        rows.append({"n": n, "cpus": each, "gpus": gpus, **r})
        print(f"| {n} | {each:g} | {gpus:g} | {r['wall']:.1f} | {r['per_second']:.3f} | {r['per_second'] / base:.2f}x "
              f"| {r['epoch_seconds']:.2f} |", flush=True)
    r = run(args.dataset, args.epochs, trials, None, None, 1.0 / max(levels) if args.gpus else 0.0, extra)
    rows.append({"n": "default", **r})
    print(f"| default: {r['choice']} | | | {r['wall']:.1f} | {r['per_second']:.3f} | {r['per_second'] / base:.2f}x "
          f"| {r['epoch_seconds']:.2f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
