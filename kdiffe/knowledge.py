"""Knowledge graph and relation-aware knowledge aggregation (paper Eq. 1-2).

The KG links items to entities by relations: triples (item j, relation r, entity e), with items
and entities in separate id spaces. Aggregation (KGAT style):

    a(e, r, j) = softmax_{(e, r) ∈ N_j} LeakyReLU(rᵀ W [z_e ‖ z_j])          (Eq. 1)
    z_j ← Norm(z_j + Σ_{(e, r) ∈ N_j} a(e, r, j) z_e)                         (Eq. 2)

The softmax runs per item over its triples with torch scatter ops (segment softmax). Norm is
row L2 normalisation scaled back to the item's norm before aggregation.

Where only dense modality features exist (the public datasets), the KG is built from them the
way the paper extracts content concepts: per modality, k-means the item features into K concept
entities and link each item to its n nearest concepts with that modality's relation. Entity
embeddings are a free embedding plus a learned projection of the concept centroid, so the
modality features reach the model.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


@dataclass(frozen=True)
class KnowledgeGraph:
    """Triples (item, relation, entity) plus what the model needs about entities."""

    n_items: int
    n_entities: int
    relation_names: tuple[str, ...]
    triples: np.ndarray  # (n, 3) int64
    entity_relation: np.ndarray  # (E,) relation each entity belongs to (its most frequent one)
    centroids: tuple[tuple[np.ndarray, np.ndarray], ...] = ()  # (entity ids, centroid features)

    @property
    def n_relations(self) -> int:
        return len(self.relation_names)

    def item_entity_lists(self) -> np.ndarray:
        """Each item's distinct entities, (items x w) int64 padded with ``n_entities``; w is the most
        entities of one item (at least 1). The sparse form of r_j (Eq. 8): no dense
        items x entities matrix is held, :func:`entity_rows` densifies a batch of rows."""
        pairs = np.unique(self.triples[:, 0] * self.n_entities + self.triples[:, 2])
        items, entities = pairs // self.n_entities, pairs % self.n_entities
        counts = np.bincount(items, minlength=self.n_items)
        width = max(int(counts.max(initial=0)), 1)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        lists = np.full((self.n_items, width), self.n_entities, dtype=np.int64)
        lists[items, np.arange(len(items)) - starts[items]] = entities
        return lists

    def item_entity_matrix(self) -> np.ndarray:
        """Dense (items x entities) 0/1 matrix r_j of Eq. 8, for small graphs and tests."""
        lists = torch.as_tensor(self.item_entity_lists(), device="cpu")
        return entity_rows(lists, torch.arange(self.n_items, device="cpu"), self.n_entities).numpy()

    def describe(self) -> str:
        per_item = len(self.triples) / max(self.n_items, 1)
        return (f"KG: {self.n_entities} entities, {self.n_relations} relations "
                f"({', '.join(self.relation_names)}), {len(self.triples)} triples, {per_item:.1f} per item")


def entity_rows(lists: torch.Tensor, items: torch.Tensor, n_entities: int) -> torch.Tensor:
    """Dense float32 0/1 rows r_j (Eq. 8) of ``items`` from :meth:`KnowledgeGraph.item_entity_lists`
    (on ``lists``' device): (len(items) x n_entities), the padding column dropped."""
    rows = lists[items]
    dense = torch.zeros(rows.shape[0], n_entities + 1, dtype=torch.float32, device=lists.device)
    return dense.scatter_(1, rows, 1.0)[:, :n_entities]


def kmeans(x: np.ndarray, k: int, iters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding; returns (centroids (k, dim), labels (n,))."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    k = min(k, n)
    sq = (x * x).sum(axis=1)
    centroids = np.empty((k, x.shape[1]), dtype=np.float64)
    centroids[0] = x[rng.integers(n)]
    closest = ((x - centroids[0]) ** 2).sum(axis=1)
    for c in range(1, k):
        total = closest.sum()
        pick = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
        centroids[c] = x[pick]
        closest = np.minimum(closest, ((x - centroids[c]) ** 2).sum(axis=1))
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        dist = sq[:, None] - 2 * x @ centroids.T + (centroids ** 2).sum(axis=1)[None, :]
        new = dist.argmin(axis=1)
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, x)
        empty = counts == 0
        centroids[~empty] = sums[~empty] / counts[~empty, None]
        if empty.any():  # re-seed empty clusters at the worst-served points
            far = np.argsort(dist[np.arange(n), labels])[::-1][: empty.sum()]
            centroids[empty] = x[far]
    return centroids, labels


def _standardise(features: np.ndarray) -> np.ndarray:
    x = features.astype(np.float64)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)


