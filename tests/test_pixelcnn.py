"""The periodic masked-convolution ARM (fo-pixelcnn): its taps on the torus, exact raster causality
(perturbations and the input Jacobian, non-square boxes), the incremental sampler, normalisation,
config errors and size transfer (its short training on 3x3 Ising against the exact free energy:
tests/test_training.py)."""

from __future__ import annotations

import itertools
from dataclasses import fields

import numpy as np
import pytest
import torch
from conftest import BOX

from lattherm.lattices import Lattice
from lattherm.models import build_model, model_config_from_dict, transfer_model
from lattherm.models.pixelcnn import PixelCNN, PixelCNNConfig, image_shape, periodic_taps
from lattherm.reference.exact import enumerate_states
from lattherm.sampling import log_prob, sample
from lattherm.schema import schema
from lattherm.systems import IsingSystem

pytestmark = pytest.mark.usefixtures("float64_one_thread")

SMALL = {"channels": 4, "layers": 3, "kernel": 2, "cond_width": 8, "n_freq": 2}


def pixelcnn(shape, seed=0, **cfg) -> PixelCNN:
    torch.manual_seed(seed)
    config = PixelCNNConfig(**{**SMALL, **cfg})
    return PixelCNN(lattice=Lattice(shape=shape), n_states=2, cond_box=BOX, config=config).requires_grad_(False)


def random_input(model, B, gen):
    x = torch.randint(0, 2, (B, model.n_sites), generator=gen)
    u = torch.rand(B, 2, generator=gen, dtype=torch.float64)
    return x, torch.stack([1.0 + 3.0 * u[:, 0], -1.0 + 2.0 * u[:, 1]], dim=1)


@pytest.mark.parametrize("shape, k", [((3, 5), 2), ((4, 4), 1), ((2, 3), 3)])
def test_taps_are_every_earlier_site_of_the_torus_window(shape, k):
    """Tap (dr, dc) of position (r, c) reads the torus site ((r+dr) mod L0, (c+dc) mod L1) exactly
    where it comes earlier in raster order (the centre: type B only), and nothing elsewhere."""
    L0, L1 = shape
    N = L0 * L1
    for centre in (False, True):
        taps = periodic_taps(L0, L1, k, centre=centre)
        for r, c in itertools.product(range(L0), range(L1)):
            p = r * L1 + c
            for j, (dr, dc) in enumerate(itertools.product(range(-k, k + 1), repeat=2)):
                src = ((r + dr) % L0) * L1 + (c + dc) % L1
                # reached by one wrap at most (the rows above: any number of column wraps)
                single = abs(dr) < L0 and (dr < 0 or abs(dc) < L1)
                if dr == dc == 0:
                    assert taps[p, j] == (p if centre else N)
                elif src < p and single:
                    assert taps[p, j] == src, (p, dr, dc)
                else:
                    assert taps[p, j] == N or (taps[p, j] == src and src < p), (p, dr, dc)
    # the periodic partners: left edge -> previous row's right edge, last column -> own row's first
    # site, last row -> row 0
    taps = periodic_taps(3, 5, 1, centre=False)
    tap = {(dr, dc): (dr + 1) * 3 + dc + 1 for dr, dc in itertools.product((-1, 0, 1), repeat=2)}
    assert taps[1 * 5 + 0, tap[-1, -1]] == 0 * 5 + 4
    assert taps[1 * 5 + 4, tap[0, 1]] == 1 * 5 + 0
    assert taps[2 * 5 + 2, tap[1, 0]] == 0 * 5 + 2 and taps[1 * 5 + 2, tap[1, 0]] == 15
    assert taps[0 * 5 + 0].tolist() == [15] * 9  # the first site sees nothing


def _input_jacobian(model, x, cond) -> torch.Tensor:
    """``(N, N)`` bool: [j, i] where the logits of storage site j depend on the input of site i."""
    B, N = x.shape
    inp = model.masked_onehot(x, torch.ones_like(x, dtype=torch.bool))

    def logits(z):
        orig = model.masked_onehot
        model.masked_onehot = lambda *a: z
        try:
            return model.conditional_logits(x, torch.ones_like(x, dtype=torch.bool), cond)
        finally:
            model.masked_onehot = orig

    J = torch.autograd.functional.jacobian(logits, inp)  # (B, N, q, B, N, q + 1)
    return J.abs().sum(dim=(0, 2, 3, 5)) > 0


@pytest.mark.parametrize("shape, k", [((3, 5), 2), ((4, 4), 3), ((4, 4), 1), ((2, 2, 3), 1), ((5,), 2)],
                         ids=["3x5-k2", "4x4-k3", "4x4-k1", "2x2x3-k1", "chain5-k2"])  # fmt: skip
