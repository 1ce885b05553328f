"""The GNN MAM (mam-gnn): masking, the lattice graph (periodic neighbours, hops per layer, the
global node), translation equivariance on the torus, normalisation by enumeration, config errors,
and size transfer (its short 3x3 training against the exact free energy: tests/test_training.py)."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
import torch
from conftest import BOX, assert_translation_equivariant

from lattherm.lattices import Lattice
from lattherm.models import build_model, model_config_from_dict, transfer_model
from lattherm.models import gnn as gnn_module
from lattherm.models.gnn import MAMGNN, GNNConfig, edge_features
from lattherm.reference.exact import enumerate_states
from lattherm.sampling import _unknown_first, log_prob, random_orders
from lattherm.schema import schema
from lattherm.systems import IsingSystem
from lattherm.systems.cuau import FCC_NN_OFFSETS

pytestmark = pytest.mark.usefixtures("float64_one_thread")

SMALL = {"hidden": 8, "layers": 2, "filter_width": 4, "n_freq": 2}


def gnn(lattice: Lattice, seed: int = 0, **kw) -> MAMGNN:
    torch.manual_seed(seed)
    return MAMGNN(lattice=lattice, n_states=2, cond_box=BOX, config=GNNConfig(**{**SMALL, **kw})).eval()


def random_inputs(B: int, N: int, seed: int, p_visible: float = 0.6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (B, N), generator=g)
    vis = torch.rand(B, N, generator=g) < p_visible
    u = torch.rand(B, 2, generator=g, dtype=torch.float64)
    cond = torch.stack([1.0 + 3.0 * u[:, 0], -1.0 + 2.0 * u[:, 1]], dim=1)
    return x, vis, cond


def hops(lattice: Lattice) -> torch.Tensor:
    """``(N, N)`` graph distances of the lattice's neighbour graph (periodic wrap), by BFS."""
    nb = lattice.neighbours()
    N = lattice.n_sites
    dist = torch.full((N, N), N, dtype=torch.long)
    for s in range(N):
        dist[s, s], frontier, d = 0, [s], 0
        while frontier:
            d += 1
            nxt = [j for i in frontier for j in nb[i].tolist() if dist[s, j] > d]
            for j in nxt:
                dist[s, j] = d
            frontier = list(dict.fromkeys(nxt))
    return dist


def test_invisible_sites_do_not_matter():
    """Logits and marginal depend on x only at the visible sites (4x4, random visible sets)."""
    model = gnn(Lattice(shape=(4, 4)))
    x, vis, cond = random_inputs(16, 16, seed=1)
    x2 = torch.where(vis, x, 1 - x)
    lg, lm = model.heads(x, vis, cond)
    lg2, lm2 = model.heads(x2, vis, cond)
    torch.testing.assert_close(lg2, lg, rtol=0, atol=1e-12)
    torch.testing.assert_close(lm2, lm, rtol=0, atol=1e-12)
    assert not torch.allclose(model.heads(torch.where(vis, 1 - x, x), vis, cond)[0], lg)


@pytest.mark.parametrize("layers", [1, 2])
def test_messages_follow_the_periodic_neighbours(layers):
    """Without the global node, flipping one visible site changes exactly the sites within
    ``layers`` hops of it on the torus (the wrapped neighbours included), and the marginal."""
    lattice = Lattice(shape=(5, 6))
    N = lattice.n_sites
    dist = hops(lattice)
    model = gnn(lattice, seed=2, layers=layers, global_node=False)
    x, _, cond = random_inputs(4, N, seed=3)
    vis = torch.ones(4, N, dtype=torch.bool)
    base, lm = model.heads(x, vis, cond)
    for site in (0, 5, 29):  # a corner, the end of the first row, the last site
        x2 = x.clone()
        x2[:, site] = 1 - x2[:, site]
        lg2, lm2 = model.heads(x2, vis, cond)
        changed = (lg2 - base).abs().amax(dim=(0, 2)) > 1e-12  # (N,)
        assert torch.equal(changed, dist[site] <= layers), site
        assert (lm2 - lm).abs().min() > 1e-12
    # the global node carries information to every site in one layer
    model = gnn(lattice, seed=2, layers=1, global_node=True)
    base = model.conditional_logits(x, vis, cond)
    x2 = x.clone()
    x2[:, 0] = 1 - x2[:, 0]
    assert ((model.conditional_logits(x2, vis, cond) - base).abs().amax(dim=(0, 2)) > 1e-12).all()


