"""Scalability runs for Figure 10: seconds per epoch against diffusion steps t and users.

    python tune/scalability.py --dataset tiktok baby sports --epochs 3
    python tune/scalability.py --dataset sports --only users

(a) t in {2, 5, 10, 20, 50, 80} on each dataset (variant kdiffe); (b) on Sports (or the first
dataset given with --users-dataset), users subsampled with their interactions (seeded) to
{5000, 10000, 20000, 30000, all}. One Ray experiment, kind "scalability".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdiffe.config import ConfigError, parse_overrides  # noqa: E402
from kdiffe.data import DatasetError, load_dataset  # noqa: E402

from tune.experiment import Experiment, base_values, check_dataset, fail, run, validate_configs  # noqa: E402
from tune.search import add_run_options  # noqa: E402
from tune.spaces import PAPER_GRIDS  # noqa: E402

USER_COUNTS = (5000, 10000, 20000, 30000, 0)  # 0 = all users


def points(datasets: list[str], users_dataset: str | None, n_users: int, only: str | None,
           steps=PAPER_GRIDS["t"], counts=USER_COUNTS) -> list[dict]:
    out: list[dict] = []
    if only in (None, "t"):
        out += [{"sweep": "t", "dataset": d, "t": int(t)} for d in datasets for t in steps]
    if only in (None, "users") and users_dataset:
        out += [{"sweep": "users", "dataset": users_dataset, "max_users": c} for c in counts if c < n_users]
    return out


def main(argv: list[str] | None = None) -> int:
    from ray import tune

    parser = argparse.ArgumentParser(prog="tune/scalability.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", nargs="+", required=True)
    parser.add_argument("--users-dataset", default=None, help="dataset for the users sweep (default: sports if given)")
    parser.add_argument("--only", choices=["t", "users"], default=None)
    parser.add_argument("--user-counts", default=None, help="comma-separated user counts (0 = all)")
    add_run_options(parser)
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.overrides)
        base = base_values(args, {"variant": "kdiffe", "patience": 0, **overrides})
        base.setdefault("epochs", 3)
        for dataset in args.dataset:
            check_dataset(dataset, base["data_dir"])
        users_dataset = args.users_dataset or ("sports" if "sports" in args.dataset else None)
        n_users = 0
        if users_dataset:
            check_dataset(users_dataset, base["data_dir"])
            n_users = load_dataset(users_dataset, base["data_dir"]).n_users
        counts = tuple(int(c) for c in args.user_counts.split(",")) if args.user_counts else USER_COUNTS
        trial_points = points(args.dataset, users_dataset, n_users, args.only, counts=counts)
        if not trial_points:
            fail("nothing to run: give --dataset (and sports or --users-dataset for the users sweep)")
        validate_configs({**base, "point": p} for p in trial_points)
    except (ConfigError, DatasetError, ValueError) as exc:
        fail(str(exc))
    space = {**base, "point": tune.grid_search(trial_points)}
    name = args.name or "scalability"
    exp = Experiment(name=name, storage=Path(args.storage).resolve(), kind="scalability", param_space=space,
                     max_t=base["epochs"], cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                     max_concurrent=args.max_concurrent or 1, address=args.address, resume=args.resume)
    frame = run(exp)
    last = frame[frame["status"] == "ok"].sort_values("epoch").groupby("trial_id").last()
    for _, row in last.sort_values(["sweep", "dataset", "t", "n_users"]).iterrows():
        print(f"{row['sweep']:>5}  {row['dataset']:<8} t={int(row['t']):<3} users={int(row['n_users']):<6} "
              f"{row['seconds_per_epoch']:.2f} s/epoch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
