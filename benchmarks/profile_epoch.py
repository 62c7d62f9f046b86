"""Profile: where the seconds of one training epoch go, by part of the method.

Builds a Trainer (TikTok, full KDiffE, paper defaults with θ₂ = 4e-5 unless told otherwise),
trains one warm-up epoch, then times --epochs epochs with wall-clock timers wrapped around the
parts (diffusion view, batch drawing, forward of both views, BPR + L2, each InfoNCE term,
backward, Adam). Prints seconds per epoch per part and, with --ops, torch.profiler's top
operators of one more epoch. Usage:
KDIFFE_DATA_DIR=../shared/datasets python benchmarks/profile_epoch.py --epochs 3 [--ops] [--set key=value ...]

The timers are exact on CPU only (on CUDA a part's kernels may finish inside the next part).
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._common import machine  # noqa: E402
from kdiffe import losses, model, trainer, view  # noqa: E402
from kdiffe.config import from_dict, parse_overrides  # noqa: E402

SECONDS: collections.Counter = collections.Counter()
_stack: list[str] = []


def timed(name: str, fn):
    """``fn`` with its wall time added to SECONDS[name], minus the time of timed parts inside it."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _stack.append(name)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.perf_counter() - start
            _stack.pop()
            SECONDS[name] += spent
            if _stack:
                SECONDS[_stack[-1]] -= spent
    return wrapper


def instrument() -> None:
    view.DiffusionView.guidance = timed("diffusion view: guidance z̃ (Eq. 11)", view.DiffusionView.guidance)
    view.DiffusionView.train_denoiser = timed("diffusion view: train denoiser (Eq. 8-9)",
                                              view.DiffusionView.train_denoiser)
    view.DiffusionView.rebuild = timed("diffusion view: rebuild Ĝ_k (Eq. 10-12)", view.DiffusionView.rebuild)
    trainer.epoch_batches = timed("draw batches and negatives (once per epoch)", trainer.epoch_batches)
    model.KDiffE.forward_views = timed("forward: KG aggregation + propagation, both views", model.KDiffE.forward_views)
    model.KDiffE.forward = timed("forward: KG aggregation + propagation, main view only", model.KDiffE.forward)
    losses.Objective.__call__ = timed("BPR + L2 (forward)", losses.Objective.__call__)
    losses.info_nce_nodes = timed("InfoNCE users + items (forward incl. its gradients)", losses.info_nce_nodes)
    torch.Tensor.backward = timed("backward (rest of the graph)", torch.Tensor.backward)
    torch.optim.Adam.step = timed("Adam step", torch.optim.Adam.step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="tiktok")
    parser.add_argument("--variant", default="kdiffe")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ops", action="store_true", help="also print torch.profiler's top operators")
    parser.add_argument("--set", dest="overrides", action="append", default=["theta2=4e-5"])
    args = parser.parse_args()
    cfg = from_dict({"dataset": args.dataset, "variant": args.variant, "seed": 0,
                     **parse_overrides(args.overrides)})
    print(f"machine: {machine()}; threads {torch.get_num_threads()}")
    tr = trainer.Trainer(cfg, log=lambda m: None)
    tr.train_epoch()  # warm-up
    instrument()
    totals = [tr.train_epoch()["epoch_seconds"] for _ in range(args.epochs)]
    total = sum(totals) / args.epochs
    SECONDS["other (loop, zero_grad, logging)"] = total - sum(SECONDS.values()) / args.epochs
    print(f"| part | s/epoch | share |\n| --- | --- | --- |")
    for name, seconds in sorted(SECONDS.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {seconds / args.epochs if 'other' not in name else seconds:.3f} | "
              f"{100 * (seconds / args.epochs if 'other' not in name else seconds) / total:.0f} % |")
    print(f"| total (epochs {', '.join(f'{t:.2f}' for t in totals)}) | {total:.3f} | 100 % |")
    if args.ops:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            tr.train_epoch()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
