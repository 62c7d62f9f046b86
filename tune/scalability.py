"""Scalability runs for Figure 10: seconds per epoch against diffusion steps t and users.

    python tune/scalability.py --dataset tiktok baby sports --epochs 3
    python tune/scalability.py --dataset sports --only users

(a) t in {2, 5, 10, 20, 50, 80} (``--steps``) on each dataset, variant kdiffe; (b) on Sports (or
``--users-dataset``), users subsampled with their interactions (seeded, Config.max_users) to
{5000, 10000, 20000, 30000, all} (``--user-counts``, 0 = all). One Ray experiment, kind
"scalability", sweep "t" or "users"; the n_users column holds the users actually kept. Trials
run one at a time by default so their timings do not disturb each other.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdiffe.config import ConfigError, from_dict, parse_overrides  # noqa: E402
from kdiffe.data import DatasetError  # noqa: E402
from kdiffe.trainer import dataset_for  # noqa: E402

from tune.experiment import (Experiment, Parser, add_run_options, base_values, check_dataset,  # noqa: E402
                             evaluations, fail, interrupted_line, run, validate_configs)
from tune.spaces import PAPER_GRIDS  # noqa: E402

USER_COUNTS = (5000, 10000, 20000, 30000, 0)  # 0 = all users
DEFAULT_EPOCHS = 3


def int_list(text: str) -> tuple[int, ...]:
    """argparse type: '2,5,10' -> (2, 5, 10), every value >= 0."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected integers >= 0, got {text!r}")
    return values


def points(datasets: Sequence[str], users_dataset: str | None, n_users: int, only: str | None,
           steps: Iterable[int] = PAPER_GRIDS["t"], counts: Iterable[int] = USER_COUNTS) -> list[dict[str, Any]]:
    """Trial points: (a) every t on every dataset; (b) each user count below the dataset's users
    (0, or a count at or above them, means all users)."""
    out: list[dict[str, Any]] = []
    if only in (None, "t"):
        out += [{"sweep": "t", "dataset": d, "t": int(t)} for d in datasets for t in steps]
    if only in (None, "users") and users_dataset:
        counts = tuple(counts)
        kept = sorted({c for c in counts if 0 < c < n_users})
        kept += [0] if any(c == 0 or c >= n_users for c in counts) else []  # 0: all users
        out += [{"sweep": "users", "dataset": users_dataset, "max_users": c} for c in kept]
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tune/scalability.py", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", nargs="+", required=True, help="datasets of the t sweep")
    parser.add_argument("--users-dataset", default=None, help="dataset of the users sweep (default: sports if given)")
    parser.add_argument("--only", choices=["t", "users"], default=None, help="run one of the two sweeps")
    parser.add_argument("--steps", type=int_list, default=PAPER_GRIDS["t"], help="diffusion steps t (default the paper's)")
    parser.add_argument("--user-counts", type=int_list, default=USER_COUNTS, help="user counts, 0 = all")
    add_run_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ray import tune

    args = build_parser().parse_args(argv)
    if 0 in args.steps:
        fail("--steps: diffusion steps must be >= 1")
    try:
        overrides = parse_overrides(args.overrides)
        base = base_values(args, overrides, {"variant": "kdiffe", "patience": 0, "epochs": DEFAULT_EPOCHS})
        users_dataset = args.users_dataset or ("sports" if "sports" in args.dataset else None)
        for dataset in dict.fromkeys([*args.dataset, *([users_dataset] if users_dataset else [])]):
            check_dataset(dataset, base["data_dir"])
        n_users = 0
        if users_dataset and args.only != "t":
            n_users = dataset_for(from_dict({**base, "dataset": users_dataset, "max_users": 0})).n_users
        trial_points = points(args.dataset, users_dataset, n_users, args.only, args.steps, args.user_counts)
        if not trial_points:
            fail("nothing to run: the users sweep needs sports among --dataset, or --users-dataset")
        validate_configs({**base, "point": p} for p in trial_points)
    except (ConfigError, DatasetError) as exc:
        fail(str(exc))
    exp = Experiment(name=args.name or "scalability", storage=Path(args.storage).resolve(), kind="scalability",
                     param_space={**base, "point": tune.grid_search(trial_points)},
                     max_t=evaluations(base["epochs"], base.get("eval_every", 1)),
                     cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                     max_concurrent=args.max_concurrent or 1, address=args.address, resume=args.resume)
    frame = run(exp)
    print("\n".join(timing_lines(frame) + interrupted_line(exp, "tune/scalability.py")))
    if exp.extra.get("interrupted"):
        return 130
    return 0 if (frame["status"] == "ok").any() else 1


def timing_lines(frame: Any) -> list[str]:
    """One line per trial: sweep, dataset, t, users, seconds per epoch at its last evaluation."""
    ok = frame[frame["status"] == "ok"]
    last = ok.sort_values("epoch").groupby("trial_id").last()
    lines = [f"{row.sweep:>5}  {row.dataset:<10} t={int(row.t):<3} users={int(row.n_users):<6} "
             f"{row.seconds_per_epoch:.2f} s/epoch" for row in last.sort_values(["sweep", "dataset", "t", "n_users"])
             .itertuples()]
    failed = frame[frame["status"] == "error"]
    return lines + [f"failed {row.trial_id} ({row.dataset}, t={row.t}): {row.error}" for row in failed.itertuples()]


if __name__ == "__main__":
    sys.exit(main())