def default_concepts(n_items: int) -> int:
    """K per modality when not given: about sqrt(items), within [4, 256]."""
    return int(min(256, max(4, round(math.sqrt(n_items)))))


def build_from_features(features: Mapping[str, np.ndarray], concepts: int = 0, links: int = 3,
                        iters: int = 25, seed: int = 0) -> KnowledgeGraph:
    """Concept KG: per modality k-means into K entities, each item linked to its n nearest."""
    if not features:
        raise ValueError("no modality features to build a knowledge graph from")
    n_items = next(iter(features.values())).shape[0]
    triples, entity_relation, centroid_sets = [], [], []
    offset = 0
    for rel, (name, feats) in enumerate(sorted(features.items())):
        x = _standardise(feats)
        k = min(concepts or default_concepts(n_items), n_items)
        centroids, _ = kmeans(x, k, iters, seed + rel)
        n_links = min(links, k)
        dist = (x * x).sum(1)[:, None] - 2 * x @ centroids.T + (centroids ** 2).sum(1)[None, :]
        nearest = np.argpartition(dist, n_links - 1, axis=1)[:, :n_links] if n_links < k else \
            np.tile(np.arange(k), (n_items, 1))
        items = np.repeat(np.arange(n_items), n_links)
        triples.append(np.stack([items, np.full(items.size, rel), offset + nearest.ravel()], axis=1))
        entity_relation.append(np.full(k, rel))
        centroid_sets.append((np.arange(offset, offset + k), centroids.astype(np.float32)))
        offset += k
    return KnowledgeGraph(n_items=n_items, n_entities=offset, relation_names=tuple(sorted(features)),
                          triples=np.concatenate(triples).astype(np.int64),
                          entity_relation=np.concatenate(entity_relation).astype(np.int64),
                          centroids=tuple(centroid_sets))


def from_triples(triples: np.ndarray, n_items: int) -> KnowledgeGraph:
    """KG from (item, relation, entity) triples with entity and relation ids made compact."""
    triples = np.unique(np.asarray(triples, dtype=np.int64), axis=0)
    rel_ids, rel = np.unique(triples[:, 1], return_inverse=True)
    ent_ids, ent = np.unique(triples[:, 2], return_inverse=True)
    compact = np.stack([triples[:, 0], rel.ravel(), ent.ravel()], axis=1)
    counts = np.zeros((len(ent_ids), len(rel_ids)), dtype=np.int64)
    np.add.at(counts, (compact[:, 2], compact[:, 1]), 1)
    return KnowledgeGraph(n_items=n_items, n_entities=len(ent_ids),
                          relation_names=tuple(f"r{r}" for r in rel_ids), triples=compact,
                          entity_relation=counts.argmax(axis=1))


def is_degenerate(kg: KnowledgeGraph) -> bool:
    """True when the KG cannot distinguish items: a handful of entities, or one shared entity set."""
    if kg.n_entities <= 10:
        return True
    return _distinct_entity_sets(kg.triples[:, 0], kg.triples[:, 2]) <= 3


def _distinct_entity_sets(items: np.ndarray, entities: np.ndarray) -> int:
    """How many different sets of linked entities the items with any link have: each item's set is
    summarised by its size and two sums of random 61-bit codes of its entities (sparse; the chance
    that two different sets agree on all three is about 2^-120)."""
    pairs = np.unique(np.stack([items, entities], axis=1).astype(np.int64), axis=0)
    if not len(pairs):
        return 0
    codes = np.random.default_rng(0).integers(0, 2**61, size=(2, int(pairs[:, 1].max()) + 1), dtype=np.uint64)
    starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]])
    summary = [np.add.reduceat(codes[k][pairs[:, 1]], starts) for k in range(2)]  # wraps mod 2^64: fine
    sizes = np.diff(np.r_[starts, len(pairs)])
    return len(np.unique(np.stack([sizes.astype(np.uint64), *summary], axis=1), axis=0))


