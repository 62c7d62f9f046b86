"""Benchmark: KDiffE's InfoNCE negatives (Config.cl_negatives) on TikTok, accuracy and time.

Eq. 13 ranks each anchor against every user / item of the other view (``all``, the default);
``sampled`` against the batch's distinct nodes plus ``cl_samples`` uniform ones, ``batch`` against
the batch's distinct nodes only. Each form trains full KDiffE (paper defaults, θ₂ = 4e-5, at most
60 epochs with patience 10, selected on validation) with the same seeds; the table gives test
Recall@20 at the best validation epoch (mean ± std), the paired difference from ``all`` with its
95 % CI and the verdict of plots/verdicts.py, and the median seconds per epoch. Runs are
appended to --json as they finish (a killed run resumes). Usage:

    KDIFFE_DATA_DIR=../shared/datasets python benchmarks/bench_negatives.py --seeds 0,1,2 --json negatives.json
    python benchmarks/bench_negatives.py --table negatives.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine  # noqa: E402

FORMS = ("all", "sampled", "batch")


def run(dataset: str, form: str, seed: int, threads: int, epochs: int) -> dict:
    import torch

    from kdiffe import from_dict, train

    torch.set_num_threads(threads)
    cfg = from_dict(dict(dataset=dataset, seed=seed, theta2=4e-5, epochs=epochs, cl_negatives=form))
    summary = train(cfg, log=lambda message: None)
    seconds = [h["epoch_seconds"] for h in summary["history"]]
    return dict(form=form, seed=seed, dataset=dataset, best_epoch=summary["best_epoch"],
                val=summary["val"]["recall@20"], test=summary["test"]["recall@20"],
                epoch_seconds=statistics.median(seconds), epochs_run=len(seconds))


def table(rows: list[dict]) -> str:
    from plots import verdicts

    by = {f: {r["seed"]: r for r in rows if r["form"] == f} for f in FORMS}
    lines = ["| negatives | seeds | test Recall@20 | paired difference from all [95 % CI] | 'above all' (difference rule, plots/verdicts.py) | s/epoch (median) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for form in FORMS:
        runs = by[form]
        if not runs:
            continue
        tests = [r["test"] for r in runs.values()]
        spread = statistics.stdev(tests) if len(tests) > 1 else float("nan")
        diff, verdict = "", ""
        if form != "all":
            seeds = sorted(set(runs) & set(by["all"]))
            d = verdicts.difference([runs[s]["test"] for s in seeds], [by["all"][s]["test"] for s in seeds])
            diff = f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"
            verdict = d.verdict
        seconds = statistics.median(r["epoch_seconds"] for r in runs.values())
        lines.append(f"| {form} | {len(runs)} | {statistics.mean(tests):.4f} ± {spread:.4f} | {diff} | {verdict} | "
                     f"{seconds:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="tiktok")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--forms", default=",".join(FORMS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table", type=Path, help="print the table of this JSON and exit")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())["rows"]))
        return
    rows = json.loads(args.json.read_text())["rows"] if args.json and args.json.is_file() else []
    header = dict(machine=machine(), threads=args.threads)
    for seed in (int(s) for s in args.seeds.split(",")):
        for form in args.forms.split(","):
            if any(r["form"] == form and r["seed"] == seed and r["dataset"] == args.dataset for r in rows):
                continue
            rows.append(run(args.dataset, form, seed, args.threads, args.epochs))
            print(json.dumps(rows[-1]), flush=True)
            if args.json:
                args.json.write_text(json.dumps(dict(header, rows=rows), indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
