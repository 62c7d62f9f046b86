"""Benchmark: how the cost grows with the dataset, at about 1x, 10x and 100x TikTok.

The synthetic generator (:func:`kdiffe.data.make_synthetic`) at ``factor`` x TikTok's users (9,308)
and items (6,710), 8 interactions drawn per user (TikTok keeps 6.4 per user in training; the
generator holds one out for validation and one for test). Each (size, stage) runs in a fresh
process, so its peak RSS is its own:

* ``s``: the attention matrix S (Eq. 4-5, M = 50, R = 12), built and cached for the other stages;
* ``kdiffe``, ``kdiffe-sampled``, ``kdiffe-batch``, ``lightgcn``: the model built (S from the cache),
  its per-epoch hook (KDiffE's diffusion view: denoiser pass and rebuild, Eq. 8-12), then
  ``--batches`` training batches after one warm-up batch. Seconds per epoch = hook + batches per
  epoch x the median batch; where an epoch has at most ``--full-epoch-below`` batches a whole
  epoch is also timed, which checks the estimate. ``kdiffe`` is the paper's all-node InfoNCE
  (Eq. 13, O(batch x nodes) per batch), ``-sampled`` and ``-batch`` are ``cl_negatives=sampled``
  (4,096 uniform users and items per batch) and ``batch``;
* ``eval``: full-ranking evaluation (val and test, training items masked) of the first
  ``--eval-batches`` user batches, scaled to all evaluated users (the evaluator streams over
  user batches, so its time is linear in the users).

A stage that fails (out of memory, or past ``--stage-timeout`` seconds) is reported as such and
the larger sizes of that stage are skipped. The growth exponent of each column is the slope of
log(cost) against log(training interactions), least squares over the sizes measured. Usage:

    python benchmarks/bench_scale.py --factors 1,10,100 --json scale.json
    python benchmarks/bench_scale.py --plot scale.json --out docs/benchmarks/scale.png

Torch runs on ``--threads`` threads (default 1) in every stage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, machine  # noqa: E402
from kdiffe.attention import default_cache_dir  # noqa: E402

TIKTOK_USERS, TIKTOK_ITEMS = 9308, 6710
STAGES = ("s", "lightgcn", "kdiffe", "kdiffe-sampled", "kdiffe-batch", "eval")
MODEL_STAGES = {"lightgcn": dict(model="lightgcn"), "kdiffe": dict(theta2=4e-5),
                "kdiffe-sampled": dict(theta2=4e-5, cl_negatives="sampled"),
                "kdiffe-batch": dict(theta2=4e-5, cl_negatives="batch")}

STAGE = r"""
import json, resource, statistics, sys, time
import numpy as np, scipy.sparse as sp, torch
torch.set_num_threads({threads})
from kdiffe.config import from_dict
from kdiffe.trainer import Trainer, dataset_for
from kdiffe.attention import cached_attention_matrix
from kdiffe.sampling import epoch_batches
from kdiffe.metrics import Evaluator

cfg = from_dict(dict(dataset="synthetic", syn_users={users}, syn_items={items}, syn_interactions=8,
                     syn_clusters=64, cache_dir={cache!r}, seed=0, **{overrides!r}))
start = time.perf_counter()
ds = dataset_for(cfg)
out = dict(users=ds.n_users, items=ds.n_items, train=int(ds.train.nnz), generate_s=time.perf_counter() - start)
stage = {stage!r}
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
if stage == "s":  # built in a fresh folder (never loaded), then moved into the cache
    import os, pathlib, tempfile
    with tempfile.TemporaryDirectory(dir=cfg.cache_dir) as fresh:
        s, seconds = cached_attention_matrix(ds, cfg.M, cfg.R, cfg.restart, cfg.seed, fresh)
        for f in pathlib.Path(fresh).glob("S_*.npz"):
            os.replace(f, pathlib.Path(cfg.cache_dir) / f.name)
    out.update(seconds=seconds)