def segment_softmax(logits: torch.Tensor, segments: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Softmax of ``logits`` within each segment id (no torch_scatter needed)."""
    peak = torch.full((n_segments,), -torch.inf, dtype=logits.dtype, device=logits.device)
    peak = peak.scatter_reduce(0, segments, logits, reduce="amax", include_self=True)
    exp = torch.exp(logits - peak[segments])
    total = torch.zeros(n_segments, dtype=logits.dtype, device=logits.device).index_add_(0, segments, exp)
    return exp / total[segments]


class MixingPattern:
    """The (item, entity) structure of one set of triples, as CSR and transposed CSR.

    Built once per KG view (the original KG once, the diffusion view once per rebuild), so each
    batch only supplies the attention weights: no sorting or coalescing per batch. ``triples``
    are stored sorted by (item, entity), the order the weights must come in.
    """

    def __init__(self, triples: torch.Tensor, n_items: int, n_entities: int) -> None:
        j, e = triples[:, 0], triples[:, 2]
        self.triples = triples[torch.argsort(j * n_entities + e, stable=True)]
        j, e = self.triples[:, 0], self.triples[:, 2]
        self.shape = (n_items, n_entities)
        self.crow = _row_pointers(j, n_items)
        self.col = e
        self.transpose = torch.argsort(e * n_items + j, stable=True)  # sorted order -> (entity, item) order
        self.crow_t = _row_pointers(e[self.transpose], n_entities)
        self.col_t = j[self.transpose]

    def matrix(self, weight: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            return torch.sparse_csr_tensor(self.crow, self.col, weight, self.shape, check_invariants=False,
                                           device=weight.device)

    def matrix_t(self, weight: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.sparse_csr_tensor(self.crow_t, self.col_t, weight[self.transpose],
                                           self.shape[::-1], check_invariants=False, device=weight.device)


def _row_pointers(rows: torch.Tensor, n: int) -> torch.Tensor:
    crow = torch.zeros(n + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    return crow


class _Mixing(torch.autograd.Function):
    """Σ_{(e, r) ∈ N_j} a(e, r, j) z_e for every item j (the sum of Eq. 2) as one CSR product.

    Backward: ∂/∂a = (g z_eᵀ) sampled at the triples (sampled_addmm), ∂/∂z_e = Mᵀ g; nothing
    items x entities is dense.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, z_e: torch.Tensor, pattern: MixingPattern) -> torch.Tensor:
        ctx.pattern = pattern
        ctx.save_for_backward(weight, z_e)
        return pattern.matrix(weight) @ z_e

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        weight, z_e = ctx.saved_tensors
        pattern, grad = ctx.pattern, grad.contiguous()
        grad_weight = grad_z = None
        if ctx.needs_input_grad[0]:
            grad_weight = torch.sparse.sampled_addmm(pattern.matrix(weight), grad, z_e.t(), beta=0.0).values()
        if ctx.needs_input_grad[1]:
            grad_z = pattern.matrix_t(weight) @ grad
        return grad_weight, grad_z, None


