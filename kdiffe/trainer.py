"""The training loop (paper Section V-C) of any registered recommender, with honest model selection.

The model comes from the registry (:mod:`kdiffe.zoo`, by Config.model) and follows the
:class:`~kdiffe.recommender.Recommender` protocol, so this is only a loop. Per epoch: (1) the
model's per-epoch hook (KDiffE: the diffusion view trains its denoiser, guided by the current
user embeddings, and rebuilds Ĝ_k every ``kg_every`` epochs); (2) the model's own objective
(KDiffE: BPR + θ2 L2 + θ1 InfoNCE, Eq. 14) over shuffled interaction batches with fresh
negatives. Every ``eval_every`` epochs evaluate on validation and test; select the epoch on validation (``select_on="test"`` is the authors' protocol, offered for
paper-comparable numbers and labelled). Early stopping on the selection metric with ``patience``
evaluations.

The batch loop never reads from the device: batches are drawn for the whole epoch at once and
the losses are summed on the device and read once per epoch.

Checkpoints (:meth:`Trainer.save`) hold only tensors and plain Python values and are read with
``torch.load(..., weights_only=True)``: loading a shared results folder runs no code.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .config import Config, ConfigError
from .data import Dataset, load_dataset
from .dataset import write_ids
from .memory import check_dataset_memory
from .metrics import Evaluator
from .recommender import CheckpointError, Recommender  # noqa: F401  (CheckpointError re-exported)
from .sampling import epoch_batches, positive_keys
from .zoo import build_model

Report = Callable[[dict[str, Any]], None]

SELECTION_LABELS = {
    "val": "validation (best validation epoch; test reported there)",
    "test": "test (authors' protocol: best test epoch, optimistic, not a fair estimate)",
}


def resolve_device(name: str) -> torch.device:
    """"auto" picks the first visible CUDA device, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() and torch.cuda.device_count() > 0 else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}: no CUDA device is visible")
    return device


def peak_memory_mb(device: torch.device) -> float:
    host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if device.type == "cuda":
        return host + torch.cuda.max_memory_allocated(device) / 2**20
    return host


def dataset_for(cfg: Config) -> Dataset:
    """The dataset a config names, with its seed, validation fraction, re-split, user subsample and sizes."""
    synthetic = dict(n_users=cfg.syn_users, n_items=cfg.syn_items, n_clusters=cfg.syn_clusters,
                     interactions=cfg.syn_interactions)
    ratios = tuple(float(x) for x in cfg.resplit_ratios.split(",")) if cfg.resplit_ratios else None
    return load_dataset(cfg.dataset, cfg.data_dir, seed=cfg.seed, val_fraction=cfg.val_fraction,
                        max_users=cfg.max_users, synthetic=synthetic, resplit_seed=cfg.resplit,
                        resplit_ratios=ratios, resplit_holdout=cfg.resplit_holdout, data_format=cfg.data_format)


