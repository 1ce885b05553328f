"""Figures: each figure function draws what its tables hold and saves PNG/PDF atomically; bad
tables are refused with a message naming what is missing. Every figure has the one style, with
constrained layout: drawn, no title, label or legend leaves the figure or overlaps another (or a
panel's data area), also with many series; axis labels carry the units of DESIGN §3."""

from __future__ import annotations

import importlib
import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.layout_engine import ConstrainedLayoutEngine

from lattherm.plotting import (
    cost_figure,
    estimates_figure,
    figure_from_files,
    free_energy_figure,
    heat_capacity_figure,
    phase_diagram_figure,
    save_figure,
    training_figure,
)
from lattherm.reference.cuau_exact import cuau_exact_composition_table
from lattherm.reference.phase_diagram import phase_boundaries, two_phase_regions


def _metrics(system="ising", size="4x4", models=("fo-arm-mlp", "ao-arm-mlp"), fields=(-0.5, 0.0, 0.5)) -> pd.DataFrame:
    rows = []
    for k, model in enumerate(models):
        for T in (1.5, 2.0, 2.5, 3.0):
            for h in fields:
                f_ref = -2.0 - 0.1 * T
                rows.append(dict(system=system, size=size, T=T, field=h, model=model, source="direct", n_orders=1,
                                 delta_f=1e-4 * (k + 1) * T, f_ref=f_ref, f_nis_err=1e-5, ness=0.9 - 0.1 * k,
                                 ref_method="exact", c=1.0 / T, c_err=0.01))  # fmt: skip
    return pd.DataFrame(rows)


def test_free_energy_figure_plots_each_model_and_field(tmp_path):
    fig = free_energy_figure(_metrics())
    axes = fig.axes
    assert len(axes) == 4  # 2 rows x 2 models
    top = axes[0]
    assert top.get_yscale() == "log" and top.get_title() == "ao-arm-mlp"  # models sorted by name
    # ao-arm-mlp: 3 fields x (error line + bootstrap line); its relative error at T = 3, h = -0.5
    err = top.lines[0]
    np.testing.assert_allclose(err.get_ydata(), [2e-4 * T / (2.0 + 0.1 * T) for T in (1.5, 2.0, 2.5, 3.0)])
    assert len(top.lines) == 6
    paths = [tmp_path / "f.png", tmp_path / "f.pdf"]
    save_figure(fig, paths)
    assert all(p.stat().st_size > 5_000 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:4] == b"%PDF"
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_cuau_errors_are_in_mev():
    fig = free_energy_figure(_metrics("cuau", "2x2x4", ("ao-arm-mlp",)))
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [0.1 * T for T in (1.5, 2.0, 2.5, 3.0)])
    assert "meV" in fig.axes[0].get_ylabel()


def test_heat_capacity_figure_draws_reference_and_points():
    met = _metrics(models=("fo-arm-mlp",))
    ref = met[["system", "size", "T", "field"]].drop_duplicates().assign(c=lambda d: 1.0 / d["T"], method="exact")
    fig = heat_capacity_figure(met, ref)
    ax = fig.axes[0]
    assert len(ax.lines) >= 3  # one reference line per field
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1 / T for T in (1.5, 2.0, 2.5, 3.0)])


def test_training_figure():
    log = pd.DataFrame({"step": [10, 20, 30], "lw_std_mean": [3.0, 1.0, 0.3], "lw_std_max": [5.0, 2.0, 0.6],
                        "f_var_mean": [-1.9, -2.0, -2.05], "f_var_source": "log_q"})  # fmt: skip
    fig = training_figure({"fo-arm-mlp": log, "mam-mlp": log.assign(f_var_source="marginal")}, system="ising",
                          size="4x4")  # fmt: skip
    ax_s, ax_f = fig.axes
    assert ax_s.get_yscale() == "log" and len(ax_s.lines) == 4
    assert [line.get_label() for line in ax_f.lines] == ["fo-arm-mlp", "mam-mlp (marginal head)"]
    with pytest.raises(ValueError, match="no training logs"):
        training_figure({}, system="ising", size="4x4")


