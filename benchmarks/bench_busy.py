"""Benchmark: a TikTok KDiffE epoch on a busy machine, against the same epoch on an idle one.

Target (docs/benchmarks.md): with one competing CPU-bound process, the default run's epoch takes
at most 2x its idle time. Each setting trains in a fresh process (``OMP_WAIT_POLICY`` must be
set before torch loads) and times ``--epochs`` epochs after one warm-up epoch; the median is
reported. Settings:

- ``default``: what ``python -m kdiffe train`` does (kdiffe.threads): passive OpenMP wait, and the
  threads :func:`kdiffe.threads.default_threads` picks from the 1-minute load average;
- ``passive-2``: passive wait, 2 threads (every core, whatever the load);
- ``active-2``: OpenMP's spinning wait (``OMP_WAIT_POLICY=ACTIVE``), 2 threads: the old default.

Conditions: ``idle``, then ``busy`` (one ``while True`` process started ``--warm`` seconds before,
default 70, so the load average has seen it; it runs through every busy measurement). Usage:
KDIFFE_DATA_DIR=../shared/datasets python benchmarks/bench_busy.py --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, machine  # noqa: E402

RUN = """
import json, os, statistics, sys, time
sys.path.insert(0, {root!r})
from kdiffe import Trainer, from_dict
from kdiffe.threads import default_threads, set_threads
threads = set_threads({threads})
tr = Trainer(from_dict(dict(dataset={dataset!r}, epochs={epochs} + 1, device="cpu")), log=lambda m: None)
tr.train_epoch()
times = [tr.train_epoch()["epoch_seconds"] for _ in range({epochs})]
print(json.dumps(dict(median=statistics.median(times), times=times, threads=threads, load=os.getloadavg()[0])))
"""

SETTINGS = {"default": ("PASSIVE", None), "passive-2": ("PASSIVE", 2), "active-2": ("ACTIVE", 2)}


def measure(setting: str, dataset: str, epochs: int) -> dict:
    policy, threads = SETTINGS[setting]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": policy}
    out = subprocess.run([sys.executable, "-c", RUN.format(root=str(ROOT), threads=threads, dataset=dataset,
                                                          epochs=epochs)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def wait_for_quiet(below: float = 0.3, limit: float = 300.0) -> None:
    """Wait (at most ``limit`` seconds) for the 1-minute load average to fall below ``below``."""
    end = time.monotonic() + limit
    while os.getloadavg()[0] >= below and time.monotonic() < end:
        time.sleep(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="tiktok")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per setting (after one warm-up)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--warm", type=float, default=70.0, help="seconds the competitor runs before timing")
    args = parser.parse_args()
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    idle = {}
    for s in args.settings:  # each after the load has settled, so the default sees an idle machine
        wait_for_quiet()
        idle[s] = measure(s, args.dataset, args.epochs)
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(args.warm)
        busy = {s: measure(s, args.dataset, args.epochs) for s in args.settings}
    finally:
        competitor.kill()
        competitor.wait()
    print("| setting | idle s/epoch (threads) | busy s/epoch (threads, load) | busy / idle |")
    print("| --- | --- | --- | --- |")
    for s in args.settings:
        i, b = idle[s], busy[s]
        print(f"| {s} | {i['median']:.2f} ({i['threads']}) | {b['median']:.2f} ({b['threads']}, {b['load']:.2f}) | "
              f"{b['median'] / i['median']:.2f}x |")
    print(json.dumps({"idle": idle, "busy": busy}))


if __name__ == "__main__":
    main()
