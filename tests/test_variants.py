import pytest

from kdiffe import VARIANTS, Config, Trainer, make_synthetic, train

QUIET = dict(log=lambda message: None)


@pytest.fixture(scope="module")
def sparse_synthetic():
    return make_synthetic(n_users=600, n_items=400, interactions=6, seed=0)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_trains_with_its_parts(variant, sparse_synthetic):
    cfg = Config(variant=variant, epochs=1, M=5, R=2)
    trainer = Trainer(cfg, sparse_synthetic, **QUIET)
    assert (trainer.model.knowledge is not None) == cfg.use_kg
    assert (trainer.denoiser is not None) == cfg.use_cl
    summary = trainer.run()
    assert summary["variant"] == variant and summary["config"]["variant"] == variant
    assert (summary["s_seconds"] > 0) == cfg.use_s
    if cfg.use_cl:
        assert trainer.view_triples is not trainer.triples
        # Ĝ_k keeps q entities per relation per item
        assert len(trainer.view_triples) == sparse_synthetic.n_items * trainer.kg.n_relations * cfg.q


def test_unguided_denoiser_gets_no_guidance(sparse_synthetic):
    guided = Trainer(Config(variant="kdiffe", epochs=1, M=5, R=2), sparse_synthetic, **QUIET)
    unguided = Trainer(Config(variant="unguided", epochs=1, M=5, R=2), sparse_synthetic, **QUIET)
    assert guided._guidance().shape == (sparse_synthetic.n_items, guided.config.dim)
    assert unguided._guidance() is None


def test_q_sets_the_size_of_the_diffusion_view(sparse_synthetic):
    trainer = Trainer(Config(variant="kdiffe", epochs=1, M=5, R=2, q=3), sparse_synthetic, **QUIET)
    trainer.run()
    assert len(trainer.view_triples) == sparse_synthetic.n_items * 2 * 3


def test_kdiffe_beats_lightgcn_on_sparse_synthetic(sparse_synthetic):
    """Seeded: items have ~6 interactions per user, features carry the taste clusters.

    Measured: lightgcn 0.350, kdiffe 0.388 validation Recall@20; required margin 0.02.
    """
    recall = {}
    for variant in ("lightgcn", "kdiffe"):
        cfg = Config(variant=variant, epochs=40, eval_every=5, patience=0, batch_size=512)
        recall[variant] = train(cfg, dataset=sparse_synthetic, **QUIET)["val"]["recall@20"]
    assert recall["kdiffe"] >= recall["lightgcn"] + 0.02, recall