def test_phase_diagram_figure_from_exact_composition():
    comp = cuau_exact_composition_table("2x2x4", [300.0, 600.0, 900.0])
    regions = two_phase_regions(comp, tol=1e-9)
    assert len(regions)
    fig = phase_diagram_figure(comp, regions, phase_boundaries(regions))
    ax_f, ax_pd = fig.axes
    assert len(ax_f.lines) == 2 * 3  # points and hull per temperature
    assert len(ax_pd.collections) == len(regions)  # one shaded interval per (T, region)


def test_estimates_figure_marks_claims_and_the_best():
    fig = estimates_figure(_estimates(fields=(0.0,)))
    ax_e, ax_z = fig.axes[:2]
    assert ax_e.get_yscale() == "log" and "honest" in ax_z.get_title()
    # per estimator: the error-bar dashes, claimed, unclaimed and best markers
    filled = [ln for ln in ax_e.lines if ln.get_marker() == "s" and ln.get_markerfacecolor() != "none"]
    assert len(filled) == 1 and len(filled[0].get_xdata()) == 18  # bar, claimed below T 3.3
    rings = [ln for ln in ax_e.lines if ln.get_marker() == "o" and ln.get_markersize() == 8]
    assert sum(len(ln.get_xdata()) for ln in rings) == 18


def test_sampler_phase_diagram_draws_its_converged_rows_and_the_reference():
    fig = _sampler_phase_diagram()
    ax_f = fig.axes[0]
    crosses = [ln for ln in ax_f.lines if ln.get_marker() == "x"]
    assert len(crosses) == 4 and all(len(ln.get_xdata()) == 5 for ln in crosses)  # n_au 0, 4, 8, 12, 16
    assert "ao-transformer samples" in fig.get_suptitle()
    comp = cuau_exact_composition_table("2x2x4", [300.0, 700.0]).assign(model="ao-transformer", source="transfer-2x2x4",
                                                                         estimator="refined")  # fmt: skip
    assert "refined samples (transfer-2x2x4)" in phase_diagram_figure(comp, two_phase_regions(comp)).get_suptitle()
    # rows named by their states' order parameters: one marker set per ordered phase on the T-x panel
    named = comp.assign(phase=np.select([comp["n_au"] == 4, comp["n_au"] == 8], ["Cu3Au", "CuAu"], "disordered"))
    marks = [ln for ln in phase_diagram_figure(named, two_phase_regions(comp)).axes[1].lines if ln.get_marker() in "s^"]
    assert sorted(len(ln.get_xdata()) for ln in marks) == [2, 2]  # n_au 4 and 8 at both temperatures
    # a reference's boundary lines over the sampler's diagram: one dashed black line per (region, side)
    ref = cuau_exact_composition_table("2x2x4", [300.0, 500.0, 700.0])
    lines = phase_boundaries(two_phase_regions(ref, tol=1e-9))
    fig = phase_diagram_figure(named, two_phase_regions(comp), reference=lines)
    dashed = [ln for ln in fig.axes[1].lines if ln.get_linestyle() == "--"]
    assert len(dashed) == lines[["region", "side"]].drop_duplicates().shape[0] > 0


def test_bad_tables_are_refused(tmp_path):
    with pytest.raises(ValueError, match="ness"):
        free_energy_figure(_metrics().drop(columns="ness"))
    with pytest.raises(ValueError, match="one system and size"):
        free_energy_figure(pd.concat([_metrics(), _metrics(size="8x8")]))
    with pytest.raises(ValueError, match="unknown figure"):
        figure_from_files("nope", {}, system="ising", size="4x4")
    with pytest.raises(ValueError, match=".png, .pdf"):
        save_figure(free_energy_figure(_metrics()), [tmp_path / "f.jpg"])
    assert not list(tmp_path.iterdir())


# --- layout and labels: every figure drawn, nothing clipped, nothing overlapping ---------------

ALL_MODELS = ("fo-arm-mlp", "ao-arm-mlp", "mam-mlp", "mam-transformer")
FIVE_FIELDS = {"ising": (-0.2, -0.1, 0.0, 0.1, 0.2), "cuau": (-0.04, -0.02, 0.0, 0.02, 0.04)}


