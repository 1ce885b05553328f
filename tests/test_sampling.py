"""Sampling: normalisation, sample/log_prob agreement, chi-square, in-painting, symmetrised."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import BOX, TINY
from scipy import stats

from lattherm.lattices import Lattice
from lattherm.models import _REGISTRY, MODEL_NAMES
from lattherm.reference.exact import enumerate_states
from lattherm.sampling import _unknown_first, log_prob, random_orders, sample

pytestmark = pytest.mark.usefixtures("float64_one_thread")


def tiny(name: str, lattice: Lattice, seed: int = 0, scale: float = 1.0):
    """A tiny model with random weights; ``scale`` sharpens its conditionals (output layer)."""
    torch.manual_seed(seed)
    cls, cfg_cls = _REGISTRY[name]
    extra = {}
    if cls.uses_couplings == "always":  # two-body models: random (EA-like) couplings of the box
        bonds = lattice.bonds()
        extra = {"couplings": (bonds, torch.randn(len(bonds), dtype=torch.float64))}
    model = cls(lattice=lattice, n_states=2, cond_box=BOX, config=cfg_cls(**TINY[name]), **extra)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model.requires_grad_(False)


def all_states(n: int) -> torch.Tensor:
    return torch.cat(list(enumerate_states(n))).long()


@pytest.mark.parametrize(
    "shape, order",
    [((3, 3), "permutation"), ((2, 2, 2), "fixed")],
    ids=["3x3-random-order", "2x2x2-fixed-order"],
)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_path_probabilities_are_normalised(name, shape, order, gen):
    """Σ_x exp(log q(x | order)) = 1 over all 2^N states, for random weights and (T, field)."""
    lattice = Lattice(shape=shape)
    N = lattice.n_sites
    model = tiny(name, lattice, scale=1.5)
    if order == "permutation":  # one fixed random order (FO-ARMs: their own order)
        order = model.order if model.fixed_order else torch.randperm(N, generator=gen)
    cond = torch.tensor(
        [
            1.0 + 3.0 * torch.rand(1, generator=gen).item(),
            2 * torch.rand(1, generator=gen).item() - 1,
        ]
    )
    lp = log_prob(model, all_states(N), cond, order, steps_per_pass=3)
    assert lp.dtype == torch.float64
    assert abs(torch.logsumexp(lp, 0).item()) < 1e-10


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_sample_log_q_equals_log_prob_along_the_same_order(name, gen):
    model = tiny(name, Lattice(shape=(3, 3)))
    conds = torch.tensor([[1.5, 0.0], [2.3, 0.4], [3.5, -0.7]])
    order = "fixed" if model.fixed_order else "random"
    x, log_q, used = sample(model, conds, 8, order=order, generator=gen, return_order=True)
    assert x.shape == (24, 9) and x.dtype == torch.long and log_q.shape == (24,)
    assert set(x.unique().tolist()) <= {0, 1}
    c = conds.repeat_interleave(8, dim=0)
    torch.testing.assert_close(log_prob(model, x, c, used), log_q, rtol=0, atol=1e-10)
    if model.exact_marginal:  # its family is the storage order; every other order gives the same log q
        assert torch.equal(used, torch.arange(9).expand(24, 9))
        other = random_orders(24, 9, generator=gen)
        torch.testing.assert_close(log_prob(model, x, c, other, steps_per_pass=4), log_q, rtol=0, atol=1e-10)
        everything = torch.ones(24, 9, dtype=torch.bool)
        torch.testing.assert_close(model.log_marginal(x, everything, c).double(), log_q, rtol=0, atol=1e-10)
    elif not model.fixed_order:
        assert len({tuple(o) for o in used.tolist()}) > 1  # a fresh order per sample
        torch.testing.assert_close(
            log_prob(model, x, c, used, steps_per_pass=4), log_q, rtol=0, atol=1e-10
        )
        # batch_size only splits the work: still exact
        x2, lq2, o2 = sample(model, conds, 8, generator=gen, batch_size=5, return_order=True)
        torch.testing.assert_close(log_prob(model, x2, c, o2), lq2, rtol=0, atol=1e-10)


def test_sampling_is_reproducible():
    model = tiny("mam-transformer", Lattice(shape=(3, 3)))
    draws = [
        sample(model, [2.0, 0.1], 16, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8)
    ]
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    assert not torch.equal(draws[0][0], draws[2][0])


def test_order_checks(gen):
    lattice = Lattice(shape=(2, 2))
    made = tiny("fo-arm-mlp", lattice)
    with pytest.raises(ValueError, match="fixed-order"):
        sample(made, [2.0, 0.0], 4, order="random", generator=gen)
    with pytest.raises(ValueError, match="fixed-order"):
        sample(made, [2.0, 0.0], 4, order=torch.tensor([1, 0, 2, 3]), generator=gen)
    ao = tiny("ao-arm-mlp", lattice)
    with pytest.raises(ValueError, match="permutation"):
        sample(ao, [2.0, 0.0], 4, order=torch.tensor([0, 0, 2, 3]), generator=gen)
    with pytest.raises(ValueError, match="T > 0"):
        sample(ao, [-1.0, 0.0], 4, generator=gen)


def _chi2_pvalue(x: torch.Tensor, probs: np.ndarray) -> float:
    N = x.shape[1]
    idx = (x * (1 << torch.arange(N))).sum(1).numpy()  # enumerate_states index
    counts = np.bincount(idx, minlength=1 << N)
    expected = probs * len(idx)
    rare = expected < 5  # pool cells with few expected counts into one
    if rare.any():
        counts = np.append(counts[~rare], counts[rare].sum())
        expected = np.append(expected[~rare], expected[rare].sum())
    assert np.count_nonzero(~rare) >= 8, "too few populated cells for a meaningful test"
    return float(stats.chisquare(counts, expected).pvalue)


@pytest.mark.parametrize("name", ["fo-arm-mlp", "ao-arm-mlp", "fo-pixelcnn"])
def test_fixed_order_histogram_matches_reported_probabilities(name):
    """Chi-square of 2x2 histograms against exp(log_prob) of all 16 states; Fisher over 3 seeds."""
    model = tiny(name, Lattice(shape=(2, 2)), seed=3)
    cond = torch.tensor([2.0, 0.3])
    probs = log_prob(model, all_states(4), cond, "fixed").exp().numpy()
    pvals = []
    for seed in (11, 12, 13):
        x, log_q = sample(
            model, cond, 2500, order="fixed", generator=torch.Generator().manual_seed(seed)
        )
        idx = (x * (1 << torch.arange(4))).sum(1)
        np.testing.assert_allclose(log_q.exp().numpy(), probs[idx.numpy()], rtol=1e-10)
        pvals.append(_chi2_pvalue(x, probs))
    assert stats.combine_pvalues(pvals, method="fisher").pvalue > 1e-3


def test_random_order_histogram_matches_order_average():
    """Random orders: the histogram is the average over all 24 orders of q(x | order)."""
    model = tiny("ao-arm-mlp", Lattice(shape=(2, 2)), seed=4, scale=1.5)
    cond = torch.tensor([1.7, -0.2])
    X = all_states(4)
    probs = np.mean(
        [
            log_prob(model, X, cond, torch.tensor(p)).exp().numpy()
            for p in itertools.permutations(range(4))
        ],
        0,
    )
    assert abs(probs.sum() - 1) < 1e-12
    pvals = [
        _chi2_pvalue(
            sample(model, cond, 2500, generator=torch.Generator().manual_seed(s))[0], probs
        )
        for s in (21, 22, 23)
    ]
    assert stats.combine_pvalues(pvals, method="fisher").pvalue > 1e-3


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_inpainting_keeps_known_sites_and_normalises_over_the_rest(name, gen):
    lattice = Lattice(shape=(3, 3))
    model = tiny(name, lattice, scale=1.5)
    known = torch.tensor([1, 0, 0, 1, 0, 1, 0, 0, 1], dtype=torch.bool)
    values = torch.tensor([1, 0, 0, 0, 0, 1, 0, 0, 1])
    cond = torch.tensor([2.5, 0.2])
    order = "fixed" if model.fixed_order else torch.randperm(9, generator=gen)
    # all completions of the 5 unknown sites
    rest = all_states(5)
    X = values.repeat(len(rest), 1)
    X[:, ~known] = rest
    lp = log_prob(model, X, cond, order, known_mask=known)
    assert abs(torch.logsumexp(lp, 0).item()) < 1e-10
    x, log_q, used = sample(
        model,
        cond,
        20,
        order=order,
        generator=gen,
        known_mask=known,
        known_values=values,
        return_order=True,
    )
    assert torch.equal(x[:, known], values[known].expand(20, -1))
    torch.testing.assert_close(
        log_prob(model, x, cond, used, known_mask=known), log_q, rtol=0, atol=1e-10
    )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_symmetrised_distribution_is_normalised_and_sampled_exactly(name, gen):
    model = tiny(name, Lattice(shape=(2, 3)), scale=1.5)
    cond = torch.tensor([1.8, 0.4])
    order = "fixed" if model.fixed_order else torch.randperm(6, generator=gen)
    X = all_states(6)
    lp = log_prob(model, X, cond, order, symmetrised=True)
    assert abs(torch.logsumexp(lp, 0).item()) < 1e-10
    # invariant under flip + field reversal
    torch.testing.assert_close(
        log_prob(model, 1 - X, -cond * torch.tensor([-1.0, 1.0]), order, symmetrised=True), lp
    )
    x, log_q, used = sample(
        model, cond, 32, order=order, generator=gen, symmetrised=True, return_order=True
    )
    torch.testing.assert_close(
        log_prob(model, x, cond, used, symmetrised=True), log_q, rtol=0, atol=1e-10
    )
    if not model.fixed_order:  # per-sample random orders too
        x, log_q, used = sample(model, cond, 32, generator=gen, symmetrised=True, return_order=True)
        torch.testing.assert_close(
            log_prob(model, x, cond, used, symmetrised=True), log_q, rtol=0, atol=1e-10
        )


@pytest.mark.parametrize("name", ["ao-arm-mlp", "mam-mlp", "mam-transformer", "mam-gnn"])
def test_order_mixture_is_normalised(name, gen):
    """q_M(x) = (1/M) Σ_m q(x | σ_m) sums to 1 over all states for fixed orders, also symmetrised."""
    model = tiny(name, Lattice(shape=(2, 3)), scale=1.5)
    X = all_states(6)
    orders = torch.stack([torch.randperm(6, generator=gen) for _ in range(3)]).expand(len(X), 3, 6)
    cond = torch.tensor([1.8, 0.4])
    for sym in (False, True):
        lp = log_prob(model, X, cond, orders, symmetrised=sym)
        assert abs(torch.logsumexp(lp, 0).item()) < 1e-10
    # M = 1 is the plain path probability
    torch.testing.assert_close(log_prob(model, X, cond, orders[:, :1]), log_prob(model, X, cond, orders[:, 0]))


@pytest.mark.parametrize("symmetrised", [False, True], ids=["plain", "symmetrised"])
def test_order_mixture_sampler_reports_the_density_it_draws_from(symmetrised):
    """Draws with M = 3 fresh orders each: their histogram is the order average (as for one random
    order), log_q is the mixture's, and E[1 / q_M(x)] = 2^N (importance weights of the uniform
    distribution): a draw paired with the wrong component's density would bias it."""
    model = tiny("ao-arm-mlp", Lattice(shape=(2, 2)), seed=4, scale=1.5)
    cond = torch.tensor([1.7, -0.2])
    X = all_states(4)
    avg = [log_prob(model, X, cond, torch.tensor(p), symmetrised=symmetrised).exp().numpy()
           for p in itertools.permutations(range(4))]  # fmt: skip
    probs = np.mean(avg, 0)
    pvals, inv = [], []
    for s in (31, 32, 33):
        x, log_q, orders = sample(model, cond, 4000, generator=torch.Generator().manual_seed(s), n_orders=3,
                                  symmetrised=symmetrised, return_order=True)  # fmt: skip
        assert orders.shape == (4000, 3, 4)
        torch.testing.assert_close(log_prob(model, x, cond, orders, symmetrised=symmetrised), log_q,
                                   rtol=0, atol=1e-10)  # fmt: skip
        pvals.append(_chi2_pvalue(x, probs))
        inv.append(torch.exp(-log_q))
    assert stats.combine_pvalues(pvals, method="fisher").pvalue > 1e-3
    inv = torch.cat(inv)
    assert abs(inv.mean().item() - 16) < 4 * inv.std().item() / math.sqrt(len(inv))