def test_logits_depend_only_on_earlier_sites(shape, k, gen):
    """Raster causality, exactly: the logits of the site at position j of ``model.order`` do not
    change when any site at a position >= j changes (perturbations), and their input Jacobian is
    zero there; it is non-zero on exactly the receptive field the taps give (the wrap-around
    included: the last row sees row 0, the left edge the previous row's right edge)."""
    model = pixelcnn(shape, kernel=k)
    N = model.n_sites
    order = model.order
    x, cond = random_input(model, 6, gen)
    ones = torch.ones_like(x, dtype=torch.bool)
    base = model.conditional_logits(x, ones, cond)
    for j in range(N):
        x2 = x.clone()
        later = order[j:]
        x2[:, later] = torch.randint(0, 2, (6, len(later)), generator=gen)
        torch.testing.assert_close(model.conditional_logits(x2, ones, cond)[:, order[: j + 1]],
                                   base[:, order[: j + 1]], rtol=0, atol=0)  # fmt: skip
    dep = _input_jacobian(model, x, cond)[order][:, order]  # in positions
    assert not torch.triu(dep).any()
    L0, L1 = image_shape(shape)
    reach = torch.zeros(N, N + 1, dtype=torch.bool)
    reach[torch.arange(N)[:, None], periodic_taps(L0, L1, k, centre=False)] = True
    step = torch.zeros(N, N + 1, dtype=torch.bool)
    step[torch.arange(N)[:, None], periodic_taps(L0, L1, k, centre=True)] = True
    field = reach[:, :N]
    for _ in range(model.config.layers - 1):
        field = (step[:, :N].double() @ field.double()) > 0
    assert torch.equal(dep, field)
    if shape == (3, 5):
        assert dep[2 * 5 + 1, 0 * 5 + 1] and dep[1 * 5 + 0, 0 * 5 + 4] and dep[1 * 5 + 4, 1 * 5 + 0]


def test_the_first_site_depends_on_the_condition_only(gen):
    model = pixelcnn((3, 4))
    x, cond = random_input(model, 5, gen)
    first = model.conditional_logits(x, torch.zeros_like(x, dtype=torch.bool), cond)[:, 0]
    torch.testing.assert_close(model.conditional_logits(x, torch.ones_like(x, dtype=torch.bool), cond)[:, 0], first)
    assert not torch.allclose(model.conditional_logits(x, torch.ones_like(x, dtype=torch.bool), cond.flip(0))[:, 0],
                              first)  # fmt: skip