def _reference(met: pd.DataFrame, method: str = "exact") -> pd.DataFrame:
    return met[["system", "size", "T", "field"]].drop_duplicates().assign(c=lambda d: 1.0 / d["T"], method=method)


def _log(i: int = 0, marginal: bool = False) -> pd.DataFrame:
    step = np.arange(0, 2000, 50)
    return pd.DataFrame({"step": step, "lw_std_mean": 5 * np.exp(-step / (400 * (i + 1))) + 0.1,
                         "lw_std_max": 9 * np.exp(-step / (400 * (i + 1))) + 0.3,
                         "f_var_mean": -2.0 + 0.5 * np.exp(-step / 300) + 0.01 * np.sin(step + i),
                         "f_var_source": "marginal" if marginal else "log_q"})  # fmt: skip


def _heat_capacity(system, models, method="exact"):
    met = _metrics(system, "4x4" if system == "ising" else "2x2x4", models, FIVE_FIELDS[system])
    return heat_capacity_figure(met, _reference(met, method))


def _summary() -> pd.DataFrame:
    """A sampler summary with costs: Ising 4x4 and 8x8 (one out-painted to 16x16), CuAu 2x2x4."""
    rows = [dict(system="ising", size=size, model=m, source="direct", max_abs_delta_f=2e-4 * (i + 1) * (j + 1),
                 max_rel_delta_f=1e-4 * (i + 1) * (j + 1), train_s=600.0 * (i + 1), sample_s=60.0 * (j + 1))
            for j, size in enumerate(("4x4", "8x8")) for i, m in enumerate(ALL_MODELS)]  # fmt: skip
    rows.append(dict(system="ising", size="16x16", model="ao-arm-mlp", source="outpaint-8x8", max_abs_delta_f=4e-3,
                     max_rel_delta_f=2e-3, train_s=1200.0, sample_s=300.0))  # fmt: skip
    rows += [dict(system="cuau", size="2x2x4", model=m, source="direct", max_abs_delta_f=1e-4 * (i + 1),
                  max_rel_delta_f=1e-3, train_s=1800.0, sample_s=100.0 * (i + 1))
             for i, m in enumerate(("ao-arm-mlp", "mam-transformer"))]  # fmt: skip
    rows.append(dict(system="cuau", size="2x2x4", model="mam-mlp", source="direct", max_abs_delta_f=1e-3,
                     max_rel_delta_f=1e-3, train_s=np.nan, sample_s=10.0))  # no recorded cost: left out
    return pd.DataFrame(rows)


def test_cost_figure_plots_error_against_wall_time():
    """One panel per system: relative errors for Ising, meV/atom for CuAu, against training plus
    sampling minutes; samplers without a cost are left out and counted in the title."""
    fig = cost_figure(_summary())
    ax_c, ax_i = fig.axes
    assert (ax_c.get_title(), ax_i.get_title()) == ("CuAu", "Ising") and ax_i.get_yscale() == "log"
    assert len(ax_i.lines) == 9 and len(ax_c.lines) == 2
    x, y = ax_c.lines[1].get_xydata()[0]
    assert x == pytest.approx((1800 + 200) / 60) and y == pytest.approx(0.2)  # mam-transformer: 2e-4 eV in meV
    x, y = ax_i.lines[8].get_xydata()[0]  # the out-painted table, last in the summary's order
    assert x == pytest.approx(25.0) and y == pytest.approx(2e-3)
    assert "meV" in ax_c.get_ylabel() and "without a cost or a reference: 1" in fig.get_suptitle()
    with pytest.raises(ValueError, match="nothing to plot"):
        cost_figure(_summary().assign(train_s=np.nan))


def _phase_diagram():
    comp = cuau_exact_composition_table("2x2x4", [300.0, 500.0, 700.0, 900.0]).assign(method="enumeration")
    regions = two_phase_regions(comp, tol=1e-9)
    return phase_diagram_figure(comp, regions, phase_boundaries(regions))


