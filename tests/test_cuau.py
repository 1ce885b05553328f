"""CuAu cluster expansion: torch energies against CLEASE, exact float32 path, flips, site order,
ordered ground states and the hull, exact 2x2x4 thermodynamics (published check values)."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import torch

from lattherm.reference.cuau_exact import (
    _levels,
    cuau_exact_composition_table,
    cuau_exact_table,
)
from lattherm.reference.dos import thermo_from_dos
from lattherm.reference.phase_diagram import lower_hull
from lattherm.systems import System, make_system
from lattherm.systems.cuau import (
    K_B_EV,
    LATTICE_A,
    CuAuSystem,
    clease_settings,
    load_published_eci,
    order_parameters,
    order_phase,
    ordered_state,
    sublattices,
)

SIZES = ("2x2x4", "4x4x4", "4x4x8")
MEV = 1e-3


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Many small ops per batch: on a shared 2-core machine intra-op threads only contend."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def systems() -> dict[str, CuAuSystem]:
    return {size: CuAuSystem(size) for size in SIZES}


def random_states(n_sites: int, n: int, seed: int) -> torch.Tensor:
    """Random states with compositions spread over [0, 1] (pure ends included)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, 1, generator=g)
    p[0], p[1] = 0.0, 1.0
    return (torch.rand(n, n_sites, generator=g) < p).to(torch.uint8)


