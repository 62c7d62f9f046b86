"""Command line: ``python -m kdiffe train|recommend|export|data|attention ...``; user mistakes exit 2 with one line.

    python -m kdiffe train --dataset tiktok --out runs/kdiffe          # train, save the best model there
    python -m kdiffe train --from results/tiktok-search-kdiffe --seed 1  # re-train a search's best
    python -m kdiffe recommend --model runs/kdiffe --users 0,5 --k 20  # top-k, training items excluded
    python -m kdiffe export --checkpoint results/<experiment>/trials/<trial>/state --out runs/best
    python -m kdiffe data info --dataset tiktok                         # Table I's numbers and warnings
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np

from .attention import attention_matrix
from .config import VARIANTS, ConfigError, check_reads, from_dict, parse_overrides
from .catalog import MODELS
from .data import load_dataset
from .errors import EXIT_INTERRUPTED, UserError, report
from .memory import check_dataset_memory
from .threads import set_threads


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="synthetic",
                        help="folder under the data dir (tiktok, baby, sports, your own) or 'synthetic'")
    parser.add_argument("--data-dir", default=None, help="folder of datasets (default: $KDIFFE_DATA_DIR, else ./data)")
    parser.add_argument("--seed", type=int, default=2024)
    _threads(parser)


def _threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: the cores not already busy, kdiffe/threads.py)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kdiffe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train and evaluate one model")
    _common(tr)
    tr.add_argument("--model", default="kdiffe", choices=list(MODELS),
                    help="the recommender (default kdiffe; lightgcn: He et al. 2020 as published)")
    tr.add_argument("--variant", default=None, choices=list(VARIANTS), help="kdiffe's ablation (default: full)")
    tr.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 50)")
    tr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    tr.add_argument("--select-on", choices=["val", "test"], default="val",
                    help="model selection split; 'test' is the authors' (optimistic) protocol")
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="any Config field, e.g. --set xi=0.7 --set M=50 (repeatable)")
    tr.add_argument("--out", default=None,
                    help="folder for the run: summary.json and the saved model of its best validation "
                         "evaluation (kdiffe/serving.py); a path ending in .json writes the summary alone")
    tr.add_argument("--from", dest="source", default=None, metavar="PATH",
                    help="start from a found configuration: a best.json, an experiment folder holding one, or a "
                         "saved model folder; the options given here override it")
    rc = sub.add_parser("recommend", help="top-k items of users from a saved model")
    rc.add_argument("--model", required=True, help="a saved model folder (train --out, or export)")
    rc.add_argument("--users", required=True, help="comma-separated user ids, e.g. 0,5")
    rc.add_argument("--k", type=int, default=20)
    rc.add_argument("--data-dir", default=None,
                    help="folder of datasets, to exclude each user's training items (default: the model's, "
                         "$KDIFFE_DATA_DIR, else ./data)")
    ex = sub.add_parser("export", help="a trainer checkpoint as a saved model folder (embeddings as .npy)")
    ex.add_argument("--checkpoint", required=True, help="a folder holding trainer.pt (a trial's state folder)")
    ex.add_argument("--out", required=True, help="the saved model folder to write")
    _threads(rc)
    _threads(ex)
    da = sub.add_parser("data", help="datasets: info (a Table-I summary with warnings), convert (to another format)")
    da.add_argument("action", choices=["info", "convert"],
                    help="info: users, items, splits, modalities, KG, cold items; convert: --to FORMAT --out DIR")
    da.add_argument("--to", default=None, help="convert: authors or mmrec")
    da.add_argument("--out", default=None, help="convert: the new dataset folder (new or empty)")
    _common(da)
    da.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="dataset fields of Config, e.g. --set data_format=csv --set resplit=1")
    da.add_argument("--json", action="store_true", help="print the numbers as JSON")
    at = sub.add_parser("attention", help="build the attention matrix S and print statistics")
    _common(at)
    at.add_argument("--M", type=int, default=50, help="walk length")
    at.add_argument("--R", type=int, default=12, help="walks per node")
    at.add_argument("--restart", type=float, default=0.2, help="restart probability")
    return parser


def _given(argv: Sequence[str], *flags: str) -> bool:
    return any(a == f or a.startswith(f + "=") for a in argv for f in flags)


def _train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .results import found_config
    from .trainer import train

    values: dict = found_config(args.source) if args.source else {}
    # options given on the command line override a found configuration; their defaults do not
    for flag, key, value in (("--dataset", "dataset", args.dataset), ("--data-dir", "data_dir", args.data_dir),
                             ("--seed", "seed", args.seed), ("--model", "model", args.model),
                             ("--device", "device", args.device), ("--select-on", "select_on", args.select_on)):
        if not args.source or _given(argv, flag):
            values[key] = value
    if args.variant is not None:
        values["variant"] = args.variant
    if args.epochs is not None:
        values["epochs"] = args.epochs
    overrides = parse_overrides(args.overrides)
    values.update(overrides)
    config = from_dict(values)
    check_reads([config.model], overrides)
    summary_file = model_dir = None
    if args.out:
        summary_file = args.out if args.out.endswith(".json") else f"{args.out}/summary.json"
        model_dir = None if args.out.endswith(".json") else args.out
    summary = train(config, out=summary_file, model_dir=model_dir)
    test = summary["test"]
    print(f"best epoch {summary['best_epoch']} (selected on {summary['selected_on']}): "
          f"test recall@20 {test.get('recall@20', float('nan')):.4f} ndcg@20 {test.get('ndcg@20', float('nan')):.4f}; "
          f"{summary['seconds_per_epoch']:.2f} s/epoch")
    if summary_file:
        print(f"summary written to {summary_file}")
    if model_dir:
        print(f"model saved to {model_dir}: python -m kdiffe recommend --model {model_dir} --users 0 --k 20")
    return 0


def _users(text: str, ids: Sequence[str] | None = None) -> list[int]:
    """--users as row indices: integers, or the dataset's own ids where it has them (kdiffe.formats)."""
    given = [u.strip() for u in text.split(",") if u.strip()]
    if not given:
        raise ConfigError("--users: give at least one user id")
    if ids is not None:
        index = {user: row for row, user in enumerate(ids)}
        unknown = [u for u in given if u not in index]
        if unknown:
            raise ConfigError(f"--users: {unknown[0]!r} is not a user id of the dataset (its ids are its own, "
                              f"e.g. {ids[0]!r})")
        return [index[u] for u in given]
    try:
        return [int(u) for u in given]
    except ValueError:
        raise ConfigError(f"--users {text!r}: expected comma-separated user ids, e.g. 0,5") from None