def test_order_mixture_checks(gen):
    lattice = Lattice(shape=(2, 2))
    with pytest.raises(ValueError, match="fixed-order"):
        sample(tiny("fo-arm-mlp", lattice), [2.0, 0.0], 4, order="fixed", n_orders=2, generator=gen)
    ao = tiny("ao-arm-mlp", lattice)
    with pytest.raises(ValueError, match="order='random'"):
        sample(ao, [2.0, 0.0], 4, order=torch.arange(4), n_orders=2, generator=gen)
    with pytest.raises(ValueError, match="positive integer"):
        sample(ao, [2.0, 0.0], 4, n_orders=0, generator=gen)


def test_symmetrised_sampling_covers_both_sectors():
    """At a strong field the plain sampler is one-sided; the symmetrised one has both signs."""
    model = tiny("ao-arm-mlp", Lattice(shape=(3, 3)), seed=5)
    with torch.no_grad():  # bias every conditional towards x = 1 at h > 0
        model.head.bias.view(9, 2)[:, 1] += 4.0
    x, _ = sample(
        model, [2.0, 0.8], 200, generator=torch.Generator().manual_seed(0), symmetrised=True
    )
    m = (2 * x - 1).sum(1).double()
    frac_up = (m > 0).double().mean().item()
    assert 0.35 < frac_up < 0.65


