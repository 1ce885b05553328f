"""Shared fixtures: the repository root, a seeded generator, the venv's snakemake; the model tests'
configs, the kernels' random generator in plain Python, chi-square tests, numba thread counts."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np
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
    "ao-transformer": {"dim": 16, "n_blocks": 2, "n_query_blocks": 2, "n_heads": 2, "mlp_ratio": 2, "radius": 1,
                       "n_freq": 2},  # fmt: skip
    "twobo": {"hidden": 3, "n_freq": 2},
    "fo-pixelcnn": {"channels": 4, "layers": 2, "kernel": 1, "cond_width": 8, "n_freq": 2},
    "mam-gnn": {"hidden": 8, "layers": 2, "filter_width": 4, "n_freq": 2},
    "mam-tt": {"bond_dim": 3, "n_freq": 2, "init_scale": 0.5},
}

#: a few steps of a tiny training with refills, Gibbs moves, annealing and checkpoints every 2 steps
#: (TrainConfig settings of tests/test_training.py and tests/test_distributed.py)
TINY_TRAIN = dict(
    steps=7,
    n_T=2,
    n_field=2,
    samples_per_condition=8,
    checkpoint_every=2,
    log_every=1,
    seed=3,
    refill_every=3,
    gibbs_sweeps=2,
    beta_anneal_frac=0.5,
)


#: the short-training check on 3x3 Ising (tests/test_training.py, on a device tests/test_devices.py):
#: its condition box, model sizes, TrainConfig settings and the conditions its KL is measured at
SHORT_BOX = ((2.0, 3.0), (-0.5, 0.5))
SHORT_TINY = {
    "fo-arm-mlp": {"channels": 4, "n_hidden": 1, "cond_width": 16, "n_freq": 2},
    "ao-arm-mlp": {"width": 64, "n_layers": 2, "n_freq": 2},
    "mam-mlp": {"width": 64, "n_layers": 2, "n_freq": 2},
    "mam-transformer": TINY["mam-transformer"],
    "ao-transformer": TINY["ao-transformer"],
    "twobo": {"hidden": 8, "n_freq": 2},
    "fo-pixelcnn": {"channels": 8, "layers": 2, "kernel": 1, "cond_width": 16, "n_freq": 2},
    "mam-gnn": {"hidden": 16, "layers": 2, "filter_width": 8, "n_freq": 2},
    "mam-tt": {"bond_dim": 16, "n_freq": 2},
}
SHORT_TRAIN = dict(n_T=2, n_field=2, samples_per_condition=64, lr=1e-2, grid_step_frac=0.25, beta_anneal_frac=0.3,
                   log_every=10, seed=1)  # fmt: skip
SHORT_COND = ((2.0, -0.5), (2.0, 0.5), (3.0, 0.0), (2.5, 0.25))


def kl_per_condition(model, system, cond, n=2000) -> np.ndarray:
    """``KL(q‖p) = β(F_var − F)·N = −mean(log w) − (−ln Z)`` per condition (Ising, transfer matrix),
    from ``n`` samples of ``model`` on the CPU."""
    from lattherm.reference.exact import ising_transfer_matrix
    from lattherm.sampling import sample
    from lattherm.systems import reduced_energy

    gen = torch.Generator().manual_seed(7)
    x, lq = sample(model, cond, n, order="fixed" if model.fixed_order else "random", generator=gen)
    rows = cond.repeat_interleave(n, 0)
    log_w = (-reduced_energy(system, x, rows[:, 0], rows[:, 1]) - lq).view(len(cond), n)
    ref = ising_transfer_matrix(system.L, cond[:, 0].numpy(), cond[:, 1].numpy())
    return -log_w.mean(1).numpy() + ref["log_Z"]


def assert_translation_equivariant(model, lattice, x, vis, cond) -> None:
    """A MAM's ``heads`` on ``(x, vis, cond)``: translating the inputs by one cell along each axis
    (periodic wrap) translates the logits and keeps the marginal (to 1e-10); swapping two sites,
    not a lattice symmetry, changes the logits (so the check can fail)."""
    logits, lm = model.heads(x, vis, cond)
    for d in range(lattice.dim):
        shift = np.zeros(lattice.dim, dtype=np.int64)
        shift[d] = 1
        perm = torch.from_numpy(lattice.index(lattice.coords + shift))  # site i moves to perm[i]
        xt, vt = torch.empty_like(x), torch.empty_like(vis)
        xt[:, perm], vt[:, perm] = x, vis
        logits_t, lm_t = model.heads(xt, vt, cond)
        torch.testing.assert_close(logits_t[:, perm], logits, rtol=0, atol=1e-10)
        torch.testing.assert_close(lm_t, lm, rtol=0, atol=1e-10)
    perm = torch.arange(lattice.n_sites)
    perm[[0, 1]] = perm[[1, 0]]
    assert not torch.allclose(model.heads(x[:, perm], vis[:, perm], cond)[0][:, perm], logits, atol=1e-6)


def xoroshiro128p(s0: int, s1: int) -> tuple[int, int, int]:
    """Plain-Python xoroshiro128+ (Blackman & Vigna), the generator of the numba kernels: output and
    next state. The bit-for-bit tests of the kernels replay their draws with it."""
    mask = (1 << 64) - 1
    r = (s0 + s1) & mask
    s1 ^= s0
    s0 = (((s0 << 24) | (s0 >> 40)) & mask) ^ s1 ^ ((s1 << 16) & mask)
    s1 = ((s1 << 37) | (s1 >> 27)) & mask
    return r, s0, s1



def chi2_pvalue_of_counts(obs: np.ndarray, p: np.ndarray) -> float:
    """Chi-square goodness of fit of counts ``obs`` to probabilities ``p``; cells whose expected
    count is below 5 are pooled into one."""
    exp = obs.sum() * p
    small = exp < 5
    if small.any():
        obs = np.append(obs[~small], obs[small].sum())
        exp = np.append(exp[~small], exp[small].sum())
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    dof = len(exp) - 1
    return float(
        torch.special.gammaincc(
            torch.tensor(dof / 2, dtype=torch.float64), torch.tensor(chi2 / 2, dtype=torch.float64)
        )
    )


@contextlib.contextmanager
def numba_threads(n: int):
    """Run the block with ``n`` numba threads, then restore the former number."""
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(old)

@pytest.fixture
def float64_one_thread():
    """float64 models (tolerances of 1e-10); one thread (see one_torch_thread)."""
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old_dtype)