def _estimates(system="ising", fields=(-1.0, -0.5, 0.0, 0.5, 1.0)):
    rows = []
    for T in np.linspace(1.5, 3.5, 21):
        for h in fields:
            for k, est in enumerate(("bar", "nis")):
                err = 1e-5 * (1 + k) * (1 + T)
                rows.append(dict(system=system, size="16x16", T=T, field=h, model="ao-transformer",
                                 source="transfer-8x8", estimator=est, f_est=-2.0 + err, f_est_err=err,
                                 est_converged=T < 3.3, f_ref=-2.0, delta_f=err, z=1.0,
                                 best=(k == 0) & (T < 3.3)))  # fmt: skip
    return pd.DataFrame(rows)


def _sampler_phase_diagram():
    comp = cuau_exact_composition_table("2x2x4", [300.0, 500.0, 700.0, 900.0])
    comp = comp.assign(f_x_ref=comp["f_x"], f_x_err=1e-5, converged=comp["n_au"] % 4 == 0, model="ao-transformer",
                       source="direct")  # fmt: skip
    regions = two_phase_regions(comp.assign(f_x=comp["f_x"].where(comp["converged"])), tol=1e-9)
    return phase_diagram_figure(comp, regions, phase_boundaries(regions))


#: every figure, one model and many series (5 fields x 4 models), both systems
FIGURE_CASES = {
    "free_energy-ising-1": lambda: free_energy_figure(_metrics("ising", "16x16", ALL_MODELS[:1], FIVE_FIELDS["ising"])),
    "free_energy-cuau-4": lambda: free_energy_figure(_metrics("cuau", "2x2x4", ALL_MODELS, FIVE_FIELDS["cuau"])),
    "heat_capacity-ising-1": lambda: _heat_capacity("ising", ("fo-arm-mlp",)),
    "heat_capacity-cuau-1": lambda: _heat_capacity("cuau", ("ao-arm-mlp",), "wang_landau"),
    "heat_capacity-ising-4": lambda: _heat_capacity("ising", ALL_MODELS),
    "training-ising-4": lambda: training_figure({m: _log(i, m.startswith("mam")) for i, m in enumerate(ALL_MODELS)},
                                                system="ising", size="16x16"),
    "training-cuau-1": lambda: training_figure({"mam-transformer": _log(0, True)}, system="cuau", size="2x2x4"),
    "phase_diagram": _phase_diagram,
    "sampler_phase_diagram": _sampler_phase_diagram,
    "estimates-ising": lambda: estimates_figure(_estimates()),
    "estimates-cuau": lambda: estimates_figure(_estimates("cuau", (-0.12, 0.0, 0.12)).assign(size="4x4x4")),
    "equal_cost": lambda: cost_figure(_summary()),
}  # fmt: skip


def _drawn(fig):
    """``fig`` drawn on an Agg canvas; its renderer."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _labelled(fig, renderer) -> dict[str, object]:
    """name → window extent of the suptitle, every axes title and axis label, and every legend."""
    out = {}
    if fig.get_suptitle():
        (sup,) = [t for t in fig.texts if t.get_text() == fig.get_suptitle()]
        out["suptitle"] = sup.get_window_extent(renderer)
    for i, ax in enumerate(fig.axes):
        for what, text in (("title", ax.title), ("xlabel", ax.xaxis.label), ("ylabel", ax.yaxis.label)):
            if text.get_text() and text.get_visible():
                out[f"axes {i} {what} {text.get_text()!r}"] = text.get_window_extent(renderer)
        if ax.get_legend() is not None:
            out[f"axes {i} legend"] = ax.get_legend().get_window_extent(renderer)
    for j, leg in enumerate(fig.legends):
        out[f"figure legend {j}"] = leg.get_window_extent(renderer)
    return out


def _inside(inner, outer, tol=1.0) -> bool:
    return (inner.x0 >= outer.x0 - tol and inner.y0 >= outer.y0 - tol and inner.x1 <= outer.x1 + tol
            and inner.y1 <= outer.y1 + tol)  # fmt: skip


def _overlap(a, b, tol=0.5) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol


@pytest.mark.parametrize("case", sorted(FIGURE_CASES))
def test_figure_texts_inside_the_figure_and_apart(case):
    """Constrained layout; drawn, every title, label, legend and tick label lies inside the figure,
    no two of the titles, labels and legends overlap, and none covers a panel's data area."""
    fig = FIGURE_CASES[case]()
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    renderer = _drawn(fig)
    boxes = _labelled(fig, renderer)
    assert "suptitle" in boxes and any("title" in k for k in boxes if k != "suptitle")
    outside = [k for k, b in boxes.items() if not _inside(b, fig.bbox)]
    for i, ax in enumerate(fig.axes):  # tick labels (and offset texts) too
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            b = axis.get_tightbbox(renderer)
            if b is not None and not _inside(b, fig.bbox):
                outside.append(f"axes {i} {name} axis")
    assert not outside, f"clipped at the figure's edge: {outside}"
    overlapping = [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes.items(), 2) if _overlap(ba, bb)]
    assert not overlapping, f"overlapping: {overlapping}"
    covering = [(k, i) for k, b in boxes.items() for i, ax in enumerate(fig.axes) if _overlap(b, ax.bbox)]
    assert not covering, f"over a panel's data area: {covering}"