def test_random_orders_are_permutations(gen):
    o = random_orders(50, 7, generator=gen)
    assert torch.equal(o.sort(1).values, torch.arange(7).expand(50, 7))
    assert math.isclose(o[:, 0].double().mean().item(), 3.0, abs_tol=1.0)


@pytest.mark.parametrize("name", ["fo-arm-mlp", "mam-transformer", "fo-pixelcnn"])
def test_log_prob_is_differentiable(name, gen):
    """REINFORCE needs ∇ log q: log_prob keeps the graph (sample() does not)."""
    model = tiny(name, Lattice(shape=(2, 3))).requires_grad_(True)
    x, log_q, order = sample(
        model,
        [[2.0, 0.2]],
        6,
        generator=gen,
        return_order=True,
        order="fixed" if model.fixed_order else "random",
    )
    assert not log_q.requires_grad
    lp = log_prob(model, x, torch.tensor([[2.0, 0.2]]), order, steps_per_pass=2)
    torch.testing.assert_close(lp.detach(), log_q, rtol=0, atol=1e-10)
    lp.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_made_incremental_stepper_matches_full_passes():
    """The MADE's incremental sampler gives the conditionals of full passes and the same draws."""
    lattice = Lattice(shape=(3, 3))
    torch.manual_seed(5)
    cls, cfg_cls = _REGISTRY["fo-arm-mlp"]
    model = cls(lattice=lattice, n_states=2, cond_box=BOX, config=cfg_cls(**{**TINY["fo-arm-mlp"], "n_hidden": 2}))
    model.requires_grad_(False)
    cond = torch.tensor([[1.3, 0.4], [3.1, -0.8], [2.2, 0.0]]).repeat_interleave(4, 0)
    x = torch.randint(0, 2, (12, 9), generator=torch.Generator().manual_seed(1))
    stepper = model.fixed_order_stepper(cond)
    for t in range(9):
        visible = (torch.arange(9) < t).expand(12, 9)
        full = model.conditional_logits(x, visible, cond)[:, t]
        torch.testing.assert_close(stepper.logits(t), full, rtol=1e-12, atol=1e-12)
        stepper.observe(t, x[:, t])
    # the same generator stream gives the same draws as the generic N-pass sampler
    x1, lq1 = sample(model, cond, order="fixed", generator=torch.Generator().manual_seed(7))
    orig = model.fixed_order_stepper
    model.fixed_order_stepper = lambda c: None
    try:
        x2, lq2 = sample(model, cond, order="fixed", generator=torch.Generator().manual_seed(7))
    finally:
        model.fixed_order_stepper = orig
    assert torch.equal(x1, x2)
    torch.testing.assert_close(lq1, lq2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lq1, log_prob(model, x1, cond), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["ao-arm-mlp", "mam-mlp", "mam-transformer", "mam-gnn"])
