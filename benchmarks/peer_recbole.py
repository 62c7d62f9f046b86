"""Benchmark: our LightGCN, SGL and NCL against RecBole's (1.2.1, from PyPI), and our SimGCL
against RecBole-GNN's, on the same split.

Usage: KDIFFE_DATA_DIR=../shared/datasets python benchmarks/peer_recbole.py --dataset tiktok \\
           --models lightgcn sgl ncl simgcl --seeds 3 --epochs 60 --patience 10 [--jsonl FILE] \\
           [--recbole-gnn PATH]

RecBole-GNN (github.com/RUCAIBox/RecBole-GNN, RecBole's graph models, SimGCL among them) is no
package: ``--recbole-gnn`` is a checkout of it, put on the worker's path; it also needs
``torch_geometric`` (installed into the venv; pure Python), and of ``torch_sparse`` (a compiled
extension) only the names it imports, which are stubbed: its sparse path is off
(``enable_sparse`` False). RecBole-GNN's SimGCL sums its InfoNCE over the batch's distinct users
and items where SimGCL's authors (SELFRec) average it; the worker runs it with the mean, the
published objective (λ = 0.5 unchanged), and with ``require_pow`` (the squared L2, as below).

RecBole is installed into its own virtual environment (``--venv``, default
~/.cache/kdiffe/recbole-1.2.1; it sees this interpreter's torch, numpy and scipy, so nothing of
CUDA is downloaded), never into the project's. Its pin ``ray<=2.6.3`` is skipped: the models
run here never import Ray.

Both sides get the same data and protocol: our train / validation / test matrices written as
RecBole atomic files (``benchmark_filename``, no filtering, no re-split), full ranking with the
training items masked (training and validation items for test), Recall@20 and NDCG@20, the test
numbers of the epoch with the best validation Recall@20, the same epochs, patience, batch size
(2,048), learning rate (1e-3), embedding size (64) and one uniform negative per positive.

The worker gives RecBole what it still uses of NumPy 1 (``np.float_`` ...) and of SciPy < 1.12
(``dok_matrix._update``).

The same objective on both sides, from the papers' published settings (kdiffe.catalog):
- RecBole's ``EmbLoss`` by default takes the norm, not its square (``require_pow=False``); the
  papers' L2 is the squared norm, so the worker runs it with ``require_pow=True``:
  ½ Σ ||e⁰||² / batch, exactly our ``l2="batch"``.
- RecBole's SGL sums its BPR and its InfoNCE over the batch, as the SGL authors do, so their
  λ1 = 0.1 is RecBole's ``ssl_weight``; its L2 is divided by the batch size where theirs is not,
  so their λ2 = 1e-4 is RecBole's ``reg_weight`` = 1e-4 x 2,048 (our form: every term a mean,
  the same ratios).
- NCL is the same on both sides (sums, λ1 = 1e-7, λ2 = 8e-8); RecBole's k-means is faiss's,
  asked for on the GPU, here run on the CPU.

Prints one markdown row per model: test Recall@20 and NDCG@20 (mean ± std over seeds), the
relative gap in Recall@20 with the paired t-test over seeds, and the median seconds per training
epoch of each side, measured in the same window (runs alternate ours / RecBole seed by seed).
A long comparison runs in parts (``--first-seed``, ``--jsonl`` appended to); ``--table`` prints
the table of every run in the file.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RECBOLE = "recbole==1.2.1"
#: RecBole 1.2.1's requirements but torch, numpy, scipy, pandas (this interpreter's) and ray (unused)
RECBOLE_DEPS = ("colorlog==4.7.2", "colorama==0.4.4", "scikit-learn", "pyyaml", "tqdm", "tensorboard", "thop",
                "tabulate", "plotly", "texttable", "psutil", "faiss-cpu")
GNN_DEPS = ("torch_geometric",)  #: RecBole-GNN's, beyond RecBole's (pure Python; torch_sparse is stubbed)
BATCH, LR, DIM = 2048, 1e-3, 64

#: RecBole's name and settings per model: the published ones (kdiffe.catalog) in RecBole's terms
PEER_MODELS = {
    "lightgcn": ("LightGCN", {"n_layers": 3, "reg_weight": 1e-4}),
    "sgl": ("SGL", {"type": "ED", "n_layers": 3, "reg_weight": 1e-4 * BATCH, "ssl_tau": 0.2, "drop_ratio": 0.1,
                    "ssl_weight": 0.1}),
    "ncl": ("NCL", {"n_layers": 3, "reg_weight": 1e-4, "ssl_temp": 0.1, "ssl_reg": 1e-7, "hyper_layers": 1,
                    "alpha": 1.0, "proto_reg": 8e-8, "num_clusters": 1000, "m_step": 1, "warm_up_step": 20}),
    "simgcl": ("SimGCL", {"n_layers": 2, "reg_weight": 1e-4, "require_pow": True, "lambda": 0.5, "eps": 0.1,
                          "temperature": 0.2, "enable_sparse": False}),
}
#: the models that live in RecBole-GNN, not in RecBole
GNN_MODELS = ("simgcl",)


# --------------------------------------------------------------------------------- RecBole side
def ensure_venv(venv: Path) -> Path:
    """The venv's python, with RecBole installed (once)."""
    python = venv / "bin" / "python"
    stamp = venv / ".recbole-ready"
    if stamp.exists():
        return python
    print(f"installing {RECBOLE} into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--no-deps", RECBOLE], check=True)
    subprocess.run([*pip, *RECBOLE_DEPS], check=True)  # with theirs; torch and numpy are already there
    stamp.write_text(RECBOLE + "\n")
    return python


