"""Every tensor the core creates names its device, so the CUDA path cannot drift from the CPU one."""

import ast
from pathlib import Path

import torch

CORE = Path(__file__).resolve().parents[1] / "kdiffe"
#: torch functions that create a tensor from nothing but sizes or data (a ``*_like`` copies its input's device)
FACTORIES = {"tensor", "zeros", "ones", "arange", "empty", "full", "rand", "randn", "randint", "randperm", "eye",
             "linspace", "logspace", "as_tensor", "sparse_coo_tensor", "sparse_csr_tensor", "normal"}


def undeviced_calls(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FACTORIES
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                and not any(k.arg == "device" for k in node.keywords)):
            found.append((node.lineno, ast.unparse(node)[:80]))
    return found


def test_the_scan_finds_a_tensor_without_a_device():
    assert undeviced_calls("import torch\nx = torch.zeros(3)\ny = torch.ones(2, device=d)\nz = torch.zeros_like(x)\n") \
        == [(2, "torch.zeros(3)")]


def test_no_tensor_of_the_core_is_created_without_a_device():
    problems = [f"{path.name}:{line}: {code}" for path in sorted(CORE.glob("*.py"))
                for line, code in undeviced_calls(path.read_text())]
    assert problems == [], "\n".join(problems)


def test_a_model_built_on_the_meta_device_creates_no_tensor_elsewhere():
    """Building a model's parameters under torch's meta device: anything made without the ambient
    device (a literal CPU tensor where a device one is meant) would not be meta."""
    from kdiffe.lightgcn import LightGCN
    from kdiffe.propagation import propagation_operator
    from kdiffe.data import make_synthetic

    ds = make_synthetic(n_users=30, n_items=20, seed=0)
    operator = propagation_operator(ds.train, None, 0.0, torch.device("cpu"))
    with torch.device("meta"):
        model = LightGCN(ds.n_users, ds.n_items, operator, 8, 2)
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_a_run_records_the_gpu_cards_nvidia_smi_lists(tmp_path, monkeypatch):
    from tune.store import machine

    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: CPUs only
    assert machine().endswith(" CPUs")
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n[ \"$1\" = --query-gpu=name ] && printf 'NVIDIA H100 80GB HBM3\\nNVIDIA H100 80GB HBM3\\n"
                   "NVIDIA A10\\n'\n")
    smi.chmod(0o755)
    assert machine().endswith(" CPUs, GPUs: 2 x NVIDIA H100 80GB HBM3, 1 x NVIDIA A10")
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")  # a broken driver: no card claimed
    assert machine().endswith(" CPUs")
