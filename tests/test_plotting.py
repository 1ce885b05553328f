"""Figures: each figure function draws what its tables hold and saves PNG/PDF atomically; bad
tables are refused with a message naming what is missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lattherm.plotting import (
    figure_from_files,
    free_energy_figure,
    heat_capacity_figure,
    phase_diagram_figure,
    save_figure,
    training_figure,
)
from lattherm.reference.cuau_exact import cuau_exact_composition_table
from lattherm.reference.phase_diagram import phase_boundaries, two_phase_regions


def _metrics(system="ising", size="4x4", models=("fo-arm-mlp", "ao-arm-mlp")) -> pd.DataFrame:
    rows = []
    for k, model in enumerate(models):
        for T in (1.5, 2.0, 2.5, 3.0):
            for h in (-0.5, 0.0, 0.5):
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