def ensure_gnn_deps(python: Path) -> None:
    """RecBole-GNN's own requirements in the venv (once)."""
    stamp = python.parent.parent / ".recbole-gnn-ready"
    if not stamp.exists():
        subprocess.run([str(python), "-m", "pip", "install", "-q", *GNN_DEPS], check=True)
        stamp.write_text(" ".join(GNN_DEPS) + "\n")


def write_atomic_files(dataset, folder: Path) -> None:
    """Our split as RecBole benchmark files <name>.train/.valid/.test.inter (ids as tokens)."""
    folder.mkdir(parents=True, exist_ok=True)
    for part, matrix in (("train", dataset.train), ("valid", dataset.val), ("test", dataset.test)):
        coo = matrix.tocoo()
        lines = ["user_id:token\titem_id:token"] + [f"{u}\t{i}" for u, i in zip(coo.row.tolist(), coo.col.tolist())]
        (folder / f"{folder.name}.{part}.inter").write_text("\n".join(lines) + "\n")


def recbole_worker(spec: dict) -> dict:
    """Inside the RecBole venv: train one model, return its validation-selected test metrics."""
    import numpy as np
    import torch

    # RecBole 1.2.1 aliases names NumPy 2 removed (np.float_, ...); give it them back
    for old, new in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        if old not in np.__dict__:
            setattr(np, old, new)
    import scipy.sparse as sp

    if not hasattr(sp.dok_matrix, "_update"):  # SciPy 1.12 removed it; RecBole builds its graphs with it
        sp.dok_matrix._update = lambda self, values: self._dict.update(values)
    from recbole.model import loss as recbole_loss
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    if spec["model"] in GNN_MODELS:
        import types

        sys.path.insert(0, spec["recbole_gnn"])
        stub = types.ModuleType("torch_sparse")  # only its sparse path (off here) calls these
        stub.matmul = stub.SparseTensor = None
        sys.modules.setdefault("torch_sparse", stub)
        from recbole_gnn.config import Config
        from recbole_gnn.model.general_recommender import simgcl
        from recbole_gnn.utils import create_dataset, data_preparation, get_model, get_trainer

        summed = simgcl.SimGCL.calculate_cl_loss
        simgcl.SimGCL.calculate_cl_loss = lambda self, x1, x2: summed(self, x1, x2) / x1.shape[0]  # the mean
    else:
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.utils import get_model, get_trainer

    original = recbole_loss.EmbLoss.forward
    recbole_loss.EmbLoss.forward = lambda self, *e, require_pow=False: original(self, *e, require_pow=True)
    try:
        import faiss
        kmeans = faiss.Kmeans

        class CpuKmeans(kmeans):  # RecBole's NCL asks for the GPU
            def __init__(self, d, k, **kwargs):
                kwargs["gpu"] = False
                super().__init__(d, k, **kwargs)
        faiss.Kmeans = CpuKmeans
    except ImportError:
        pass
    torch.set_num_threads(spec["threads"])
    name, settings = PEER_MODELS[spec["model"]]
    settings = {**settings, **spec.get("peer_set", {})}
    config = Config(model=name, dataset=spec["name"], config_dict={
        "data_path": spec["data_path"], "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]}, "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
        "eval_args": {"mode": "full", "order": "RO", "split": None, "group_by": "user"},
        "metrics": ["Recall", "NDCG"], "topk": [20], "metric_decimal_place": 8, "valid_metric": "Recall@20", "epochs": spec["epochs"],
        "stopping_step": spec["patience"], "train_batch_size": BATCH, "learning_rate": LR, "embedding_size": DIM,
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}, "seed": spec["seed"],
        "reproducibility": True, "eval_step": 1, "show_progress": False, "state": "WARNING", "device": "cpu",
        "use_gpu": False, "checkpoint_dir": spec["checkpoint_dir"], "save_dataset": False,
        "save_dataloaders": False, "log_wandb": False, **settings})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    if spec.get("check"):
        return peer_loss(model, dataset, spec["check"])
    trainer: Trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    seconds: list[float] = []
    pending = [0.0]  # NCL's E-step runs before its epoch, outside _train_epoch: counted with it
    fit_epoch = trainer._train_epoch

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = fit_epoch(*args, **kwargs)
        seconds.append(time.perf_counter() - start + pending[0])
        pending[0] = 0.0
        return out
    trainer._train_epoch = timed
    if hasattr(model, "e_step"):
        e_step = model.e_step

        def timed_e_step():
            start = time.perf_counter()
            e_step()
            pending[0] += time.perf_counter() - start
        model.e_step = timed_e_step
    best: dict = {}

    def keep_best(epoch, verbose=True, **kwargs):  # in memory: RecBole's checkpoints need unpickling
        best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer._save_checkpoint = keep_best
    best_valid, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    model.load_state_dict(best["state"])
    for cached in getattr(model, "other_parameter_name", []):  # embeddings cached by the last evaluation
        setattr(model, cached, None)
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    return {"val_recall@20": float(best_valid), "test_recall@20": float(test["recall@20"]),
            "test_ndcg@20": float(test["ndcg@20"]), "epochs_run": len(seconds),
            "seconds_per_epoch": statistics.median(seconds), "users": dataset.user_num - 1,
            "items": dataset.item_num - 1}


