"""Facts of the paper, in one place: "Knowledge-aware Diffusion-Enhanced Multimedia Recommendation"
(Mo et al.): its settings (Section VI-A), sweeps (Figures 5-10) and reported numbers (Tables II-III).

Plain data only (no Ray, no pandas, no matplotlib): ``tune/`` turns the grids and ranges into Ray
Tune spaces, ``plots/`` draws and labels with the rest. Nothing here is a style choice; colours,
fonts and markers live in ``plots/style.py``.

==========================  =======================================================================
Section VI-A (settings)     :data:`PAPER_DEFAULTS` (theta1 = 1e-2, theta2 = 1e-5, R = 12, M = 50,
                            xi = 0.7, t = 10, tau = 0.5, q = 1, d = 64, K = 20); the defaults of
                            :class:`kdiffe.config.Config` are these (tests/test_paper.py checks)
Figures 5-9 (parameters)    :data:`SWEEP_PARAMS` in the paper's order and :data:`PAPER_GRIDS`, the
                            values on the x axes of the one-factor sweeps
joint search                :data:`JOINT_RANGES`: the ranges the grids span (plus xi = 0, the
                            no-S end) for optuna / random searches over the same parameters;
                            :data:`TRAINING_PARAMS` (theta2, lr), fixed by the paper, with the
                            project's own ranges and :data:`TRAINING_GRIDS`
Figures 5-10                :data:`FIGURES` (number -> parameters, title, variants shown):
                            5 denoising (q, KDiffE against the unguided variant, Section V-B3),
                            6 M and R, 7 xi and t, 8 tau and theta1, 9 q,
                            10 scalability (seconds per epoch against t per dataset, and against
                            users on Sports: :data:`SCALABILITY_USER_COUNTS`)
Table II                    :data:`PAPER_TABLE_II`: KDiffE Recall@20 / NDCG@20 per dataset;
                            :data:`PUBLISHED_TABLE_II`: those, DiffMM's, and the baselines' per model
                            (from DiffMM's Table 1, which KDiffE's Table II repeats)
Table III                   :data:`PAPER_TABLE_III`: ablations on TikTok (KDiffE_1 = no S,
                            KDiffE_2 = unguided, KDiffE_3 = no CL)
names                       :data:`DATASETS` / :data:`DATASET_NAMES` (TikTok, Baby, Sports),
                            :data:`VARIANT_NAMES` / :data:`VARIANT_ORDER`,
                            :data:`PAPER_VARIANT_SYMBOLS` (Table III's KDiffE_1..3),
                            :data:`PARAM_LABELS` (symbols of Section V), :data:`METRIC_NAMES`
==========================  =======================================================================
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .catalog import MODELS

# ----------------------------------------------------------------------------------- settings
#: Section VI-A: the paper's defaults (Config field name -> value). K = 20 is the cut-off of the
#: metrics every table and figure quotes (Recall@20, NDCG@20).
PAPER_DEFAULTS: dict[str, Any] = {"M": 50, "R": 12, "xi": 0.7, "t": 10, "tau": 0.5, "theta1": 1e-2, "q": 1,
                                  "theta2": 1e-5, "dim": 64}
TOP_K = 20

#: Hyperparameters the paper sweeps (Figures 5-9), in the paper's order.
SWEEP_PARAMS = ("M", "R", "xi", "t", "tau", "theta1", "q")

#: Figures 5-9: the values of each one-factor sweep (the others at PAPER_DEFAULTS).
PAPER_GRIDS: dict[str, tuple[float, ...]] = {
    "M": (30, 50, 80, 110, 130, 150),
    "R": (6, 8, 10, 12, 15, 20),
    "xi": (0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
    "t": (2, 5, 10, 20, 50, 80),
    "tau": (0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
    "theta1": (1.0, 1e-1, 1e-2, 1e-3, 1e-4),
    "q": (1, 2, 3, 4, 5, 6),
}

#: Ablation variants of Table III (the full model first) that a joint search may pick.
ABLATION_VARIANTS = ("kdiffe", "no_s", "unguided", "no_cl")

#: Joint search ranges (optuna / random) spanning the paper's grids, as plain data:
#: ``("int", low, high)`` integers low..high inclusive, ``("uniform", low, high)``,
#: ``("loguniform", low, high)``, ``("choice", values)``. xi starts at 0 (no S, KDiffE_1's end);
#: t keeps to the paper's grid (its steps set the cost of a trial).
JOINT_RANGES: dict[str, tuple] = {
    "M": ("int", 30, 150),
    "R": ("int", 6, 20),
    "xi": ("uniform", 0.0, 1.0),
    "t": ("choice", PAPER_GRIDS["t"]),
    "tau": ("uniform", 0.1, 1.0),
    "theta1": ("loguniform", 1e-4, 1.0),
    "q": ("int", 1, 6),
    "variant": ("choice", ABLATION_VARIANTS),
    # Not the paper's: the training parameters it fixes (Section VI-A), searchable on request.
    "theta2": ("loguniform", 1e-6, 1e-3),
    "lr": ("loguniform", 1e-4, 1e-2),
}

#: Training parameters a search may also move (off by default): the L2 weight theta_2 of Eq. 14
#: and Adam's learning rate. The paper fixes them (1e-5, 1e-3); their grids are the project's.
TRAINING_PARAMS = ("theta2", "lr")
TRAINING_GRIDS: dict[str, tuple[float, ...]] = {
    "theta2": (1e-6, 1e-5, 2e-5, 4e-5, 1e-4, 1e-3),
    "lr": (1e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2),
}


def range_ends(name: str, ranges: dict[str, tuple] | None = None) -> tuple[Any, Any]:
    """The two ends of ``ranges[name]`` (default :data:`JOINT_RANGES`): (low, high), or a choice's
    first and last value."""
    kind, *spec = (JOINT_RANGES if ranges is None else ranges)[name]
    if kind == "choice":
        return spec[0][0], spec[0][-1]
    return spec[0], spec[1]


# ------------------------------------------------------------------------------------ results
#: Table II, KDiffE row: dataset -> (Recall@20, NDCG@20).
PAPER_TABLE_II: dict[str, tuple[float, float]] = {"tiktok": (0.112, 0.046), "baby": (0.095, 0.040),
                                                  "sports": (0.102, 0.046)}
#: Numbers published for a model of Table II, (Recall@20, NDCG@20) per dataset: KDiffE's from its
#: paper's Table II; DiffMM's from its own paper (Jiang et al. 2024, Table 1; best test epoch, with
#: text features), since KDiffE's Table II leaves DiffMM out. The baselines we run come from that
#: same Table 1 of DiffMM's paper: KDiffE's Table II repeats its SGL, NCL and BM3 rows after
#: rounding (not runs of its own); LightGCN's is DiffMM's number too, for He et al.'s published model.
PUBLISHED_TABLE_II: dict[str, dict[str, tuple[float, float]]] = {
    "kdiffe": PAPER_TABLE_II,
    "diffmm": {"tiktok": (0.1129, 0.0456), "baby": (0.0975, 0.0411), "sports": (0.1017, 0.0458)},
    "lightgcn": {"tiktok": (0.0653, 0.0282), "baby": (0.0698, 0.0319), "sports": (0.0782, 0.0369)},
    "sgl": {"tiktok": (0.0603, 0.0238), "baby": (0.0678, 0.0296), "sports": (0.0779, 0.0361)},
    "ncl": {"tiktok": (0.0658, 0.0269), "baby": (0.0703, 0.0311), "sports": (0.0765, 0.0349)},
    "bm3": {"tiktok": (0.0957, 0.0404), "baby": (0.0839, 0.0361), "sports": (0.0975, 0.0442)},
}
_DIFFMM_TABLE = "DiffMM (Jiang et al. 2024), Table 1"
PUBLISHED_SOURCES = {"kdiffe": "KDiffE, Table II", "diffmm": "DiffMM (Jiang et al. 2024)", "lightgcn": _DIFFMM_TABLE,
                     **{m: f"{_DIFFMM_TABLE}; KDiffE's Table II repeats it" for m in ("sgl", "ncl", "bm3")}}
#: Table III (ablations, TikTok): dataset -> variant -> (Recall@20, NDCG@20).
PAPER_TABLE_III: dict[str, dict[str, tuple[float, float]]] = {
    "tiktok": {"kdiffe": (0.112, 0.046), "no_s": (0.107, 0.041), "unguided": (0.110, 0.045),
               "no_cl": (0.107, 0.046)}}

# -------------------------------------------------------------------------------------- names
#: The paper's datasets, in the order of its tables and figure columns.
DATASETS = ("tiktok", "baby", "sports")
DATASET_NAMES = {"tiktok": "TikTok", "baby": "Baby", "sports": "Sports"}

#: Display names of the variants (Table III's ablations and the LightGCN baseline), in table order.
VARIANT_NAMES = {
    "kdiffe": "KDiffE",
    "no_s": "KDiffE w/o S",
    "unguided": "KDiffE w/o guidance",
    "no_cl": "KDiffE w/o CL",
    "lightgcn": "LightGCN",
    "lightgcn_s": "LightGCN + S",
}
VARIANT_ORDER = tuple(VARIANT_NAMES)
#: Display names of Table II's baseline models (kdiffe.catalog); ``lightgcn`` here is He et al.'s model as
#: published, beside the variant of that name (KDiffE with S, KG and CL off, in KDiffE's form).
MODEL_NAMES = {name: entry.label for name, entry in MODELS.items() if name != "kdiffe"}
#: Table III's own names for the ablations.
PAPER_VARIANT_SYMBOLS = {"kdiffe": "KDiffE", "no_s": "KDiffE_1", "unguided": "KDiffE_2", "no_cl": "KDiffE_3"}

#: Axis labels with the paper's symbols (Section V: Eq. 4-5 M, R, xi; Eq. 8-12 t, q; Eq. 13-14 tau, theta1).
PARAM_LABELS = {
    "M": r"walk length $M$",
    "R": r"walks per node $R$",
    "xi": r"weight of S, $\xi$",
    "t": r"diffusion steps $t$",
    "tau": r"temperature $\tau$",
    "theta1": r"contrastive weight $\theta_1$",
    "q": r"top-$q$ entities",
    "theta2": r"L2 weight $\theta_2$",
    "lr": "learning rate",
    # the baselines' own searched parameters (kdiffe.catalog)
    "edge_drop": r"dropped edges $\rho$",
    "proto_weight": r"prototype weight $\lambda_2$",
    "noise_eps": r"noise norm $\epsilon$",
    "target_dropout": r"target dropout $p$",
    "layers": r"layers $L$",
    "msi_weight": r"MSI weight $\lambda_0$",
}
#: Parameters a search moves beyond the paper's seven and the training two: the baselines' own,
#: in the registry's order (kdiffe.catalog.Entry.search)
MODEL_SEARCH_PARAMS = tuple(dict.fromkeys(
    p for entry in MODELS.values() for p in entry.search if p not in SWEEP_PARAMS + TRAINING_PARAMS))
#: Parameters searched on a log scale by some model (JOINT_RANGES and the catalog's own ranges)
LOG_SCALE_PARAMS = frozenset(
    name for ranges in (JOINT_RANGES, *(entry.ranges for entry in MODELS.values()))
    for name, spec in ranges.items() if spec[0] == "loguniform")
METRIC_NAMES = {"test_recall@20": "Recall@20", "test_ndcg@20": "NDCG@20"}


# ------------------------------------------------------------------------------------ figures
class PaperFigure(NamedTuple):
    """One figure of Section VI: what its x axes show, its title, and the variants it compares."""

    number: int
    params: tuple[str, ...]
    title: str
    variants: tuple[str, ...] = ("kdiffe",)


FIGURES: dict[int, PaperFigure] = {f.number: f for f in (
    PaperFigure(5, ("q",), "Effectiveness of denoising: guided vs unguided diffusion", ("kdiffe", "unguided")),
    PaperFigure(6, ("M", "R"), "Impact of walk length M and walks per node R"),
    PaperFigure(7, ("xi", "t"), r"Impact of the weight $\xi$ of S and of the diffusion steps $t$"),
    PaperFigure(8, ("tau", "theta1"), r"Impact of the temperature $\tau$ and the contrastive weight $\theta_1$"),
    PaperFigure(9, ("q",), "Impact of the number q of entities kept per item in the diffusion view"),
    PaperFigure(10, ("t", "users"), "Scalability: seconds per training epoch"),
)}

#: Figure 10b: users kept on Sports (0 = all of them).
SCALABILITY_DATASET = "sports"
SCALABILITY_USER_COUNTS = (5000, 10000, 20000, 30000, 0)
