"""CuAu reference phase diagram from free energies per composition ``f_x(T)``.

Input: a composition table with one row per ``(T, n_au)`` and at least the columns
``system, size, T, x_au, f_x`` (eV/atom) — the exact one
(:func:`lattherm.reference.cuau_exact.cuau_exact_composition_table`) or the metadynamics one
(:func:`lattherm.reference.metadynamics.metadynamics_table`, which also carries ``c_x``).

Rules (the paper's Methods, on a finite cell):

- **Hull.** Per temperature, the lower convex hull of ``f_x`` over ``x``. A composition whose
  ``f_x`` lies more than ``tol`` (eV/atom) above the hull is inside a two-phase region: the cell
  lowers its free energy by splitting into the two hull vertices that bracket it. Points within
  ``tol`` of the hull count as on it (``tol > 0`` keeps statistical noise of Monte Carlo data from
  opening spurious regions). The pure ends are always on the hull.
- **Two-phase intervals.** Each maximal run of consecutive compositions above the hull gives one
  interval ``[x_lo, x_hi]`` whose ends are the bracketing on-hull compositions (hull vertices).
- **Labels** of an interval end (an on-hull composition ``x_v``, grid step ``h = 1/N``): it is an
  *ordered compound* if it is a sharp kink — both grid neighbours are above the hull (an
  isolated hull point, a line compound of the finite cell) — or if the free energy on its
  single-phase side curves much more than an ideal solution's: the second difference
  ``f(x_v) − 2 f(x_v ± h) + f(x_v ± 2h)`` exceeds ``kink_factor`` (default 3) times
  ``k_B T h² / (x(1 − x))`` at ``x = x_v ± h`` (ordered phases pay antisite energies off
  stoichiometry; a solid solution's curvature is entropic, ratio ~1). An ordered end is named by
  the stoichiometry within ``1/8`` of it: Cu3Au (1/4), CuAu (1/2), CuAu3 (3/4). Otherwise it is a
  solid solution: "Cu" for ``x_v < 1/8``, "Au" for ``x_v > 7/8`` (the terminal fcc solutions; the
  pure metals at low T) and "disordered" in between. A pure end is "Cu"/"Au". The labels are a
  reading aid; the numbers are ``x_lo, x_hi``.
- **Boundary lines.** The intervals are followed across temperatures, in increasing ``T``: an
  interval continues the one at the previous temperature with which it overlaps most (``region``
  id); each region contributes two lines, ``side = "lo"`` (``x_lo(T)``) and ``"hi"``
  (``x_hi(T)``).
- **Order–disorder temperature at a composition** ``x`` (default 1/2): either the peak of the
  heat capacity at fixed composition ``c_x(T)`` (parabola through the maximum and its two
  neighbours on the T grid; needs ``c_x`` from metadynamics), or from the hull: the ordered phase
  at ``x`` is bounded by two-phase regions on both sides (each within ``window`` of ``x``) below
  the transition and not above it; the estimate is the midpoint between the highest grid
  temperature where it is bounded and the next one. A sampler's refined table also carries the
  fraction of its chains' states in an ordered phase (sublattice order parameters,
  :func:`lattherm.systems.cuau.order_phase`): where it falls through 1/2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lattherm.systems.cuau import K_B_EV

__all__ = [
    "lower_hull",
    "hull_table",
    "two_phase_regions",
    "phase_boundaries",
    "order_disorder_temperature",
    "order_disorder_table",
    "log_transitions",
    "solution_name",
    "STOICHIOMETRIES",
]

#: ordered compounds of the CuAu FCC diagram, by Au fraction
STOICHIOMETRIES = {0.25: "Cu3Au", 0.5: "CuAu", 0.75: "CuAu3"}
_GROUP = ["system", "size", "T"]


def lower_hull(x: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Indices (into ``x``) of the vertices of the lower convex hull, in increasing ``x``.

    ``x`` must be strictly increasing. Collinear points are not vertices (Andrew's monotone chain
    with a non-strict turn test).
    """
    x = np.asarray(x, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    if x.ndim != 1 or x.shape != f.shape or len(x) < 2:
        raise ValueError(f"need two 1-d arrays of equal length >= 2, got {x.shape}, {f.shape}")
    if np.any(np.diff(x) <= 0):
        raise ValueError("x must be strictly increasing")
    if not np.all(np.isfinite(f)):
        raise ValueError("f must be finite")
    hull: list[int] = []
    for i in range(len(x)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # cross product of (b - a) and (i - a): <= 0 means b is not below the chord a-i
            cross = (x[b] - x[a]) * (f[i] - f[a]) - (f[b] - f[a]) * (x[i] - x[a])
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    return np.asarray(hull, dtype=np.int64)


def _one_T_hull(x: np.ndarray, f: np.ndarray, tol):
    """Hull vertices, hull values, heights above it and the on-hull mask (``tol``: a number or
    one per point)."""
    v = lower_hull(x, f)
    f_hull = np.interp(x, x[v], f[v])
    above = f - f_hull
    on = above <= tol
    on[v] = True
    return v, f_hull, above, on


def _grid_step(x_all: np.ndarray) -> float:
    """The composition grid's step: the least spacing of the distinct compositions of one
    temperature, NaN rows included (a row without a value is still a grid composition)."""
    d = np.diff(np.unique(x_all))
    return float(d.min()) if len(d) else 1.0


def _point_tol(g: pd.DataFrame, tol: float, err: str | None, n_sigma: float):
    return tol if err is None else tol + n_sigma * np.nan_to_num(g[err].to_numpy(np.float64), nan=0.0)


def hull_table(table: pd.DataFrame, *, tol: float = 0.0, value: str = "f_x") -> pd.DataFrame:
    """``table`` plus ``f_hull`` (the lower hull at each composition), ``above_hull``
    (``value − f_hull``, eV/atom) and ``on_hull`` (``above_hull <= tol``), per temperature."""
    _check(table, value)
    out = []
    for _, g in table.groupby(_GROUP, sort=True):
        g = g.sort_values("x_au").copy()
        finite = np.isfinite(g[value].to_numpy())
        g = g[finite]
        _, f_hull, above, on = _one_T_hull(g["x_au"].to_numpy(), g[value].to_numpy(), tol)
        g["f_hull"], g["above_hull"], g["on_hull"] = f_hull, above, on
        out.append(g)
    return pd.concat(out, ignore_index=True)


def _label(x, f, on, i, T, kink_factor, step):
    """Label of the on-hull composition ``x[i]`` (``on``: on-hull mask; ``step``: the grid step, a
    composition without a value counts as above the hull; module docstring)."""
    n = len(x)
    xv = x[i]
    if i == 0 or i == n - 1:
        return "Cu" if xv < 0.5 else "Au"

    def adjacent(a, b):
        return abs(x[b] - x[a]) < 1.5 * step

    left_on = bool(on[i - 1]) and adjacent(i - 1, i)
    right_on = bool(on[i + 1]) and adjacent(i, i + 1)
    ordered = not (left_on or right_on)  # an isolated hull point: a kink of the finite cell
    if not ordered:
        # curvature on the single-phase side, against the ideal solution's k_B T h² / (x(1 − x))
        j = i + 1 if right_on else i - 1
        k = j + (j - i)
        if 0 <= k < n and adjacent(j, k):
            d2 = f[i] - 2.0 * f[j] + f[k]
            h = x[j] - x[i]
            xm = x[j]
            ideal = K_B_EV * T * h * h / (xm * (1.0 - xm)) if 0 < xm < 1 else np.inf
            ordered = d2 > kink_factor * ideal
    if ordered:
        for xs, name in STOICHIOMETRIES.items():
            if abs(xv - xs) < 0.125 - 1e-12:
                return name
    return solution_name(xv)


def solution_name(x: float) -> str:
    """The name of a solid solution at Au fraction ``x``: "Cu" below 1/8, "Au" above 7/8 (the
    terminal fcc solutions), "disordered" between."""
    return "Cu" if x < 0.125 else "Au" if x > 0.875 else "disordered"


def two_phase_regions(
    table: pd.DataFrame, *, tol: float = 0.0, value: str = "f_x", kink_factor: float = 3.0,
    err: str | None = None, n_sigma: float = 2.0,
) -> pd.DataFrame:
    """Two-phase intervals per temperature from the lower convex hull of ``value`` over ``x_au``.

    Returns one row per interval: ``system, size, T, x_lo, x_hi, phase_lo, phase_hi, n_inside``
    (grid compositions strictly inside), ``depth`` (largest height above the hull of the values
    inside, eV/atom; NaN when none inside has a value). A temperature without two-phase intervals
    contributes no row. ``tol`` (eV/atom): points within it of the hull count as on the hull; with
    an error column ``err``, within ``tol + n_sigma · err`` of it. Rows whose value is NaN (a
    sampler's unvisited compositions) are grid compositions without a value: they lie inside
    the interval that spans them. Rules and labels: module docstring.
    """
    _check(table, value)
    rows = []
    for (system, size, T), g in table.groupby(_GROUP, sort=True):
        g = g.sort_values("x_au")
        step = _grid_step(g["x_au"].to_numpy())
        g = g[np.isfinite(g[value].to_numpy())]
        if len(g) < 2:  # no hull: nothing known at this temperature
            continue
        x, f = g["x_au"].to_numpy(), g[value].to_numpy()
        _, _, above, on = _one_T_hull(x, f, _point_tol(g, tol, err, n_sigma))
        on_idx = np.flatnonzero(on)
        for k in range(len(on_idx) - 1):
            a, b = on_idx[k], on_idx[k + 1]
            n_inside = int(round((x[b] - x[a]) / step)) - 1
            if n_inside < 1:
                continue
            rows.append(
                dict(
                    system=system,
                    size=size,
                    T=float(T),
                    x_lo=float(x[a]),
                    x_hi=float(x[b]),
                    phase_lo=_label(x, f, on, a, T, kink_factor, step),
                    phase_hi=_label(x, f, on, b, T, kink_factor, step),
                    n_inside=n_inside,
                    depth=float(above[a + 1 : b].max()) if b - a >= 2 else float("nan"),
                )
            )
    cols = ["system", "size", "T", "x_lo", "x_hi", "phase_lo", "phase_hi", "n_inside", "depth"]
    return pd.DataFrame(rows, columns=cols)


def phase_boundaries(regions: pd.DataFrame) -> pd.DataFrame:
    """Boundary lines ``x(T)`` traced through the two-phase intervals of :func:`two_phase_regions`.

    Tidy table, one row per (region, side, T): ``system, size, region`` (an integer id),
    ``label`` (``"phase_lo+phase_hi"`` where the region is first seen, i.e. at its lowest T),
    ``side`` (``"lo"``: the boundary ``x_lo(T)``; ``"hi"``: ``x_hi(T)``), ``T``, ``x``, ``phase``
    (the label of that end at that T). An interval continues the region of the previous
    temperature with which it overlaps most (ties: the first); regions that find no successor end.
    """
    out = []
    next_id = 0
    for (system, size), g in regions.groupby(["system", "size"], sort=True):
        prev: list[tuple[int, float, float]] = []  # (id, x_lo, x_hi) at the previous T
        labels: dict[int, str] = {}
        for T, gt in g.groupby("T", sort=True):
            cur = []
            taken: set[int] = set()
            for r in gt.sort_values("x_lo").itertuples():
                best, best_ov = None, 0.0
                for rid, lo, hi in prev:
                    ov = min(hi, r.x_hi) - max(lo, r.x_lo)
                    if rid not in taken and ov > best_ov:
                        best, best_ov = rid, ov
                if best is None:
                    best = next_id
                    next_id += 1
                    labels[best] = f"{r.phase_lo}+{r.phase_hi}"
                taken.add(best)
                cur.append((best, r.x_lo, r.x_hi))
                for side, xv, ph in (("lo", r.x_lo, r.phase_lo), ("hi", r.x_hi, r.phase_hi)):
                    out.append(
                        dict(
                            system=system,
                            size=size,
                            region=best,
                            label=labels[best],
                            side=side,
                            T=float(T),
                            x=float(xv),
                            phase=ph,
                        )
                    )
            prev = cur
    cols = ["system", "size", "region", "label", "side", "T", "x", "phase"]
    return pd.DataFrame(out, columns=cols)


def order_disorder_temperature(
    table: pd.DataFrame,
    x: float = 0.5,
    *,
    method: str = "heat_capacity",
    tol: float = 0.0,
    window: float = 0.125,
) -> float:
    """Order–disorder transition temperature (K) at composition ``x`` from a composition table.

    ``method="heat_capacity"``: peak of ``c_x(T)`` at the composition nearest ``x`` (needs the
    ``c_x`` column); parabolic refinement through the maximum and its grid neighbours (a
    ``ValueError`` if that is the first or last T, or if ``c_x`` is missing, NaN, at a grid
    temperature next to the maximum: then the peak is not bracketed).
    ``method="order_parameter"``: where the fraction of states in an ordered phase
    (``ordered_frac``, from a sampler's refined chains) at the composition nearest ``x`` falls
    through 1/2 for the last time, linear between the grid temperatures that bracket it.
    ``method="hull"``: midpoint between the highest T at which ``x`` is on the hull with
    two-phase intervals ending within ``window`` of it on both sides, and the next grid T.
    Raises ``ValueError`` when the transition is not bracketed by the temperature grid.
    One ``(system, size)`` per call.
    """
    if table[["system", "size"]].drop_duplicates().shape[0] != 1:
        raise ValueError("pass the rows of one (system, size)")
    T_all = np.sort(table["T"].unique())
    if method == "heat_capacity":
        if "c_x" not in table:
            raise ValueError("method='heat_capacity' needs a c_x column (metadynamics tables)")
        g = table.assign(_d=(table["x_au"] - x).abs())
        g = g[g["_d"] == g["_d"].min()].sort_values("T")
        T, c = g["T"].to_numpy(), g["c_x"].to_numpy()
        ok = np.isfinite(c)
        T, c = T[ok], c[ok]
        k = int(np.argmax(c))
        if k == 0 or k == len(T) - 1:
            raise ValueError(f"c_x peak at the grid edge T={T[k]} K: widen the temperature grid")
        grid = [float(t) for t in T_all]
        if grid.index(float(T[k + 1])) - grid.index(float(T[k - 1])) != 2:  # a gap next to the peak
            raise ValueError(f"c_x at x={x} is missing next to its largest value (T={T[k]} K; values at "
                             f"{T[k - 1]} and {T[k + 1]} K only): the peak is not bracketed")  # fmt: skip
        t3, c3 = T[k - 1 : k + 2], c[k - 1 : k + 2]
        a, b, _ = np.polyfit(t3, c3, 2)
        return float(np.clip(-b / (2 * a), t3[0], t3[-1])) if a < 0 else float(T[k])
    if method == "order_parameter":
        return _ordered_fraction_crossing(table, x, T_all)
    if method != "hull":
        raise ValueError(f"method must be 'heat_capacity', 'order_parameter' or 'hull', got {method!r}")
    reg = two_phase_regions(table, tol=tol)
    bounded = []
    for T in T_all:
        r = reg[reg["T"] == T]
        left = ((r["x_hi"] <= x + 1e-12) & (r["x_hi"] >= x - window)).any()
        right = ((r["x_lo"] >= x - 1e-12) & (r["x_lo"] <= x + window)).any()
        bounded.append(bool(left and right))
    bounded = np.asarray(bounded)
    if not bounded.any():
        raise ValueError(f"x={x} is never an ordered phase bounded by two-phase regions")
    k = int(np.flatnonzero(bounded).max())
    if k == len(T_all) - 1:
        raise ValueError(f"x={x} is still ordered at the highest T={T_all[-1]} K")
    return float(0.5 * (T_all[k] + T_all[k + 1]))


def _ordered_fraction_crossing(table: pd.DataFrame, x: float, T_all: np.ndarray) -> float:
    """Where ``ordered_frac`` at the composition nearest ``x`` falls through 1/2 for the last time
    on the T grid (linear between the two grid temperatures that bracket it)."""
    if "ordered_frac" not in table:
        raise ValueError("method='order_parameter' needs an ordered_frac column (a sampler's refined table)")
    g = table.assign(_d=(table["x_au"] - x).abs())
    g = g[(g["_d"] == g["_d"].min()) & g["ordered_frac"].notna()].sort_values("T")
    T, f = g["T"].to_numpy(np.float64), g["ordered_frac"].to_numpy(np.float64)
    above = np.flatnonzero(f >= 0.5)
    if not len(above):
        raise ValueError(f"x={x} is never ordered (ordered fraction < 1/2 at every T with states)")
    k = int(above.max())
    if k == len(T) - 1:
        raise ValueError(f"x={x} is still ordered at the highest T with states, {T[k]} K")
    grid = [float(t) for t in T_all]
    if grid.index(float(T[k + 1])) - grid.index(float(T[k])) != 1:
        raise ValueError(f"the ordered fraction at x={x} has no value between {T[k]} and {T[k + 1]} K: the "
                         "transition is not bracketed")  # fmt: skip
    return float(T[k] + (f[k] - 0.5) / (f[k] - f[k + 1]) * (T[k + 1] - T[k]))


def order_disorder_table(table: pd.DataFrame, *, method: str | tuple[str, ...] = "heat_capacity",
                         tol: float = 0.0) -> pd.DataFrame:  # fmt: skip
    """The order–disorder temperature of every ordered compound (:data:`STOICHIOMETRIES`) by
    :func:`order_disorder_temperature` (``method``; ``heat_capacity`` uses the rows whose ``c_x`` is
    finite, so a sampler table's unconverged rows, NaN there, do not enter; several methods: one
    row per method in turn), one row per compound:
    ``system, size, x_au, phase, T_od, method, note``. Where the grid does not bracket the transition,
    ``T_od`` is NaN and ``note`` says why. One ``(system, size)`` per call (no rows for a table
    without rows)."""
    rows = []
    key = table[["system", "size"]].drop_duplicates()
    if not len(table):
        return pd.DataFrame(columns=["system", "size", "x_au", "phase", "T_od", "method", "note"])
    if len(key) != 1:
        raise ValueError("pass the rows of one (system, size)")
    for m in (method,) if isinstance(method, str) else method:
        for x, phase in STOICHIOMETRIES.items():
            try:
                T_od, note = order_disorder_temperature(table, x, method=m, tol=tol), ""
            except ValueError as err:
                T_od, note = float("nan"), str(err)
            rows.append(dict(system=key["system"].iloc[0], size=key["size"].iloc[0], x_au=x, phase=phase, T_od=T_od,
                             method=m, note=note))  # fmt: skip
    return pd.DataFrame(rows, columns=["system", "size", "x_au", "phase", "T_od", "method", "note"])


def log_transitions(transitions: pd.DataFrame, log) -> None:
    """Log the rows of :func:`order_disorder_table`: the temperature, or why there is none."""
    for r in transitions.itertuples():
        if np.isfinite(r.T_od):
            log.info("%s (x = %.2f) order-disorder temperature (%s): %.0f K", r.phase, r.x_au, r.method, r.T_od)
        else:
            log.warning("%s (x = %.2f) order-disorder temperature not determined: %s", r.phase, r.x_au, r.note)


def _check(table: pd.DataFrame, value: str) -> None:
    missing = [c for c in (*_GROUP, "x_au", value) if c not in table]
    if missing:
        raise ValueError(f"composition table is missing columns {missing}")