class KnowledgeAggregator(nn.Module):
    """Relation-aware attentive aggregation of entity embeddings into item embeddings (Eq. 1-2)."""

    def __init__(self, kg: KnowledgeGraph, dim: int) -> None:
        super().__init__()
        self.n_entities = kg.n_entities
        self._patterns: list[tuple[torch.Tensor, MixingPattern]] = []  # the last two views seen
        self.entity = nn.Embedding(kg.n_entities, dim)
        self.relation = nn.Embedding(kg.n_relations, dim)
        self.attention = nn.Linear(2 * dim, dim, bias=False)
        nn.init.normal_(self.entity.weight, std=0.01)
        nn.init.xavier_uniform_(self.relation.weight)
        nn.init.xavier_uniform_(self.attention.weight)
        self.projections = nn.ModuleList()
        for ids, feats in kg.centroids:
            self.register_buffer(f"centroid_ids_{len(self.projections)}", torch.as_tensor(ids, device="cpu"))
            self.register_buffer(f"centroid_feats_{len(self.projections)}", torch.as_tensor(feats, device="cpu"))
            proj = nn.Linear(feats.shape[1], dim, bias=False)
            nn.init.xavier_uniform_(proj.weight)
            self.projections.append(proj)

    def entity_embeddings(self) -> torch.Tensor:
        z = self.entity.weight
        for m, proj in enumerate(self.projections):
            ids = getattr(self, f"centroid_ids_{m}")
            z = z.index_add(0, ids, proj(getattr(self, f"centroid_feats_{m}")))
        return z

    def scores(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_e, entity scores, item scores): what Eq. 1 needs that does not depend on the triples.

        rᵀW[z_e ‖ z_j] = rᵀW_e z_e + rᵀW_j z_j is scored per (entity, relation) and
        (item, relation) once; every KG view (the original and the diffusion-rebuilt one)
        gathers from the same tables.
        """
        z_e = self.entity_embeddings()
        dim = items.shape[1]
        w_e, w_j = self.attention.weight[:, :dim], self.attention.weight[:, dim:]
        relations = self.relation.weight
        entity_scores = (z_e @ w_e.T) @ relations.T  # (E, relations)
        item_scores = (items @ w_j.T) @ relations.T  # (J, relations)
        return z_e, entity_scores, item_scores

    def pattern(self, triples: torch.Tensor, n_items: int) -> MixingPattern:
        """The CSR structure of ``triples``, built on first use; triples tensors are never changed
        in place, so the tensor itself is the key (the main view's and the current diffusion view's)."""
        for known, pattern in self._patterns:
            if known is triples and pattern.shape[0] == n_items:
                return pattern
        pattern = MixingPattern(triples, n_items, self.n_entities)
        self._patterns = [(triples, pattern)] + self._patterns[:1]
        return pattern

    def aggregate(self, items: torch.Tensor, triples: torch.Tensor,
                  scores: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Eq. 1-2 over ``triples`` with the tables of :meth:`scores`: the attention logits are
        gathered per triple, softmaxed per item, and the weighted sum of entity embeddings is one
        sparse product."""
        if triples.numel() == 0:
            return items
        z_e, entity_scores, item_scores = scores
        pattern = self.pattern(triples, items.shape[0])
        j, r, e = pattern.triples[:, 0], pattern.triples[:, 1], pattern.triples[:, 2]
        logits = F.leaky_relu(entity_scores[e, r] + item_scores[j, r])
        weight = segment_softmax(logits, j, items.shape[0])
        summed = items + _Mixing.apply(weight, z_e, pattern)
        scale = items.norm(dim=1, keepdim=True)
        return F.normalize(summed, dim=1) * scale

    def forward(self, items: torch.Tensor, triples: torch.Tensor) -> torch.Tensor:
        """KG-enhanced item embeddings; ``triples`` is a (n, 3) long tensor (item, relation, entity)."""
        if triples.numel() == 0:
            return items
        return self.aggregate(items, triples, self.scores(items))

    def forward_views(self, items: torch.Tensor, triple_sets: list[torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`forward` for several KG views, sharing the entity embeddings and score tables."""
        scores = self.scores(items)
        return [self.aggregate(items, triples, scores) for triples in triple_sets]


def build_knowledge(ds, source: str, concepts: int, links: int, iters: int, seed: int,
                    log: Callable[[str], None] = print) -> KnowledgeGraph | None:
    """The KG a run uses: from features (default), from kg.txt, or None with a one-line note."""
    if source == "none":
        return None
    if source == "file":
        if ds.kg_triples is None:
            log(f"{ds.name}: no kg.txt; knowledge parts switched off")
            return None
        kg = from_triples(ds.kg_triples, ds.n_items)
        if is_degenerate(kg):
            log(f"warning: {ds.name}/kg.txt is degenerate ({kg.n_entities} entities shared by all items): "
                "it carries no content knowledge; kg=features builds a KG from item features")
        return kg
    if not ds.features:
        log(f"{ds.name}: no item features to build a KG from; knowledge parts switched off")
        return None
    return build_from_features(ds.features, concepts, links, iters, seed)
