"""Every hyperparameter of a KDiffE run, in one dataclass with the paper's defaults.

Paper defaults (Section VI-A): theta1 = 1e-2, theta2 = 1e-5,
R = 12, M = 50, xi = 0.7, t = 10, tau = 0.5, q = 1, d = 64, K = 20.

``model`` picks the recommender from the registry (:mod:`kdiffe.catalog`): ``kdiffe`` (default) or a
baseline such as ``lightgcn`` (He et al. 2020 as published). A model's published hyperparameters
that differ from the defaults here (LightGCN: 3 layers, mean of layers, batch L2 with θ2 = 1e-4)
apply whenever :func:`from_dict` builds a Config without those values.

Variants of the ``kdiffe`` model are the paper's ablations (Table III) expressed as flags:

==========  =====  ==========  ====  =========  ============
variant     S      knowledge   CL    guidance   paper name
==========  =====  ==========  ====  =========  ============
kdiffe      yes    yes         yes   yes        KDiffE
no_s        no     yes         yes   yes        KDiffE_1
unguided    yes    yes         yes   no         KDiffE_2
no_cl       yes    yes         no    yes        KDiffE_3
lightgcn    no     no          no    --         LightGCN
lightgcn_s  yes    no          no    --         LightGCN + S
==========  =====  ==========  ====  =========  ============
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import UserError
from .catalog import MODELS, not_read, published_defaults

VARIANTS: dict[str, dict[str, bool]] = {
    "kdiffe": dict(use_s=True, use_kg=True, use_cl=True, guided=True),
    "no_s": dict(use_s=False, use_kg=True, use_cl=True, guided=True),
    "unguided": dict(use_s=True, use_kg=True, use_cl=True, guided=False),
    "no_cl": dict(use_s=True, use_kg=True, use_cl=False, guided=True),
    "lightgcn": dict(use_s=False, use_kg=False, use_cl=False, guided=False),
    "lightgcn_s": dict(use_s=True, use_kg=False, use_cl=False, guided=False),
}

KG_SOURCES = ("features", "file", "none")
LAYER_COMBINES = ("sum", "mean")
SELECT_ON = ("val", "test")
L2_SCOPES = ("params", "batch")
RESPLIT_HOLDOUTS = ("shares", "one")
#: Dataset folder formats (kdiffe.formats); "auto" detects the folder's.
DATA_FORMATS = ("auto", "authors", "mmrec", "recbole", "csv")
CL_PAIRS = ("main", "modal")
#: candidates of KDiffE's InfoNCE (Eq. 13); see Config.cl_negatives
CL_NEGATIVES = ("all", "batch", "sampled")


class ConfigError(UserError):
    """A hyperparameter that is unknown or has an impossible value."""


@dataclass(frozen=True)
class Config:
    """Hyperparameters of one training run. Field docs give meaning and paper symbol."""

    # run
    dataset: str = "synthetic"  #: dataset folder name under data_dir, or "synthetic"
    data_dir: str | None = None  #: folder of datasets; None: $KDIFFE_DATA_DIR, else ./data
    model: str = "kdiffe"  #: the recommender, one of kdiffe.catalog.MODELS
    variant: str = "kdiffe"  #: one of VARIANTS (the kdiffe model's ablations)
    seed: int = 2024  #: seeds numpy, torch, walks, splits and sampling
    device: str = "auto"  #: "auto" (cuda if visible, else cpu), "cpu", "cuda", "cuda:1", ...
    cache_dir: str | None = None  #: where S is cached; None: $KDIFFE_CACHE_DIR, else ~/.cache/kdiffe
    max_users: int = 0  #: >0 keeps a seeded subsample of this many users (Figure 10b)
    val_fraction: float = 0.1  #: share of each user's train items moved to validation when valMat is absent
    resplit: int = 0  #: >0 re-splits the union of train, validation and test per user, with this seed
    resplit_ratios: str = ""  #: "train,val,test" shares of a re-split; "" keeps the published split's shares
    resplit_holdout: str = "shares"  #: "shares": those shares of each user's items; "one": one held out per user
    data_format: str = "auto"  #: the dataset folder's format (kdiffe.formats): auto (detected), authors, mmrec, recbole, csv
    # synthetic dataset size (dataset="synthetic")
    syn_users: int = 600
    syn_items: int = 400
    syn_clusters: int = 8
    syn_interactions: int = 12  #: mean interactions per user

    # optimisation
    epochs: int = 50
    batch_size: int = 2048
    lr: float = 1e-3
    dim: int = 64  #: d, embedding size
    layers: int = 2  #: LightGCN layers
    layer_combine: str = "sum"  #: "sum" of the layers (KDiffE, Eq. 6) or their "mean" (LightGCN as published)
    theta2: float = 1e-5  #: theta_2, weight of the L2 term of Eq. 14
    l2: str = "params"  #: "params": θ2 ||Θ||² over every model parameter (Eq. 14, authors' code); "batch": LightGCN's batch-embedding L2

    # attention-aware matrix S (Eq. 4-5)
    M: int = 50  #: length of each random walk with restart
    R: int = 12  #: walks per node
    restart: float = 0.2  #: restart probability c of each step
    xi: float = 0.7  #: weight of S in A + xi S

    # knowledge graph (Eq. 1-2)
    kg: str = "features"  #: "features" (k-means concepts), "file" (kg.txt), "none"
    concepts: int = 0  #: concept entities per modality; 0 picks ~ sqrt(items)
    links: int = 3  #: concepts linked to each item per modality
    kg_iters: int = 25  #: k-means iterations

    # diffusion (Eq. 8-12)
    t: int = 10  #: diffusion steps T
    noise_scale: float = 0.1
    noise_min: float = 1e-4
    noise_max: float = 0.02
    q: int = 1  #: top-q kept of each reconstruction: entities per item and relation (KDiffE), items per user (DiffMM)
    kg_every: int = 1  #: epochs between two rebuilds of the diffusion view
    denoiser_hidden: int = 256
    step_dim: int = 16  #: size of the sinusoidal step embedding
    diff_lr: float = 1e-3
    diff_batch: int = 1024

    # contrastive learning (Eq. 13)
    tau: float = 0.5  #: InfoNCE temperature
    theta1: float = 1e-2  #: weight of the contrastive loss
    edge_drop: float = 0.1  #: SGL's ρ: share of edges each of its two views drops (FREEDOM: pruned each epoch)
    hyper_layers: int = 1  #: NCL's k: its structural contrast pairs layer 0 with layer 2k
    ncl_alpha: float = 1.0  #: NCL's α: weight of the items' structural loss against the users'
    proto_weight: float = 8e-8  #: NCL's λ2: weight of the prototype loss (summed over the batch)
    clusters: int = 1000  #: NCL's prototypes (k-means clusters) per side
    warm_up: int = 20  #: NCL's epochs before the prototype loss starts
    target_dropout: float = 0.3  #: BM3's p: dropout that perturbs the online embeddings into its targets
    noise_eps: float = 0.1  #: SimGCL's ε: norm of the uniform noise added to each layer of its views
    knn_k: int = 10  #: FREEDOM's k: neighbours of each item in its frozen item-item graphs
    mm_layers: int = 1  #: FREEDOM's L_ii: convolutions of the item IDs over its item-item graph
    image_weight: float = 0.1  #: FREEDOM's α of the image graph (the other modalities share 1 - α)
    msi_weight: float = 0.1  #: DiffMM's λ0 (e_loss): weight of modality-aware signal injection in the denoisers' loss
    ris_lambda: float = 0.5  #: DiffMM's residual weight of the normalised modality-fused embeddings
    ris_adj_lambda: float = 0.2  #: DiffMM's weight of each rebuilt modality graph's ID embeddings in its view
    cl_pairs: str = "main"  #: DiffMM's contrast: "main" (each modality view against the main view) or "modal" (views pairwise)
    #: anchors per block of the streamed, exact InfoNCE (memory: block x nodes); 0: 128 on CPU, 4096 on CUDA
    cl_block: int = 0
    #: KDiffE's InfoNCE candidates: "all" (Eq. 13: every user / item of the other view), "batch"
    #: (the batch's distinct users / items), "sampled" (those plus cl_samples uniform ones per batch)
    cl_negatives: str = "all"
    cl_samples: int = 4096  #: uniform users and items added per batch with cl_negatives=sampled

    # evaluation
    eval_every: int = 1
    patience: int = 10  #: evaluations without improvement before early stopping; 0 disables
    ks: tuple[int, ...] = (10, 20, 50)
    metric: str = "recall@20"  #: selection metric
    select_on: str = "val"  #: "val" (honest) or "test" (the authors' protocol, labelled)
    eval_batch: int = 1024

    def __post_init__(self) -> None:
        validate(self)

    # derived switches ---------------------------------------------------
    @property
    def flags(self) -> dict[str, bool]:
        return VARIANTS[self.variant]

    @property
    def use_s(self) -> bool:
        return self.flags["use_s"] and self.xi > 0

    @property
    def use_kg(self) -> bool:
        return self.flags["use_kg"] and self.kg != "none"

    @property
    def use_cl(self) -> bool:
        return self.use_kg and self.flags["use_cl"] and self.theta1 > 0

    @property
    def guided(self) -> bool:
        return self.flags["guided"]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ks"] = list(self.ks)
        return out

    def replace(self, **changes: Any) -> "Config":
        return from_dict({**self.to_dict(), **changes})


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Config)}

_POSITIVE_INT = ("epochs", "batch_size", "dim", "layers", "M", "R", "t", "q", "kg_every",
                 "denoiser_hidden", "step_dim", "diff_batch", "eval_every", "eval_batch", "cl_samples",
                 "links", "kg_iters", "hyper_layers", "clusters", "knn_k", "mm_layers", "syn_users", "syn_items",
                 "syn_clusters", "syn_interactions")
_NON_NEGATIVE = ("theta1", "theta2", "xi", "noise_min", "noise_max", "noise_scale", "patience",
                 "concepts", "max_users", "lr", "diff_lr", "cl_block", "ncl_alpha", "proto_weight", "warm_up",
                 "noise_eps", "msi_weight", "ris_lambda", "ris_adj_lambda")
#: integers that seed numpy's legacy RandomState (np.random.seed accepts 0 .. 2**32 - 1 only)
_SEEDS = ("seed", "resplit")
MAX_SEED = 2**32 - 1
MAX_INT = 2**63 - 1  # what numpy and torch take as an integer; anything larger overflows there


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


def validate(cfg: Config) -> None:
    """Raise ConfigError naming the first impossible value."""
    def bad(name: str, why: str) -> None:
        raise ConfigError(f"{name}={getattr(cfg, name)!r}: {why}")

    for name, spec in FIELDS.items():
        value, default = getattr(cfg, name), spec.default
        if isinstance(default, bool) and not isinstance(value, bool):
            bad(name, "must be true or false")
        elif isinstance(default, int) and not isinstance(default, bool) and (
                isinstance(value, bool) or not isinstance(value, int)):
            bad(name, "must be an integer")
        elif isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            bad(name, "must be a number")
        elif isinstance(default, str) and not isinstance(value, str):
            bad(name, "must be a string")
        elif isinstance(default, float) and not _finite(value):
            bad(name, "must be a finite number")
        elif isinstance(default, int) and not isinstance(default, bool) and abs(value) > MAX_INT:
            bad(name, f"must be at most {MAX_INT} in magnitude")
    for name in _SEEDS:
        if not 0 <= getattr(cfg, name) <= MAX_SEED:
            bad(name, f"a seed must be in [0, {MAX_SEED}] (2**32 - 1, numpy's seed range)")
    for name in _POSITIVE_INT:
        if getattr(cfg, name) < 1:
            bad(name, "must be a positive integer")
    for name in _NON_NEGATIVE:
        value = getattr(cfg, name)
        if not math.isfinite(value) or value < 0:
            bad(name, "must be a finite number >= 0")
    if cfg.lr <= 0:
        bad("lr", "must be > 0")
    if cfg.model not in MODELS:
        bad("model", f"unknown model; choose from {', '.join(MODELS)}")
    if cfg.variant not in VARIANTS:
        bad("variant", f"unknown variant; choose from {', '.join(VARIANTS)}")
    if cfg.model != "kdiffe" and cfg.variant != "kdiffe":
        bad("variant", f"variants are the kdiffe model's ablations; model={cfg.model} has none")
    if cfg.layer_combine not in LAYER_COMBINES:
        bad("layer_combine", f"choose from {', '.join(LAYER_COMBINES)}")
    if cfg.kg not in KG_SOURCES:
        bad("kg", f"choose from {', '.join(KG_SOURCES)}")
    if cfg.l2 not in L2_SCOPES:
        bad("l2", f"choose from {', '.join(L2_SCOPES)}")
    if cfg.cl_pairs not in CL_PAIRS:
        bad("cl_pairs", f"choose from {', '.join(CL_PAIRS)}")
    if cfg.cl_negatives not in CL_NEGATIVES:
        bad("cl_negatives", f"choose from {', '.join(CL_NEGATIVES)}")
    if cfg.select_on not in SELECT_ON:
        bad("select_on", "choose from val, test")
    for name in ("edge_drop", "target_dropout"):
        if not 0 <= getattr(cfg, name) < 1:
            bad(name, "must be in [0, 1)")
    if not 0 <= cfg.image_weight <= 1:
        bad("image_weight", "must be in [0, 1]")
    if not 0 <= cfg.restart < 1:
        bad("restart", "restart probability must be in [0, 1)")
    if not 0 < cfg.val_fraction < 1:
        bad("val_fraction", "must be in (0, 1)")
    if cfg.resplit < 0:
        bad("resplit", "must be 0 (the published split) or a seed >= 1")
    if cfg.resplit_holdout not in RESPLIT_HOLDOUTS:
        bad("resplit_holdout", f"choose from {', '.join(RESPLIT_HOLDOUTS)}")
    if cfg.data_format not in DATA_FORMATS:
        bad("data_format", f"choose from {', '.join(DATA_FORMATS)}")
    if cfg.resplit_ratios:
        try:
            ratios = [float(x) for x in cfg.resplit_ratios.split(",")]
        except ValueError:
            ratios = []
        if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0 or abs(sum(ratios) - 1) > 1e-6:
            bad("resplit_ratios", 'expected three shares "train,val,test" >= 0 summing to 1, e.g. "0.8,0.1,0.1"')
    if not 0 < cfg.noise_min <= cfg.noise_max < 1:
        bad("noise_max", "need 0 < noise_min <= noise_max < 1")
    if not 0 < cfg.noise_scale <= 1:
        bad("noise_scale", "must be in (0, 1]")
    if cfg.tau <= 0 or not math.isfinite(cfg.tau):
        bad("tau", "temperature must be > 0")
    if (not isinstance(cfg.ks, tuple) or not cfg.ks
            or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_INT for k in cfg.ks)):
        bad("ks", "need positive cut-offs")
    name, _, k = cfg.metric.partition("@")
    if name not in ("recall", "ndcg", "precision") or not k.isdigit() or int(k) not in cfg.ks:
        bad("metric", f"use recall|ndcg|precision@K with K in {list(cfg.ks)}")


def parse_value(name: str, text: str) -> Any:
    """Parse the string form of field `name` (as given with --set name=text)."""
    if name not in FIELDS:
        raise ConfigError(f"unknown parameter {name!r}; known: {', '.join(sorted(FIELDS))}")
    default = FIELDS[name].default
    try:
        if name == "ks":
            return tuple(_parse_int(x) for x in str(text).split(","))
        if isinstance(default, bool):
            if str(text).lower() in ("1", "true", "yes"):
                return True
            if str(text).lower() in ("0", "false", "no"):
                return False
            raise ValueError
        if isinstance(default, int):
            return _parse_int(text)
        if isinstance(default, float):
            value = float(text)
            if not math.isfinite(value):  # "inf", "nan", "1e400"
                raise ValueError
            return value
        if default is None and str(text).lower() in ("none", ""):
            return None
        return str(text)
    except (ValueError, OverflowError):
        kind = "integers" if name == "ks" else f"a finite {type(default).__name__}"
        raise ConfigError(f"{name}={text!r}: expected {kind}") from None


def _parse_int(text: str) -> int:
    """An integer literal ("80") exactly, or a finite float with an integral value ("1e3");
    ValueError for "inf", "nan", "1e400", "2.5"."""
    text = str(text).strip()
    try:
        return int(text)
    except ValueError:
        value = float(text)
    if not math.isfinite(value) or value != int(value):
        raise ValueError(text)
    return int(value)


def from_dict(values: Mapping[str, Any]) -> Config:
    """Build a Config from a mapping, coercing strings and rejecting unknown keys; a value the
    mapping lacks is the model's published default (kdiffe.catalog) where it has one, else Config's."""
    kwargs: dict[str, Any] = {}
    model = values.get("model", FIELDS["model"].default)
    if isinstance(model, str):
        values = {**published_defaults(model), **values}
    for name, value in values.items():
        if name not in FIELDS:
            raise ConfigError(f"unknown parameter {name!r}; known: {', '.join(sorted(FIELDS))}")
        if isinstance(value, str) or (name == "ks" and not isinstance(value, tuple)):
            value = parse_value(name, value if isinstance(value, str) else ",".join(map(str, value)))
        elif isinstance(FIELDS[name].default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value) if _finite(value) else value  # too large: validate names it
        elif (isinstance(FIELDS[name].default, int) and isinstance(value, float) and math.isfinite(value)
              and value == int(value)):
            value = int(value)
        kwargs[name] = value
    try:
        return Config(**kwargs)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None


def check_reads(models: Iterable[str], names: Iterable[str]) -> None:
    """ConfigError for a given model hyperparameter (``--set``) that none of ``models`` reads, which
    would otherwise be ignored without a word (kdiffe.catalog.Entry.reads)."""
    models = list(dict.fromkeys(models))
    unread = not_read(models, names)
    if not unread:
        return
    name = unread[0]
    if len(models) == 1:
        own = MODELS[models[0]].reads if models[0] in MODELS else ()
        raise ConfigError(f"--set {name}=...: model={models[0]} does not use {name}; its own parameters: "
                          f"{', '.join(own) or 'none'}")
    raise ConfigError(f"--set {name}=...: none of the models of this run ({', '.join(models)}) uses {name}")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ["xi=0.7", "M=50"] into {"xi": 0.7, "M": 50}."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        out[key.strip()] = parse_value(key.strip(), text.strip())
    return out