def test_storage_order_other_than_raster(gen):
    """A lattice with another site order: :attr:`order` is the raster order of its cell coordinates,
    the conditionals follow it, and sampling reports the log-probability of one pass."""
    perm = np.random.default_rng(0).permutation(12)
    coords = np.array(list(itertools.product(range(3), range(4))))[perm]
    torch.manual_seed(0)
    model = PixelCNN(lattice=Lattice(shape=(3, 4), coords_=coords), n_states=2, cond_box=BOX,
                     config=PixelCNNConfig(**SMALL)).requires_grad_(False)  # fmt: skip
    assert torch.equal(model.order, torch.from_numpy(np.argsort(perm)))
    x, lq = sample(model, torch.tensor([2.0, 0.2]), 16, order="fixed", generator=gen)
    torch.testing.assert_close(log_prob(model, x, torch.tensor([2.0, 0.2])), lq, rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape", [(2, 4), (3, 3)])
def test_exactly_normalised(shape, gen):
    """Σ_x q(x) = 1 over all states, the wrap-around taps exercised (kernel wider than the box)."""
    model = pixelcnn(shape, kernel=3)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    N = model.n_sites
    X = torch.cat(list(enumerate_states(N))).long()
    for cond in ([1.3, 0.7], [3.2, -0.4]):
        lp = log_prob(model, X, torch.tensor(cond))
        assert abs(torch.logsumexp(lp, 0).item()) < 1e-10


def test_incremental_stepper_matches_full_passes():
    """The cached sampler gives the conditionals of full passes along the raster order and the same
    draws as the generic N-pass sampler."""
    model = pixelcnn((3, 5), seed=5, layers=3, kernel=2)
    N = model.n_sites
    cond = torch.tensor([[1.3, 0.4], [3.1, -0.8], [2.2, 0.0]]).repeat_interleave(4, 0)
    x = torch.randint(0, 2, (12, N), generator=torch.Generator().manual_seed(1))
    stepper = model.fixed_order_stepper(cond)
    for t in range(N):
        visible = torch.zeros(12, N, dtype=torch.bool)
        visible[:, model.order[:t]] = True
        full = model.conditional_logits(x, visible, cond)[:, model.order[t]]
        torch.testing.assert_close(stepper.logits(t), full, rtol=1e-12, atol=1e-12)
        stepper.observe(t, x[:, model.order[t]])
    x1, lq1 = sample(model, cond, order="fixed", generator=torch.Generator().manual_seed(7))
    model.fixed_order_stepper = lambda c: None
    x2, lq2 = sample(model, cond, order="fixed", generator=torch.Generator().manual_seed(7))
    assert torch.equal(x1, x2)
    torch.testing.assert_close(lq1, lq2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lq1, log_prob(model, x1, cond), rtol=1e-12, atol=1e-12)


def test_config_errors_name_the_field():
    system = IsingSystem(L=3)
    for key, bad in (("channels", 0), ("layers", 0), ("kernel", 1.5), ("cond_width", True), ("n_freq", 0)):
        with pytest.raises(ValueError, match=f"PixelCNNConfig.{key}"):
            PixelCNN(lattice=system.lattice, n_states=2, cond_box=BOX, config=PixelCNNConfig(**{key: bad}))
        with pytest.raises(ValueError, match=key):
            build_model("fo-pixelcnn", system=system, cond_box=BOX, config={key: bad})
    with pytest.raises(ValueError, match="is unknown"):
        model_config_from_dict("fo-pixelcnn", {"half_kernel": 3})
    # the dataclass has exactly the schema's keys and defaults
    props = schema()["$defs"]["PixelCNNConfig"]["properties"]
    assert [f.name for f in fields(PixelCNNConfig)] == list(props)
    assert all(f.default == props[f.name]["default"] for f in fields(PixelCNNConfig))


def test_size_transfer_keeps_the_weights():
    """The weights do not depend on the box: a 4x4 model's weights define the 6x5 model."""
    m4 = build_model("fo-pixelcnn", system=IsingSystem(L=4), cond_box=BOX, config=SMALL).eval()
    system = IsingSystem(L=6)
    m6 = transfer_model(m4, system)
    ref = build_model("fo-pixelcnn", system=system, cond_box=BOX, config=SMALL)
    ref.load_state_dict(m4.state_dict())
    x = torch.randint(0, 2, (5, 36), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(log_prob(m6, x, torch.tensor([2.2, 0.3])),
                                   log_prob(ref, x, torch.tensor([2.2, 0.3])), rtol=0, atol=0)  # fmt: skip


def test_a_glass_instance_is_read_through_its_couplings(gen):
    """On an EA instance the model reads the couplings (per-site biases from a periodic convolution
    of the coupling map, zero at initialisation): two instances give different conditionals once it
    is trained, the raster causality and the normalisation hold, the cached sampler equals full
    passes, and a uniform system (Ising) has no coupling path."""
    from lattherm.systems import make_system

    box = ((0.5, 3.0), (0.0, 0.0))
    torch.manual_seed(0)
    m1 = build_model("fo-pixelcnn", system=make_system("ea", "3x3-s1"), cond_box=box, config=SMALL).double()
    assert m1.coupling_net is not None and build_model("fo-pixelcnn", system=IsingSystem(L=3), cond_box=box,
                                                       config=SMALL).coupling_net is None  # fmt: skip
    with torch.no_grad():
        for p in m1.coupling_net.parameters():
            p.normal_(0.0, 0.5, generator=gen)
    m2 = build_model("fo-pixelcnn", system=make_system("ea", "3x3-s2"), cond_box=box, config=SMALL).double()
    m2.load_state_dict(m1.state_dict())
    X = torch.cat(list(enumerate_states(9))).long()
    cond = torch.tensor([1.1, 0.0], dtype=torch.float64)
    lp1, lp2 = log_prob(m1, X, cond), log_prob(m2, X, cond)
    assert abs(torch.logsumexp(lp1, 0).item()) < 1e-10 and abs(torch.logsumexp(lp2, 0).item()) < 1e-10
    assert (lp1 - lp2).abs().max() > 1e-2  # same weights, other couplings: other distribution
    ones = torch.ones(4, 9, dtype=torch.bool)
    x = torch.randint(0, 2, (4, 9), generator=gen)
    c4 = cond.expand(4, 2)
    base = m1.conditional_logits(x, ones, c4)
    for j in range(9):
        x2 = x.clone()
        x2[:, m1.order[j:]] = 1 - x2[:, m1.order[j:]]
        seen = m1.order[: j + 1]
        torch.testing.assert_close(m1.conditional_logits(x2, ones, c4)[:, seen], base[:, seen], rtol=0, atol=0)
    stepper = m1.fixed_order_stepper(c4)
    for t in range(9):
        visible = torch.zeros(4, 9, dtype=torch.bool)
        visible[:, m1.order[:t]] = True
        torch.testing.assert_close(stepper.logits(t), m1.conditional_logits(x, visible, c4)[:, m1.order[t]],
                                   rtol=1e-12, atol=1e-12)  # fmt: skip
        stepper.observe(t, x[:, m1.order[t]])
