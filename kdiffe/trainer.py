"""Training loop of KDiffE (paper Section V-C, Eq. 14) with honest model selection.

Per epoch: (1) train the denoiser on item batches, guided by the current (detached) user
embeddings; (2) rebuild the diffusion view Ĝ_k every ``kg_every`` epochs; (3) BPR + InfoNCE
over shuffled interaction batches with fresh negatives. Every ``eval_every`` epochs evaluate on
validation and test; select the epoch on validation (``select_on="test"`` is the authors'
protocol, offered for paper-comparable numbers and labelled). Early stopping on the selection
metric with ``patience`` evaluations.
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

from .attention import cached_attention_matrix
from .config import Config, ConfigError
from .data import Dataset, load_dataset
from .diffusion import Denoiser, GaussianDiffusion, top_q_per_relation, user_guidance_operator
from .knowledge import build_knowledge
from .losses import bpr_loss, info_nce, l2_penalty, parameter_norm
from .metrics import evaluate
from .model import KDiffE
from .propagation import propagation_operator
from .sampling import interaction_batches, positive_keys

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
    """The dataset a config names, with its seed, validation fraction, user subsample and sizes."""
    synthetic = dict(n_users=cfg.syn_users, n_items=cfg.syn_items, n_clusters=cfg.syn_clusters,
                     interactions=cfg.syn_interactions)
    return load_dataset(cfg.dataset, cfg.data_dir, seed=cfg.seed, val_fraction=cfg.val_fraction,
                        max_users=cfg.max_users, synthetic=synthetic)


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


class Trainer:
    """Builds every operator of a run from a Config and trains; resumable via save/load."""

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
        self.s_seconds = 0.0
        s = None
        if cfg.use_s:
            s, self.s_seconds = cached_attention_matrix(ds, cfg.M, cfg.R, cfg.restart, cfg.seed,
                                                        cfg.cache_dir, log)
        operator = propagation_operator(ds.train, s, cfg.xi if cfg.use_s else 0.0, self.device)
        kg = build_knowledge(ds, cfg.kg, cfg.concepts, cfg.links, cfg.kg_iters, cfg.seed, log) \
            if cfg.use_kg else None
        if kg is not None:
            log(kg.describe())
            if cfg.q > max(np.bincount(kg.entity_relation)):
                log(f"note: q={cfg.q} exceeds the entities of a relation; keeping all of them")
        self.kg = kg
        self.model = KDiffE(ds.n_users, ds.n_items, operator, cfg.dim, cfg.layers, kg).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.triples = torch.as_tensor(kg.triples, device=self.device) if kg is not None else None
        self.view_triples = self.triples
        self.diffusion = self.denoiser = None
        if kg is not None and cfg.use_cl:
            self.diffusion = GaussianDiffusion(cfg.t, cfg.noise_scale, cfg.noise_min, cfg.noise_max, self.device)
            self.denoiser = Denoiser(kg.n_entities, cfg.dim, cfg.denoiser_hidden, cfg.step_dim).to(self.device)
            self.diff_optimizer = torch.optim.Adam(self.denoiser.parameters(), lr=cfg.diff_lr)
            self.x0 = torch.as_tensor(kg.item_entity_matrix(), device=self.device)
            self.entity_relation = torch.as_tensor(kg.entity_relation, device=self.device)
            self.guidance_op = user_guidance_operator(ds.train, self.device)
        self.keys = positive_keys(ds.train)
        self.epoch = 0
        self.history = History()

    # one epoch ----------------------------------------------------------
    def _guidance(self) -> torch.Tensor | None:
        if not self.config.guided:
            return None
        users, _ = self.model.get_embedding(self.triples)
        return torch.sparse.mm(self.guidance_op, users)

    def _train_denoiser(self, guidance: torch.Tensor | None) -> float:
        self.denoiser.train()
        order = torch.randperm(self.x0.shape[0], device=self.device)
        total, batches = 0.0, 0
        for lo in range(0, order.numel(), self.config.diff_batch):
            idx = order[lo:lo + self.config.diff_batch]
            loss = self.diffusion.loss(self.denoiser, self.x0[idx], None if guidance is None else guidance[idx])
            self.diff_optimizer.zero_grad()
            loss.backward()
            self.diff_optimizer.step()
            total, batches = total + loss.item(), batches + 1
        return total / max(batches, 1)

    @torch.no_grad()
    def rebuild_view(self, guidance: torch.Tensor | None) -> torch.Tensor:
        """Ĝ_k: top-q entities per relation of the reverse-diffused entity vectors (Eq. 10-12)."""
        self.denoiser.eval()
        parts = []
        for lo in range(0, self.x0.shape[0], self.config.diff_batch):
            x0 = self.x0[lo:lo + self.config.diff_batch]
            g = None if guidance is None else guidance[lo:lo + self.config.diff_batch]
            scores = self.diffusion.reconstruct(self.denoiser, x0, g)
            triples = top_q_per_relation(scores, self.entity_relation, self.config.q)
            triples[:, 0] += lo
            parts.append(triples)
        return torch.cat(parts)

    def train_epoch(self) -> dict[str, float]:
        cfg = self.config
        self.model.train()
        stats: dict[str, float] = {}
        start = time.perf_counter()
        if self.denoiser is not None:
            guidance = self._guidance()
            stats["diffusion_loss"] = self._train_denoiser(guidance)
            if self.epoch % cfg.kg_every == 0:
                self.view_triples = self.rebuild_view(guidance)
        stats["diffusion_seconds"] = time.perf_counter() - start
        n_batches = -(-self.dataset.train.nnz // cfg.batch_size)
        bar = Progress(f"epoch {self.epoch + 1}", n_batches)
        sums = {"bpr_loss": 0.0, "cl_loss": 0.0}
        for users, pos, neg in interaction_batches(self.dataset.train, self.keys, cfg.batch_size, self.rng):
            u, i, j = (torch.as_tensor(a, device=self.device) for a in (users, pos, neg))
            z_u, z_i = self.model(self.triples)
            bpr = bpr_loss((z_u[u] * z_i[i]).sum(1), (z_u[u] * z_i[j]).sum(1))
            if cfg.l2 == "params":
                reg = parameter_norm(self.model.parameters())
            else:
                reg = l2_penalty(self.model.user.weight[u], self.model.item.weight[i], self.model.item.weight[j])
            loss = bpr + cfg.theta2 * reg
            if cfg.use_cl and self.denoiser is not None:
                v_u, v_i = self.model(self.view_triples)
                uu, ii = torch.unique(u), torch.unique(i)
                cl = info_nce(z_u[uu], v_u[uu], v_u, cfg.tau) + info_nce(z_i[ii], v_i[ii], v_i, cfg.tau)
                loss = loss + cfg.theta1 * cl
                sums["cl_loss"] += cl.item()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            sums["bpr_loss"] += bpr.item()
            bar.step()
        bar.close()
        stats.update({k: v / n_batches for k, v in sums.items()})
        self.epoch += 1
        stats["epoch_seconds"] = time.perf_counter() - start
        self.history.epoch_seconds.append(stats["epoch_seconds"])
        return stats

    # evaluation ---------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Validation and test metrics of the main view, prefixed ``val_`` and ``test_``."""
        self.model.eval()
        z_u, z_i = self.model.get_embedding(self.triples)
        score = lambda users: z_u[users] @ z_i.T  # noqa: E731
        ds, cfg = self.dataset, self.config
        val = evaluate(score, ds.val, [ds.train], cfg.ks, cfg.eval_batch, self.device)
        test = evaluate(score, ds.test, [ds.train, ds.val], cfg.ks, cfg.eval_batch, self.device)
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
                   "seconds_per_epoch": float(np.mean(hist.epoch_seconds)), "s_seconds": self.s_seconds}
            hist.evaluations.append(row)
            improved = hist.best is None or row[self.selection_key] > hist.best[self.selection_key]
            if improved:
                hist.best, hist.bad_evaluations = row, 0
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
            "variant": self.config.variant,
            "selected_on": SELECTION_LABELS[self.config.select_on],
            "selection_metric": self.selection_key,
            "best_epoch": best.get("epoch"),
            "val": split("val_"),
            "test": split("test_"),
            "epochs_run": self.epoch,
            "seconds_per_epoch": float(np.median(hist.epoch_seconds)) if hist.epoch_seconds else None,
            "s_seconds": self.s_seconds,
            "peak_memory_mb": peak_memory_mb(self.device),
            "device": str(self.device),
            "config": self.config.to_dict(),
            "history": hist.evaluations,
        }

    # checkpoints --------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {"epoch": self.epoch, "history": self.history.__dict__, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "rng": self.rng.bit_generator.state,
                 "torch_rng": torch.get_rng_state(), "config": self.config.to_dict(),
                 "view_triples": None if self.view_triples is None else self.view_triples.cpu()}
        if self.denoiser is not None:
            state["denoiser"] = self.denoiser.state_dict()
            state["diff_optimizer"] = self.diff_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.history = History(**state["history"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        if state["view_triples"] is not None:
            self.view_triples = state["view_triples"].to(self.device)
        if self.denoiser is not None:
            self.denoiser.load_state_dict(state["denoiser"])
            self.diff_optimizer.load_state_dict(state["diff_optimizer"])

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / "trainer.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)
        return path

    def load(self, folder: str | Path) -> None:
        self.load_state_dict(torch.load(Path(folder) / "trainer.pt", map_location="cpu", weights_only=False))


def train(config: Config, report: Report | None = None, *, dataset: Dataset | None = None,
          log: Callable[[str], None] = print, out: str | Path | None = None) -> dict[str, Any]:
    """Train one run; ``report(metrics)`` is called after every evaluation. Returns the summary."""
    summary = Trainer(config, dataset, log).run(report)
    if out is not None:
        write_summary(summary, out)
    return summary


def write_summary(summary: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=float))