class Progress:
    """A one-line progress bar on stderr, shown only on a terminal."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.enabled = sys.stderr.isatty() and total > 1

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.enabled:
            filled = int(30 * self.done / self.total)
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * (len(self.label) + 50) + "\r")
            sys.stderr.flush()


@dataclass
class History:
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    bad_evaluations: int = 0
    epoch_seconds: list[float] = field(default_factory=list)


#: version of the checkpoint layout written by :meth:`Trainer.state_dict` (1: before the
#: diffusion view had its own state; 2: before the model kept it as its extra state; both read too)
CHECKPOINT_FORMAT = 3


def plain(value: Any, where: str = "state") -> Any:
    """``value`` with numpy scalars and arrays as Python numbers and lists, tensors on the CPU,
    checked to hold only what ``torch.load(weights_only=True)`` reads: tensors, dicts with str
    or int keys, lists, tuples, str, int, float, bool and None. Raises TypeError otherwise."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    for kind in (bool, int, float, str):  # subclasses (IntEnum, ...): their plain value
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where}: key {key!r} is not a str or int")
            out[key] = plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [plain(item, f"{where}[{k}]") for k, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(f"{where}: {type(value).__name__} cannot go into a safe checkpoint")


class Trainer:
    """Builds the run's model (with every operator it needs) from a Config and trains it;
    resumable via save/load."""

    def __init__(self, config: Config, dataset: Dataset | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.config = cfg = config
        self.log = log
        self.device = resolve_device(cfg.device)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.dataset = ds = dataset or dataset_for(cfg)
        log(ds.summary())
        for note in ds.notes:
            log(note)
        check_dataset_memory(cfg, ds, self.device)  # before S, the KG and the model
        self.model: Recommender = build_model(cfg, ds, self.device, log)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.keys = positive_keys(ds.train)
        self._evaluators: dict[str, Evaluator] = {}
        self.epoch = 0
        self.history = History()
        #: the (users, items) embeddings of the best evaluation, on the CPU: what a saved model serves
        self.best_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def kg_entities(self) -> int:
        """Entities of the KG this run uses; 0 when it has none (knowledge, diffusion and CL off)."""
        return int(self.model.recorded()["kg_entities"])

    @property
    def s_seconds(self) -> float:
        """Seconds the model took to build (or load) S; 0 without S."""
        return float(getattr(self.model, "s_seconds", 0.0))

    # KDiffE's views (None for models without them) ----------------------
    @property
    def kg(self) -> Any:
        return getattr(self.model, "kg", None)

    @property
    def view(self) -> Any:
        """The diffusion view (kdiffe.view.DiffusionView) of a KDiffE run that contrasts, else None."""
        return getattr(self.model, "view", None)

    @property
    def triples(self) -> torch.Tensor | None:
        """The original KG's triples (the main view)."""
        return getattr(self.model, "kg_triples", None)

    @property
    def view_triples(self) -> torch.Tensor | None:
        """Ĝ_k, the diffusion view's triples (the main view's when there is no diffusion view)."""
        return self.view.triples if self.view is not None else self.triples

    @property
    def denoiser(self) -> torch.nn.Module | None:
        return self.view.denoiser if self.view is not None else None

    # one epoch ----------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        cfg = self.config
        self.model.train()
        start = time.perf_counter()
        device_stats = dict(self.model.epoch_hook(self.epoch))
        diffusion_seconds = time.perf_counter() - start
        batches = epoch_batches(self.dataset.train, self.keys, cfg.batch_size, self.rng, self.device,
                                anchors=self.model.contrastive, samples=self.model.negative_samples)
        bar = Progress(f"epoch {self.epoch + 1}", len(batches))
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # bpr_loss, cl_loss
        for batch in batches:
            loss, parts = self.model.loss(batch)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            sums[0] += parts["bpr_loss"]
            if "cl_loss" in parts:
                sums[1] += parts["cl_loss"]
            bar.step()
        bar.close()
        # the one read-back of the epoch
        values = torch.cat([sums / len(batches), torch.stack(list(device_stats.values())).double()]) \
            if device_stats else sums / len(batches)
        numbers = values.tolist()
        stats: dict[str, float] = dict(zip(device_stats, numbers[2:]))
        stats["diffusion_seconds"] = diffusion_seconds
        stats["bpr_loss"], stats["cl_loss"] = numbers[0], numbers[1]
        self.epoch += 1
        stats["epoch_seconds"] = time.perf_counter() - start
        self.history.epoch_seconds.append(stats["epoch_seconds"])
        return stats

    # evaluation ---------------------------------------------------------
    def evaluator(self, split: str) -> Evaluator:
        """The prepared full-ranking evaluation of ``split`` ("val" or "test")."""
        if split not in self._evaluators:
            ds, cfg = self.dataset, self.config
            truth, exclude = (ds.val, [ds.train]) if split == "val" else (ds.test, [ds.train, ds.val])
            self._evaluators[split] = Evaluator(truth, exclude, cfg.ks, cfg.eval_batch, self.device)
        return self._evaluators[split]

    def evaluate(self) -> dict[str, float]:
        """Validation and test metrics of the model's scores, prefixed ``val_`` and ``test_``."""
        self.model.eval()
        score = self.model.scorer()
        val, test = self.evaluator("val")(score), self.evaluator("test")(score)
        return {**{f"val_{k}": v for k, v in val.items()}, **{f"test_{k}": v for k, v in test.items()}}

    @property
    def selection_key(self) -> str:
        return f"{self.config.select_on}_{self.config.metric}"

    @property
    def finished(self) -> bool:
        """All epochs done, or early stopping triggered (also true for a restored finished run)."""
        stopped = bool(self.config.patience) and self.history.bad_evaluations >= self.config.patience
        return self.epoch >= self.config.epochs or stopped

    def run(self, report: Report | None = None) -> dict[str, Any]:
        """Train until ``epochs`` or early stopping; returns the summary dict."""
        cfg, hist = self.config, self.history
        while not self.finished:
            stats = self.train_epoch()
            if self.epoch % cfg.eval_every and self.epoch != cfg.epochs:
                continue
            metrics = self.evaluate()
            row = {"epoch": self.epoch, **metrics, **stats,
                   "seconds_per_epoch": float(np.mean(hist.epoch_seconds)), "s_seconds": self.s_seconds,
                   **self.model.recorded()}
            hist.evaluations.append(row)
            improved = hist.best is None or row[self.selection_key] > hist.best[self.selection_key]
            if improved:
                hist.best, hist.bad_evaluations = row, 0
                self.keep_best_embeddings()
            else:
                hist.bad_evaluations += 1
            self.log(f"epoch {self.epoch:3d}  loss {stats['bpr_loss']:.4f}  "
                     f"val R@20 {metrics['val_recall@20']:.4f} N@20 {metrics['val_ndcg@20']:.4f}  "
                     f"test R@20 {metrics['test_recall@20']:.4f} N@20 {metrics['test_ndcg@20']:.4f}  "
                     f"{stats['epoch_seconds']:.1f}s{'  *' if improved else ''}")
            stop = bool(cfg.patience) and hist.bad_evaluations >= cfg.patience
            if report is not None:
                report({**row, "best_epoch": hist.best["epoch"], "done": stop or self.epoch >= cfg.epochs})
            if stop:
                self.log(f"early stop: no better {self.selection_key} for {cfg.patience} evaluations")
                break
        return self.summary()

    def summary(self) -> dict[str, Any]:
        hist, best = self.history, self.history.best or {}
        split = lambda prefix: {k[len(prefix):]: v for k, v in best.items() if k.startswith(prefix)}  # noqa: E731
        return {
            "dataset": self.dataset.name,
            "model": self.config.model,
            "variant": self.config.variant,
            "selected_on": SELECTION_LABELS[self.config.select_on],
            "selection_metric": self.selection_key,
            "best_epoch": best.get("epoch"),
            "val": split("val_"),
            "test": split("test_"),
            "epochs_run": self.epoch,
            "seconds_per_epoch": float(np.median(hist.epoch_seconds)) if hist.epoch_seconds else None,
            "s_seconds": self.s_seconds,
            **self.model.recorded(),
            "peak_memory_mb": peak_memory_mb(self.device),
            "device": str(self.device),
            "config": self.config.to_dict(),
            "history": hist.evaluations,
        }

    @torch.no_grad()
    def keep_best_embeddings(self) -> None:
        """Copy the model's final embeddings (in eval mode, as evaluated) to the CPU as the best."""
        self.model.eval()
        users, items = self.model.embeddings()
        self.best_embeddings = (users.detach().to("cpu", torch.float32, copy=True),
                                items.detach().to("cpu", torch.float32, copy=True))

    def save_model(self, folder: str | Path) -> Path:
        """The best evaluation's embeddings and what produced them as a saved model folder
        (:mod:`kdiffe.serving`: .npy and JSON, nothing pickled)."""
        from .serving import ModelError, save_model

        if self.best_embeddings is None:
            raise ModelError("no evaluation yet: nothing to save (train at least one epoch)")
        users, items = self.best_embeddings
        return save_model(folder, users.numpy(), items.numpy(), self.config.to_dict(), self.history.best or {},
                          self.dataset.name, self.dataset.user_ids, self.dataset.item_ids)

    # checkpoints --------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything to resume exactly, as tensors and plain Python values only (see :func:`plain`)."""
        hist = self.history
        best = None if hist.best is None else next(
            (k for k, row in enumerate(hist.evaluations) if row is hist.best), None)
        state = {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "history": {"evaluations": hist.evaluations, "best": hist.best, "best_index": best,
                        "bad_evaluations": hist.bad_evaluations, "epoch_seconds": hist.epoch_seconds},
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "config": self.config.to_dict(),
            "extra": self.model.extra_state(),
        }
        if self.best_embeddings is not None:
            state["best_embeddings"] = {"users": self.best_embeddings[0], "items": self.best_embeddings[1],
                                        "dataset": self.dataset.name}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return plain(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        layout = state.get("format", 1)
        if layout == 1:  # written before the diffusion view had its own state
            extra = None if "denoiser" not in state else {
                "denoiser": state["denoiser"], "optimizer": state["diff_optimizer"], "triples": state["view_triples"]}
        else:
            extra = state["view"] if layout == 2 else state["extra"]
        history = state["history"]
        self.model.load_extra_state(extra)  # first: it refuses a checkpoint of another variant
        self.epoch = int(state["epoch"])
        best_index = history.get("best_index")
        evaluations = list(history["evaluations"])
        best = evaluations[best_index] if best_index is not None else history["best"]
        self.history = History(evaluations=evaluations, best=best, bad_evaluations=int(history["bad_evaluations"]),
                               epoch_seconds=list(history["epoch_seconds"]))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        best = state.get("best_embeddings")
        self.best_embeddings = None if best is None else (best["users"], best["items"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)

    def save(self, folder: str | Path) -> Path:
        """``folder/trainer.pt``, and ``folder/ids.json`` where the dataset has ids of its own (for
        :func:`kdiffe.serving.export_checkpoint`)."""
        path = Path(folder) / "trainer.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)
        if self.dataset.user_ids is not None and self.dataset.item_ids is not None:
            write_ids(path.parent, self.dataset.user_ids, self.dataset.item_ids)
        return path

    def load(self, folder: str | Path) -> None:
        """Restore from ``folder/trainer.pt``, read with ``weights_only=True`` (runs no code)."""
        path = Path(folder) / "trainer.pt"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no checkpoint there") from None
        except Exception as exc:  # pickle.UnpicklingError and friends: not plain data
            raise CheckpointError(
                f"{path}: cannot be loaded safely (torch.load weights_only=True refused it: "
                f"{' '.join(str(exc).split())[:300]}). It holds objects other than tensors and plain "
                "values: it is not a kdiffe checkpoint, or one written by a much older version. Only if you "
                "trust its source, re-save it: Trainer.load_state_dict(torch.load(path, weights_only=False)) "
                "then Trainer.save.") from None
        if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
            raise CheckpointError(f"{path}: not a kdiffe trainer checkpoint")
        self.load_state_dict(state)


def train(config: Config, report: Report | None = None, *, dataset: Dataset | None = None,
          log: Callable[[str], None] = print, out: str | Path | None = None,
          model_dir: str | Path | None = None) -> dict[str, Any]:
    """Train one run; ``report(metrics)`` is called after every evaluation. Returns the summary,
    also written to ``out`` (JSON); ``model_dir`` receives the saved model (:mod:`kdiffe.serving`)."""
    trainer = Trainer(config, dataset, log)
    summary = trainer.run(report)
    if out is not None:
        write_summary(summary, out)
    if model_dir is not None:
        trainer.save_model(model_dir)
    return summary


def write_summary(summary: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=float))