def test_any_order_stepper_matches_full_passes(name):
    """The any-order models' incremental samplers (masked-input MLPs: incremental first layer;
    Transformer and GNN: last block / layer and head for the generated site only) give the
    conditionals of full passes along any order, with in-painted sites and rows that finish early,
    and the same draws as N full passes."""
    lattice = Lattice(shape=(3, 3))
    model = tiny(name, lattice, seed=3, scale=1.5)
    g = torch.Generator().manual_seed(2)
    cond = torch.tensor([[1.3, 0.4], [3.1, -0.8], [2.2, 0.0]]).repeat_interleave(4, 0)
    x = torch.randint(0, 2, (12, 9), generator=g)
    known = torch.rand(12, 9, generator=g) < 0.3
    order, n_unknown = _unknown_first(random_orders(12, 9, generator=g), known)
    stepper = model.any_order_stepper(x, known, cond)
    visible = known.clone()
    for t in range(9):
        r = torch.nonzero(t < n_unknown)[:, 0]  # rows with unknown sites left
        rows = None if len(r) == 12 else r
        site = order[r, t]
        full = model.conditional_logits(x, visible, cond)[r, site]
        torch.testing.assert_close(stepper.logits(rows, site), full, rtol=1e-12, atol=1e-12)
        stepper.observe(rows, site, x[r, site])
        visible[r, site] = True

    def both(**kw):
        out1 = sample(model, cond, generator=torch.Generator().manual_seed(7), return_order=True, **kw)
        orig = model.any_order_stepper
        model.any_order_stepper = lambda *a: None
        try:
            out2 = sample(model, cond, generator=torch.Generator().manual_seed(7), return_order=True, **kw)
        finally:
            model.any_order_stepper = orig
        assert torch.equal(out1[0], out2[0]) and torch.equal(out1[2], out2[2])
        torch.testing.assert_close(out1[1], out2[1], rtol=1e-12, atol=1e-12)
        return out1

    x1, lq1, o1 = both()
    torch.testing.assert_close(lq1, log_prob(model, x1, cond, o1), rtol=1e-12, atol=1e-12)
    xk, lqk, ok = both(known_mask=known, known_values=x)  # rows with different numbers of unknowns
    assert torch.equal(xk[known], x[known])
    torch.testing.assert_close(lqk, log_prob(model, xk, cond, ok, known_mask=known), rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # the teacher-forced incremental path of log_prob equals N full passes
        torch.testing.assert_close(
            log_prob(model, xk, cond, ok, known_mask=known), lqk, rtol=1e-12, atol=1e-12
        )


def test_unique_rows_packs_exactly():
    """The Transformer stepper's row deduplication (packed 62-bit words, 1-D unique) finds exactly
    the distinct rows of ``unique(dim=0)``, for short and long rows and wide values."""
    from lattherm.models.transformer import _unique_rows

    g = torch.Generator().manual_seed(0)
    for b, k, hi in [(1, 3, 1), (1000, 66, 3), (5000, 18, 3), (777, 130, 2), (300, 5, 1000)]:
        key = torch.randint(0, hi, (b, k), generator=g)
        key = key[torch.randint(0, b, (b,), generator=g)]  # with repeated rows
        uniq, first, inverse = _unique_rows(key)
        assert len(uniq) == len(torch.unique(key, dim=0)) == len(torch.unique(uniq, dim=0))
        assert torch.equal(uniq[inverse], key) and torch.equal(key[first], uniq)


def test_transformer_stepper_shares_prefixes_exactly(monkeypatch):
    """One order for many rows (order="fixed"): the Transformer stepper evaluates each distinct
    (condition, prefix, site) once (here at most 2^t of 300 rows per condition at step t), in
    chunks, and gives every row the logits of its own full pass; sampling and the teacher-forced log_prob
    agree with N full passes, in-painted rows and rows that finish early included."""
    from lattherm.models import transformer

    model = tiny("mam-transformer", Lattice(shape=(3, 3)), seed=4, scale=1.5)
    cond = torch.tensor([[1.3, 0.4], [3.1, -0.8]]).repeat_interleave(300, 0)  # (600, 2)
    calls = []
    orig_unique = transformer._unique_rows

    def counting(key):
        out = orig_unique(key)
        calls.append((len(key), len(out[0])))
        return out

    monkeypatch.setattr(transformer, "_unique_rows", counting)
    monkeypatch.setattr(transformer._TransformerStepper, "chunk", 50)  # evaluated in chunks, shared or not
    x, lq = sample(model, cond, order="fixed", generator=torch.Generator().manual_seed(5))
    monkeypatch.undo()
    assert [b for b, _ in calls] == [600] * 9
    assert [u for _, u in calls][:4] == [2, 4, 8, 16]  # 2 conditions x 2^t prefixes: all shared
    full = log_prob(model, x, cond, "fixed", steps_per_pass=9)  # full passes (grad on: no stepper)
    torch.testing.assert_close(lq, full, rtol=1e-12, atol=1e-12)
    g = torch.Generator().manual_seed(8)
    known = torch.rand(600, 9, generator=g) < 0.3  # different unknown counts per row
    xk, lqk = sample(model, cond, order="fixed", known_mask=known, known_values=x, generator=g)
    assert torch.equal(xk[known], x[known])
    torch.testing.assert_close(lqk, log_prob(model, xk, cond, "fixed", known_mask=known), rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # teacher-forced stepper path
        torch.testing.assert_close(log_prob(model, xk, cond, "fixed", known_mask=known), lqk, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["ao-arm-mlp", "mam-mlp"])
def test_any_order_mlp_one_pass_path_matches_step_by_step_passes(name):
    """The masked-input MLPs' one-pass path log-probability (cumulative first layer) equals one
    pass per step, values and gradients, with in-painted sites and rows that finish early."""
    model = tiny(name, Lattice(shape=(3, 3)), seed=6, scale=1.5).requires_grad_(True)
    g = torch.Generator().manual_seed(3)
    cond = torch.tensor([[1.3, 0.4], [3.1, -0.8]]).repeat_interleave(5, 0)
    x = torch.randint(0, 2, (10, 9), generator=g)
    known = torch.rand(10, 9, generator=g) < 0.3
    order = random_orders(10, 9, generator=g)

    def value_and_grads(one_pass: bool):
        model.zero_grad()
        orig = model.any_order_path_logits
        if not one_pass:
            model.any_order_path_logits = lambda *a: None
        try:
            lp = log_prob(model, x, cond, order, known_mask=known, steps_per_pass=4)
        finally:
            model.any_order_path_logits = orig
        (lp * torch.linspace(0.5, 1.5, 10)).sum().backward()
        return lp.detach(), [None if p.grad is None else p.grad.clone() for p in model.parameters()]

    lp1, g1 = value_and_grads(True)
    lp2, g2 = value_and_grads(False)
    torch.testing.assert_close(lp1, lp2, rtol=1e-12, atol=1e-12)
    assert [a is None for a in g1] == [b is None for b in g2] and any(a is not None for a in g1)
    for a, b in zip(g1, g2, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert (lp1 < 0).all()


def test_a_model_order_family_is_what_random_means(gen):
    """``order="random"`` draws from a model's own order family (``model.draw_orders``) in
    ``sample`` and in the order mixture; explicit orders and ``"fixed"`` are unaffected."""
    model = tiny("ao-arm-mlp", Lattice(shape=(3, 3)), seed=2)
    fam = torch.stack([torch.arange(9), torch.arange(9).flip(0)])  # the model's two orders

    def draw_orders(n, *, generator=None, device=None):
        return fam[torch.randint(0, 2, (n,), generator=generator, device=device)]

    model.draw_orders = draw_orders
    cond = torch.tensor([2.0, 0.1])
    x, lq, used = sample(model, cond, 20, generator=gen, return_order=True)
    assert {tuple(o) for o in used.tolist()} == {tuple(o) for o in fam.tolist()}
    torch.testing.assert_close(log_prob(model, x, cond, used), lq, rtol=0, atol=1e-10)
    x, lq, used = sample(model, cond, 20, generator=gen, return_order=True, n_orders=3)
    assert used.shape == (20, 3, 9)
    assert {tuple(o) for o in used.reshape(-1, 9).tolist()} <= {tuple(o) for o in fam.tolist()}
    torch.testing.assert_close(log_prob(model, x, cond, used), lq, rtol=0, atol=1e-10)
    _, _, fixed = sample(model, cond, 4, order="fixed", generator=gen, return_order=True)
    assert torch.equal(fixed, torch.arange(9).expand(4, 9))


def test_one_pass_models_skip_the_stepper_in_log_prob(gen):
    """A model with ``one_pass_log_prob`` gets its path log-probability from
    ``any_order_path_logits`` also without gradients (its stepper is for sampling only)."""
    model = tiny("ao-arm-mlp", Lattice(shape=(3, 3)), seed=3, scale=1.5)
    cond = torch.tensor([2.5, -0.3])
    x, lq, used = sample(model, cond, 12, generator=gen, return_order=True)

    def no_stepper(*a):
        raise AssertionError("log_prob used the stepper")

    model.one_pass_log_prob = True
    model.any_order_stepper = no_stepper
    with torch.no_grad():
        torch.testing.assert_close(log_prob(model, x, cond, used), lq, rtol=0, atol=1e-10)
