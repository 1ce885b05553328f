"""The tensor-train MAM (``mam-tt``): its marginal of any visible set is the exact sum of its
distribution over the other sites, its conditionals are ratios of those marginals, so the path
probability along every order equals the marginal (enumeration on 3x3, float64)."""

from __future__ import annotations

import pytest
import torch
from conftest import BOX

from lattherm.models import build_model
from lattherm.reference.exact import enumerate_states
from lattherm.sampling import log_prob, random_orders, sample
from lattherm.systems import IsingSystem

pytestmark = pytest.mark.usefixtures("float64_one_thread")

SETTINGS = {"bond_dim": 4, "n_freq": 2, "init_scale": 0.8}


@pytest.fixture
def model():
    torch.manual_seed(3)
    return build_model("mam-tt", system=IsingSystem(L=3), cond_box=BOX, config=SETTINGS).requires_grad_(False)


def test_marginals_and_conditionals_are_the_enumerated_sums(model):
    gen = torch.Generator().manual_seed(0)
    states = torch.cat(list(enumerate_states(9))).long()  # (512, 9)
    cond = torch.tensor([2.4, 0.3], dtype=torch.float64)
    everything = torch.ones(9, dtype=torch.bool)
    log_q = model.log_marginal(states, everything, cond)
    assert abs(torch.logsumexp(log_q, 0).item()) < 1e-12  # normalised
    for _ in range(20):
        x = states[torch.randint(0, 512, (1,), generator=gen)]  # (1, 9)
        visible = torch.rand(9, generator=gen) < 0.5
        agree = (states == x)[:, visible].all(1)
        expected = torch.logsumexp(log_q[agree], 0)
        assert abs(model.log_marginal(x, visible, cond).item() - expected.item()) < 1e-12
        logits = model.conditional_logits(x, visible, cond)[0]  # (9, 2)
        for j in torch.nonzero(~visible)[:, 0].tolist():
            with_j = [torch.logsumexp(log_q[agree & (states[:, j] == a)], 0) for a in (0, 1)]
            ratio = (with_j[1] - with_j[0]).item()
            assert abs((logits[j, 1] - logits[j, 0]).item() - ratio) < 1e-10


def test_every_order_gives_the_marginal(model):
    """The MAM-consistency measure of bench_mam_diagnosis, sd(log q(x|σ) − log q(x)), is zero."""
    gen = torch.Generator().manual_seed(1)
    conds = torch.tensor([[1.5, 0.0], [3.5, -0.7]], dtype=torch.float64)
    x, log_q = sample(model, conds, 50, generator=gen)
    c = conds.repeat_interleave(50, 0)
    for _ in range(3):  # the path of conditionals, step by step, and log_prob's shortcut (the marginal)
        order = random_orders(100, 9, generator=gen)
        path = log_prob(model, x, c, order, steps_per_pass=3, stepwise=True)
        torch.testing.assert_close(path, log_q, rtol=0, atol=1e-10)
        torch.testing.assert_close(log_prob(model, x, c, order), log_q, rtol=0, atol=1e-10)
    # in-painting: the path over the unknown sites is the ratio of two marginals
    known = torch.rand(100, 9, generator=gen) < 0.4
    x2, lq2 = sample(model, c, None, known_mask=known, known_values=x, generator=gen)
    assert torch.equal(x2[known], x[known])
    torch.testing.assert_close(log_prob(model, x2, c, "random", known_mask=known), lq2, rtol=0, atol=1e-10)


def test_rows_in_any_arrangement(model):
    """Rows grouped by condition in equal blocks and rows in any other arrangement: the same numbers."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randint(0, 2, (12, 9), generator=gen)
    visible = torch.rand(12, 9, generator=gen) < 0.6
    cond = torch.tensor([[2.0, 0.1], [3.0, -0.2], [2.5, 0.4]], dtype=torch.float64).repeat_interleave(4, 0)
    logits, lm = model.heads(x, visible, cond)
    perm = torch.randperm(12, generator=gen)
    logits_p, lm_p = model.heads(x[perm], visible[perm], cond[perm])
    torch.testing.assert_close(logits_p, logits[perm], rtol=0, atol=1e-12)
    torch.testing.assert_close(lm_p, lm[perm], rtol=0, atol=1e-12)


def test_bad_settings():
    with pytest.raises(ValueError, match="bond_dim"):
        build_model("mam-tt", system=IsingSystem(L=3), cond_box=BOX, config={"bond_dim": 0})
    with pytest.raises(ValueError, match="init_scale"):
        build_model("mam-tt", system=IsingSystem(L=3), cond_box=BOX, config={"init_scale": -1.0})