@pytest.mark.parametrize("size", SIZES)
def test_energy_matches_clease_calculator(systems, size, tmp_path):
    from clease.calculator import Clease

    system = systems[size]
    settings = clease_settings(tuple(int(v) for v in size.split("x")), str(tmp_path / "clease.db"))
    atoms = settings.atoms.copy()
    assert np.allclose(atoms.positions, system.atoms.positions)
    atoms.calc = Clease(settings, eci=load_published_eci())
    x = random_states(system.n_sites, 20, seed=SIZES.index(size))
    e_clease, cf_clease = [], []
    for xi in x.tolist():
        atoms.symbols = ["Au" if v else "Cu" for v in xi]
        e_clease.append(atoms.get_potential_energy())
        cf = atoms.calc.get_cf()
        cf_clease.append([cf[name] for name in system.cf_names])
    e = system.energy(x).numpy()
    assert e.dtype == np.float64
    np.testing.assert_allclose(e, e_clease, rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        system.correlation_functions(x).numpy(), cf_clease, rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("size", SIZES)
def test_float32_path_is_exact(systems, size):
    """Integer cluster counts are exact in float32: energies equal the float64 path bit for bit."""
    x = random_states(systems[size].n_sites, 64, seed=7)
    e64 = systems[size].energy(x)
    e32 = CuAuSystem(size, dtype=torch.float32).energy(x)
    assert e32.dtype == torch.float64
    assert torch.equal(e32, e64)
    counts = systems[size].cluster_counts(x)
    assert torch.equal(counts, counts.round())


@pytest.mark.parametrize("size", SIZES)
def test_delta_energy_equals_energy_difference(systems, size):
    system = systems[size]
    x = random_states(system.n_sites, 64, seed=3)
    g = torch.Generator().manual_seed(4)
    sites = torch.randint(0, system.n_sites, (64,), generator=g)
    flipped = x.clone()
    flipped[torch.arange(64), sites] ^= 1
    expected = system.energy(flipped) - system.energy(x)
    torch.testing.assert_close(system.delta_energy(x, sites), expected, rtol=0, atol=1e-12)


def test_spin_convention_and_protocol(systems):
    system = systems["2x2x4"]
    assert isinstance(system, System) and system.name == "cuau" and system.n_states == 2
    assert system.k_B == K_B_EV
    x = torch.tensor([[1] * 16, [0] * 16], dtype=torch.uint8)  # all Au, all Cu
    cf = system.correlation_functions(x)
    i1 = system.cf_names.index("c1_0")
    assert cf[0, i1] == 1.0 and cf[1, i1] == -1.0  # CLEASE's singlet: Au = +1
    torch.testing.assert_close(system.spin_sum(x), torch.tensor([16.0, -16.0], dtype=torch.float64))
    assert isinstance(make_system("cuau", "2x2x4"), CuAuSystem)
    with pytest.raises(ValueError, match="not CLEASE cf names"):
        CuAuSystem("2x2x4", eci={"c2_d9999_0_00": 1.0})
    with pytest.raises(ValueError, match="n1xn2xn3"):
        CuAuSystem("4x4")


@pytest.mark.parametrize("size", ("2x2x4", "4x4x4"))
def test_site_order_is_clease_template(systems, size):
    """Positions equal the published supercells; cell coordinates and FCC neighbours are right."""
    from ase.geometry import find_mic
    from ase.io import read

    system = systems[size]
    path = resources.files("lattherm").joinpath("data", "cuau", f"cuau_fcc_{size}_supercell.vasp")
    with resources.as_file(path) as p:
        ref = read(p, format="vasp")
    np.testing.assert_allclose(system.atoms.positions, ref.positions, atol=1e-8)
    np.testing.assert_allclose(np.asarray(system.atoms.cell), np.asarray(ref.cell), atol=1e-8)
    lat = system.lattice
    assert lat.shape == tuple(int(v) for v in size.split("x")) == system.periods
    # positions are the cell coordinates times the primitive vectors, modulo the supercell
    d = system.atoms.positions - lat.coords @ system.prim_cell
    frac = d @ np.linalg.inv(np.asarray(system.atoms.cell))
    np.testing.assert_allclose(frac, np.rint(frac), atol=1e-8)
    # every lattice neighbour sits at the FCC nearest-neighbour distance a / sqrt(2)
    nb = lat.neighbours().numpy()  # (N, 12)
    pos = system.atoms.positions
    _, dist = find_mic(
        pos[nb.ravel()] - np.repeat(pos, 12, axis=0), cell=system.atoms.cell, pbc=True
    )
    np.testing.assert_allclose(dist, LATTICE_A / np.sqrt(2), atol=1e-8)


def test_pure_ends_and_ordered_structures(systems):
    """Published check values (meV/site), on every cell: they all admit L1_2 and L1_0."""
    expected = {
        "L1_2-Cu3Au": (0.25, -34.167),
        "L1_0-CuAu": (0.5, -36.183),
        "L1_2-CuAu3": (0.75, -18.754),
    }
    for system in systems.values():
        ref = system.pure_energies()
        assert ref.cu / MEV == pytest.approx(2.620, abs=1e-3)
        assert ref.au / MEV == pytest.approx(-2.708, abs=1e-3)
        for phase, (x_au, e_form) in expected.items():
            x = ordered_state(system, phase)
            assert x.double().mean().item() == x_au
            assert system.formation_energy(x[None]).item() / MEV == pytest.approx(e_form, abs=1e-3)
        for axis in range(3):  # L1_0 along any cubic axis is the same structure
            x = ordered_state(system, "L1_0-CuAu", axis=axis)
            assert system.formation_energy(x[None]).item() / MEV == pytest.approx(-36.183, abs=1e-3)


def test_ordered_state_rejects_incommensurate_cell():
    system = CuAuSystem("2x2x3")  # third vector (1.5 a, 1.5 a, 0): no L1_2, L1_0 only along z
    with pytest.raises(ValueError, match="does not admit"):
        ordered_state(system, "L1_2-Cu3Au")
    with pytest.raises(ValueError, match="does not admit"):
        ordered_state(system, "L1_0-CuAu", axis=0)
    assert ordered_state(system, "L1_0-CuAu", axis=2).double().mean().item() == 0.5


def test_order_parameters_name_every_ordered_variant(systems):
    """On every cell: the four sublattices hold a quarter of the sites each; every translation of
    L1_2 Cu3Au (Au on any sublattice) and CuAu3 and L1_0 along every axis is named by its order
    parameters (|η| = ½ each, or one |η| = 1), the pure metals and random 4x4x8 states are
    disordered; a cell without whole conventional cubes is refused."""
    names = ("disordered", "Cu3Au", "CuAu", "CuAu3")
    for system in systems.values():
        sub = sublattices(system)
        assert np.bincount(sub).tolist() == [system.n_sites // 4] * 4
        coords, shape = system.lattice.coords, np.asarray(system.lattice.shape)
        index = {tuple(c): i for i, c in enumerate(coords)}
        for phase, want in (("L1_2-Cu3Au", "Cu3Au"), ("L1_2-CuAu3", "CuAu3"), ("L1_0-CuAu", "CuAu")):
            x = ordered_state(system, phase).numpy()
            for step in np.eye(3, dtype=np.int64):  # a primitive translation moves the order to another sublattice
                moved = np.empty_like(x)
                moved[[index[tuple((c + step) % shape)] for c in coords]] = x
                for y in (x, moved):
                    eta = order_parameters(system, y)
                    assert names[order_phase(eta)] == want, (system.size, phase, eta)
                    assert np.allclose(np.sort(np.abs(eta)), [0, 0, 1] if want == "CuAu" else [0.5] * 3)
        for axis in range(3):
            eta = order_parameters(system, ordered_state(system, "L1_0-CuAu", axis=axis).numpy())
            assert np.abs(eta).argmax() == axis and names[order_phase(eta)] == "CuAu"
        pure = np.stack([np.zeros(system.n_sites, np.uint8), np.ones(system.n_sites, np.uint8)])
        assert (order_phase(order_parameters(system, pure)) == 0).all()
    big = systems["4x4x8"]
    x = np.random.default_rng(0).random((500, big.n_sites)) < 0.5
    assert (order_phase(order_parameters(big, x)) == 0).all()
    with pytest.raises(ValueError, match="no whole conventional cubes"):
        sublattices(CuAuSystem("2x2x3"))


def test_convex_hull_of_all_2x2x4_states():
    system, (E, M, _) = _levels("2x2x4", None)
    n = system.n_sites
    ref = system.pure_energies()
    n_au = np.rint((M + n) / 2).astype(int)
    e_form = E / n - (n_au / n) * ref.au - (1 - n_au / n) * ref.cu
    best = np.array([e_form[n_au == k].min() for k in range(n + 1)])
    xs = np.arange(n + 1) / n
    hull = lower_hull(xs, best)  # tested on hand-made curves in tests/test_phase_diagram.py
    assert xs[hull].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    np.testing.assert_allclose(best[hull] / MEV, [0.0, -34.167, -36.183, -18.754, 0.0], atol=1e-3)


def test_exact_2x2x4_published_free_energy():
    df = cuau_exact_table("2x2x4", 600.0, 0.0)
    row = df.iloc[0]
    assert list(df.columns) == [
        "system",
        "size",
        "T",
        "field",
        "f",
        "u",
        "c",
        "m",
        "x_au",
        "phi_form",
        "method",
    ]
    assert (row.system, row["size"], row.method) == ("cuau", "2x2x4", "enumeration")
    assert abs(row.f - (-0.0436415345)) < 1e-10
    assert row.x_au == pytest.approx(0.454, abs=5e-4)
    ref = CuAuSystem("2x2x4").pure_energies()
    assert row.phi_form == pytest.approx(
        row.f - row.x_au * ref.au - (1 - row.x_au) * ref.cu, abs=1e-15
    )
    # a semi-grand potential: +μ in the pure-Cu limit, −μ in the pure-Au limit (exact as T → 0)
    ends = cuau_exact_table("2x2x4", np.array([200.0, 200.0]), np.array([-0.5, 0.5]))
    np.testing.assert_allclose(ends["x_au"], [0.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(ends["phi_form"], [-0.5, -0.5], atol=1e-9)


def test_exact_table_matches_brute_force_sum():
    """The level grouping loses nothing: thermo from all 2^16 states one by one agrees."""
    system, _ = _levels("2x2x4", None)
    n = system.n_sites
    idx = torch.arange(2**n)
    x = ((idx[:, None] >> torch.arange(n)) & 1).to(torch.uint8)
    T, mu = np.array([300.0, 600.0, 1500.0]), np.array([-0.02, 0.0, 0.01])
    th = thermo_from_dos(
        system.energy(x).numpy(),
        np.zeros(2**n),
        T,
        mu,
        system.spin_sum(x).numpy(),
        n_sites=n,
        k_B=K_B_EV,
    )
    df = cuau_exact_table("2x2x4", T, mu)
    for col in ("f", "u", "c", "m"):
        np.testing.assert_allclose(df[col].to_numpy(), th[col], rtol=1e-12, atol=1e-14)


def test_composition_free_energies_consistent_with_semigrand():
    T = np.array([300.0, 600.0, 1200.0])
    mu = np.array([-0.03, 0.0, 0.02])
    comp = cuau_exact_composition_table("2x2x4", T)
    assert list(comp.columns) == ["system", "size", "T", "n_au", "x_au", "f_x", "f_x_formation"]
    system = CuAuSystem("2x2x4")
    n, ref = system.n_sites, system.pure_energies()
    for t in T:
        c = comp[comp["T"] == t].sort_values("n_au")
        beta = 1.0 / (K_B_EV * t)
        log_zn = -beta * n * c.f_x.to_numpy()
        k = c.n_au.to_numpy()
        # pure ends are single states: f_x = E/N, zero formation free energy
        assert c.f_x.iloc[0] == pytest.approx(ref.cu, abs=1e-15)
        assert abs(c.f_x_formation.iloc[0]) < 1e-15 and abs(c.f_x_formation.iloc[-1]) < 1e-15
        for m_ in mu:
            terms = log_zn + beta * m_ * (2 * k - n)
            log_z_comp = terms.max() + np.log(np.exp(terms - terms.max()).sum())
            f = cuau_exact_table("2x2x4", t, m_).f.iloc[0]
            assert abs(log_z_comp - (-beta * n * f)) < 1e-12
