"""The training loop on the device ``pytest --device`` names (default cpu; ``--device cuda`` on a
GPU machine, skipped with its reason where there is none): every registered model trains, scores
and resumes there, and the device-side pieces agree with the CPU."""

import numpy as np
import pytest
import torch

from kdiffe import Config, Trainer
from kdiffe.data import make_synthetic
from kdiffe.losses import info_nce, info_nce_nodes
from kdiffe.metrics import Evaluator
from kdiffe.propagation import propagation_operator
from kdiffe.zoo import MODELS

QUIET = dict(log=lambda message: None)
SMALL = dict(dataset="synthetic", syn_users=120, syn_items=80, epochs=2, M=8, R=2, seed=5, batch_size=256,
             eval_every=1, denoiser_hidden=32)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_trains_scores_and_resumes_on_the_device(name, device, tmp_path):
    config = Config(**SMALL, model=name, device=device)
    trainer = Trainer(config, **QUIET)
    assert trainer.device.type == torch.device(device).type
    assert {p.device.type for p in trainer.model.parameters()} == {trainer.device.type}
    first = trainer.run()
    assert first["best_epoch"] is not None and 0 <= first["test"]["recall@20"] <= 1
    assert all(t.device.type == "cpu" for t in trainer.best_embeddings)  # kept on the host for serving
    trainer.save(tmp_path)
    resumed = Trainer(Config(**{**SMALL, "epochs": 3}, model=name, device=device), **QUIET)
    resumed.load(tmp_path)
    assert resumed.epoch == 2 and resumed.run()["epochs_run"] == 3


def test_propagation_evaluation_and_contrast_agree_with_the_cpu(device):
    ds = make_synthetic(n_users=90, n_items=50, seed=2)
    cpu, there = torch.device("cpu"), torch.device(device)
    a = propagation_operator(ds.train, None, 0.0, cpu)
    b = propagation_operator(ds.train, None, 0.0, there)
    x = torch.randn(ds.n_users + ds.n_items, 8, generator=torch.Generator().manual_seed(0), device="cpu")
    assert torch.allclose((a @ x), (b @ x.to(there)).cpu(), atol=1e-5)
    z = x[: ds.n_users].clone()
    items = x[ds.n_users:].clone()
    scores = lambda zz, ii: (lambda users: zz[users] @ ii.T)  # noqa: E731
    on_cpu = Evaluator(ds.test, [ds.train, ds.val], device=cpu)(scores(z, items))
    on_device = Evaluator(ds.test, [ds.train, ds.val], device=there)(scores(z.to(there), items.to(there)))
    assert on_cpu.keys() == on_device.keys()
    assert all(abs(on_cpu[k] - on_device[k]) < 1e-6 for k in on_cpu)
    nodes = torch.arange(0, 60, 3, device="cpu")
    v = torch.randn(90, 8, generator=torch.Generator().manual_seed(1), device="cpu")
    streamed = info_nce_nodes(z.to(there), v.to(there), nodes.to(there), 0.5, block=7)
    dense = info_nce(z[nodes], v[nodes], v, 0.5)
    assert np.isclose(float(streamed), float(dense), atol=1e-5)
