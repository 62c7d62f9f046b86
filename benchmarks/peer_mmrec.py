"""Benchmark: our BM3 and FREEDOM against MMRec's (github.com/enoche/MMRec, its authors' framework)
on the same split, on CPU.

Usage: KDIFFE_DATA_DIR=../shared/datasets python benchmarks/peer_mmrec.py --mmrec PATH \\
           --dataset tiktok --models bm3 freedom --seeds 3 --epochs 60 --patience 10 [--jsonl FILE]

MMRec is no package: ``--mmrec`` is a checkout of it (``git clone
https://github.com/enoche/MMRec``; the numbers in docs/benchmarks.md name the commit they ran). It
runs in a subprocess of this interpreter, with its ``src`` folder on the path and as the working
directory (its configs are read from there), never imported by the project. Its raw-image
pipeline (``lmdb``, ``torchvision``), which these models never call, is stubbed.

Both sides get the same data and protocol: our train / validation / test matrices written as one
MMRec ``.inter`` file (``x_label`` 0 / 1 / 2), the item features as its ``image_feat.npy`` and
``text_feat.npy`` (TikTok has image and audio: its audio takes MMRec's text slot, as our models
weigh the non-image modalities), full ranking with the training items masked (training and
validation items for test: the test loader is given both, through MMRec's own
``additional_dataset``), Recall@20 and NDCG@20, the test numbers of the epoch with the best
validation Recall@20, the same epochs, patience, batch size (2,048), learning rate (1e-3) and
embedding size (64), and the published hyperparameters on both sides (kdiffe.catalog, here as
MMRec's scalars in place of its grids).

Prints one markdown row per model, as ``benchmarks/peer_recbole.py`` does: test Recall@20 and
NDCG@20 (mean ± std over seeds), the relative gap in Recall@20 with the paired t-test, and the
median seconds per training epoch of each side, measured in the same window (runs alternate ours
/ MMRec seed by seed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.peer_recbole import (BATCH, DIM, LR, load_or_exit, record, run_ours, table_from_jsonl,  # noqa: E402
                                     table_markdown)

#: MMRec's model name and settings per model: the published ones (kdiffe.catalog) in MMRec's terms
PEER_MODELS = {
    "bm3": ("BM3", {"n_layers": 1, "dropout": 0.3, "reg_weight": 0.1, "cl_weight": 2.0}),
    "freedom": ("FREEDOM", {"n_ui_layers": 2, "n_mm_layers": 1, "knn_k": 10, "mm_image_weight": 0.1,
                            "dropout": 0.8, "reg_weight": 1e-4}),
}
#: our modality name -> MMRec's feature file (two slots: vision and text)
SLOTS = {"image": "image_feat.npy", "audio": "text_feat.npy", "text": "text_feat.npy"}


def write_mmrec_files(dataset, folder: Path) -> None:
    """Our split as MMRec's <name>.inter (userID, itemID, x_label) and its feature files."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userID\titemID\tx_label"]
    for label, matrix in enumerate((dataset.train, dataset.val, dataset.test)):
        coo = matrix.tocoo()
        lines += [f"{u}\t{i}\t{label}" for u, i in zip(coo.row.tolist(), coo.col.tolist())]
    (folder / f"{folder.name}.inter").write_text("\n".join(lines) + "\n")
    names = sorted(dataset.features)
    if len({SLOTS[m] for m in names}) != len(names):
        raise SystemExit(f"error: {dataset.name} has modalities {names}; MMRec takes one image and one text file")
    for m in names:
        np.save(folder / SLOTS[m], np.asarray(dataset.features[m], dtype=np.float32))


