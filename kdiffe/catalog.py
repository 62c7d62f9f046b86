"""The registered models by name, as plain data: where each one's code lives, the hyperparameters
its paper publishes where they differ from Config's defaults, and the parameters a search of it
moves by default. :mod:`kdiffe.config` reads the names and defaults, :mod:`kdiffe.zoo` builds
the models, and this module imports nothing, so neither depends on the other.

Registering a model is one entry here; its code is one module holding one
:class:`kdiffe.recommender.Recommender` subclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping


@dataclass(frozen=True)
class Entry:
    code: str  #: "module:Class"
    label: str  #: its name in tables and claims
    #: seconds per TikTok epoch at its defaults on the 2-core reference machine (docs/benchmarks.md), for
    #: the runners' time estimates
    epoch_seconds: float
    defaults: Mapping[str, Any] = field(default_factory=dict)  #: published values that differ from Config's
    search: tuple[str, ...] = ()  #: parameters a search moves by default (ranges: kdiffe.paper.JOINT_RANGES)
    #: search ranges (as kdiffe.paper.JOINT_RANGES writes them) and grids where this model's differ
    ranges: Mapping[str, tuple] = field(default_factory=dict)
    grids: Mapping[str, tuple] = field(default_factory=dict)
    needs_features: bool = False  #: a multimodal model: refuses a dataset without item features
    #: the model's own hyperparameters (Config fields) that it reads; a field that some model reads and
    #: this one does not is refused when given to it (kdiffe.config.check_reads)
    reads: tuple[str, ...] = ()
    #: axis labels where a shared field means something else in this model (kdiffe.paper.PARAM_LABELS' own)
    labels: Mapping[str, str] = field(default_factory=dict)


#: θ2 of LightGCN's batch L2 (½ Σ ||e⁰||² / batch) lives on another scale than Eq. 14's L2 over every
#: parameter: its published 1e-4, and 0.3 the best on TikTok validation (docs/benchmarks.md), so the
#: models that use it search θ2 over 1e-5 .. 1 instead of kdiffe.paper's 1e-6 .. 1e-3.
BATCH_L2_RANGES = {"theta2": ("loguniform", 1e-5, 1.0)}
BATCH_L2_GRIDS = {"theta2": (1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.3, 1.0)}

MODELS: dict[str, Entry] = {
    # KDiffE: Config's defaults are its paper's; its search space is tune.spaces' (the seven of the paper)
    "kdiffe": Entry("kdiffe.model:KDiffE", "KDiffE", 4.7,
                    reads=("layers", "theta1", "theta2", "l2", "tau", "cl_block", "cl_negatives", "cl_samples", "M",
                           "R", "restart", "xi", "kg", "concepts", "links", "kg_iters", "t", "noise_scale",
                           "noise_min", "noise_max", "q", "kg_every", "denoiser_hidden", "step_dim", "diff_lr",
                           "diff_batch")),
    # LightGCN (He et al. 2020), Section 4.1: 3 layers, λ = 1e-4, the mean of the layers, L2 on the batch
    "lightgcn": Entry("kdiffe.lightgcn:LightGCN", "LightGCN", 1.2,
                      {"layers": 3, "theta2": 1e-4, "l2": "batch", "layer_combine": "mean"},
                      ("theta2", "lr"), ranges=BATCH_L2_RANGES, grids=BATCH_L2_GRIDS,
                      reads=("layers", "layer_combine", "theta2", "l2")),
    # SGL-ED (Wu et al. 2021), the authors' Yelp2018 settings: LightGCN's plus ρ = 0.1, τ = 0.2, λ1 = 0.1
    "sgl": Entry("kdiffe.sgl:SGL", "SGL", 10.9,
                 {"layers": 3, "theta2": 1e-4, "l2": "batch", "layer_combine": "mean", "edge_drop": 0.1, "tau": 0.2,
                  "theta1": 0.1},
                 ("theta1", "tau", "theta2", "lr"), ranges=BATCH_L2_RANGES, grids=BATCH_L2_GRIDS,
                 reads=("layers", "layer_combine", "theta1", "theta2", "l2", "tau", "cl_block", "edge_drop")),
    # NCL (Lin et al. 2022), the authors' settings (RecBole's NCL): LightGCN's plus k = 1, τ = 0.1,
    # λ1 = 1e-7, λ2 = 8e-8 (both on losses summed over the batch), 1,000 prototypes, 20 warm-up epochs
    "ncl": Entry("kdiffe.ncl:NCL", "NCL", 16.2,
                 {"layers": 3, "theta2": 1e-4, "l2": "batch", "layer_combine": "mean", "tau": 0.1, "theta1": 1e-7,
                  "proto_weight": 8e-8},
                 ("theta1", "proto_weight", "tau", "theta2", "lr"),
                 ranges={"theta1": ("loguniform", 1e-9, 1e-5), "proto_weight": ("loguniform", 1e-9, 1e-5),
                         "tau": ("uniform", 0.05, 1.0), **BATCH_L2_RANGES},
                 grids={"theta1": (1e-8, 1e-7, 1e-6, 1e-5), "proto_weight": (1e-8, 8e-8, 1e-7, 1e-6),
                        "tau": (0.05, 0.1, 0.2, 0.5), **BATCH_L2_GRIDS},
                 reads=("layers", "layer_combine", "theta1", "theta2", "l2", "tau", "cl_block", "hyper_layers",
                        "ncl_alpha", "proto_weight", "clusters", "warm_up")),
    # SimGCL (Yu et al. 2022), its authors' SELFRec settings: 2 layers, ε = 0.1, λ = 0.5, τ = 0.2 (fixed there),
    # reg 1e-4 (here LightGCN's batch L2)
    "simgcl": Entry("kdiffe.simgcl:SimGCL", "SimGCL", 9.5,
                    {"layers": 2, "theta2": 1e-4, "l2": "batch", "layer_combine": "mean", "noise_eps": 0.1, "tau": 0.2,
                     "theta1": 0.5},
                    ("theta1", "noise_eps", "tau", "theta2", "lr"),
                    ranges={"theta1": ("loguniform", 1e-2, 5.0), "noise_eps": ("uniform", 0.01, 0.5),
                            "tau": ("uniform", 0.05, 1.0), **BATCH_L2_RANGES},
                    grids={"theta1": (0.1, 0.2, 0.5, 1.0, 2.0), "noise_eps": (0.01, 0.05, 0.1, 0.2, 0.5),
                           "tau": (0.1, 0.2, 0.5), **BATCH_L2_GRIDS},
                    reads=("layers", "theta1", "theta2", "l2", "tau", "noise_eps")),
    # BM3 (Zhou et al. 2023): the first value of each grid its authors search (MMRec's BM3.yaml),
    # λ_cl = 2; θ1 is λ_cl, θ2 the weight of its (unsquared) norm regulariser
    "bm3": Entry("kdiffe.bm3:BM3", "BM3", 1.8,
                 {"layers": 1, "layer_combine": "mean", "target_dropout": 0.3, "theta1": 2.0, "theta2": 0.1},
                 ("layers", "target_dropout", "theta1", "theta2", "lr"),
                 ranges={"layers": ("int", 1, 3), "target_dropout": ("uniform", 0.1, 0.7),
                         "theta1": ("loguniform", 0.1, 10.0), "theta2": ("loguniform", 1e-3, 1.0)},
                 grids={"layers": (1, 2), "target_dropout": (0.3, 0.5), "theta1": (1.0, 2.0, 4.0),
                        "theta2": (0.01, 0.1)}, needs_features=True,
                 reads=("layers", "target_dropout", "theta1", "theta2")),
    # DiffMM (Jiang et al. 2024): the authors' TikTok command (reg 1e-4, ssl_reg 1e-2, trans 1, e_loss 0.1,
    # cl_method 1) over their Params.py (batch 1024, 1 layer, temp 0.5, keepRate 0.5, dims [1000],
    # d_emb_size 10, 5 steps, noise 0.1 / 1e-4 / 0.02, rebuild_k 5, ris_lambda 0.5, ris_adj_lambda 0.2)
    "diffmm": Entry("kdiffe.diffmm:DiffMM", "DiffMM", 93.0,
                    {"layers": 1, "batch_size": 1024, "theta1": 1e-2, "theta2": 1e-4, "tau": 0.5, "edge_drop": 0.5,
                     "t": 5, "noise_scale": 0.1, "noise_min": 1e-4, "noise_max": 0.02, "q": 5,
                     "denoiser_hidden": 1000, "step_dim": 10, "diff_lr": 1e-3, "diff_batch": 1024,
                     "msi_weight": 0.1, "ris_lambda": 0.5, "ris_adj_lambda": 0.2, "cl_pairs": "main"},
                    ("theta1", "tau", "msi_weight", "theta2", "lr"),
                    ranges={"theta1": ("loguniform", 1e-3, 1e-1), "tau": ("uniform", 0.1, 1.0),
                            "msi_weight": ("loguniform", 1e-2, 1.0)},
                    grids={"theta1": (1e-3, 1e-2, 1e-1), "tau": (0.1, 0.5, 1.0), "msi_weight": (0.01, 0.1, 0.5)},
                    needs_features=True,
                    reads=("layers", "theta1", "theta2", "tau", "cl_block", "cl_pairs", "edge_drop", "t", "noise_scale",
                           "noise_min", "noise_max", "q", "denoiser_hidden", "step_dim", "diff_lr", "diff_batch",
                           "msi_weight", "ris_lambda", "ris_adj_lambda")),
    # FREEDOM (Zhou & Shen 2023): the authors' MMRec FREEDOM.yaml (L_ui = 2, L_ii = 1, k = 10, α_image = 0.1),
    # ρ = 0.8 and λ = 1e-4 from their grids ({0.8, 0.9}, {0, 1e-5, 1e-4, 1e-3}); no L2 (θ2 = 0)
    "freedom": Entry("kdiffe.freedom:FREEDOM", "FREEDOM", 1.8,
                     {"layers": 2, "layer_combine": "mean", "l2": "batch", "theta2": 0.0, "edge_drop": 0.8,
                      "theta1": 1e-4},
                     ("edge_drop", "theta1", "theta2", "lr"),
                     ranges={"edge_drop": ("uniform", 0.5, 0.95), "theta1": ("loguniform", 1e-6, 1e-2),
                             **BATCH_L2_RANGES},
                     grids={"edge_drop": (0.7, 0.8, 0.9), "theta1": (0.0, 1e-5, 1e-4, 1e-3), **BATCH_L2_GRIDS},
                     needs_features=True,
                     reads=("layers", "theta1", "theta2", "l2", "edge_drop", "knn_k", "mm_layers", "image_weight"),
                     labels={"theta1": r"modality BPR weight $\theta_1$"}),
}


#: every Config field that is some model's own hyperparameter; the others (run, data, optimisation,
#: evaluation) apply to every model
MODEL_PARAMETERS: frozenset[str] = frozenset(name for entry in MODELS.values() for name in entry.reads)


def not_read(models: Iterable[str], names: Iterable[str]) -> list[str]:
    """The ``names`` that are a model's own hyperparameter but that none of ``models`` reads."""
    reads = {name for model in models if model in MODELS for name in MODELS[model].reads}
    return [name for name in names if name in MODEL_PARAMETERS and name not in reads]


def search_ranges(name: str, ranges: Mapping[str, tuple]) -> Mapping[str, tuple]:
    """``ranges`` (the project's, kdiffe.paper.JOINT_RANGES) with model ``name``'s own over them."""
    entry = MODELS.get(name)
    return {**ranges, **entry.ranges} if entry is not None else ranges


def search_grids(name: str, grids: Mapping[str, tuple]) -> Mapping[str, tuple]:
    """``grids`` with model ``name``'s own over them."""
    entry = MODELS.get(name)
    return {**grids, **entry.grids} if entry is not None else grids


def published_defaults(name: str) -> Mapping[str, Any]:
    """The Config values model ``name``'s paper publishes (empty for an unknown name)."""
    entry = MODELS.get(name)
    return entry.defaults if entry is not None else {}
