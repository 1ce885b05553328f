"""The accelerator path: every architecture on a CUDA device, as the ``train`` and ``sample`` jobs
run it on a GPU node (bf16 autocast training, a CUDA generator, checkpoints written there and read
on a CPU). Skipped without a CUDA device; ``benchmarks/gpu_check.sh`` runs them on a lent GPU.
``LATTHERM_TEST_DEVICE=cpu`` runs the same checks on the CPU (to check the checks themselves)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import BOX, SHORT_BOX, SHORT_COND, SHORT_TINY, SHORT_TRAIN, TINY, kl_per_condition

from lattherm.evaluation import metrics_table, sample_grid
from lattherm.lattices import Lattice
from lattherm.models import MODEL_NAMES, build_model
from lattherm.reference.exact import enumerate_states, ising_transfer_matrix
from lattherm.sampling import log_prob, sample
from lattherm.systems import IsingSystem
from lattherm.training import TrainConfig, load_checkpoint, load_model, train

DEVICE = os.environ.get("LATTHERM_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    DEVICE.startswith("cuda") and not torch.cuda.is_available(),
    reason="no CUDA device (benchmarks/gpu_check.sh runs these on a GPU)",
)


def _model(name: str, lattice: Lattice, *, dtype=torch.float32, seed: int = 0):
    torch.manual_seed(seed)
    system = IsingSystem(L=lattice.shape[0])
    return build_model(name, system=system, cond_box=BOX, config=TINY[name]).to(DEVICE, dtype).requires_grad_(False)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_path_probabilities_are_normalised_on_device(name):
    """Σ_x exp(log q(x | σ)) = 1 over the 512 states of 3x3 along one random order, on the device."""
    model = _model(name, Lattice(shape=(3, 3)), dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    order = "fixed" if model.fixed_order else torch.randperm(9, generator=gen).to(DEVICE)
    x = torch.cat(list(enumerate_states(9))).long().to(DEVICE)
    lp = log_prob(model, x, torch.tensor([2.1, 0.3], device=DEVICE), order, steps_per_pass=4)
    assert lp.device.type == torch.device(DEVICE).type
    assert abs(torch.logsumexp(lp, 0).item()) < 1e-10


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_device_sampler_reports_the_cpu_probabilities(name):
    """Samples drawn on the device with a device generator: their reported log q equals the same
    model's float32 log-probability on the CPU along the same orders (float32 rounding apart)."""
    lattice = Lattice(shape=(4, 4))
    model = _model(name, lattice)
    cond = torch.tensor([[1.5, 0.0], [2.3, 0.5], [3.5, -1.0]], device=DEVICE)
    gen = torch.Generator(device=DEVICE).manual_seed(1)
    order = "fixed" if model.fixed_order else "random"
    x, log_q, used = sample(model, cond, 64, order=order, generator=gen, return_order=True)
    assert x.device.type == torch.device(DEVICE).type
    cpu = _model(name, lattice).to("cpu")
    cpu.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    ref = log_prob(cpu, x.cpu(), cond.cpu().repeat_interleave(64, 0), used.cpu())
    torch.testing.assert_close(log_q.cpu(), ref, rtol=0, atol=1e-4)
    # the same seed on the device draws the same configurations
    x2, _ = sample(model, cond, 64, order=order, generator=torch.Generator(device=DEVICE).manual_seed(1))
    assert torch.equal(x, x2)


@pytest.mark.parametrize(
    "name, steps, max_kl",
    [("fo-arm-mlp", 150, 0.25), ("ao-arm-mlp", 150, 0.25), ("mam-mlp", 300, 1.0), ("mam-transformer", 150, 1.0)],
)
def test_training_on_device_in_default_precision(tmp_path, name, steps, max_kl):
    """``precision: auto`` on the device (bf16 autocast on CUDA) lowers the KL of 3x3 Ising from
    1.3–5.6 nats (random initialisation) to the float32 CPU trainings' level (tests/test_training.py:
    ARMs 0.01–0.08 nat, MAMs a few tenths; on the CPU here the MAM Transformer reaches 0.1–0.6 in
    150 steps); the checkpoint holds float32 weights and loads on the CPU with ``weights_only``."""
    system, box = IsingSystem(L=3), SHORT_BOX
    # ARMs: the gradient pass in recomputed chunks (grad_chunk)
    cfg = TrainConfig(steps=steps, checkpoint_every=50, device=DEVICE, grad_chunk=100, **SHORT_TRAIN)
    cond = torch.tensor(SHORT_COND, dtype=torch.float64)
    ck = tmp_path / "ck.pt"
    out = train(system, model_name=name, model_config=SHORT_TINY[name], train_config=cfg, cond_box=box,
                checkpoint_path=ck, log_path=tmp_path / "log.parquet", progress=False)  # fmt: skip
    assert out["finished"] and out["steps_done"] == steps
    state = load_checkpoint(ck)  # weights_only, mapped to the CPU
    assert all(v.device.type == "cpu" and v.dtype == torch.float32 for v in state["model_state"].values()
               if v.is_floating_point())  # fmt: skip
    torch.manual_seed(1)
    kl0 = kl_per_condition(build_model(name, system=system, cond_box=box, config=SHORT_TINY[name]), system, cond)
    kl = kl_per_condition(load_model(ck, system=system), system, cond)
    assert kl0.min() > 1.0
    assert np.all(kl > -0.01) and kl.max() < max_kl, (kl0, kl)
    log = pd.read_parquet(tmp_path / "log.parquet")
    assert np.isfinite(log["loss"]).all() and np.isfinite(log["grad_norm"]).all()


