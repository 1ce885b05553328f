"""The study's figures, one function per figure, from the Parquet tables (DESIGN §6).

Every function takes tables (pandas DataFrames as written by the workflow) and returns a
matplotlib ``Figure``; :func:`save_figure` writes it atomically as PNG and/or PDF. Units follow
DESIGN §3: Ising in units of J (``k_B = 1``), CuAu in meV/atom in figures (eV/atom in tables),
T in K.

* :func:`free_energy_figure`: per model, the error of ``F_NIS`` against the reference over T
  (Ising: relative ``|ΔF/F|``; CuAu: ``|ΔF|`` in meV/atom) and the NESS, one line per field.
* :func:`heat_capacity_figure`: reweighted heat capacity ``c(T)`` of each model (error bars)
  over the reference curve, one colour per field.
* :func:`training_figure`: training curves of each model: the spread of ``log w`` per condition
  (0 when ``q = p``; the reference-free convergence signal) and ``F_var``.
* :func:`phase_diagram_figure`: CuAu composition free energies ``f_x`` at a few temperatures
  with their lower convex hull, and the T–x phase diagram (two-phase intervals and their
  boundary lines).

No ``pyplot`` state is used (figures are built with :class:`matplotlib.figure.Figure`), so this
works without a display and in parallel jobs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from lattherm.io import atomic_path, check_columns
from lattherm.models import MODEL_NAMES, is_fixed_order
from lattherm.reference.phase_diagram import lower_hull

__all__ = [
    "FIGURES",
    "free_energy_figure",
    "heat_capacity_figure",
    "training_figure",
    "phase_diagram_figure",
    "save_figure",
    "figure_from_files",
]

#: per-site energies in figures: Ising J, CuAu meV/atom
_ENERGY_SCALE = {"ising": 1.0, "cuau": 1e3}
_ENERGY_UNIT = {"ising": "J", "cuau": "meV/atom"}
_T_UNIT = {"ising": "T [J/k_B]", "cuau": "T [K]"}
_FIELD_NAME = {"ising": "h", "cuau": "μ [eV]"}


def _field_colours(fields: Sequence[float]) -> dict[float, tuple]:
    cmap = colormaps["viridis"]
    fields = sorted(set(float(f) for f in fields))
    if len(fields) == 1:
        return {fields[0]: cmap(0.0)}
    return {f: cmap(0.9 * i / (len(fields) - 1)) for i, f in enumerate(fields)}


def _system_of(*tables: pd.DataFrame) -> tuple[str, str]:
    for t in tables:
        if t is not None and len(t) and "system" in t:
            systems, sizes = sorted(set(t["system"])), sorted(set(t["size"]))
            if len(systems) != 1 or len(sizes) != 1:
                raise ValueError(f"tables of one system and size expected, got {systems} {sizes}")
            return systems[0], sizes[0]
    raise ValueError("no table with rows: nothing to plot")


def _by_model(metrics: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    check_columns(metrics, ("system", "size", "model", "T", "field"), what="metric table")
    return [(m, g) for m, g in metrics.groupby("model", sort=True)]


def free_energy_figure(metrics: pd.DataFrame) -> Figure:
    """Error of ``F_NIS`` against the reference and NESS over T, one column per model."""
    check_columns(metrics, ("delta_f", "f_ref", "ness", "f_nis_err"), what="metric table")
    system, size = _system_of(metrics)
    models = _by_model(metrics)
    colours = _field_colours(metrics["field"])
    fig = Figure(figsize=(3.6 * len(models) + 0.8, 6.0), layout="constrained")
    axes = fig.subplots(2, len(models), squeeze=False, sharex=True, sharey="row")
    for j, (model, g) in enumerate(models):
        ax_e, ax_n = axes[0, j], axes[1, j]
        for h, gh in g.groupby("field", sort=True):
            gh = gh.sort_values("T")
            if system == "ising":
                err = (gh["delta_f"] / gh["f_ref"]).abs()
                bar = (gh["f_nis_err"] / gh["f_ref"]).abs()
            else:
                err, bar = gh["delta_f"].abs() * 1e3, gh["f_nis_err"] * 1e3
            kw = dict(color=colours[float(h)], marker="o", ms=3, lw=1)
            ax_e.plot(gh["T"], err, label=f"{_FIELD_NAME[system]} = {h:g}", **kw)
            ax_e.plot(gh["T"], bar, color=colours[float(h)], lw=0.6, ls=":")
            ax_n.plot(gh["T"], gh["ness"], **kw)
        n_orders = sorted(set(g["n_orders"])) if "n_orders" in g else [1]
        title = model + (f" ({n_orders[0]} orders)" if n_orders != [1] else "")
        if model in MODEL_NAMES and not is_fixed_order(model) and "order" in g and set(g["order"]) == {"fixed"}:
            title += " (one fixed order)"
        ax_e.set_title(title, fontsize=10)
        ax_e.set_yscale("log")
        ax_n.set_ylim(0, 1.05)
        ax_n.set_xlabel(_T_UNIT[system])
    axes[0, 0].set_ylabel("|ΔF / F|" if system == "ising" else "|ΔF| [meV/atom]")
    axes[1, 0].set_ylabel("NESS")
    axes[0, -1].legend(fontsize=7, loc="best")
    ref = sorted(set(metrics["ref_method"].dropna())) if "ref_method" in metrics else []
    fig.suptitle(f"{system} {size}: F_NIS vs {'/'.join(ref) or 'reference'} (dotted: bootstrap error)", fontsize=11)
    return fig


def heat_capacity_figure(metrics: pd.DataFrame, reference: pd.DataFrame | None = None) -> Figure:
    """Reweighted ``c(T)`` of each model (points, error bars) over the reference (lines)."""
    check_columns(metrics, ("c", "c_err"), what="metric table")
    system, size = _system_of(metrics, reference)
    models = _by_model(metrics)
    colours = _field_colours(metrics["field"])
    fig = Figure(figsize=(3.6 * len(models) + 0.8, 3.4), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False, sharey=True)[0]
    for ax, (model, g) in zip(axes, models, strict=True):
        for h, gh in g.groupby("field", sort=True):
            gh = gh.sort_values("T")
            c = colours[float(h)]
            if reference is not None and "c" in reference:
                r = reference[np.isclose(reference["field"], h, rtol=0, atol=1e-9)].sort_values("T")
                ax.plot(r["T"], r["c"], color=c, lw=1.2)
            ax.errorbar(gh["T"], gh["c"], yerr=gh["c_err"], color=c, fmt="o", ms=3, lw=0.8,
                        label=f"{_FIELD_NAME[system]} = {h:g}")  # fmt: skip
        ax.set_title(model, fontsize=10)
        ax.set_xlabel(_T_UNIT[system])
    axes[0].set_ylabel("c [k_B per site]")
    axes[-1].legend(fontsize=7)
    method = sorted(set(reference["method"])) if reference is not None and "method" in reference else []
    fig.suptitle(f"{system} {size}: heat capacity, reweighted samples (points) vs {'/'.join(method) or 'reference'}"
                 " (lines)", fontsize=11)  # fmt: skip
    return fig


def training_figure(logs: Mapping[str, pd.DataFrame], *, system: str, size: str) -> Figure:
    """Training curves per model: mean and max spread of ``log w`` per condition, ``F_var``."""
    if not logs:
        raise ValueError("no training logs: nothing to plot")
    fig = Figure(figsize=(9.5, 3.4), layout="constrained")
    ax_s, ax_f = fig.subplots(1, 2)
    cmap = colormaps["tab10"]
    for i, (model, log) in enumerate(sorted(logs.items())):
        check_columns(log, ("step", "lw_std_mean", "lw_std_max", "f_var_mean"), what=f"train log of {model}")
        c = cmap(i % 10)
        ax_s.plot(log["step"], log["lw_std_mean"], color=c, lw=1.2, label=model)
        ax_s.plot(log["step"], log["lw_std_max"], color=c, lw=0.6, ls=":")
        src = sorted(set(log["f_var_source"])) if "f_var_source" in log else ["log_q"]
        f = log["f_var_mean"] * _ENERGY_SCALE[system]
        ax_f.plot(log["step"], f, color=c, lw=1.0, label=model + (" (marginal head)" if src == ["marginal"] else ""))
    ax_s.set_yscale("log")
    ax_s.set_xlabel("step")
    ax_s.set_ylabel("std of log w per condition (dotted: max)")
    ax_f.set_xlabel("step")
    ax_f.set_ylabel(f"F_var, mean over the batch's conditions [{_ENERGY_UNIT[system]}]")
    lo, hi = np.nanpercentile(np.concatenate([lg["f_var_mean"].to_numpy() for lg in logs.values()]), [1, 60])
    if np.isfinite(lo) and np.isfinite(hi) and hi > lo:  # the drifting grid makes F_var noisy: clip the transient
        s = _ENERGY_SCALE[system]
        ax_f.set_ylim(lo * s - 0.1 * abs(hi - lo) * s, hi * s + 0.5 * abs(hi - lo) * s)
    ax_s.legend(fontsize=8)
    fig.suptitle(f"{system} {size}: training", fontsize=11)
    return fig


def phase_diagram_figure(
    composition: pd.DataFrame, regions: pd.DataFrame, boundaries: pd.DataFrame | None = None, *, n_curves: int = 5
) -> Figure:
    """CuAu: ``f_x`` (formation reference) vs ``x_Au`` at ``n_curves`` temperatures with their lower
    hulls, and the T–x diagram: two-phase intervals per temperature and their boundary lines."""
    check_columns(composition, ("T", "x_au", "f_x"), what="composition table")
    check_columns(regions, ("T", "x_lo", "x_hi"), what="phase-diagram table")
    system, size = _system_of(composition)
    value = "f_x_formation" if "f_x_formation" in composition else "f_x"
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    ax_f, ax_pd = fig.subplots(1, 2)
    temps = np.sort(composition["T"].unique())
    pick = temps[np.unique(np.linspace(0, len(temps) - 1, min(n_curves, len(temps))).round().astype(int))]
    cmap = colormaps["plasma"]
    for i, T in enumerate(pick):
        g = composition[composition["T"] == T].sort_values("x_au")
        x, f = g["x_au"].to_numpy(), g[value].to_numpy() * 1e3
        c = cmap(i / max(1, len(pick) - 1) * 0.9)
        ax_f.plot(x, f, "o", ms=3, color=c, label=f"{T:g} K")
        hull = lower_hull(x, f)
        ax_f.plot(x[hull], f[hull], "-", lw=1, color=c)
    ax_f.set_xlabel("x_Au")
    ax_f.set_ylabel("f_x − [x E_Au + (1 − x) E_Cu] [meV/atom]" if value == "f_x_formation" else "f_x [meV/atom]")
    ax_f.legend(fontsize=7)
    ax_f.set_title("free energy per composition and lower hull", fontsize=10)
    dT = np.min(np.diff(temps)) if len(temps) > 1 else 1.0
    for r in regions.itertuples():
        ax_pd.fill_between([r.x_lo, r.x_hi], r.T - dT / 2, r.T + dT / 2, color="tab:blue", alpha=0.25, lw=0)
    if boundaries is not None and len(boundaries):
        check_columns(boundaries, ("region", "side", "T", "x", "label"), what="phase-boundary table")
        for _, g in boundaries.groupby(["region", "side"], sort=True):
            g = g.sort_values("T")
            ax_pd.plot(g["x"], g["T"], "-", color="tab:blue", lw=1)
        for _, g in boundaries.groupby("region", sort=True):
            label = g.sort_values("T").iloc[0]["label"]
            ax_pd.annotate(str(label), (g["x"].mean(), g["T"].min()), fontsize=6, ha="center", va="top")
    ax_pd.set_xlim(0, 1)
    ax_pd.set_ylim(temps.min() - dT, temps.max() + dT)
    ax_pd.set_xlabel("x_Au")
    ax_pd.set_ylabel("T [K]")
    ax_pd.set_title("two-phase regions (shaded) and boundaries", fontsize=10)
    method = sorted(set(composition["method"])) if "method" in composition else []
    fig.suptitle(f"CuAu {size}: phase diagram from {'/'.join(method) or 'f_x'}", fontsize=11)
    return fig


#: figure name → function (the workflow's figure rules)
FIGURES = {
    "free_energy": free_energy_figure,
    "heat_capacity": heat_capacity_figure,
    "training": training_figure,
    "phase_diagram": phase_diagram_figure,
}


def _read(paths) -> pd.DataFrame | None:
    paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not paths:
        return None
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def figure_from_files(kind: str, inputs: Mapping[str, object], *, system: str, size: str) -> Figure:
    """Figure ``kind`` (a key of :data:`FIGURES`) from the workflow's Parquet files.

    ``inputs``: ``free_energy``: ``metrics`` (metric tables); ``heat_capacity``: ``metrics`` and
    ``reference`` (a table with ``c``, may be empty); ``training``: model name → train log;
    ``phase_diagram``: ``composition`` (f_x table), ``regions``, ``boundaries``.
    """
    if kind not in FIGURES:
        raise ValueError(f"unknown figure {kind!r}; expected one of {sorted(FIGURES)}")
    if kind == "free_energy":
        return free_energy_figure(_read(inputs["metrics"]))
    if kind == "heat_capacity":
        return heat_capacity_figure(_read(inputs["metrics"]), _read(inputs.get("reference", [])))
    if kind == "training":
        return training_figure({m: _read(p) for m, p in inputs.items()}, system=system, size=size)
    return phase_diagram_figure(_read(inputs["composition"]), _read(inputs["regions"]), _read(inputs["boundaries"]))


def save_figure(fig: Figure, paths: Sequence[str | os.PathLike], *, dpi: int = 150) -> None:
    """Write ``fig`` to every path (format from the suffix: .png, .pdf, .svg), atomically."""
    for p in paths:
        p = Path(p)
        if p.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise ValueError(f"figure paths must end in .png, .pdf or .svg, got {p}")
        with atomic_path(p, suffix=p.suffix) as tmp:
            fig.savefig(tmp, dpi=dpi, format=p.suffix[1:].lower())
