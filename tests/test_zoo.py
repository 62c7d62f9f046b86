"""The model registry and the Recommender protocol: every registered model builds, trains, scores
and resumes through the one trainer; LightGCN as published, checked against hand-computed
numbers; what ran is recorded; a model that needs item features refuses a dataset without them."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from kdiffe import Config, Trainer, from_dict, make_synthetic
from kdiffe.config import ConfigError
from kdiffe.data import Dataset
from kdiffe.lightgcn import LightGCN
from kdiffe.losses import Objective
from kdiffe.propagation import propagation_operator
from kdiffe.recommender import Recommender
from kdiffe.sampling import Batch
from kdiffe.zoo import MODELS, build_model, model_class, model_defaults

from conftest import triangle_operator

QUIET = dict(log=lambda message: None)


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(n_users=120, n_items=60, seed=1)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registered_model_builds_trains_and_scores(name, synthetic):
    cls = model_class(name)
    assert issubclass(cls, Recommender) and cls.name == name
    cfg = from_dict({"model": name, "M": 5, "R": 2, "epochs": 2, "patience": 0})
    trainer = Trainer(cfg, synthetic, **QUIET)
    assert isinstance(trainer.model, cls)
    summary = trainer.run()
    assert summary["model"] == name and summary["epochs_run"] == 2 and 0 <= summary["val"]["recall@20"] <= 1
    scores = trainer.model.scorer()(torch.arange(5))
    assert scores.shape == (5, synthetic.n_items) and torch.isfinite(scores).all()
    top = trainer.model.recommend(torch.arange(5), 10, exclude=synthetic.train)
    train = synthetic.train.tocsr()
    assert all(train[u, i] == 0 for u in range(5) for i in top[u].tolist())  # training items never recommended
    assert set(trainer.model.recorded()) == {"kg_entities", "modalities"}


def test_unknown_model_is_refused_and_published_defaults_apply_only_when_not_given():
    with pytest.raises(ConfigError, match="model=.sgl2.: unknown model; choose from kdiffe, lightgcn, sgl, ncl, simgcl, bm3, diffmm, freedom"):
        from_dict({"model": "sgl2"})
    with pytest.raises(ConfigError, match="variants are the kdiffe model's ablations"):
        from_dict({"model": "lightgcn", "variant": "no_s"})
    published = from_dict({"model": "lightgcn"})
    assert (published.layers, published.theta2, published.l2, published.layer_combine) == (3, 1e-4, "batch", "mean")
    assert model_defaults("lightgcn") == {"layers": 3, "theta2": 1e-4, "l2": "batch", "layer_combine": "mean"}
    mine = from_dict({"model": "lightgcn", "layers": 1, "theta2": 0.3})
    assert (mine.layers, mine.theta2, mine.layer_combine) == (1, 0.3, "mean")
    assert from_dict(published.to_dict()) == published  # a round trip keeps every value
    kdiffe = from_dict({})
    assert (kdiffe.model, kdiffe.layers, kdiffe.layer_combine, kdiffe.theta2) == ("kdiffe", 2, "sum", 1e-5)


def _triangle() -> Dataset:
    """3 users, 2 items: u0-i0, u1-i0, u1-i1, u2-i1."""
    train = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32))
    empty = sp.csr_matrix((3, 2), dtype=np.float32)
    return Dataset(name="triangle", train=train, val=empty, test=empty)


def test_lightgcn_mean_of_layers_and_loss_match_hand_computation():
    """LightGCN Eq. 3-5 and 15 on a hand-made graph, every number from numpy."""
    ds = _triangle()
    operator = propagation_operator(ds.train, None, 0.0)
    model = LightGCN(3, 2, operator, dim=2, layers=2, combine="mean", objective=Objective(theta2=0.1, l2="batch"))
    e_u = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    e_i = np.array([[0.5, -1.0], [2.0, 0.0]])
    with torch.no_grad():
        model.user.weight.copy_(torch.tensor(e_u))
        model.item.weight.copy_(torch.tensor(e_i))
    _, big = triangle_operator()
    e0 = np.vstack([e_u, e_i])
    e1 = big @ e0
    e2 = big @ e1
    final = (e0 + e1 + e2) / 3  # α_k = 1 / (K + 1)
    users, items = model.forward()
    np.testing.assert_allclose(users.detach().numpy(), final[:3], rtol=1e-6)
    np.testing.assert_allclose(items.detach().numpy(), final[3:], rtol=1e-6)
    batch = Batch(users=torch.tensor([0, 2]), pos=torch.tensor([0, 1]), neg=torch.tensor([1, 0]))
    loss, parts = model.loss(batch)
    pos = np.array([final[0] @ final[3], final[2] @ final[4]])
    neg = np.array([final[0] @ final[4], final[2] @ final[3]])
    bpr = np.mean(np.log1p(np.exp(neg - pos)))
    reg = 0.5 * (np.sum(e_u[[0, 2]] ** 2) + np.sum(e_i[[0, 1]] ** 2) + np.sum(e_i[[1, 0]] ** 2)) / 2
    assert float(parts["bpr_loss"]) == pytest.approx(bpr, rel=1e-6)
    assert float(loss.detach()) == pytest.approx(bpr + 0.1 * reg, rel=1e-6)
    summed = LightGCN(3, 2, operator, dim=2, layers=2, combine="sum")
    with torch.no_grad():
        summed.load_state_dict(model.state_dict())
    np.testing.assert_allclose(summed.forward()[0].detach().numpy(), 3 * final[:3], rtol=1e-6)


def test_lightgcn_in_kdiffes_form_is_kdiffes_lightgcn_variant(synthetic, one_thread):
    """The published model set to the layer sum and θ2 ||Θ||² computes exactly what KDiffE's
    lightgcn variant computes: same parameters, same draws, same numbers."""
    common = dict(epochs=3, patience=0, seed=7)
    variant = Trainer(from_dict({"variant": "lightgcn", **common}), synthetic, **QUIET).run()
    form = Trainer(from_dict({"model": "lightgcn", "layer_combine": "sum", "l2": "params", "theta2": 1e-5,
                              "layers": 2, **common}), synthetic, **QUIET).run()
    keys = ["val_recall@20", "test_ndcg@20", "bpr_loss"]
    assert [[row[k] for k in keys] for row in form["history"]] == [[row[k] for k in keys] for row in variant["history"]]
    published = Trainer(from_dict({"model": "lightgcn", **common}), synthetic, **QUIET).run()
    assert [row["bpr_loss"] for row in published["history"]] != [row["bpr_loss"] for row in variant["history"]]


def test_kdiffe_records_what_ran_and_refuses_a_dataset_without_features(synthetic):
    bare = Dataset(name="bare", train=synthetic.train, val=synthetic.val, test=synthetic.test)
    with pytest.raises(ConfigError, match="kg=features: bare has no item features .* --set kg=none"):
        Trainer(Config(M=5, R=2, epochs=1), bare, **QUIET)
    with pytest.raises(ConfigError, match="kg=file: bare has no kg.txt"):
        Trainer(Config(M=5, R=2, epochs=1, kg="file"), bare, **QUIET)
    free = Trainer(Config(M=5, R=2, epochs=1, kg="none"), bare, **QUIET)
    assert free.model.recorded() == {"kg_entities": 0, "modalities": ""} and free.view is None
    row = free.run()["history"][-1]
    assert row["kg_entities"] == 0 and row["modalities"] == ""
    full = Trainer(Config(M=5, R=2, epochs=1), synthetic, **QUIET)
    recorded = full.model.recorded()
    assert recorded["modalities"] == ",".join(sorted(synthetic.features)) and recorded["kg_entities"] == full.kg.n_entities > 0


def test_build_model_moves_the_model_to_its_device(synthetic):
    model = build_model(from_dict({"model": "lightgcn"}), synthetic, torch.device("cpu"), **QUIET)
    assert model.user.weight.device.type == "cpu" and model.operator.device.type == "cpu"


def test_sgl_edge_dropout_keeps_its_ratio_and_is_resampled():
    from kdiffe.sgl import drop_edges

    rng = np.random.default_rng(0)
    graph = sp.random(400, 300, density=0.2, format="csr", random_state=1)
    graph.data[:] = 1.0
    kept = [drop_edges(graph, 0.1, rng) for _ in range(2)]
    for view in kept:
        assert view.nnz == int(graph.nnz * 0.9)  # exactly its share of the edges
        assert (view - view.multiply(graph)).nnz == 0  # only edges of the graph
    assert (kept[0] != kept[1]).nnz > 0
    assert drop_edges(graph, 0.0, rng).nnz == graph.nnz


def test_sgl_views_and_their_contrast(synthetic):
    from kdiffe.losses import info_nce
    from kdiffe.sampling import epoch_batches, positive_keys

    trainer = Trainer(from_dict({"model": "sgl", "epochs": 2}), synthetic, **QUIET)
    model = trainer.model
    model.epoch_hook(0)
    first = [v.to_dense() for v in model.views]
    assert not torch.equal(first[0], first[1])
    full = model.operator.to_dense()
    assert ((first[0] != 0) & (full == 0)).sum() == 0  # a view only drops edges
    model.epoch_hook(1)
    assert not torch.equal(model.views[0].to_dense(), first[0])  # resampled every epoch
    assert not model.contrastive  # its anchors are the batch's rows: no distinct anchors needed
    batch = epoch_batches(synthetic.train, positive_keys(synthetic.train), 64, np.random.default_rng(0))[0]
    assert len(torch.unique(batch.users)) < len(batch.users)  # the batch repeats a user
    _, parts = model.loss(batch)
    with torch.no_grad():
        (a_u, a_i), (b_u, b_i) = (model._combine(v) for v in model.views)
        # one anchor per (user, positive item) pair, duplicates included, as the authors' code
        want = (info_nce(a_u[batch.users], b_u[batch.users], b_u, 0.2)
                + info_nce(a_i[batch.pos], b_i[batch.pos], b_i, 0.2))
        once = (info_nce(a_u[torch.unique(batch.users)], b_u[torch.unique(batch.users)], b_u, 0.2)
                + info_nce(a_i[torch.unique(batch.pos)], b_i[torch.unique(batch.pos)], b_i, 0.2))
    assert float(parts["cl_loss"]) == pytest.approx(float(want), rel=1e-5)
    assert float(parts["cl_loss"]) != pytest.approx(float(once), rel=1e-3)


def test_sgl_without_its_contrast_is_lightgcn(synthetic, one_thread):
    common = dict(epochs=3, patience=0, seed=3)
    sgl = Trainer(from_dict({"model": "sgl", "theta1": 0.0, **common}), synthetic, **QUIET).run()
    lightgcn = Trainer(from_dict({"model": "lightgcn", **common}), synthetic, **QUIET).run()
    keys = ["val_recall@20", "test_ndcg@20", "bpr_loss"]
    assert [[r[k] for k in keys] for r in sgl["history"]] == [[r[k] for k in keys] for r in lightgcn["history"]]


def _config_reads(module: str) -> set[str]:
    """The Config fields a module's code reads (``config.x``, ``cfg.x``, ``c.x``, ``self.config.x``), with those of
    Objective.from_config where it builds its objective so."""
    import ast
    import importlib
    import inspect
    import textwrap

    from kdiffe import losses

    def reads(source: str) -> set[str]:
        def is_config(value: ast.expr) -> bool:  # config, cfg, c or self.config
            return (isinstance(value, ast.Name) and value.id in ("config", "cfg", "c")
                    or isinstance(value, ast.Attribute) and value.attr == "config")

        return {node.attr for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.Attribute) and is_config(node.value)}

    source = inspect.getsource(importlib.import_module(module))
    found = reads(source)
    if "Objective.from_config" in source:
        found |= reads(textwrap.dedent(inspect.getsource(losses.Objective.from_config)))
    return found


@pytest.mark.parametrize("name", list(MODELS))
def test_a_model_declares_the_hyperparameters_its_code_reads(name):
    from kdiffe.catalog import MODEL_PARAMETERS
    from kdiffe.config import FIELDS

    entry = MODELS[name]
    assert set(entry.reads) <= set(FIELDS)
    modules = [entry.code.partition(":")[0]] + (["kdiffe.view"] if name == "kdiffe" else [])  # KDiffE's view
    code_reads = set().union(*(_config_reads(m) for m in modules))
    assert set(entry.reads) <= code_reads, f"{name} declares what its code never reads"
    assert (code_reads & MODEL_PARAMETERS) - set(entry.reads) <= {"cl_negatives", "cl_samples"}, \
        f"{name} reads model parameters it does not declare"  # (SGL and NCL build Objective.from_config, unused)
    searched = set(entry.search) | set(entry.ranges) | set(entry.grids)
    assert searched & MODEL_PARAMETERS <= set(entry.reads)  # a search never moves what the model ignores


def test_a_given_parameter_no_model_of_the_run_reads_is_refused():
    from kdiffe.config import check_reads

    check_reads(["sgl"], ["edge_drop", "lr", "epochs", "dim", "resplit"])  # its own, and every model's
    check_reads(["kdiffe", "sgl"], ["M", "edge_drop"])  # a run of two models: what either reads
    with pytest.raises(ConfigError, match=r"^--set M=\.\.\.: model=sgl does not use M; its own parameters: "
                                          r"layers, layer_combine, theta1, theta2, l2, tau, cl_block, edge_drop$"):
        check_reads(["sgl"], ["edge_drop", "M"])
    with pytest.raises(ConfigError, match=r"none of the models of this run \(lightgcn, bm3\) uses tau$"):
        check_reads(["lightgcn", "bm3"], ["tau"])
    with pytest.raises(ConfigError, match="model=simgcl does not use layer_combine"):
        check_reads(["simgcl"], ["layer_combine"])  # SimGCL's mean of layers 1..L is fixed