@pytest.fixture
def deterministic():
    """Deterministic kernels where PyTorch has them (index_add_ on CUDA; cuBLAS needs
    CUBLAS_WORKSPACE_CONFIG=:4096:8, which gpu_check.sh sets), a warning where it has none."""
    old = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(old[0], warn_only=old[1])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_killed_device_run_resumes_on_the_same_trajectory(tmp_path, monkeypatch, deterministic):
    """A device run killed after its step-4 checkpoint resumes (CUDA generator state included) and
    ends where the uninterrupted run ends (bitwise on a CPU; on a GPU up to float32 rounding of
    kernels without a deterministic variant)."""
    import lattherm.training.trainer as trainer_mod

    system = IsingSystem(L=3)
    cfg = TrainConfig(steps=7, n_T=2, n_field=2, samples_per_condition=8, checkpoint_every=2, log_every=1, seed=3,
                      ao_grad_steps=2, device=DEVICE, precision="float32")  # fmt: skip
    kw = dict(model_name="ao-arm-mlp", model_config=TINY["ao-arm-mlp"], cond_box=BOX, progress=False, train_config=cfg)
    train(system, checkpoint_path=tmp_path / "a.pt", **kw)
    real, calls = trainer_mod.reinforce_loss, {"n": 0}

    def killed(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(trainer_mod, "reinforce_loss", killed)
        with pytest.raises(KeyboardInterrupt):
            train(system, checkpoint_path=tmp_path / "b.pt", **kw)
    assert load_checkpoint(tmp_path / "b.pt")["step"] == 4
    assert train(system, checkpoint_path=tmp_path / "b.pt", **kw)["steps_done"] == 7
    a, b = load_checkpoint(tmp_path / "a.pt")["model_state"], load_checkpoint(tmp_path / "b.pt")["model_state"]
    for k, v in a.items():
        torch.testing.assert_close(v, b[k], rtol=0, atol=1e-5, msg=k)


def test_sample_grid_and_metrics_on_device(tmp_path):
    """The sample rule's path on the device: a checkpoint's samples at a condition grid, twice with
    one seed (same table), then metrics against the exact 3x3 free energies (finite, NESS in (0, 1])."""
    system = IsingSystem(L=3)
    cfg = TrainConfig(steps=30, n_T=2, n_field=2, samples_per_condition=32, lr=1e-2, seed=2, device=DEVICE)
    ck = tmp_path / "ck.pt"
    train(system, model_name="mam-transformer", model_config=TINY["mam-transformer"], train_config=cfg, cond_box=BOX,
          checkpoint_path=ck, progress=False)  # fmt: skip
    T, h = [1.5, 2.5, 3.5], [-0.5, 0.0, 0.5]
    kw = dict(seed=5, batch_size=500, symmetrised=True, device=DEVICE)
    df = sample_grid(ck, system, T, h, 200, **kw)
    pd.testing.assert_frame_equal(df, sample_grid(ck, system, T, h, 200, **kw))
    TT, HH = np.repeat(T, 3), np.tile(h, 3)
    ref = ising_transfer_matrix(3, TT, HH)
    ref_df = pd.DataFrame({"system": "ising", "size": "3x3", "T": TT, "field": HH,
                           **{k: ref[k] for k in ("f", "u", "c", "m")}})  # fmt: skip
    met = metrics_table(df, system, "mam-transformer", "direct", ref_df, "exact", n_boot=20, seed=0)
    assert len(met) == 9 and np.isfinite(met["f_nis"]).all()
    assert ((met["ness"] > 0) & (met["ness"] <= 1 + 1e-12)).all()