elif stage == "eval":
    tr = Trainer(cfg, ds, log=lambda m: None)
    tr.model.eval()
    score = tr.model.scorer()
    cut = cfg.eval_batch * {eval_batches}
    seconds = 0.0
    for truth, exclude in ((ds.val, [ds.train]), (ds.test, [ds.train, ds.val])):
        users = np.flatnonzero(np.diff(truth.indptr))
        keep = np.zeros(truth.shape[0], np.float32)
        keep[users[:cut]] = 1
        part = sp.diags(keep) @ truth
        ev = Evaluator(part, exclude, cfg.ks, cfg.eval_batch, tr.device)
        t0 = time.perf_counter()
        ev(score)
        seconds += (time.perf_counter() - t0) * len(users) / min(len(users), cut)
    out.update(seconds=seconds, eval_users=int(len(np.flatnonzero(np.diff(ds.val.indptr)))
                                               + len(np.flatnonzero(np.diff(ds.test.indptr)))))
else:
    t0 = time.perf_counter()
    tr = Trainer(cfg, ds, log=lambda m: None)
    out["build_seconds"] = time.perf_counter() - t0
    model = tr.model
    model.train()
    t0 = time.perf_counter()
    model.epoch_hook(0)
    hook = time.perf_counter() - t0
    batches = epoch_batches(ds.train, tr.keys, cfg.batch_size, tr.rng, tr.device, anchors=model.contrastive,
                            samples=model.negative_samples)
    times = []
    for batch in batches[: {batches} + 1]:
        t0 = time.perf_counter()
        loss, _ = model.loss(batch)
        tr.optimizer.zero_grad()
        loss.backward()
        tr.optimizer.step()
        times.append(time.perf_counter() - t0)
    per_batch = statistics.median(times[1:] or times)
    out.update(hook_seconds=hook, batch_seconds=per_batch, batches=len(batches),
               seconds=hook + len(batches) * per_batch)
    if len(batches) <= {full_below}:
        out["measured_epoch_seconds"] = tr.train_epoch()["epoch_seconds"]
out["peak_mb"] = peak()
print(json.dumps(out))
"""


def run_stage(stage: str, factor: float, cache: str, args: argparse.Namespace) -> dict:
    users, items = round(TIKTOK_USERS * factor), round(TIKTOK_ITEMS * factor)
    overrides = dict(MODEL_STAGES.get(stage, {}))
    if stage == "eval":
        overrides = dict(model="lightgcn")
    code = STAGE.format(threads=args.threads, users=users, items=items, cache=cache, overrides=overrides,
                        stage=stage, eval_batches=args.eval_batches, batches=args.batches,
                        full_below=args.full_epoch_below)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              timeout=args.stage_timeout)
    except subprocess.TimeoutExpired:
        return dict(stage=stage, factor=factor, failed=f"over {args.stage_timeout} s")
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["killed"])[-1]
        why = "killed (out of memory)" if done.returncode in (-9, 137) else tail[:160]
        return dict(stage=stage, factor=factor, failed=why)
    return dict(stage=stage, factor=factor, **json.loads(done.stdout.strip().splitlines()[-1]))


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y on log x; None under two points."""
    if len(xs) < 2:
        return None
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    den = sum((x - mx) ** 2 for x in lx)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / den if den else None