def _recommend(args: argparse.Namespace) -> int:
    from .serving import ModelError, load_model, recommend

    model = load_model(args.model)
    from .trainer import dataset_for

    config = model.config
    values = {k: v for k, v in config.items() if k != "cache_dir"}
    if args.data_dir:
        values["data_dir"] = args.data_dir
    ds = dataset_for(from_dict(values))  # the interactions the model was trained on, split as then
    if (ds.n_users, ds.n_items) != (model.n_users, model.n_items):
        raise ModelError(f"--model {args.model}: {model.n_users} users x {model.n_items} items, but dataset "
                         f"{ds.name} has {ds.n_users} x {ds.n_items}")
    users = _users(args.users, ds.user_ids)
    items, scores = recommend(model, users, args.k, exclude=ds.train)
    user_name = (lambda u: ds.user_ids[u]) if ds.user_ids is not None else str  # noqa: E731
    item_name = (lambda i: ds.item_ids[i]) if ds.item_ids is not None else str  # noqa: E731
    print(f"top-{args.k} of {len(users)} user(s) from {args.model} ({config.get('model', 'kdiffe')} on {ds.name}; "
          "training items excluded)")
    for user, row, row_scores in zip(users, items, scores):
        print(f"user {user_name(user)}: " + " ".join(f"{item_name(i)}({s:.3f})" for i, s in zip(row, row_scores)))
    return 0


def _export(args: argparse.Namespace) -> int:
    from .serving import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out)
    print(f"model saved to {out} (user_embeddings.npy, item_embeddings.npy, model.json)")
    return 0


def _data(args: argparse.Namespace) -> int:
    import json

    from .datasheet import datasheet, datasheet_lines
    from .trainer import dataset_for

    config = from_dict({**parse_overrides(args.overrides), "dataset": args.dataset, "data_dir": args.data_dir,
                        "seed": args.seed})
    if args.action == "convert" and not (args.to and args.out):
        raise ConfigError("data convert needs --to (authors or mmrec) and --out DIR")
    ds = dataset_for(config)
    if args.action == "convert":
        from .formats import write_dataset

        files = write_dataset(ds, args.out, args.to)
        print(f"{ds.name} written in the {args.to} format to {args.out}: {', '.join(f.name for f in files)}")
        return 0
    print(json.dumps(datasheet(ds), indent=1) if args.json else "\n".join(datasheet_lines(ds)))
    return 0


def _attention(args: argparse.Namespace) -> int:
    if args.M < 1 or args.R < 1 or not 0 <= args.restart < 1:
        raise ConfigError("need --M >= 1, --R >= 1 and 0 <= --restart < 1")
    ds = load_dataset(args.dataset, args.data_dir, seed=args.seed)
    print(ds.summary())
    walks = from_dict(dict(dataset=args.dataset, M=args.M, R=args.R, restart=args.restart, seed=args.seed,
                           variant="lightgcn_s"))
    check_dataset_memory(walks, ds, "cpu")
    start = time.perf_counter()
    s = attention_matrix(ds.train, args.M, args.R, args.restart, args.seed)
    seconds = time.perf_counter() - start
    q = np.quantile(s.data, [0.0, 0.25, 0.5, 0.75, 1.0])
    print(f"S (M={args.M}, R={args.R}, c={args.restart:g}): {seconds:.2f} s, nnz {s.nnz} "
          f"(= train edges: {s.nnz == ds.train.nnz})")
    print(f"values: mean {s.data.mean():.4f}, min {q[0]:.4f}, q25 {q[1]:.4f}, median {q[2]:.4f}, "
          f"q75 {q[3]:.4f}, max {q[4]:.4f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    import torch

    previous = torch.get_num_threads()  # restored on return: main() may run inside another program
    try:
        set_threads(args.threads)
        if args.command == "train":
            return _train(args, argv)
        return {"recommend": _recommend, "export": _export, "attention": _attention, "data": _data}[args.command](args)
    except UserError as exc:
        return report(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        torch.set_num_threads(previous)


if __name__ == "__main__":
    sys.exit(main())
