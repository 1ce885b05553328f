"""The study's figures, one function per figure, from the Parquet tables (DESIGN §6).

Every function takes tables (pandas DataFrames as written by the workflow) and returns a
matplotlib ``Figure``; :func:`save_figure` writes it atomically as PNG and/or PDF. Units follow
DESIGN §3: Ising per site in units of J (``T`` in J/k_B, field ``h`` in J), CuAu per atom in
meV/atom in figures (eV/atom in tables), ``T`` in K, the field ``μ`` in eV; the heat capacity
``c`` is per site (atom) in units of k_B for both systems.

* :func:`free_energy_figure`: per model, the error of ``F_NIS`` against the reference over T
  (Ising: relative ``|Δf/f|``; CuAu: ``|Δf|`` in meV/atom) and the NESS, one line per field.
* :func:`heat_capacity_figure`: reweighted heat capacity ``c(T)`` of each model (error bars)
  over the reference curve, one colour per field.
* :func:`training_figure`: training curves of each model: the spread of ``log w`` per condition
  (0 when ``q = p``; the reference-free convergence signal) and ``F_var``.
* :func:`phase_diagram_figure`: CuAu composition free energies ``f_x`` at a few temperatures
  with their lower convex hull, and the T–x phase diagram (two-phase intervals and their
  boundary lines).

One style for every figure (:data:`STYLE`): each figure function runs inside
``matplotlib.style.context(["default", STYLE])`` (nothing global is changed, at import or
later, and a user's matplotlibrc does not change the figures) and builds its figure with
:func:`_new_figure`, with matplotlib's constrained layout, so that titles, the suptitle, axis
labels and legends are never clipped and never overlap. Legends that would cover data are drawn
outside the panels (right of them); long titles are wrapped to the width they have.

No ``pyplot`` state is used (figures are built with :class:`matplotlib.figure.Figure`), so this
works without a display and in parallel jobs.
"""

from __future__ import annotations

import functools
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text

from lattherm.io import atomic_path, check_columns
from lattherm.models import MODEL_NAMES, is_fixed_order
from lattherm.reference.phase_diagram import STOICHIOMETRIES, lower_hull, phase_boundaries
from lattherm.systems import REGISTRY

__all__ = [
    "FIGURES",
    "STYLE",
    "free_energy_figure",
    "heat_capacity_figure",
    "training_figure",
    "phase_diagram_figure",
    "save_figure",
    "figure_from_files",
]

#: resolution of saved raster figures (and of the figures themselves)
DPI = 150

#: the one style of every figure (applied over matplotlib's defaults, inside each figure function)
STYLE = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.constrained_layout.use": True,
    "figure.constrained_layout.h_pad": 0.06,  # inches around every panel, label and legend
    "figure.constrained_layout.w_pad": 0.06,
    "figure.titlesize": 11,
    "figure.titleweight": "normal",
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "legend.frameon": False,
    "legend.handlelength": 2.2,
    "legend.borderaxespad": 0.3,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "errorbar.capsize": 0,
    "axes.linewidth": 0.8,
    "axes.grid": True,
    "axes.grid.which": "major",
    "grid.linewidth": 0.5,
    "grid.alpha": 0.35,
    "axes.formatter.use_mathtext": True,
}

#: panel and legend sizes in inches (figure sizes follow from the number of panels)
_PANEL_W, _PANEL_H, _LEGEND_W, _MARGIN = 3.2, 2.5, 1.5, 0.6



def _labels(system: str) -> dict:
    """The system's figure labels (lattherm.systems.SystemInfo.labels): name, T and c axis labels,
    field symbol and unit, the unit and scale of per-site energies, relative or absolute errors."""
    return dict(REGISTRY[system].labels)


#: grey of the legend entries that explain line styles (not a series)
_KEY = "0.35"


