import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
