"""Out-painting: the schedule covers the target, and the out-painted distribution is exactly
normalised and sampled as reported (enumeration of every configuration of small targets)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import BOX, TINY

from lattherm.lattices import hypercubic_lattice, square_lattice
from lattherm.models import build_model
from lattherm.outpaint import outpaint, outpaint_log_prob, schedule
from lattherm.reference.exact import enumerate_states
from lattherm.systems import IsingSystem


@pytest.fixture(scope="module")
def ao_model():
    torch.manual_seed(0)
    model = build_model("ao-arm-mlp", system=IsingSystem(L=3), cond_box=BOX, config=TINY["ao-arm-mlp"]).double()
    return model.eval()


def test_schedule_covers_the_target_once_per_site():
    for target, stride, n_windows in ((square_lattice(4), 1, 4), (square_lattice(7), 2, 9), (square_lattice(3), 3, 1),
                                      (hypercubic_lattice((3, 6)), 3, 2), (square_lattice(20), 7, 9)):  # fmt: skip
        plan = schedule(square_lattice(3) if target.shape[0] <= 7 else square_lattice(10), target, stride)
        painted = torch.cat([w[f] for w, f in zip(plan.windows, plan.new, strict=True)])
        assert len(plan) == n_windows and sorted(painted.tolist()) == list(range(target.n_sites))
    with pytest.raises(ValueError, match="stride"):
        schedule(square_lattice(3), square_lattice(6), 4)
    with pytest.raises(ValueError, match="larger than the target"):
        schedule(square_lattice(4), square_lattice(3), 1)


@pytest.mark.parametrize(("shape", "stride"), [((4, 4), 1), ((3, 6), 3), ((3, 5), 2)])
@torch.no_grad()
def test_outpainted_distribution_is_normalised(ao_model, shape, stride):
    """Σ_x q_out(x | σ) = 1 over every configuration of the target, for fixed window orders."""
    target = hypercubic_lattice(shape)
    gen = torch.Generator().manual_seed(3)
    cond = torch.tensor([2.2, 0.3], dtype=torch.float64)
    _, _, orders = outpaint(ao_model, target, cond, 1, stride=stride, generator=gen)
    total = -math.inf
    for x in enumerate_states(target.n_sites, chunk_size=1 << 14):
        lq = outpaint_log_prob(ao_model, target, x.long(), cond, stride=stride, orders=[o[:1].expand(len(x), -1)
                                                                                        for o in orders])  # fmt: skip
        total = np.logaddexp(total, torch.logsumexp(lq, 0).item())
    assert abs(total) < 1e-10


@torch.no_grad()
def test_sampled_log_q_is_the_teacher_forced_one_and_frequencies_follow_it(ao_model):
    """The sampler reports log q_out of what it drew (random orders per sample), and with one
    fixed order per window the draws follow q_out (chi-square over all 2^8 configurations)."""
    target = hypercubic_lattice((2, 4))
    model = build_model("ao-arm-mlp", system=IsingSystem(L=2), cond_box=BOX, config=TINY["ao-arm-mlp"]).double().eval()
    gen = torch.Generator().manual_seed(5)
    cond = torch.tensor([1.8, -0.2], dtype=torch.float64)
    x, lq, orders = outpaint(model, target, cond, 400, stride=1, generator=gen)
    np.testing.assert_allclose(lq, outpaint_log_prob(model, target, x, cond, stride=1, orders=orders), atol=1e-12)
    fixed = [o[0] for o in orders]  # (N0,): one order per window for every sample
    x, lq, _ = outpaint(model, target, cond, 20000, stride=1, generator=gen, orders=fixed)
    codes = (x * (1 << torch.arange(8))).sum(1)
    counts = torch.bincount(codes, minlength=256).double()
    states = ((torch.arange(256)[:, None] >> torch.arange(8)) & 1).long()
    p = outpaint_log_prob(model, target, states, cond, stride=1, orders=fixed).exp()
    assert abs(p.sum().item() - 1) < 1e-12
    expected = 20000 * p
    keep = expected > 5
    chi2 = (((counts - expected) ** 2 / expected)[keep]).sum().item()
    dof = int(keep.sum()) - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof), (chi2, dof)


@torch.no_grad()
def test_symmetrised_outpainting_is_normalised(ao_model):
    target = hypercubic_lattice((3, 4))
    gen = torch.Generator().manual_seed(7)
    cond = torch.tensor([2.0, 0.4], dtype=torch.float64)
    x, lq, orders = outpaint(ao_model, target, cond, 64, stride=1, generator=gen, symmetrised=True)
    fixed = [o[:1] for o in orders]
    states = next(enumerate_states(12, chunk_size=1 << 12)).long()
    o = [f.expand(len(states), -1) for f in fixed]
    a = outpaint_log_prob(ao_model, target, states, cond, stride=1, orders=o)
    b = outpaint_log_prob(ao_model, target, 1 - states, cond * torch.tensor([1.0, -1.0], dtype=torch.float64),
                          stride=1, orders=o)  # fmt: skip
    assert abs(torch.logsumexp(torch.logaddexp(a, b) - math.log(2), 0).item()) < 1e-10


def test_fixed_order_models_are_refused():
    made = build_model("fo-arm-mlp", system=IsingSystem(L=3), cond_box=BOX, config=TINY["fo-arm-mlp"])
    with pytest.raises(ValueError, match="any-order"):
        outpaint(made, square_lattice(4), torch.tensor([2.0, 0.0]), 2, stride=1)


@pytest.mark.slow
def test_outpainted_exact_model_gives_the_exact_free_energy_within_its_error():
    """The exact 3x3 Boltzmann model out-painted onto 6x6 at high T: its sample table carries the
    exact log q_out, so the importance-sampled f of the 6x6 torus is unbiased and its bootstrap
    error honest against the transfer matrix."""
    from lattherm.evaluation import metrics_table, outpaint_model
    from lattherm.models import ExactModel
    from lattherm.reference.exact import ising_exact_table

    exact3 = ExactModel(system=IsingSystem(L=3), cond_box=((2.0, 6.0), (-0.5, 0.5)))
    target = IsingSystem(L=6)
    T, h = [4.0, 8.0], [0.3]
    df = outpaint_model(exact3, target, T, h, 1000, stride=3, seed=1, symmetrised=True)
    assert (df["source"] == "outpaint-3x3").all() and len(df) == 2 * 1000 and (df["size"] == "6x6").all()
    met = metrics_table(df, target, "exact", "outpaint-3x3", ising_exact_table(6, T, h), "exact", n_boot=100, seed=0)
    z = met["delta_f"] / met["f_nis_err"]
    assert (z.abs() < 4).all() and (met["ness"] > 0.02).all(), met[["T", "field", "delta_f", "f_nis_err", "ness"]]
    assert (met["f_var"] >= met["f_ref"] - 1e-12).all()  # the variational bound
