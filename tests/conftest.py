"""Shared fixtures: the repository root, a seeded generator, the venv's snakemake."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test runs torch on one thread: the tensors are small, and on a shared 2-core machine
    extra intra-op threads only add contention (up to 10x slower)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def snakemake_exe() -> str:
    exe = Path(sys.executable).with_name("snakemake")
    if exe.exists():
        return str(exe)
    found = shutil.which("snakemake")
    if found is None:
        pytest.fail("snakemake is not installed in the test environment (make test installs it)")
    return found


def snakemake_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    return env


#: the condition box of the model tests
BOX = ((1.0, 4.0), (-1.0, 1.0))
#: tiny configs of every architecture (fast on 2 CPU cores)
TINY = {
    "fo-arm-mlp": {"channels": 3, "n_hidden": 1, "cond_width": 8, "n_freq": 2},
    "ao-arm-mlp": {"width": 24, "n_layers": 2, "n_freq": 2},
    "mam-mlp": {"width": 24, "n_layers": 2, "n_freq": 2},
    "mam-transformer": {"dim": 16, "n_blocks": 2, "n_heads": 2, "mlp_ratio": 2, "rope_k": 1, "n_freq": 2},
}


@pytest.fixture
def float64_one_thread():
    """float64 models (tolerances of 1e-10); one thread (see one_torch_thread)."""
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old_dtype)
