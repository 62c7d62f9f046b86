"""Memory a run needs, checked against the target device before anything big is allocated.

A size parameter far too large for the machine (``--set dim=1000000000``) would otherwise end
in an allocator traceback, possibly after minutes of building S. :func:`check_memory` estimates
a lower bound of the bytes the largest tensors of a run take (float32 everywhere):

- embedding tables of users + items + entities (Eq. 1-3) x ``dim``: weights, gradients and
  Adam's two moments, 4 copies;
- the propagated layers (Eq. 3, 6): ``layers + 1`` tensors of (users + items) x ``dim`` per
  KG view (two with contrastive learning, Eq. 13), kept for the backward pass;
- one batch of full-ranking scores: ``min(eval_batch, users)`` x items;
- the streamed InfoNCE logits (Eq. 13): ``min(cl_block, batch_size, users)`` x max(users, items);
- the diffusion view (Eq. 8-12): one batch of dense x0 rows, ``diff_batch`` x entities, through
  the ``t`` steps of the reverse process, and the denoiser's two layers of ``denoiser_hidden``
  units (4 copies, as above) (x0 itself is kept sparse);
- the random walks of S (Eq. 4-5): ``(M + 1) x R x (users + items)`` int32 positions, which the
  visit sets copy twice (sorted and transposed); counted even when S is cached.

The S, KG and diffusion terms are KDiffE's: another registered model is estimated by its
embeddings, propagated layers and ranking scores.

and compares it with what the device has free: on CUDA ``torch.cuda.mem_get_info`` (the walks
of S, numpy on the host, against the host); on the CPU ``MemAvailable`` of /proc/meminfo (else
``os.sysconf``), capped by a cgroup v2 limit. Too much raises a one-line
:class:`~kdiffe.config.ConfigError` naming the size parameter whose reset to its default lowers
the estimate most, if by at least half (else the dataset), and both sizes in GiB.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .config import FIELDS, Config, ConfigError
from .knowledge import default_concepts

GIB = 2**30
FLOAT = 4  # bytes of a float32
#: the size parameters :func:`check_memory` may blame, in the order ties are broken
SIZE_PARAMETERS = ("dim", "layers", "eval_batch", "cl_block", "denoiser_hidden", "concepts", "M", "R")


def available_bytes(device: torch.device | str) -> tuple[int, str]:
    """(free bytes, where the number comes from) on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"free on {device}"
    free, source = None, "available on the host"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free, source = int(line.split()[1]) * 1024, "MemAvailable on the host"
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            free = 0
    try:  # a container's own limit, cgroup v2
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            left = int(limit) - int((cgroup / "memory.current").read_text())
            if not free or left < free:
                free, source = max(left, 0), "left under the cgroup memory limit"
    except (OSError, ValueError):
        pass
    return int(free) or 2**62, source  # unknown: do not refuse


def entities(cfg: Config, n_items: int, features: Mapping[str, Any], kg_triples: Any = None) -> int:
    """Entities of the KG the run will build (:func:`kdiffe.knowledge.build_knowledge`)."""
    if not cfg.use_kg:
        return 0
    if cfg.kg == "file":
        return 0 if kg_triples is None or len(kg_triples) == 0 else int(np.unique(kg_triples[:, 2]).size)
    return len(features) * min(cfg.concepts or default_concepts(n_items), n_items)


#: terms of :func:`estimate` that live in host memory whatever the device (numpy)
HOST_TERMS = ("random walks of S",)


def estimate(cfg: Config, n_users: int, n_items: int, n_entities: int, device: torch.device | str) -> dict[str, int]:
    """Lower bounds, in bytes, of the largest allocations of a run (see the module docstring)."""
    from .losses import default_block

    nodes = n_users + n_items
    kdiffe = cfg.model == "kdiffe"
    n_entities = n_entities if kdiffe else 0
    contrast = kdiffe and cfg.use_cl and n_entities > 0  # no KG built: no diffusion view, no InfoNCE
    out = {
        "embedding tables": 4 * FLOAT * (nodes + n_entities) * cfg.dim,
        "propagated layers": FLOAT * (cfg.layers + 1) * nodes * cfg.dim * (2 if contrast else 1),
        "ranking scores": FLOAT * min(cfg.eval_batch, n_users) * n_items,
    }
    if contrast:
        block = cfg.cl_block or default_block(device)
        out["InfoNCE logits"] = FLOAT * min(block, cfg.batch_size, n_users) * max(n_users, n_items)
        denoiser = (n_entities + cfg.step_dim + cfg.dim) * cfg.denoiser_hidden + cfg.denoiser_hidden * n_entities
        out["diffusion view"] = FLOAT * (min(cfg.diff_batch, n_items) * n_entities * 3 + 4 * denoiser)
    if kdiffe and cfg.use_s:
        out["random walks of S"] = 3 * 4 * (cfg.M + 1) * cfg.R * nodes
    return out


def check_memory(cfg: Config, n_users: int, n_items: int, features: Mapping[str, Any] | None = None,
                 kg_triples: Any = None, device: torch.device | str = "cpu", dataset: str = "") -> int:
    """Raise ConfigError when :func:`estimate` exceeds :func:`available_bytes`; return the estimate.

    On CUDA the device terms are compared with the GPU's free memory and :data:`HOST_TERMS` with
    the host's; on the CPU their sum with the host's. The error names the size parameter whose
    reset to its default lowers the excess estimate most, provided that removes at least half of
    it; otherwise the dataset (too large at these settings).
    """
    features = features or {}
    device = torch.device(device)
    split = device.type == "cuda"

    def need(c: Config, host: bool) -> tuple[int, str]:
        parts = estimate(c, n_users, n_items, entities(c, n_items, features, kg_triples), device)
        if split:  # only this pool's terms
            parts = {k: v for k, v in parts.items() if (k in HOST_TERMS) == host}
        return sum(parts.values()), max(parts, key=parts.get, default="nothing")

    grand = 0
    for host in ((True, False) if split else (True,)):
        total, biggest = need(cfg, host)
        grand += total
        free, source = available_bytes("cpu" if host else device)
        if total <= free:
            continue
        savings = {name: total - need(dataclasses.replace(cfg, **{name: FIELDS[name].default}), host)[0]
                   for name in SIZE_PARAMETERS}
        blame = max(SIZE_PARAMETERS, key=lambda name: savings[name])
        sizes = f"about {total / GIB:.1f} GiB (mostly {biggest}), more than the {free / GIB:.1f} GiB {source}"
        if savings[blame] * 2 >= total:
            raise ConfigError(f"{blame}={getattr(cfg, blame)!r}: the run would need {sizes}")
        raise ConfigError(f"dataset {dataset or cfg.dataset!r} ({n_users} users, {n_items} items) with these "
                          f"settings would need {sizes}; try a smaller dim or max_users")
    return grand


def check_dataset_memory(cfg: Config, dataset: Any, device: torch.device | str = "cpu") -> int:
    """:func:`check_memory` for ``cfg`` on a loaded ``dataset`` (its users, items, features and,
    with ``kg=file``, its kg.txt triples)."""
    triples = dataset.kg_triples if cfg.use_kg and cfg.kg == "file" else None
    return check_memory(cfg, dataset.n_users, dataset.n_items, dataset.features, triples, device, dataset.name)
