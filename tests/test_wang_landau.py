"""Wang–Landau density of states of the Ising torus against exact references.

WL is stochastic: every test uses fixed seeds, and each tolerance is set from the spread of the
method's error over many seeds (measured and quoted next to the test), not from the seed used.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import numba_threads
from numba import njit

from lattherm.reference.exact import enumerate_levels, ising_kaufman, ising_transfer_matrix
from lattherm.reference.wang_landau import (
    ising_levels,
    wang_landau,
    wang_landau_dos_table,
    wang_landau_table,
)
from lattherm.systems.ising import IsingSystem

T_GRID = np.round(np.arange(1.5, 3.5 + 1e-9, 0.1), 2)


def _exact_energy_dos(L: int) -> tuple[np.ndarray, np.ndarray]:
    """Energy-only exact DOS ``(E, ln g)`` by enumeration (joint levels summed over Σs)."""
    lv = enumerate_levels(IsingSystem(L))
    E = np.unique(lv.energy)
    counts = np.array([np.rint(np.exp(lv.log_count[lv.energy == e])).sum() for e in E])
    return E, np.log(counts)


@njit(cache=False)
def _level_counts_gray(nb: np.ndarray) -> np.ndarray:
    """Counts per level ``m`` of all ``2^N`` states by a Gray-code walk (L = 5: 3.4e7 states)."""
    N = nb.shape[0]
    s = np.ones(N, dtype=np.int64)
    counts = np.zeros(N + 1, dtype=np.int64)
    m = 0
    counts[0] += 1
    for k in range(1, 1 << N):
        i = 0
        while not (k >> i) & 1:  # the bit that flips in the Gray code at step k
            i += 1
        m += (s[i] * (s[nb[i, 0]] + s[nb[i, 1]] + s[nb[i, 2]] + s[nb[i, 3]])) // 2
        s[i] = -s[i]
        counts[m] += 1
    return counts


# ----------------------------------------------------------------------------- level set
@pytest.mark.parametrize("L", [3, 4])
def test_level_set_matches_enumeration(L):
    E, _ = _exact_energy_dos(L)
    m, allowed = ising_levels(L)
    N = L * L
    np.testing.assert_array_equal(np.sort(-(2 * N - 4 * m[allowed])).astype(float), E)


@pytest.mark.parametrize("L", [5])
def test_level_set_odd_L5_by_gray_code(L):
    counts = _level_counts_gray(IsingSystem(L).lattice.neighbours().numpy())
    m, allowed = ising_levels(L)
    assert counts.sum() == 2 ** (L * L)
    np.testing.assert_array_equal(counts > 0, allowed)
    # odd L: the highest level is m = N - L, and the level just below it does occur
    assert allowed[L * L - L] and allowed[L * L - L - 1] and not allowed[L * L - L + 1 :].any()


def test_level_set_rules():
    for L in (6, 8, 16):
        m, a = ising_levels(L)
        N = L * L
        assert a[0] and not a[1] and a[2] and not a[N - 1] and a[N] and a.sum() == N - 1
    with pytest.raises(ValueError):
        ising_levels(2)


# ----------------------------------------------------------------------------- basics
def test_normalisation_and_tables():
    r = wang_landau(4, ln_f_final=1e-4, seed=0)
    N = 16
    lse = np.logaddexp.reduce(r.ln_g)
    assert lse == pytest.approx(N * np.log(2.0), abs=1e-12)
    assert r.method == "wang_landau" and r.iterations == 14 and r.moves > 0
    assert [s["ln_f"] for s in r.stages] == [2.0**-k for k in range(14)]
    df = wang_landau_table(r, T_GRID)
    assert list(df.columns) == ["system", "size", "T", "field", "f", "u", "c", "method", "schedule", "ln_f_final"]
    assert (df["size"] == "4x4").all() and (df["field"] == 0.0).all() and (df["method"] == "wang_landau").all()
    dos = wang_landau_dos_table(r)
    assert list(dos.columns) == ["system", "size", "E", "ln_g"] and len(dos) == 15
    np.testing.assert_array_equal(dos["E"], -(32 - 4 * np.array([0, *range(2, 15), 16])))


def test_normalisation_rewl_odd():
    r = wang_landau(5, ln_f_final=1e-3, n_windows=3, walkers_per_window=2, seed=1)
    assert r.method == "wang_landau_rewl"
    assert np.logaddexp.reduce(r.ln_g) == pytest.approx(25 * np.log(2.0), abs=1e-12)
    assert len(r.ln_g) == ising_levels(5)[1].sum() and np.isfinite(r.ln_g).all()
    assert not r.settings["symmetrized"]


def test_same_seed_same_result_any_thread_count():
    kw = dict(ln_f_final=1e-4, n_windows=3, walkers_per_window=2, seed=7)
    with numba_threads(1):
        a = wang_landau(6, **kw)
    b = wang_landau(6, **kw)
    np.testing.assert_array_equal(a.ln_g, b.ln_g)
    assert a.moves == b.moves
    c = wang_landau(6, **{**kw, "seed": 8})
    assert not np.array_equal(a.ln_g, c.ln_g)


def test_progress_lines_and_one_over_t_bookkeeping(caplog):
    with caplog.at_level(logging.INFO, logger="lattherm.progress"):
        r = wang_landau(4, ln_f_final=1e-5, schedule="1/t", progress=True, seed=2)
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "lattherm.progress"]
    assert lines[0].startswith("WL 4x4") and "started" in lines[0] and "done after" in lines[-1]
    assert not any("\r" in line for line in lines)
    kinds = [s["kind"] for s in r.stages]
    assert kinds[-1] == "1/t" and set(kinds[:-1]) == {"flat"}
    assert r.stages[-1]["ln_f"] <= 1e-5
    # the 1/t phase ends when n_levels / t falls below ln_f_final: t >= 15 / 1e-5 moves
    assert 15 / 1e-5 <= r.moves < 1.01 * 15 / 1e-5 + 1


def test_bad_arguments():
    with pytest.raises(ValueError):
        wang_landau(4, seed=0, schedule="fast")
    with pytest.raises(ValueError):
        wang_landau(4, seed=0, ln_f_final=2.0)
    with pytest.raises(ValueError, match="overlap"):
        wang_landau(4, seed=0, n_windows=8, overlap=0.2)


# ----------------------------------------------------------------------------- accuracy
# Measured spreads (10 seeds each unless said; shared 2-core machine):
#   4x4 ln g, halving (the paper's schedule) to ln f = 1e-6: max |Δ ln g| 0.035..0.125 (it
#     saturates: the error does not shrink with ln f);
#   4x4 ln g, 1/t to 1e-6: 0.004..0.012 (not symmetrised: 0.005..0.015);
#   6x6 f, halving to 1e-6: max rel. error 5e-4..4.4e-3 (fails the 1e-3 target about half the time);
#   6x6 f, 1/t to 1e-6: 8e-5..4.2e-4, c 0.1..0.9 %; REWL (3 windows x 2 walkers, 1/t): 2e-5..3.8e-4;
#   6x6 ln g, REWL vs single window (both 1/t, 1e-6, 4 seed pairs): max |Δ ln g| 0.007..0.014;
#   8x8, 1/t to 2e-7 with 2 walkers: max rel. error of f ~0.5e-4, c <= 0.2 %.
def test_ln_g_4x4_halving_schedule_against_enumeration():
    E, lg = _exact_energy_dos(4)
    r = wang_landau(4, ln_f_final=1e-6, seed=3)
    np.testing.assert_array_equal(r.energy, E)
    assert np.abs(r.ln_g - lg).max() < 0.25


def test_ln_g_4x4_one_over_t_against_enumeration():
    E, lg = _exact_energy_dos(4)
    r = wang_landau(4, ln_f_final=1e-6, schedule="1/t", seed=3)
    assert r.settings["schedule"] == "1/t"
    assert np.abs(r.ln_g - lg).max() < 0.03


def test_ln_g_4x4_unsymmetrised_one_over_t():
    E, lg = _exact_energy_dos(4)
    r = wang_landau(4, ln_f_final=1e-6, schedule="1/t", symmetrize=False, seed=4)
    assert not r.settings["symmetrized"]
    assert np.abs(r.ln_g - lg).max() < 0.05


def test_f_6x6_against_transfer_matrix():
    tm = ising_transfer_matrix(6, T_GRID, 0.0)
    r = wang_landau(6, ln_f_final=1e-6, schedule="1/t", seed=11)
    th = r.thermo(T_GRID)
    assert np.abs(th["f"] / tm["f"] - 1).max() < 1e-3
    assert np.abs(th["c"] / tm["c"] - 1).max() < 0.03


def test_rewl_stitching_matches_single_window_6x6():
    kw = dict(ln_f_final=1e-6, schedule="1/t")
    single = wang_landau(6, seed=21, **kw)
    rewl = wang_landau(6, n_windows=3, walkers_per_window=2, overlap=0.75, seed=22, **kw)
    assert rewl.method == "wang_landau_rewl" and len(rewl.joins) == 2
    assert 0.2 < rewl.exchange_acceptance < 1.0
    for (_, hi_a), (lo_b, _), j in zip(rewl.windows[:-1], rewl.windows[1:], rewl.joins, strict=True):
        assert lo_b <= j < hi_a  # each join lies in its overlap
    assert rewl.joins[0] < rewl.joins[1]
    np.testing.assert_array_equal(single.energy, rewl.energy)
    assert np.abs(single.ln_g - rewl.ln_g).max() < 0.05
    tm = ising_transfer_matrix(6, T_GRID, 0.0)
    assert np.abs(rewl.thermo(T_GRID)["f"] / tm["f"] - 1).max() < 1e-3


@pytest.mark.slow
def test_8x8_recommended_settings_meet_targets():
    """Issue target: f within 2e-4 relative, c within 2 % of exact at T = 1.5..3.5 (step 0.1)."""
    ex = ising_kaufman(8, T_GRID)
    r = wang_landau(8, ln_f_final=2e-7, schedule="1/t", walkers_per_window=2, seed=5)
    th = r.thermo(T_GRID)
    assert np.abs(th["f"] / ex["f"] - 1).max() < 2e-4
    assert np.abs(th["c"] / ex["c"] - 1).max() < 0.02
    assert np.abs(th["u"] - ex["u"]).max() < 2e-3
