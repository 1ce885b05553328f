import numpy as np
import pytest
import torch

from lattherm.lattices import Lattice, hypercubic_lattice, square_lattice


def test_square_lattice_row_major_coords_and_neighbours():
    lat = square_lattice(4)
    assert lat.n_sites == 16 and lat.periods == (4, 4) and lat.dim == 2
    np.testing.assert_array_equal(lat.coords[5], [1, 1])
    nb = lat.neighbours()  # offsets +e0, +e1, -e0, -e1
    assert nb.shape == (16, 4)
    # site 3 = (0, 3): down (1,3)=7, right (0,0)=0 wrapped, up (3,3)=15 wrapped, left (0,2)=2
    assert nb[3].tolist() == [7, 0, 15, 2]


def test_bonds_count_each_bond_once():
    for L in (2, 3, 5):
        lat = square_lattice(L)
        bonds = lat.bonds()
        assert bonds.shape == (2 * L * L, 2)
        if L > 2:  # for L = 2 the two bonds between a pair along a direction are both kept
            pairs = {tuple(sorted(b)) for b in bonds.tolist()}
            assert len(pairs) == 2 * L * L


def test_window_wraps_periodically():
    lat = square_lattice(5)
    w = lat.window((4, 3), (2, 3))
    # rows 4, 0; columns 3, 4, 0
    assert w.tolist() == [[23, 24, 20], [3, 4, 0]]
    with pytest.raises(ValueError, match="window shape"):
        lat.window((0, 0), (6, 1))


def test_custom_site_order_round_trips():
    lat = hypercubic_lattice((2, 3, 2))
    perm = np.random.default_rng(0).permutation(lat.n_sites)
    other = Lattice(shape=(2, 3, 2), coords_=lat.coords[perm])
    idx = other.index(other.coords)
    np.testing.assert_array_equal(idx, np.arange(lat.n_sites))
    # neighbour relations are the same physical sites in both orders
    nb_a = lat.neighbours()[torch.as_tensor(perm)]
    nb_b = torch.as_tensor(perm)[other.neighbours()]
    assert torch.equal(nb_a, nb_b)


@pytest.mark.parametrize("bad", [1, 0, 2.5, -3])
def test_square_lattice_rejects_bad_sides(bad):
    with pytest.raises(ValueError, match="integer >= 2"):
        square_lattice(bad)


def test_lattice_rejects_repeated_coords():
    with pytest.raises(ValueError, match="exactly once"):
        Lattice(shape=(2, 2), coords_=np.array([[0, 0], [0, 0], [1, 0], [1, 1]]))
