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

from kdiffe.config import ConfigError, from_dict  # noqa: E402
from kdiffe.trainer import dataset_for  # noqa: E402

from tune.cli import Plan, Script, check_dataset, main as run_script  # noqa: E402
from kdiffe.paper import PAPER_GRIDS, SCALABILITY_USER_COUNTS as USER_COUNTS  # noqa: E402

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
           steps: Iterable[int] = PAPER_GRIDS["t"], counts: Iterable[int] = USER_COUNTS,
           featureless: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Trial points: (a) every t on every dataset; (b) each user count below the dataset's users
    (0, or a count at or above them, means all users). A dataset in ``featureless`` (no item
    features to build the KG from) runs KDiffE's feature-free form, ``kg=none``, and says so."""
    out: list[dict[str, Any]] = []
    bare = set(featureless)
    if only in (None, "t"):
        out += [{"sweep": "t", "dataset": d, "t": int(t)} for d in datasets for t in steps]
    if only in (None, "users") and users_dataset:
        counts = tuple(counts)
        kept = sorted({c for c in counts if 0 < c < n_users})
        kept += [0] if any(c == 0 or c >= n_users for c in counts) else []  # 0: all users
        out += [{"sweep": "users", "dataset": users_dataset, "max_users": c} for c in kept]
    return [{**p, "kg": "none"} if p["dataset"] in bare else p for p in out]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", nargs="+", default=None, help="datasets of the t sweep")
    parser.add_argument("--users-dataset", default=None, help="dataset of the users sweep (default: sports if given)")
    parser.add_argument("--only", choices=["t", "users"], default=None, help="run one of the two sweeps")
    parser.add_argument("--steps", type=int_list, default=PAPER_GRIDS["t"], help="diffusion steps t (default the paper's)")
    parser.add_argument("--user-counts", type=int_list, default=USER_COUNTS, help="user counts, 0 = all")


def plan(args: argparse.Namespace, base: dict[str, Any]) -> Plan:
    if 0 in args.steps:
        raise ConfigError("--steps: diffusion steps must be >= 1")
    users_dataset = args.users_dataset or ("sports" if "sports" in args.dataset else None)
    datasets = tuple(dict.fromkeys([*args.dataset, *([users_dataset] if users_dataset else [])]))
    n_users, featureless = 0, []
    for name in datasets:
        check_dataset(name, base["data_dir"])
        ds = dataset_for(from_dict({**base, "dataset": name, "max_users": 0}))
        n_users = ds.n_users if name == users_dataset else n_users
        featureless += [] if ds.features or base.get("kg", "features") != "features" else [name]
    trial_points = points(args.dataset, users_dataset, n_users, args.only, args.steps, args.user_counts,
                          featureless)
    if not trial_points:
        raise ConfigError("nothing to run: the users sweep needs sports among --dataset, or --users-dataset")
    return Plan(kind="scalability", name="scalability", param_space=base, cells=trial_points,
                candidates=[{**base, "point": p} for p in trial_points],
                params=("dataset", "t", "max_users"), max_concurrent=1, datasets=datasets)


def finish(outcome: Any, exp: Any, args: argparse.Namespace) -> tuple[list[str], int]:
    return timing_lines(outcome.frame), 0 if (outcome.frame["status"] == "ok").any() else 1


SCRIPT = Script(prog="tune/scalability.py", doc=__doc__, add_arguments=add_arguments, plan=plan, finish=finish,
                defaults=lambda args: {"variant": "kdiffe", "patience": 0, "epochs": DEFAULT_EPOCHS})


def main(argv: list[str] | None = None) -> int:
    return run_script(SCRIPT, argv)


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
