import itertools

import numpy as np
import pytest
import torch

from lattherm.systems import IsingSystem, make_system, parse_size, reduced_energy


def brute_energy(x: np.ndarray, L: int, J: float) -> float:
    s = (2 * x - 1).reshape(L, L)
    return -J * float(np.sum(s * np.roll(s, -1, 0)) + np.sum(s * np.roll(s, -1, 1)))


@pytest.mark.parametrize("L", [2, 3, 4, 7])
@pytest.mark.parametrize("J", [1.0, -0.7])
def test_energy_matches_direct_sum(L, J, gen):
    sys_ = IsingSystem(L=L, J=J)
    x = torch.randint(0, 2, (64, L * L), generator=gen)
    e = sys_.energy(x)
    assert e.dtype == torch.float64
    ref = [brute_energy(xi.numpy(), L, J) for xi in x]
    np.testing.assert_allclose(e.numpy(), ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(sys_.spin_sum(x).numpy(), (2 * x - 1).sum(1).numpy())


def test_ground_states_and_extremes():
    sys_ = IsingSystem(L=4)
    up = torch.ones(1, 16, dtype=torch.long)
    assert sys_.energy(up).item() == -32.0  # 2N bonds
    assert sys_.energy(1 - up).item() == -32.0
    checker = torch.tensor([[(i + j) % 2 for i in range(4) for j in range(4)]])
    assert sys_.energy(checker).item() == 32.0


@pytest.mark.parametrize("L", [2, 3, 5])
def test_delta_energy_is_flip_difference(L, gen):
    sys_ = IsingSystem(L=L, J=1.3)
    x = torch.randint(0, 2, (200, L * L), generator=gen)
    sites = torch.randint(0, L * L, (200,), generator=gen)
    y = x.clone()
    y[torch.arange(200), sites] ^= 1
    torch.testing.assert_close(sys_.delta_energy(x, sites), sys_.energy(y) - sys_.energy(x), rtol=0, atol=1e-12)


def test_reduced_energy_sign_convention():
    sys_ = IsingSystem(L=3)
    up = torch.ones(1, 9, dtype=torch.long)
    # β(E − hΣs) with E = −18, Σs = 9, T = 2, h = 0.5  →  (−18 − 4.5)/2
    assert reduced_energy(sys_, up, 2.0, 0.5).item() == pytest.approx(-11.25, abs=1e-14)


def test_all_states_energy_histogram_2x2():
    # 2x2 torus: each pair is doubly bonded; E ∈ {−8, 0, 8} with counts {2, 12, 2}
    sys_ = IsingSystem(L=2)
    x = torch.tensor(list(itertools.product([0, 1], repeat=4)))
    vals, counts = np.unique(sys_.energy(x).numpy(), return_counts=True)
    assert vals.tolist() == [-8.0, 0.0, 8.0] and counts.tolist() == [2, 12, 2]


def test_make_system_and_size_tokens():
    assert make_system("ising", "6x6").n_sites == 36
    assert parse_size("2x2x4") == (2, 2, 4)
    for bad in ["6x5", "1x1"]:
        with pytest.raises(ValueError, match="LxL"):
            make_system("ising", bad)
    assert parse_size("6") == (6,)  # a chain's token
    with pytest.raises(ValueError, match="2 integers"):
        make_system("ising", "6")
    for bad in ["6x", "x6", "a x b", "0x4", ""]:
        with pytest.raises(ValueError, match="size token"):
            parse_size(bad)
    with pytest.raises(ValueError, match="unknown system"):
        make_system("potts", "4x4")
    with pytest.raises(ValueError, match=r"shape \(B, 9\)"):
        IsingSystem(L=3).energy(torch.zeros(2, 8, dtype=torch.long))
