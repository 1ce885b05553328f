"""Phase diagram from f_x(T): convex hulls, two-phase intervals, boundary lines, transitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lattherm.reference.cuau_exact import cuau_exact_composition_table
from lattherm.reference.phase_diagram import (
    hull_table,
    lower_hull,
    order_disorder_table,
    order_disorder_temperature,
    phase_boundaries,
    two_phase_regions,
)


def _table(x, f, T=300.0, **extra):
    return pd.DataFrame({"system": "cuau", "size": "test", "T": T, "x_au": x, "f_x": f, **extra})


# a hand-made W: hull vertices at x = 0, 1/4, 3/4, 1 (slopes −8, −2, +12: convex);
# 1/8 lies above the chord 0–1/4, 3/8..5/8 above the chord 1/4–3/4, 7/8 above 3/4–1
X8 = np.arange(9) / 8
F8 = np.array([0.0, 1.0, -2.0, -1.0, -1.5, 0.5, -3.0, 1.0, 0.0])


def test_lower_hull_of_a_hand_made_curve():
    np.testing.assert_array_equal(lower_hull(X8, F8), [0, 2, 6, 8])
    # collinear points are not vertices; a parabola is all vertices
    np.testing.assert_array_equal(lower_hull(X8, 2 * X8), [0, 8])
    np.testing.assert_array_equal(lower_hull(X8, (X8 - 0.3) ** 2), np.arange(9))
    with pytest.raises(ValueError, match="increasing"):
        lower_hull(X8[::-1], F8)


def test_two_phase_intervals_of_a_hand_made_curve():
    reg = two_phase_regions(_table(X8, F8))
    assert reg[["x_lo", "x_hi"]].to_numpy().tolist() == [[0, 0.25], [0.25, 0.75], [0.75, 1]]
    assert reg["n_inside"].tolist() == [1, 3, 1]
    # heights above the hull: 1/8: 1 − (−1) = 2; 3/8: −1 − (−2.25) = 1.25,
    # 4/8: −1.5 − (−2.5) = 1, 5/8: 0.5 − (−2.75) = 3.25; 7/8: 1 − (−1.5) = 2.5
    np.testing.assert_allclose(reg["depth"], [2.0, 3.25, 2.5])
    ht = hull_table(_table(X8, F8))
    np.testing.assert_allclose(ht["above_hull"], [0, 2, 0, 1.25, 1, 3.25, 0, 2.5, 0], atol=1e-12)
    # ends: pure metals; isolated hull points near 1/4 and 3/4 are the L1_2 compounds
    assert reg["phase_lo"].tolist() == ["Cu", "Cu3Au", "CuAu3"]
    assert reg["phase_hi"].tolist() == ["Cu3Au", "CuAu3", "Au"]
    assert ht["on_hull"].tolist() == [True, False, True, False, False, False, True, False, True]
    # a tolerance larger than a point's height above the hull puts it on the hull
    reg_tol = two_phase_regions(_table(X8, F8), tol=1.1)
    assert reg_tol[["x_lo", "x_hi"]].to_numpy().tolist() == [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1]]


def test_convex_curve_has_no_two_phase_region():
    reg = two_phase_regions(_table(X8, (X8 - 0.4) ** 2 - 1.0))
    assert reg.empty and list(reg.columns[:5]) == ["system", "size", "T", "x_lo", "x_hi"]


def test_exact_2x2x4_hull_at_low_T_is_the_ordered_phases():
    ex = cuau_exact_composition_table("2x2x4", 0.01)  # T -> 0: f_x = formation energies
    v = lower_hull(ex["x_au"].to_numpy(), ex["f_x_formation"].to_numpy())
    np.testing.assert_allclose(ex["x_au"].to_numpy()[v], [0, 0.25, 0.5, 0.75, 1])
    meV = ex["f_x_formation"].to_numpy()[v] * 1e3
    np.testing.assert_allclose(meV, [0.0, -34.167, -36.183, -18.754, 0.0], atol=2e-3)
    reg = two_phase_regions(ex)  # raw f_x: the same hull (a linear term does not change it)
    assert reg[["x_lo", "x_hi"]].to_numpy().tolist() == [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1]]
    assert reg["phase_lo"].tolist() == ["Cu", "Cu3Au", "CuAu", "CuAu3"]
    assert reg["phase_hi"].tolist() == ["Cu3Au", "CuAu", "CuAu3", "Au"]


@pytest.mark.parametrize("T", [1200.0, 2000.0])
def test_exact_2x2x4_at_high_T_is_one_phase(T):
    assert two_phase_regions(cuau_exact_composition_table("2x2x4", T)).empty


def test_boundaries_follow_regions_across_T():
    regions = pd.DataFrame(
        {
            "system": "cuau",
            "size": "test",
            "T": [100.0, 100.0, 200.0, 200.0, 300.0],
            "x_lo": [0.0, 0.5, 0.05, 0.55, 0.6],
            "x_hi": [0.25, 0.75, 0.2, 0.7, 0.65],
            "phase_lo": ["Cu", "CuAu", "Cu", "CuAu", "disordered"],
            "phase_hi": ["Cu3Au", "CuAu3", "Cu3Au", "CuAu3", "CuAu3"],
        }
    )
    b = phase_boundaries(regions)
    assert set(b["region"]) == {0, 1}
    right = b[(b["region"] == 1) & (b["side"] == "lo")].sort_values("T")
    assert right["x"].tolist() == [0.5, 0.55, 0.6] and (right["label"] == "CuAu+CuAu3").all()
    left = b[(b["region"] == 0) & (b["side"] == "hi")]
    assert left["T"].tolist() == [100.0, 200.0]  # the Cu + Cu3Au region closes above 200 K


def test_order_disorder_temperature_from_heat_capacity_peak():
    T = np.arange(500.0, 1001.0, 50.0)
    rows = []
    for t in T:
        c = 0.1 + 3.0 * np.exp(-0.5 * ((t - 731.0) / 60.0) ** 2)
        rows.append(_table(np.array([0.25, 0.5]), np.array([-1.0, -1.0]), T=t, c_x=[0.1, c]))
    tab = pd.concat(rows, ignore_index=True)
    assert order_disorder_temperature(tab, 0.5) == pytest.approx(731.0, abs=10.0)
    with pytest.raises(ValueError, match="grid edge"):
        order_disorder_temperature(tab[tab["T"] >= 750], 0.5)


def test_order_disorder_table_names_each_compound_and_why_one_is_missing():
    """Peaks at x = 1/4 (640 K) and 1/2 (731 K); at 3/4 the peak lies below the grid, and c_x
    missing (NaN, an unconverged sampler row) at one T does not enter."""
    rows = []
    for t in np.arange(500.0, 1001.0, 25.0):
        c = [3.0 * np.exp(-0.5 * ((t - t0) / 60.0) ** 2) + 0.1 for t0 in (640.0, 731.0, 300.0)]
        if t == 900.0:
            c[1] = np.nan
        rows.append(_table(np.array([0.25, 0.5, 0.75]), np.array([-1.0, -1.0, -1.0]), T=t, c_x=c))
    tab = pd.concat(rows, ignore_index=True)
    got = order_disorder_table(tab)
    assert got["phase"].tolist() == ["Cu3Au", "CuAu", "CuAu3"] and (got["method"] == "heat_capacity").all()
    np.testing.assert_allclose(got["T_od"].iloc[:2], [640.0, 731.0], atol=5.0)
    assert np.isnan(got["T_od"].iloc[2]) and "grid edge" in got["note"].iloc[2]
    assert (got["note"].iloc[:2] == "").all()
    # c_x missing right next to the largest value (an unconverged sampler row): no temperature
    gap = tab.assign(c_x=tab["c_x"].where(~((tab["x_au"] == 0.5) & (tab["T"] == 750.0))))
    got = order_disorder_table(gap)
    assert np.isnan(got["T_od"].iloc[1]) and "not bracketed" in got["note"].iloc[1]


def test_order_disorder_temperature_from_hull_on_exact_2x2x4():
    T = np.arange(100.0, 1301.0, 100.0)
    tab = cuau_exact_composition_table("2x2x4", T)
    t_c = order_disorder_temperature(tab, 0.5, method="hull")
    # x = 1/2 is a vertex bounded by two-phase intervals at every T where f_x is non-convex
    # around it, and the hull is convex from 1200 K on (see the high-T test)
    reg = two_phase_regions(tab)
    bounded = [
        t
        for t in T
        if ((reg["T"] == t) & (reg["x_hi"] == 0.5)).any() and ((reg["T"] == t) & (reg["x_lo"] == 0.5)).any()
    ]
    assert t_c == pytest.approx(max(bounded) + 50.0)
    assert 100.0 < t_c < 1200.0
    with pytest.raises(ValueError, match="c_x"):
        order_disorder_temperature(tab, 0.5)


def test_compositions_without_a_value_lie_inside_the_interval_that_spans_them():
    # the hand-made W with only its hull vertices measured (a sampler's semi-grand draws skip the
    # two-phase compositions): the same intervals, the same grid count inside, no depth
    f = np.where(np.isin(np.arange(9), [0, 2, 6, 8]), F8, np.nan)
    reg = two_phase_regions(_table(X8, f))
    assert reg[["x_lo", "x_hi", "n_inside"]].to_numpy().tolist() == [[0, 0.25, 1], [0.25, 0.75, 3], [0.75, 1, 1]]
    assert reg["depth"].isna().all()
    full = two_phase_regions(_table(X8, F8))
    for col in ("phase_lo", "phase_hi"):
        assert reg[col].tolist() == full[col].tolist()


def test_an_error_column_widens_the_hull_tolerance_point_by_point():
    f = F8.copy()
    f[7] = 0.5 * (F8[6] + F8[8]) + 0.3  # 0.3 above the chord 3/4–1
    assert [0.75, 1.0] in two_phase_regions(_table(X8, f))[["x_lo", "x_hi"]].to_numpy().tolist()
    err = np.where(np.arange(9) == 7, 0.2, 0.0)  # 2σ = 0.4 > 0.3: on the hull within its error
    reg = two_phase_regions(_table(X8, f, err=err), err="err", n_sigma=2.0)
    assert [0.75, 1.0] not in reg[["x_lo", "x_hi"]].to_numpy().tolist()


def test_order_disorder_from_the_ordered_fraction():
    """The order-parameter method: where the ordered fraction at x falls through 1/2 for the last
    time, linear between the bracketing grid temperatures; no value there, never ordered or ordered
    at the top of the grid: no temperature, with the reason."""
    T = np.array([600.0, 625.0, 650.0, 675.0, 700.0])
    frac = {0.5: [1.0, 0.9, 0.7, 0.3, 0.1], 0.25: [0.2, 0.1, 0.0, 0.0, 0.0], 0.75: [1.0, 1.0, 0.9, 0.8, 0.6]}
    table = pd.DataFrame([{"system": "cuau", "size": "4x4x8", "T": t, "x_au": x, "f_x": 0.0, "ordered_frac": f[i]}
                          for x, f in frac.items() for i, t in enumerate(T)])  # fmt: skip
    out = order_disorder_table(table, method=("heat_capacity", "order_parameter")).set_index(["method", "x_au"])
    assert out.loc[("order_parameter", 0.5), "T_od"] == pytest.approx(650.0 + 0.2 / 0.4 * 25.0)
    assert "never ordered" in out.loc[("order_parameter", 0.25), "note"]
    assert "still ordered" in out.loc[("order_parameter", 0.75), "note"]
    assert out.loc["heat_capacity", "T_od"].isna().all()  # no c_x column: the reason, not an error
    gap = table[~((table["x_au"] == 0.5) & (table["T"] == 675.0))]
    with pytest.raises(ValueError, match="not bracketed"):
        order_disorder_temperature(gap, 0.5, method="order_parameter")