def peer_loss(model, dataset, path: str) -> dict:
    """The peer model's loss of one batch with our side's weights and noise (``path``: .npz of
    ``write_check``): our ids mapped to RecBole's (tokens, padding row 0), every uniform draw its
    ``rand_like`` makes taken, in order, from ours."""
    import numpy as np
    import torch
    from recbole.data.interaction import Interaction

    data = np.load(path)
    uid = dataset.token2id(dataset.uid_field, [str(u) for u in range(data["user"].shape[0])])
    iid = dataset.token2id(dataset.iid_field, [str(i) for i in range(data["item"].shape[0])])
    n_u, n_i = model.n_users, model.n_items
    with torch.no_grad():
        model.user_embedding.weight[torch.as_tensor(uid)] = torch.as_tensor(data["user"])
        model.item_embedding.weight[torch.as_tensor(iid)] = torch.as_tensor(data["item"])
    draws = []
    for k in range(data["noise"].shape[0]):  # our node order -> theirs (users, then items; padding rows 0)
        theirs = torch.full((n_u + n_i, data["noise"].shape[2]), 0.5)
        theirs[torch.as_tensor(uid)] = torch.as_tensor(data["noise"][k, :len(uid)])
        theirs[n_u + torch.as_tensor(iid)] = torch.as_tensor(data["noise"][k, len(uid):])
        draws.append(theirs)
    torch.rand_like = lambda like, **kwargs: draws.pop(0).to(like.dtype)
    batch = Interaction({model.USER_ID: torch.as_tensor(uid[data["users"]]),
                         model.ITEM_ID: torch.as_tensor(iid[data["pos"]]),
                         model.NEG_ITEM_ID: torch.as_tensor(iid[data["neg"]])})
    loss = model.calculate_loss(batch)
    return {"loss": float(loss), "draws_left": len(draws)}


