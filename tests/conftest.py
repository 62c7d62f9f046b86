import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu",
                     help="device of the tests that take one (tests/test_on_device.py): cpu (default), cuda, cuda:N")


@pytest.fixture(scope="session")
def device(request) -> str:
    """The device ``pytest --device`` names; on a machine without CUDA, ``--device cuda`` skips
    those tests with the reason."""
    name = request.config.getoption("--device")
    if name.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            pytest.skip(f"--device {name}: no CUDA device on this machine")
    return name


#: the hand-made graph of the known-answer tests: 3 users, 2 items, u0-i0, u1-i0, u1-i1, u2-i1
TRIANGLE = ((1, 0), (1, 1), (0, 1))


def triangle_operator():
    """(train csr, the (users + items) operator [[0, L̄], [L̄ᵀ, 0]] computed by numpy) of TRIANGLE."""
    import numpy as np
    import scipy.sparse as sp

    a = np.array(TRIANGLE, dtype=float)
    norm = a / np.sqrt(a.sum(1))[:, None] / np.sqrt(a.sum(0))[None, :]  # D_u^-1/2 A D_i^-1/2
    big = np.block([[np.zeros((3, 3)), norm], [norm.T, np.zeros((2, 2))]])
    return sp.csr_matrix(a.astype(np.float32)), big


def data_dir() -> Path:
    return Path(os.environ.get("KDIFFE_DATA_DIR") or ROOT.parent / "shared" / "datasets").resolve()


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    path = data_dir()
    if not (path / "tiktok" / "trnMat.pkl").exists():
        pytest.skip(f"real datasets not found under {path} (set KDIFFE_DATA_DIR)")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("KDIFFE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kdiffe-cache"))


@pytest.fixture
def one_thread():
    """Bit-exact runs: with several threads some CPU kernels sum in a varying order (~1e-7)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