def test_heat_capacity_title_of_one_model_fits():
    """The user's case: one model, a long reference method; the suptitle is not clipped."""
    fig = _heat_capacity("cuau", ("fo-arm-mlp",), "wang_landau, mcmc, transfer_matrix, enumeration")
    boxes = _labelled(fig, _drawn(fig))
    assert _inside(boxes["suptitle"], fig.bbox)
    assert all(_inside(b, fig.bbox) for b in boxes.values())


def test_units_in_axis_labels():
    """DESIGN §3: c per site (atom) in units of k_B for both systems (never eV); T in J/k_B or K;
    CuAu energies in meV/atom, Ising in J; the field's unit in the legend."""
    for system, site in (("ising", "site"), ("cuau", "atom")):
        fig = _heat_capacity(system, ("fo-arm-mlp",))
        c_label = fig.axes[0].get_ylabel()
        assert r"k_\mathrm{B}" in c_label and site in c_label and "eV" not in c_label
        assert fig.axes[0].get_xlabel() == (r"$T$ [$J/k_\mathrm{B}$]" if system == "ising" else r"$T$ [K]")
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert legend[0] == ("h = −0.2 J" if system == "ising" else "μ = −0.04 eV")
    cuau = free_energy_figure(_metrics("cuau", "2x2x4", ("ao-arm-mlp",)))
    assert "meV/atom" in cuau.axes[0].get_ylabel() and cuau.axes[1].get_xlabel() == r"$T$ [K]"
    ising = free_energy_figure(_metrics())
    assert "[" not in ising.axes[0].get_ylabel()  # a relative error: no unit
    assert "J/site" in training_figure({"fo-arm-mlp": _log()}, system="ising", size="4x4").axes[1].get_ylabel()
    assert "meV/atom" in training_figure({"fo-arm-mlp": _log()}, system="cuau", size="2x2x4").axes[1].get_ylabel()
    _, ax_pd = _phase_diagram().axes
    assert ax_pd.get_ylabel() == r"$T$ [K]"


def test_style_is_the_figures_own():
    """The style does not depend on, nor change, the global rcParams, also not at import."""
    before = dict(matplotlib.rcParams)
    importlib.reload(importlib.import_module("lattherm.plotting"))
    assert dict(matplotlib.rcParams) == before
    sizes = []
    for rc in ({}, {"font.size": 20, "axes.titlesize": 30, "xtick.labelsize": 25, "axes.grid": False}):
        with matplotlib.rc_context(rc):
            fig = _heat_capacity("ising", ("fo-arm-mlp",))
            _drawn(fig)
            ax, legend = fig.axes[0], fig.legends[0].get_texts()[0]
            tick, grid = ax.get_xticklabels()[0], ax.xaxis.get_gridlines()[0]
            sizes.append((ax.title.get_fontsize(), ax.yaxis.label.get_fontsize(), legend.get_fontsize(),
                          tick.get_fontsize(), grid.get_visible(), grid.get_linewidth()))  # fmt: skip
    assert sizes[0] == sizes[1]
    assert dict(matplotlib.rcParams) == before