def test_edge_features():
    feats = edge_features(Lattice(shape=(3, 4)))  # offsets +e0, +e1, -e0, -e1
    torch.testing.assert_close(feats, torch.tensor([[1.0, 0, 1], [0, 1, 1], [-1, 0, 1], [0, -1, 1]],
                                                   dtype=torch.float64))  # fmt: skip
    prim = 1.9 * np.array([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]])  # FCC primitive vectors
    fcc = Lattice(shape=(2, 2, 4), basis=prim, offsets=FCC_NN_OFFSETS)
    feats = edge_features(fcc)
    assert feats.shape == (12, 4)
    torch.testing.assert_close(feats[:, 3], torch.ones(12, dtype=torch.float64))  # 12 nearest neighbours
    torch.testing.assert_close(feats[:, :3].norm(dim=1), torch.ones(12, dtype=torch.float64))
    torch.testing.assert_close(feats[:6, :3], -feats[6:, :3])  # the offsets come in pairs ±o


@pytest.mark.parametrize("global_node", [True, False])
@pytest.mark.parametrize("shape", [(3, 4), (2, 2, 3)], ids=["3x4", "2x2x3"])
def test_translation_equivariance(shape, global_node):
    """Translating x (periodic wrap) translates the logits and keeps the marginal."""
    lattice = Lattice(shape=shape)
    N = lattice.n_sites
    model = gnn(lattice, seed=1, layers=3, global_node=global_node)
    assert_translation_equivariant(model, lattice, *random_inputs(6, N, seed=4))


@pytest.mark.parametrize("global_node", [True, False])
def test_path_probabilities_are_normalised(global_node):
    """Σ_x q(x | σ) = 1 over the 2^6 states of a 2x3 box, for two random orders."""
    model = gnn(Lattice(shape=(2, 3)), seed=5, global_node=global_node)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    X = torch.cat(list(enumerate_states(6))).long()
    for seed in (0, 1):
        order = random_orders(1, 6, generator=torch.Generator().manual_seed(seed))[0]
        lp = log_prob(model, X, torch.tensor([1.7, -0.3]), order)
        assert abs(torch.logsumexp(lp, 0).item()) < 1e-10


def test_stepper_in_chunks_matches_full_passes(monkeypatch):
    """The sampler's chunks of rows (5 rows of 9 sites here) give the logits of full passes, with
    in-painted sites and rows that finish early."""
    monkeypatch.setattr(gnn_module._GNNStepper, "cpu_chunk_sites", 45)
    model = gnn(Lattice(shape=(3, 3)), seed=3, layers=3)
    x, known, cond = random_inputs(12, 9, seed=7, p_visible=0.3)
    order, n_unknown = _unknown_first(random_orders(12, 9, generator=torch.Generator().manual_seed(8)), known)
    stepper = model.any_order_stepper(x, known, cond)
    assert stepper.rows_per_pass == 5
    visible = known.clone()
    for t in range(int(n_unknown.max())):
        r = torch.nonzero(t < n_unknown)[:, 0]
        site = order[r, t]
        full = model.conditional_logits(x, visible, cond)[r, site]
        torch.testing.assert_close(stepper.logits(None if len(r) == 12 else r, site), full, rtol=1e-12, atol=1e-12)
        stepper.observe(None if len(r) == 12 else r, site, x[r, site])
        visible[r, site] = True


def test_config_errors_name_the_field():
    system = IsingSystem(L=3)
    for key, bad in (("hidden", 0), ("layers", 1.5), ("filter_width", True), ("n_freq", 0)):
        with pytest.raises(ValueError, match=f"GNNConfig.{key}"):
            MAMGNN(lattice=system.lattice, n_states=2, cond_box=BOX, config=GNNConfig(**{key: bad}))
        with pytest.raises(ValueError, match=key):
            build_model("mam-gnn", system=system, cond_box=BOX, config={key: bad})
    with pytest.raises(ValueError, match="GNNConfig.global_node"):
        MAMGNN(lattice=system.lattice, n_states=2, cond_box=BOX, config=GNNConfig(global_node=1))
    with pytest.raises(ValueError, match="global_node"):
        build_model("mam-gnn", system=system, cond_box=BOX, config={"global_node": "yes"})
    with pytest.raises(ValueError, match="is unknown"):
        model_config_from_dict("mam-gnn", {"width": 3})
    # the dataclass has exactly the schema's keys and defaults
    props = schema()["$defs"]["GNNConfig"]["properties"]
    assert [f.name for f in fields(GNNConfig)] == list(props)
    assert all(f.default == props[f.name]["default"] for f in fields(GNNConfig))


def test_size_transfer_keeps_the_weights():
    """No weight depends on the box: a 4x4 model's weights define the 6x5 model."""
    m4 = build_model("mam-gnn", system=IsingSystem(L=4), cond_box=BOX, config=SMALL).eval()
    assert m4.size_free
    system = IsingSystem(L=6)
    m6 = transfer_model(m4, system)
    ref = build_model("mam-gnn", system=system, cond_box=BOX, config=SMALL)
    ref.load_state_dict(m4.state_dict())
    x, vis, cond = random_inputs(5, 36, seed=6)
    with torch.no_grad():
        for a, b in zip(m6.heads(x, vis, cond), ref.heads(x, vis, cond), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