def _styled(func):
    """Run a figure function inside the figure style (and nothing else changed), then fit its
    texts (:func:`_fit_texts`).

    Ticks are made lazily by matplotlib, at the first draw: the figure is laid out inside the
    style so that its ticks, too, have the style's sizes whatever the rcParams of a later draw."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with matplotlib.style.context(["default", STYLE]):
            fig = func(*args, **kwargs)
            _fit_texts(fig)
        return fig

    return wrapper


def _new_figure(n_rows: int, n_cols: int, *, legend: bool = True, panel_w: float = _PANEL_W,
                panel_h: float = _PANEL_H, **subplot_kw) -> tuple[Figure, np.ndarray]:  # fmt: skip
    """A figure of ``n_rows x n_cols`` panels with constrained layout (room for a legend right of
    the panels when ``legend``) on an Agg canvas; the axes as a 2-D array."""
    width = n_cols * panel_w + _MARGIN + (_LEGEND_W if legend else 0.0)
    fig = Figure(figsize=(width, n_rows * panel_h + _MARGIN), layout="constrained", dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False, **subplot_kw)
    return fig, axes


def _fit_width(text: Text, width_px: float) -> None:
    """Break ``text`` at spaces into lines until it is at most ``width_px`` wide (hyphenated model
    names and mathtext are not broken)."""
    words = " ".join(text.get_text().split())
    if "$" in words or text.get_window_extent().width <= width_px:
        return
    n = len(words)
    while n > 8:
        n = int(n * 0.85)
        text.set_text("\n".join(textwrap.wrap(words, n, break_on_hyphens=False, break_long_words=False)))
        if text.get_window_extent().width <= width_px:
            return


def _fit_texts(fig: Figure) -> None:
    """Lay ``fig`` out once (which also makes its ticks, in the style) and fit what constrained
    layout cannot: axes titles are wrapped to their panel's width, and the suptitle is wrapped
    and centred over the part of the figure left of the figure legends. (Every later draw lays
    the figure out again, with the fitted texts.)"""
    fig.draw_without_rendering()
    for ax in fig.axes:
        _fit_width(ax.title, ax.bbox.width)
    if fig.get_suptitle():
        (sup,) = [t for t in fig.texts if t.get_text() == fig.get_suptitle()]
        right = min([leg.get_window_extent().x0 for leg in fig.legends], default=fig.bbox.x1)
        sup.set_x(0.5 * right / fig.bbox.width)
        _fit_width(sup, right - 2 * matplotlib.rcParams["figure.constrained_layout.w_pad"] * fig.dpi)


def _figure_legend(fig: Figure, handles: Sequence[Line2D], title: str | None = None) -> None:
    """One legend for all panels, right of them (never over data), in as many columns as it
    needs to fit the figure's height."""
    handles = list(handles)
    room = fig.bbox.height - 4 * matplotlib.rcParams["figure.constrained_layout.h_pad"] * fig.dpi
    for ncols in range(1, len(handles) + 1):
        leg = fig.legend(handles=handles, loc="outside right upper", title=title, alignment="left", ncols=ncols)
        if leg.get_window_extent().height <= room or ncols == len(handles):
            return
        leg.remove()


def _field_colours(fields: Sequence[float]) -> dict[float, tuple]:
    cmap = colormaps["viridis"]
    fields = sorted(set(float(f) for f in fields))
    if len(fields) == 1:
        return {fields[0]: cmap(0.0)}
    return {f: cmap(0.9 * i / (len(fields) - 1)) for i, f in enumerate(fields)}


def _field_handles(system: str, colours: Mapping[float, tuple], **kw) -> list[Line2D]:
    sym, unit = _labels(system)['field'], _labels(system)['field_unit']
    return [Line2D([], [], color=c, label=f"{sym} = {h:g} {unit}".replace("-", "−"), **kw) for h, c in colours.items()]


def _system_of(*tables: pd.DataFrame) -> tuple[str, str]:
    for t in tables:
        if t is not None and len(t) and "system" in t:
            systems, sizes = sorted(set(t["system"])), sorted(set(t["size"]))
            if len(systems) != 1 or len(sizes) != 1:
                raise ValueError(f"tables of one system and size expected, got {systems} {sizes}")
            return systems[0], sizes[0]
    raise ValueError("no table with rows: nothing to plot")