def check_loss(model: str, dataset, python: Path, spec: dict, folder: Path) -> dict:
    """Our loss of one batch beside the peer's on the same weights, batch and noise draws."""
    import numpy as np
    import torch

    from kdiffe.config import from_dict
    from kdiffe.sampling import epoch_batches, positive_keys
    from kdiffe.trainer import Trainer

    cfg = from_dict({"model": model, "dataset": dataset.name, "seed": spec["seed"], "batch_size": BATCH, "lr": LR,
                     "dim": DIM, **spec["overrides"]})
    ours = Trainer(cfg, dataset, log=lambda message: None).model
    batch = epoch_batches(dataset.train, positive_keys(dataset.train), BATCH, np.random.default_rng(spec["seed"]),
                          anchors=True)[0]
    uniforms = []
    draw = ours.noise

    def recorded(like):
        state = ours.generator.get_state()
        uniforms.append(torch.rand(like.shape, generator=ours.generator).numpy())
        ours.generator.set_state(state)
        return draw(like)
    ours.noise = recorded
    loss, parts = ours.loss(batch)
    path = folder / f"check-{model}.npz"
    np.savez(path, user=ours.user.weight.detach().numpy(), item=ours.item.weight.detach().numpy(),
             noise=np.stack(uniforms), users=batch.users.numpy(), pos=batch.pos.numpy(), neg=batch.neg.numpy())
    peer = run_recbole(python, {**spec, "check": str(path)})
    return {"model": model, "ours": float(loss.detach()), "peer": peer["loss"], "peer_draws_left": peer["draws_left"],
            "relative": abs(float(loss.detach()) - peer["loss"]) / abs(peer["loss"]),
            **{k: float(v) for k, v in parts.items()}}