def table(rows: list[dict]) -> str:
    """Markdown: one row per (stage, size), then the growth exponents per stage."""
    lines = ["| stage | factor | users | items | train interactions | seconds | per batch (s) | "
             "measured epoch (s) | peak RSS MB |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['stage']} | {r['factor']:g}x | | | | {r['failed']} | | | |")
            continue
        per_batch = f"{r['batch_seconds']:.3f} x {r['batches']}" if "batch_seconds" in r else ""
        measured = f"{r['measured_epoch_seconds']:.2f}" if "measured_epoch_seconds" in r else ""
        lines.append(f"| {r['stage']} | {r['factor']:g}x | {r['users']:,} | {r['items']:,} | {r['train']:,} | "
                     f"{r['seconds']:.2f} | {per_batch} | {measured} | {r['peak_mb']:,.0f} |")
    lines += ["", "| stage | exponent of seconds | exponent of peak RSS | sizes fitted |", "| --- | --- | --- | --- |"]
    for stage in dict.fromkeys(r["stage"] for r in rows):
        ok = [r for r in rows if r["stage"] == stage and "failed" not in r]
        t = slope([r["train"] for r in ok], [r["seconds"] for r in ok])
        m = slope([r["train"] for r in ok], [r["peak_mb"] for r in ok])
        fmt = (lambda v: "" if v is None else f"{v:.2f}")
        sizes = ", ".join(f"{r['factor']:g}x" for r in ok)
        lines.append(f"| {stage} | {fmt(t)} | {fmt(m)} | {sizes} |")
    return "\n".join(lines)


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for stage in dict.fromkeys(r["stage"] for r in rows):
        ok = [r for r in rows if r["stage"] == stage and "failed" not in r]
        if not ok:
            continue
        xs = [r["train"] for r in ok]
        ax_t.plot(xs, [r["seconds"] for r in ok], "o-", label=stage)
        ax_m.plot(xs, [r["peak_mb"] for r in ok], "o-", label=stage)
    for ax, what in ((ax_t, "seconds (per epoch; S build; evaluation)"), (ax_m, "peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training interactions")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.suptitle("Cost against size: synthetic data at 1x, 10x, 100x TikTok (1 thread)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factors", default="1,10,100", help="sizes as multiples of TikTok (default 1,10,100)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"from {', '.join(STAGES)}")
    parser.add_argument("--batches", type=int, default=5, help="training batches timed after one warm-up")
    parser.add_argument("--eval-batches", type=int, default=3, help="user batches of each split evaluated")
    parser.add_argument("--full-epoch-below", type=int, default=40, help="also time a whole epoch up to this many batches")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stage-timeout", type=int, default=1800)
    parser.add_argument("--cache-dir", help="where S is kept between stages (default: kdiffe's S cache)")
    parser.add_argument("--json", type=Path, help="write the rows here (and read rows already there: resumes)")
    parser.add_argument("--plot", type=Path, help="draw the log-log plot from this JSON and exit")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/scale.png"))
    args = parser.parse_args()
    if args.plot:
        rows = json.loads(args.plot.read_text())["rows"]
        plot(rows, args.out)
        print(table(rows))
        print(f"wrote {args.out}")
        return
    factors = [float(f) for f in args.factors.split(",")]
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"--stages: unknown {', '.join(unknown)}")
    done = json.loads(args.json.read_text())["rows"] if args.json and args.json.is_file() else []
    rows = list(done)
    header = dict(machine=machine(), threads=args.threads)
    print(f"machine: {header['machine']}; {args.threads} thread(s)", flush=True)
    cache = str(default_cache_dir(args.cache_dir))
    Path(cache).mkdir(parents=True, exist_ok=True)
    for stage in stages:
        for factor in factors:
            if any(r["stage"] == stage and r["factor"] == factor for r in rows):
                continue
            if any(r["stage"] == stage and r["factor"] < factor and "failed" in r for r in rows):
                r = dict(stage=stage, factor=factor, failed="skipped (a smaller size failed)")
            elif stage.startswith("kdiffe") and not any(r["stage"] == "s" and r["factor"] == factor
                                                        and "failed" not in r for r in rows):
                r = dict(stage=stage, factor=factor, failed="skipped (S did not build)")
            else:
                r = run_stage(stage, factor, cache, args)
            rows.append(r)
            print(json.dumps(r), flush=True)
            if args.json:
                args.json.write_text(json.dumps(dict(header, rows=rows), indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