def mmrec_worker(spec: dict) -> dict:
    """In a subprocess, with MMRec's src as the working directory: train one model, return its
    validation-selected test metrics."""
    import numpy as np
    import pandas as pd
    import torch

    for old, new in (("float", float), ("int", int), ("bool", bool)):  # aliases NumPy 1.24 removed
        if old not in np.__dict__:
            setattr(np, old, new)

    for stub in ("lmdb", "torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
        sys.modules.setdefault(stub, types.ModuleType(stub))  # the raw-image pipeline, unused here
    functional = sys.modules["torchvision.transforms.functional"]
    functional.pad = functional.resize = None
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.modules["torchvision.transforms"].functional = functional
    import scipy.sparse as sp

    if not hasattr(sp.dok_matrix, "_update"):  # SciPy 1.12 removed it; MMRec builds its graphs with it
        sp.dok_matrix._update = lambda self, values: self._dict.update(values)
    sys.path.insert(0, os.getcwd())
    from utils.configurator import Config
    from utils.dataloader import EvalDataLoader, TrainDataLoader
    from utils.dataset import RecDataset
    from utils.utils import get_model, get_trainer, init_seed

    torch.set_num_threads(spec["threads"])
    name, settings = PEER_MODELS[spec["model"]]
    config = Config(name, spec["name"], {
        "data_path": spec["data_path"] + os.sep, "USER_ID_FIELD": "userID", "ITEM_ID_FIELD": "itemID",
        "inter_file_name": f"{spec['name']}.inter", "vision_feature_file": "image_feat.npy",
        "text_feature_file": "text_feat.npy", "field_separator": "\t", "use_gpu": False, "seed": spec["seed"],
        "epochs": spec["epochs"], "stopping_step": spec["patience"], "train_batch_size": BATCH,
        "learning_rate": LR, "embedding_size": DIM, "feat_embed_dim": DIM, "topk": [20],
        "metrics": ["Recall", "NDCG"], "valid_metric": "Recall@20", "use_neighborhood_loss": False,
        "hyper_parameters": ["seed"], **settings})
    dataset = RecDataset(config)
    train, valid, test = dataset.split()
    seen = train.copy(pd.concat([train.df, valid.df]))  # test masks training and validation items
    for part in (dataset, train, valid, test, seen):
        str(part)  # sets inter_num, as quick_start's logging of each part does
    train_data = TrainDataLoader(config, train, batch_size=config["train_batch_size"], shuffle=True)
    valid_data = EvalDataLoader(config, valid, additional_dataset=train, batch_size=config["eval_batch_size"])
    test_data = EvalDataLoader(config, test, additional_dataset=seen, batch_size=config["eval_batch_size"])
    init_seed(config["seed"])
    train_data.pretrain_setup()
    model = get_model(name)(config, train_data).to(config["device"])
    trainer = get_trainer()(config, model)
    seconds: list[float] = []
    pending = [0.0]
    fit_epoch, pre_epoch = trainer._train_epoch, model.pre_epoch_processing

    def timed_pre_epoch():
        start = time.perf_counter()
        pre_epoch()
        pending[0] = time.perf_counter() - start

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = fit_epoch(*args, **kwargs)
        seconds.append(time.perf_counter() - start + pending[0])
        return out
    model.pre_epoch_processing, trainer._train_epoch = timed_pre_epoch, timed
    best_valid, _, test_result = trainer.fit(train_data, valid_data=valid_data, test_data=test_data, saved=False,
                                             verbose=False)
    return {"val_recall@20": float(best_valid), "test_recall@20": float(test_result["recall@20"]),
            "test_ndcg@20": float(test_result["ndcg@20"]), "epochs_run": len(seconds),
            "seconds_per_epoch": statistics.median(seconds)}


def run_mmrec(mmrec: Path, spec: dict) -> dict:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                         capture_output=True, text=True, cwd=mmrec / "src")
    if out.returncode != 0:
        raise SystemExit(f"error: MMRec {spec['model']} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mmrec", type=Path, help="a checkout of github.com/enoche/MMRec")
    parser.add_argument("--dataset", default="tiktok")
    parser.add_argument("--models", nargs="+", default=list(PEER_MODELS), choices=list(PEER_MODELS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--sides", nargs="+", default=["ours", "mmrec"], choices=["ours", "mmrec"])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--jsonl", type=Path, default=None, help="append every run's result here")
    parser.add_argument("--table", action="store_true", help="only print the table of the runs in --jsonl")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(mmrec_worker(json.loads(args.worker))))
        return
    if args.table:
        if args.jsonl is None or not args.jsonl.is_file():
            raise SystemExit("error: --table needs --jsonl FILE with the runs")
        print(table_from_jsonl(args.jsonl, args.dataset, tuple(PEER_MODELS), "mmrec", "MMRec"))
        return
    if "mmrec" in args.sides and (args.mmrec is None or not (args.mmrec / "src" / "models").is_dir()):
        raise SystemExit(f"error: --mmrec {args.mmrec}: not a checkout of MMRec (no src/models in it)")

    import torch

    from benchmarks._common import machine

    torch.set_num_threads(args.threads)
    dataset = load_or_exit(args.dataset)
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d')}; {args.threads} threads; "
          f"{args.epochs} epochs, patience {args.patience}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "data"
        write_mmrec_files(dataset, data_path / args.dataset)
        for model in args.models:
            ours, peer = [], []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                spec = {"model": model, "name": args.dataset, "data_path": str(data_path), "seed": seed,
                        "epochs": args.epochs, "patience": args.patience, "threads": args.threads}
                for side in args.sides:
                    result = run_ours(model, dataset, seed, args.epochs, args.patience) if side == "ours" \
                        else run_mmrec(args.mmrec, spec)
                    result = {"model": model, "side": side, "seed": seed, "dataset": args.dataset,
                              "epochs": args.epochs, "patience": args.patience, **result}
                    (ours if side == "ours" else peer).append(result)
                    record(result, args.jsonl)
            rows.append((model, ours, peer))
    print(table_markdown(rows, "MMRec"))


if __name__ == "__main__":
    main()