def run_recbole(python: Path, spec: dict) -> dict:
    out = subprocess.run([str(python), str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                         capture_output=True, text=True, cwd=spec["workdir"])  # RecBole writes log folders into it
    if out.returncode != 0:
        raise SystemExit(f"error: RecBole {spec['model']} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------- our side
def run_ours(model: str, dataset, seed: int, epochs: int, patience: int, overrides: dict | None = None) -> dict:
    from kdiffe.config import from_dict
    from kdiffe.trainer import Trainer

    cfg = from_dict({"model": model, "dataset": dataset.name, "seed": seed, "epochs": epochs, "patience": patience,
                     "batch_size": BATCH, "lr": LR, "dim": DIM, "ks": (20,), "metric": "recall@20",
                     **(overrides or {})})
    trainer = Trainer(cfg, dataset, log=lambda message: None)
    summary = trainer.run()
    return {"val_recall@20": summary["val"]["recall@20"], "test_recall@20": summary["test"]["recall@20"],
            "test_ndcg@20": summary["test"]["ndcg@20"], "epochs_run": summary["epochs_run"],
            "seconds_per_epoch": statistics.median(trainer.history.epoch_seconds)}


def load_or_exit(name: str):
    """The dataset ``name`` as the trainer reads it; a bad one is a one-line exit."""
    from kdiffe.config import from_dict
    from kdiffe.data import DatasetError
    from kdiffe.trainer import dataset_for

    try:
        return dataset_for(from_dict({"dataset": name}))
    except DatasetError as exc:
        raise SystemExit(f"error: {exc}")


def record(result: dict, jsonl: Path | None) -> None:
    """Print one run's result as a JSON line and append it to ``jsonl`` (when given)."""
    print(json.dumps(result), flush=True)
    if jsonl:
        with jsonl.open("a") as handle:
            handle.write(json.dumps(result) + "\n")


def fmt(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="tiktok")
    parser.add_argument("--models", nargs="+", default=list(PEER_MODELS), choices=list(PEER_MODELS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--table", action="store_true", help="only print the table of the runs in --jsonl")
    parser.add_argument("--sides", nargs="+", default=["ours", "recbole"], choices=["ours", "recbole"])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--venv", type=Path, default=Path.home() / ".cache" / "kdiffe" / "recbole-1.2.1")
    parser.add_argument("--recbole-gnn", type=Path, help="a checkout of github.com/RUCAIBox/RecBole-GNN (for simgcl)")
    parser.add_argument("--jsonl", type=Path, default=None, help="append every run's result here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a Config value of our side, away from the published ones (repeatable)")
    parser.add_argument("--peer-set", action="append", default=[], metavar="NAME=VALUE",
                        help="the same setting in the peer's terms (repeatable; a number or a word)")
    parser.add_argument("--check-loss", action="store_true",
                        help="no training: each model's loss of one batch on both sides, same weights and draws")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(recbole_worker(json.loads(args.worker))))
        return
    if args.table:
        if args.jsonl is None or not args.jsonl.is_file():
            raise SystemExit("error: --table needs --jsonl FILE with the runs")
        print(table_from_jsonl(args.jsonl, args.dataset, settings=args.overrides))
        return
    from kdiffe.config import ConfigError, parse_overrides

    try:
        overrides = parse_overrides(args.overrides)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}")
    peer_set = {}
    for item in args.peer_set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --peer-set {item}: expected NAME=VALUE")
        try:
            peer_set[key] = json.loads(value)
        except ValueError:
            peer_set[key] = value

    import torch

    from benchmarks._common import machine

    torch.set_num_threads(args.threads)
    dataset = load_or_exit(args.dataset)
    gnn = [m for m in args.models if m in GNN_MODELS]
    if gnn and "recbole" in args.sides and (args.recbole_gnn is None or not (args.recbole_gnn / "recbole_gnn").is_dir()):
        raise SystemExit(f"error: --recbole-gnn {args.recbole_gnn}: needed for {', '.join(gnn)}, a checkout of "
                         "RecBole-GNN (no recbole_gnn folder in it)")
    python = ensure_venv(args.venv)
    if gnn:
        ensure_gnn_deps(python)
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d')}; {args.threads} threads; "
          f"{args.epochs} epochs, patience {args.patience}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "data"
        write_atomic_files(dataset, data_path / args.dataset)
        for model in args.models:
            ours, peer = [], []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                spec = {"model": model, "name": args.dataset, "data_path": str(data_path), "seed": seed,
                        "epochs": args.epochs, "patience": args.patience, "threads": args.threads,
                        "checkpoint_dir": str(Path(tmp) / "saved"), "workdir": tmp,
                        "recbole_gnn": str(args.recbole_gnn.resolve()) if args.recbole_gnn else "",
                        "peer_set": peer_set}
                if args.check_loss:
                    result = {"check": "loss", "dataset": args.dataset, "seed": seed, "set": args.overrides,
                              "peer_set": peer_set,
                              **check_loss(model, dataset, python, {**spec, "overrides": overrides}, Path(tmp))}
                    record(result, args.jsonl)
                    continue
                for side in args.sides:
                    result = run_ours(model, dataset, seed, args.epochs, args.patience, overrides) \
                        if side == "ours" else run_recbole(python, spec)
                    result = {"model": model, "side": side, "seed": seed, "dataset": args.dataset,
                              "epochs": args.epochs, "patience": args.patience, **result,
                              **({"set": args.overrides, "peer_set": peer_set} if args.overrides or peer_set else {})}
                    (ours if side == "ours" else peer).append(result)
                    record(result, args.jsonl)
            rows.append((model, ours, peer))
    if not args.check_loss:
        print(table_markdown(rows))


def table_markdown(rows: list[tuple[str, list[dict], list[dict]]], peer: str = "RecBole") -> str:
    """One row per model: both sides' test Recall@20 / NDCG@20 (mean ± std over seeds), the
    relative gap in Recall@20 and the paired t-test over the seeds both ran, seconds per epoch."""
    from scipy import stats

    lines = [f"| model | seeds | ours R@20 | {peer} R@20 | gap | paired p | ours N@20 | {peer} N@20 "
             f"| ours s/epoch | {peer} s/epoch |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for model, ours, peer in rows:
        mine = {r["seed"]: r for r in ours}
        theirs = {r["seed"]: r for r in peer}
        seeds = sorted(set(mine) & set(theirs))
        if not seeds:
            continue
        a = [mine[s]["test_recall@20"] for s in seeds]
        b = [theirs[s]["test_recall@20"] for s in seeds]
        p = stats.ttest_rel(a, b).pvalue if len(seeds) > 1 else float("nan")
        gap = 100 * (statistics.mean(a) - statistics.mean(b)) / statistics.mean(b)
        lines.append(
            f"| {model} | {len(seeds)} | {fmt(a)} | {fmt(b)} | {gap:+.1f} % | {p:.2f} "
            f"| {fmt([mine[s]['test_ndcg@20'] for s in seeds])} | {fmt([theirs[s]['test_ndcg@20'] for s in seeds])} "
            f"| {statistics.median(mine[s]['seconds_per_epoch'] for s in seeds):.2f} "
            f"| {statistics.median(theirs[s]['seconds_per_epoch'] for s in seeds):.2f} |")
    return "\n".join(lines)


def table_from_jsonl(path: Path, dataset: str, peers: tuple[str, ...] = tuple(PEER_MODELS), side: str = "recbole",
                     peer: str = "RecBole", settings: list[str] | None = None) -> str:
    """The table of every run recorded in ``path`` (several parts of one benchmark) on ``dataset``:
    models ``peers``, the peer's runs those of ``side``; the runs made with ``--set`` ``settings``
    (none: the published settings)."""
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    runs = [r for r in runs if r["dataset"] == dataset and r.get("set", []) == (settings or []) and "check" not in r]
    models = [m for m in peers if any(r["model"] == m for r in runs)]
    return table_markdown([(m, [r for r in runs if r["model"] == m and r["side"] == "ours"],
                            [r for r in runs if r["model"] == m and r["side"] == side]) for m in models], peer)


if __name__ == "__main__":
    main()