def _by_model(metrics: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One panel per model and source (``model`` alone for direct samples, ``model, source`` for
    out-painted or size-transferred ones)."""
    check_columns(metrics, ("system", "size", "model", "T", "field"), what="metric table")
    source = metrics["source"] if "source" in metrics else pd.Series("direct", index=metrics.index)
    keys = metrics["model"].where(source == "direct", metrics["model"] + ", " + source)
    return [(m, g) for m, g in metrics.groupby(keys, sort=True)]


def _model_title(model: str, g: pd.DataFrame) -> str:
    notes = []
    n_orders = sorted(set(g["n_orders"])) if "n_orders" in g else [1]
    if n_orders != [1]:
        notes.append(f"{'/'.join(f'{n:g}' for n in n_orders)} orders")
    name = g["model"].iloc[0]  # the panel's label may add the source
    if name in MODEL_NAMES and not is_fixed_order(name) and "order" in g and set(g["order"]) == {"fixed"}:
        notes.append("one fixed order")
    return model + (f" ({', '.join(notes)})" if notes else "")


@_styled
def free_energy_figure(metrics: pd.DataFrame) -> Figure:
    """Error of ``F_NIS`` against the reference and NESS over T, one column per model."""
    check_columns(metrics, ("delta_f", "f_ref", "ness", "f_nis_err"), what="metric table")
    system, size = _system_of(metrics)
    models = _by_model(metrics)
    colours = _field_colours(metrics["field"])
    fig, axes = _new_figure(2, len(models), sharex=True, sharey="row")
    for j, (model, g) in enumerate(models):
        ax_e, ax_n = axes[0, j], axes[1, j]
        for h, gh in g.groupby("field", sort=True):
            gh = gh.sort_values("T")
            if _labels(system)['relative_error']:
                err = (gh["delta_f"] / gh["f_ref"]).abs()
                bar = (gh["f_nis_err"] / gh["f_ref"]).abs()
            else:
                scale = _labels(system)['energy_scale']
                err, bar = gh["delta_f"].abs() * scale, gh["f_nis_err"] * scale
            kw = dict(color=colours[float(h)], marker="o")
            ax_e.plot(gh["T"], err, label=f"{_labels(system)['field']} = {h:g}", **kw)
            ax_e.plot(gh["T"], bar, color=colours[float(h)], lw=0.8, ls=":")
            ax_n.plot(gh["T"], gh["ness"], **kw)
        ax_e.set_title(_model_title(model, g))
        ax_e.set_yscale("log")
        ax_n.set_ylim(0, 1.05)
        ax_n.set_xlabel(_labels(system)['T'])
    if _labels(system)['relative_error']:
        axes[0, 0].set_ylabel(r"$|f_\mathrm{NIS} - f_\mathrm{ref}|\ /\ |f_\mathrm{ref}|$")
    else:
        axes[0, 0].set_ylabel(rf"$|f_\mathrm{{NIS}} - f_\mathrm{{ref}}|$ [{_labels(system)['energy']}]")
    axes[1, 0].set_ylabel("NESS")
    key = [Line2D([], [], color=_KEY, marker="o", label="error (top), NESS (bottom)"),
           Line2D([], [], color=_KEY, lw=0.8, ls=":", label="bootstrap error")]  # fmt: skip
    _figure_legend(fig, _field_handles(system, colours, marker="o") + key)
    ref = sorted(set(metrics["ref_method"].dropna())) if "ref_method" in metrics else []
    ref_name = f"{', '.join(ref)} reference" if ref else "reference"
    fig.suptitle(f"{_labels(system)['name']} {size}: f_NIS against the {ref_name}")
    return fig


_EST_MARKERS = {"nis": "o", "bar": "s", "smc": "D", "ladder": "v"}


@_styled
def estimates_figure(estimates: pd.DataFrame) -> Figure:
    """Every free-energy estimator of one sample file over T (:func:`lattherm.evaluation.estimate_table`):
    its error against the reference (relative for Ising-like systems) with its error bar, and
    ``z = Δ / error``; filled markers are claimed estimates, a ring marks the best one."""
    check_columns(estimates, ("estimator", "f_est", "f_est_err", "est_converged", "f_ref", "delta_f", "z", "best"),
                  what="estimate table")  # fmt: skip
    system, size = _system_of(estimates)
    lab = _labels(system)
    colours = _field_colours(estimates["field"])
    fig, axes = _new_figure(1, 2)
    ax_e, ax_z = axes[0]
    scale = 1.0 / estimates["f_ref"].abs() if lab["relative_error"] else lab["energy_scale"]
    err, bar = estimates["delta_f"].abs() * scale, estimates["f_est_err"] * scale
    for (h, est), g in estimates.groupby(["field", "estimator"], sort=True):
        g = g.sort_values("T")
        c, mk = colours[float(h)], _EST_MARKERS.get(est, "^")
        claimed = g["est_converged"].astype(bool).to_numpy()
        ax_e.plot(g["T"], bar[g.index], "_", ms=7, color=c)  # the one-sigma level
        ax_z.plot(g["T"], g["z"], color=c, lw=0.6, alpha=0.4)
        for ax, y in ((ax_e, err[g.index]), (ax_z, g["z"])):
            ax.plot(g["T"][claimed], y[claimed], mk, ms=3.5, color=c)
            ax.plot(g["T"][~claimed], y[~claimed], mk, ms=3.5, mfc="none", color=c)
            best = g["best"].to_numpy()
            ax.plot(g["T"][best], y[best], "o", ms=8, mfc="none", mec=c, mew=0.6)
    ax_e.set_yscale("log")
    ax_e.set_ylabel(r"$|f_\mathrm{est} - f_\mathrm{ref}|\ /\ |f_\mathrm{ref}|$" if lab["relative_error"]
                    else rf"$|f_\mathrm{{est}} - f_\mathrm{{ref}}|$ [{lab['energy']}]")  # fmt: skip
    ax_e.set_title("error (dashes: its one-sigma error bar)")
    for v in (-4, 4):
        ax_z.axhline(v, color=_KEY, lw=0.8, ls=":")
    ax_z.axhline(0, color=_KEY, lw=0.6)
    ax_z.set_ylabel(r"$z = (f_\mathrm{est} - f_\mathrm{ref})\ /\ \sigma$")
    ax_z.set_title("honesty of the error bar (|z| <= 4)")
    for ax in (ax_e, ax_z):
        ax.set_xlabel(lab["T"])
    names = {"nis": "importance sampling", "bar": "Bennett (refined)", "smc": "SMC",
             "ladder": "ladder (Bennett tied along T)"}
    key = [Line2D([], [], color=_KEY, marker=_EST_MARKERS.get(e, "^"), ls="", label=names.get(e, e))
           for e in sorted(set(estimates["estimator"]))]  # fmt: skip
    key += [Line2D([], [], color=_KEY, marker="s", ls="", mfc="none", label="not claimed"),
            Line2D([], [], color=_KEY, marker="o", ms=8, ls="", mfc="none", label="best (smallest claimed error)")]
    _figure_legend(fig, _field_handles(system, colours, marker="o", ls="") + key)
    model, source = estimates["model"].iloc[0], estimates["source"].iloc[0]
    fig.suptitle(f"{lab['name']} {size}: free-energy estimators of {model} ({source})")
    return fig


@_styled
def heat_capacity_figure(metrics: pd.DataFrame, reference: pd.DataFrame | None = None) -> Figure:
    """Reweighted ``c(T)`` of each model (points, error bars) over the reference (lines)."""
    check_columns(metrics, ("c", "c_err"), what="metric table")
    system, size = _system_of(metrics, reference)
    models = _by_model(metrics)
    colours = _field_colours(metrics["field"])
    has_ref = reference is not None and "c" in reference and len(reference) > 0
    fig, axes = _new_figure(1, len(models), sharey=True)
    for ax, (model, g) in zip(axes[0], models, strict=True):
        for h, gh in g.groupby("field", sort=True):
            gh = gh.sort_values("T")
            c = colours[float(h)]
            if has_ref:
                r = reference[np.isclose(reference["field"], h, rtol=0, atol=1e-9)].sort_values("T")
                ax.plot(r["T"], r["c"], color=c, lw=1.0)
            ax.errorbar(gh["T"], gh["c"], yerr=gh["c_err"], color=c, fmt="o", lw=0.8,
                        label=f"{_labels(system)['field']} = {h:g}")  # fmt: skip
        ax.set_title(model)
        ax.set_xlabel(_labels(system)['T'])
    axes[0, 0].set_ylabel(_labels(system)['c'])
    method = sorted(set(reference["method"])) if has_ref and "method" in reference else []
    key = [Line2D([], [], color=_KEY, marker="o", ls="none", label="reweighted samples")]
    if has_ref:
        key.append(Line2D([], [], color=_KEY, label=f"reference ({', '.join(method) or 'reference'})"))
    _figure_legend(fig, _field_handles(system, colours, marker="o") + key)
    fig.suptitle(f"{_labels(system)['name']} {size}: heat capacity")
    return fig


@_styled
def training_figure(logs: Mapping[str, pd.DataFrame], *, system: str, size: str) -> Figure:
    """Training curves per model: mean and max spread of ``log w`` per condition, ``F_var``."""
    if not logs:
        raise ValueError("no training logs: nothing to plot")
    fig, axes = _new_figure(1, 2, panel_w=3.6)
    ax_s, ax_f = axes[0]
    cmap = colormaps["tab10"]
    handles = []
    for i, (model, log) in enumerate(sorted(logs.items())):
        check_columns(log, ("step", "lw_std_mean", "lw_std_max", "f_var_mean"), what=f"train log of {model}")
        c = cmap(i % 10)
        ax_s.plot(log["step"], log["lw_std_mean"], color=c, label=model)
        ax_s.plot(log["step"], log["lw_std_max"], color=c, lw=0.7, ls=":")
        src = sorted(set(log["f_var_source"])) if "f_var_source" in log else ["log_q"]
        label = model + (" (marginal head)" if src == ["marginal"] else "")
        f = log["f_var_mean"] * _labels(system)['energy_scale']
        ax_f.plot(log["step"], f, color=c, lw=1.0, label=label)
        handles.append(Line2D([], [], color=c, label=label))
    ax_s.set_yscale("log")
    ax_s.set_xlabel("step")
    ax_s.set_ylabel(r"std of $\log w$ per condition")
    ax_s.set_title("spread of log w (0 when q = p)")
    ax_f.set_xlabel("step")
    ax_f.set_ylabel(rf"$f_\mathrm{{var}}$ [{_labels(system)['energy']}]")
    ax_f.set_title("variational free energy, batch mean")
    lo, hi = np.nanpercentile(np.concatenate([lg["f_var_mean"].to_numpy() for lg in logs.values()]), [1, 60])
    if np.isfinite(lo) and np.isfinite(hi) and hi > lo:  # the drifting grid makes F_var noisy: clip the transient
        s = _labels(system)['energy_scale']
        ax_f.set_ylim(lo * s - 0.1 * abs(hi - lo) * s, hi * s + 0.5 * abs(hi - lo) * s)
    key = [Line2D([], [], color=_KEY, label="mean over conditions"),
           Line2D([], [], color=_KEY, lw=0.7, ls=":", label="worst condition")]  # fmt: skip
    _figure_legend(fig, handles + key)
    fig.suptitle(f"{_labels(system)['name']} {size}: training")
    return fig


@_styled
def phase_diagram_figure(
    composition: pd.DataFrame, regions: pd.DataFrame, boundaries: pd.DataFrame | None = None, *, n_curves: int = 5,
    reference: pd.DataFrame | None = None,
) -> Figure:
    """CuAu: ``f_x`` (formation reference) vs ``x_Au`` at ``n_curves`` temperatures with their lower
    hulls, and the T–x diagram: two-phase intervals per temperature and their boundary lines. A
    sampler's composition table (:mod:`lattherm.composition`) is drawn with its error bars over its
    converged rows, its reference values (``f_x_ref``) as black crosses; with a ``phase`` column (the
    order parameters of its chains' states) the T–x panel marks every composition and temperature
    whose states are mostly in an ordered phase; ``reference`` (a reference's boundary lines) is
    drawn over it in black, dashed."""
    check_columns(composition, ("T", "x_au", "f_x"), what="composition table")
    check_columns(regions, ("T", "x_lo", "x_hi"), what="phase-diagram table")
    system, size = _system_of(composition)
    value = "f_x_formation" if "f_x_formation" in composition else "f_x"
    fig, axes = _new_figure(1, 2, legend=False, panel_w=4.0, panel_h=3.2)
    ax_f, ax_pd = axes[0]
    temps = np.sort(composition["T"].unique())
    pick = temps[np.unique(np.linspace(0, len(temps) - 1, min(n_curves, len(temps))).round().astype(int))]
    cmap = colormaps["plasma"]
    named = composition[composition["phase"].isin(STOICHIOMETRIES.values())] if "phase" in composition else None
    if "converged" in composition:
        composition = composition[composition["converged"].astype(bool)]
    for i, T in enumerate(pick):
        g = composition[composition["T"] == T].sort_values("x_au")
        g = g[np.isfinite(g[value].to_numpy())]
        x, f = g["x_au"].to_numpy(), g[value].to_numpy() * 1e3
        c = cmap(i / max(1, len(pick) - 1) * 0.9)
        if "f_x_err" in g:
            ax_f.errorbar(x, f, yerr=g["f_x_err"].to_numpy() * 1e3, fmt="o", ms=3, color=c, label=f"{T:g} K")
        else:
            ax_f.plot(x, f, "o", color=c, label=f"{T:g} K")
        if "f_x_ref" in g:
            ref = (g[value] - g["f_x"] + g["f_x_ref"]).to_numpy() * 1e3
            ax_f.plot(x, ref, "x", color="k", ms=4, label="reference" if i == 0 else None)
        if len(x) >= 2:
            hull = lower_hull(x, f)
            ax_f.plot(x[hull], f[hull], "-", lw=1, color=c)
    ax_f.set_xlabel(r"$x_\mathrm{Au}$")
    if value == "f_x_formation":
        ax_f.set_ylabel(r"$f_x - x E_\mathrm{Au} - (1-x) E_\mathrm{Cu}$" "\n[meV/atom]")
    else:
        ax_f.set_ylabel(r"$f_x$ [meV/atom]")
    # right of the panel (between the two panels): never over the curves
    ax_f.legend(title="T", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax_f.set_title("free energy per composition, lower hull")
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
            ax_pd.annotate(str(label), (g["x"].mean(), g["T"].min()), fontsize=6.5, ha="center", va="top")
    if reference is not None and len(reference):
        check_columns(reference, ("region", "side", "T", "x"), what="reference phase-boundary table")
        for i, (_, g) in enumerate(reference.groupby(["region", "side"], sort=True)):
            g = g.sort_values("T")
            ax_pd.plot(g["x"], g["T"], "--", color="k", lw=0.8, label="reference boundaries" if i == 0 else None)
    if named is not None:
        for marker, name in zip("s^v", STOICHIOMETRIES.values(), strict=True):
            g = named[named["phase"] == name]
            if len(g):
                ax_pd.plot(g["x_au"], g["T"], marker, ms=1.8, ls="none", alpha=0.8, label=f"{name} (order parameters)")
    if ax_pd.get_legend_handles_labels()[0]:
        ax_pd.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, markerscale=3)
    ax_pd.set_xlim(0, 1)
    ax_pd.set_ylim(temps.min() - dT, temps.max() + dT)
    ax_pd.set_xlabel(r"$x_\mathrm{Au}$")
    ax_pd.set_ylabel(_labels(system)['T'])
    ax_pd.set_title("two-phase regions (shaded), boundaries")
    if "model" in composition:
        refined = "estimator" in composition and bool((composition["estimator"] == "refined").all())
        kind = "refined samples" if refined else "samples"
        source = f"{composition['model'].iloc[0]} {kind} ({composition['source'].iloc[0]})"
    else:
        source = ", ".join(sorted(set(composition["method"]))) if "method" in composition else "f_x"
    fig.suptitle(f"{_labels(system)['name']} {size}: phase diagram from {source}")
    return fig


_MARKERS = "osD^vP*Xh<>p"


@_styled
def cost_figure(summary: pd.DataFrame) -> Figure:
    """Accuracy against cost: the worst ``F_NIS`` error of every sampler of the summary (one panel
    per system; relative for Ising-like systems) against its wall time, training plus sampling;
    one colour per model, one marker per size and source. Samplers without a recorded cost or
    reference are left out (said in the title)."""
    check_columns(summary, ("system", "size", "model", "source", "max_abs_delta_f", "max_rel_delta_f", "train_s",
                            "sample_s"), what="sampler summary")  # fmt: skip
    timed = summary.assign(minutes=(summary["train_s"] + summary["sample_s"]) / 60)
    ok = timed[np.isfinite(timed["minutes"]) & np.isfinite(timed["max_abs_delta_f"])]
    if not len(ok):
        raise ValueError("no sampler with both a cost and a reference error: nothing to plot")
    systems = sorted(set(ok["system"]))
    fig, axes = _new_figure(1, len(systems))
    models = sorted(set(ok["model"]))
    colours = {m: colormaps["tab10"](i % 10) for i, m in enumerate(models)}
    where = sorted(set(zip(ok["size"], ok["source"], strict=True)))
    markers = {w: _MARKERS[i % len(_MARKERS)] for i, w in enumerate(where)}
    for ax, system in zip(axes[0], systems, strict=True):
        lab = _labels(system)
        g = ok[ok["system"] == system]
        err = g["max_rel_delta_f"] if lab["relative_error"] else g["max_abs_delta_f"] * lab["energy_scale"]
        for (_, r), e in zip(g.iterrows(), err, strict=True):
            ax.plot(r["minutes"], e, ls="none", marker=markers[(r["size"], r["source"])], color=colours[r["model"]])
        ax.set_yscale("log")
        ax.set_xlabel("wall time, training + sampling [min]")
        ax.set_ylabel("max " + (r"$|f_\mathrm{NIS} - f_\mathrm{ref}|\ /\ |f_\mathrm{ref}|$" if lab["relative_error"]
                                 else rf"$|f_\mathrm{{NIS}} - f_\mathrm{{ref}}|$ [{lab['energy']}]"))  # fmt: skip
        ax.set_title(lab["name"])
    handles = [Line2D([], [], color=c, marker="o", ls="none", label=m) for m, c in colours.items()]
    handles += [Line2D([], [], color=_KEY, marker=mk, ls="none", label=f"{size}, {source}")
                for (size, source), mk in markers.items()]  # fmt: skip
    _figure_legend(fig, handles)
    left_out = len(summary) - len(ok)
    note = f" (left out, without a cost or a reference: {left_out})" if left_out else ""
    fig.suptitle("worst free-energy error against wall time" + note)
    return fig


#: figure name → function (the workflow's figure rules)
FIGURES = {
    "free_energy": free_energy_figure,
    "heat_capacity": heat_capacity_figure,
    "training": training_figure,
    "phase_diagram": phase_diagram_figure,
    "sampler_phase_diagram": phase_diagram_figure,
    "refined_phase_diagram": phase_diagram_figure,
    "estimates": estimates_figure,
    "equal_cost": cost_figure,
}


def _read(paths) -> pd.DataFrame | None:
    paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not paths:
        return None
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def figure_from_files(kind: str, inputs: Mapping[str, object], *, system: str | None = None,
                      size: str | None = None) -> Figure:  # fmt: skip
    """Figure ``kind`` (a key of :data:`FIGURES`) from the workflow's Parquet files.

    ``inputs``: ``free_energy``: ``metrics`` (metric tables); ``heat_capacity``: ``metrics`` and
    ``reference`` (a table with ``c``, may be empty); ``training``: model name → train log;
    ``phase_diagram``: ``composition`` (f_x table), ``regions``, ``boundaries``;
    ``sampler_phase_diagram``, ``refined_phase_diagram``: optional ``reference`` (the reference's
    boundary lines, drawn over the sampler's diagram), ``composition`` (a sampler's, from its
    samples or its refined chains), ``regions``; ``estimates``:
    ``estimates`` (a sampler's estimate table); ``equal_cost``:
    ``summary`` (the sampler summary with its cost columns).
    """
    if kind not in FIGURES:
        raise ValueError(f"unknown figure {kind!r}; expected one of {sorted(FIGURES)}")
    if kind == "equal_cost":
        return cost_figure(_read(inputs["summary"]))
    if kind == "free_energy":
        return free_energy_figure(_read(inputs["metrics"]))
    if kind == "heat_capacity":
        return heat_capacity_figure(_read(inputs["metrics"]), _read(inputs.get("reference", [])))
    if kind == "training":
        return training_figure({m: _read(p) for m, p in inputs.items()}, system=system, size=size)
    if kind == "estimates":
        return estimates_figure(_read(inputs["estimates"]))
    if kind in ("sampler_phase_diagram", "refined_phase_diagram"):
        regions = _read(inputs["regions"])
        return phase_diagram_figure(_read(inputs["composition"]), regions, phase_boundaries(regions),
                                    reference=_read(inputs.get("reference", [])))  # fmt: skip
    return phase_diagram_figure(_read(inputs["composition"]), _read(inputs["regions"]), _read(inputs["boundaries"]))


def save_figure(fig: Figure, paths: Sequence[str | os.PathLike], *, dpi: int = DPI) -> None:
    """Write ``fig`` to every path (format from the suffix: .png, .pdf, .svg), atomically, with the
    figures' style (a user's ``savefig.*`` rcParams do not change the files)."""
    for p in paths:
        p = Path(p)
        if p.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise ValueError(f"figure paths must end in .png, .pdf or .svg, got {p}")
        with atomic_path(p, suffix=p.suffix) as tmp, matplotlib.style.context(["default", STYLE]):
            fig.savefig(tmp, dpi=dpi, format=p.suffix[1:].lower())  # the style's savefig settings
