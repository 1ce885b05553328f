"""Sampling a trained model over a condition grid and its metric table (DESIGN §6).

* :func:`sample_grid` loads a checkpoint and draws ``n_samples`` configurations at every
  ``(T, field)`` of ``T_values x field_values``: the sample file of DESIGN §6 (columns ``system,
  size, model, source, symmetrised, n_orders, order, T, field, configuration`` (packed bytes,
  :func:`io.pack_states`), ``log_q`` (exact log-probability of the sampler), ``energy`` (E_int),
  ``spin_sum``). :func:`sample_model`
  does the same for a model in memory (the exact twin in tests).
* :func:`metrics_table` turns a sample table into the metric table: ``system, size, T, field,
  model, source, symmetrised, n_orders, order, n_samples, f_var, f_nis, f_nis_err, ness,
  estimator, f_est, f_est_err, est_draws, est_sweeps, est_wall_s, est_converged, f_ref, f_ref_err
  (the reference's one-sigma error: 0 for exact tables), ref_method, delta_f (= f_nis − f_ref), u,
  u_err, c, c_err, m, m_err`` (``x_au, x_au_err`` for CuAu), the
  independent Metropolis–Hastings estimates over the same samples (:data:`IMH_COLUMNS`), and
  ``u_ref, c_ref, m_ref`` where the reference has them. Conditions missing from the reference get
  NaN there.
* :func:`accuracy_summary` condenses metric tables into one row per sampler (``system, size,
  model, source, symmetrised, n_orders, order``): the worst and median error of ``F_NIS`` against the
  reference and where the worst is, the NESS median and minimum and where the minimum is
  (``results/tables/sampler_accuracy.parquet``).

Orders (column ``order``): FO-ARMs sample along their fixed order (``"fixed"``); any-order models
along an independent random order per sample (``"random"``, the default: the path probability is
exact; DESIGN §4), or with ``n_orders = M > 1`` from the mixture over ``M`` random orders per sample
(:func:`lattherm.sampling.sample`; column ``n_orders``, 1 for FO-ARMs), or with ``order="fixed"``
all along the lattice's storage order: ``q(x | σ₀)`` is exactly normalised for any one order, and
rows sharing a prefix share its conditionals, which the Transformer evaluates once (on CuAu 2x2x4
at most ``2^16`` evaluations per condition however many samples). ``symmetrised=True`` (Ising only)
samples the global-flip mixture ``q_sym`` (DESIGN §3): needed below T_c near h = 0, where a
one-sector sampler underestimates ``ln Z`` by ``ln 2``; the column ``symmetrised`` records it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from lattherm.conditions import condition_grid
from lattherm.io import check_columns, pack_states, row_at, unpack_states
from lattherm.models import MODEL_NAMES, is_fixed_order, transfer_model
from lattherm.neural_mcmc import MIN_EFFECTIVE
from lattherm.observables import estimate_thermo
from lattherm.runlog import Progress
from lattherm.seeds import derived_seed
from lattherm.systems import system_info
from lattherm.training.checkpoint import load_model
from lattherm.training.trainer import resolve_device

__all__ = [
    "sample_grid",
    "sample_model",
    "metrics_table",
    "accuracy_summary",
    "estimate_table",
    "SAMPLE_COLUMNS",
    "METRIC_COLUMNS",
    "SUMMARY_COLUMNS",
    "COST_COLUMNS",
    "ESTIMATE_COLUMNS",
    "IMH_COLUMNS",
    "direct_draw",
    "direct_density",
    "outpaint_draw",
    "outpaint_density",
    "sampler_density",
    "smc_model",
    "read_job_timing",
    "sampler_costs",
]

log = logging.getLogger(__name__)

SAMPLE_COLUMNS = (
    "system",
    "size",
    "model",
    "source",
    "symmetrised",
    "n_orders",
    "order",
    "T",
    "field",
    "configuration",
    "log_q",
    "energy",
    "spin_sum",
)
#: the estimate columns of every metric row (after the sampler keys and the condition): which
#: estimator, its free energy per site and one-sigma error, and its budget (draws of the sampler,
#: Metropolis sweeps of a particle, wall seconds; NaN where the table does not know) and whether it
#: converged (importance sampling: at least MIN_EFFECTIVE effective samples)
ESTIMATE_COLUMNS = ("estimator", "f_est", "f_est_err", "est_draws", "est_sweeps", "est_wall_s", "est_converged")
METRIC_COLUMNS = (
    "system",
    "size",
    "T",
    "field",
    "model",
    "source",
    "symmetrised",
    "n_orders",
    "order",
    "n_samples",
    "f_var",
    "f_nis",
    "f_nis_err",
    "ness",
    *ESTIMATE_COLUMNS,
    "f_ref",
    "f_ref_err",
    "ref_method",
    "delta_f",
    "u",
    "u_err",
    "c",
    "c_err",
    "m",
    "m_err",
)


@torch.no_grad()
def sample_model(
    model,
    system,
    T_values,
    field_values,
    n_samples: int,
    *,
    seed: int,
    batch_size: int = 4096,
    symmetrised: bool = False,
    n_orders: int = 1,
    order: str = "random",
    model_name: str | None = None,
    source: str = "direct",
) -> pd.DataFrame:
    """Samples of ``model`` at every condition of ``T_values x field_values`` (module doc).

    ``n_orders``: random orders per sample of an any-order model's mixture; ``order``: ``"random"``
    (one uniform order per sample) or ``"fixed"`` (the storage order for every sample; with
    ``n_orders`` 1). FO-ARMs ignore both (their own order)."""
    _check_count("n_samples", n_samples)
    draw, meta = direct_draw(model, system, field_values, batch_size=batch_size, symmetrised=symmetrised,
                             n_orders=n_orders, order=order, model_name=model_name, source=source)  # fmt: skip
    return _sample_table(model, system, T_values, field_values, n_samples, draw, meta, seed=seed, batch_size=batch_size)


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def direct_draw(model, system, field_values, *, batch_size: int = 4096, symmetrised: bool = False, n_orders: int = 1,
                order: str = "random", model_name: str | None = None, source: str = "direct"):  # fmt: skip
    """``(draw, meta)`` of :func:`sample_model`: ``draw(conditions (c, 2), n, generator) -> (x,
    log_q)``, ``n`` draws of the model at each condition, and the sample table's sampler columns."""
    _check_count("batch_size", batch_size)
    if symmetrised:
        _check_symmetrised(model, system, field_values)
    from lattherm.sampling import sample  # sampling is below evaluation; local to keep import light

    _check_count("n_orders", n_orders)
    if order not in ("random", "fixed"):
        raise ValueError(f"order must be 'random' or 'fixed', got {order!r}")
    if order == "fixed" and n_orders > 1 and not model.fixed_order:
        raise ValueError(f"order 'fixed' is one order per sample; n_orders must be 1, got {n_orders}")
    n_orders = 1 if model.fixed_order else int(n_orders)
    order = "fixed" if model.fixed_order else order

    def draw(cc, n, gen):
        return sample(model, cc, n, order=order, generator=gen, symmetrised=symmetrised, batch_size=int(batch_size),
                      n_orders=n_orders)  # fmt: skip

    meta = {"system": system.name, "size": system.size, "model": model_name or model.name, "source": source,
            "symmetrised": bool(symmetrised), "n_orders": n_orders, "order": order}  # fmt: skip
    return draw, meta


def direct_density(model, *, symmetrised: bool = False, n_orders: int = 1, order: str = "random"):
    """``density(x (B, N), cond (B, 2), generator) -> log q (B,)``: the log-probability of any
    configurations under :func:`direct_draw`'s procedure, with fresh orders drawn as it draws them
    (the model's order family, ``n_orders`` per configuration). For random orders this is the
    density of the pair (orders, x), whose weight ``p̃(x) / q(x | orders)`` has the same expectation
    ``Z`` under ``q`` as the sampler's and, with the orders drawn uniformly, extends ``p`` to the
    pair space with the same ``Z`` (what Bennett's acceptance ratio needs of draws of ``p``)."""
    from lattherm.sampling import log_prob, model_orders

    M = 1 if model.fixed_order else int(n_orders)
    fixed = model.fixed_order or order == "fixed"

    def density(x, cond, gen):
        B = x.shape[0]
        if fixed:
            orders = "fixed"
        else:
            orders = model_orders(model, B * M, generator=gen, device=x.device)
            orders = orders.reshape(B, M, -1) if M > 1 else orders
        return log_prob(model, x, cond, order=orders, symmetrised=symmetrised)

    return density


def outpaint_density(model, target, *, stride, symmetrised: bool = False):
    """``density(x, cond, generator) -> log q`` of :func:`outpaint_draw`'s procedure (as
    :func:`direct_density`): fresh within-window orders, and for the symmetrised mixture the flipped
    branch at −h along the same orders."""
    from lattherm.outpaint import LN2, outpaint_log_prob, schedule
    from lattherm.sampling import model_orders

    n_windows = len(schedule(model.lattice, target.lattice, stride))

    def density(x, cond, gen):
        orders = [model_orders(model, x.shape[0], generator=gen, device=x.device) for _ in range(n_windows)]
        log_q = outpaint_log_prob(model, target.lattice, x, cond, stride=stride, orders=orders)
        if symmetrised:
            mirror = cond * torch.tensor([1.0, -1.0], dtype=cond.dtype, device=cond.device)
            other = outpaint_log_prob(model, target.lattice, 1 - x, mirror, stride=stride, orders=orders)
            log_q = torch.logaddexp(log_q, other) - LN2
        return log_q

    return density


def _check_symmetrised(model, system, field_values) -> None:
    """The flip-symmetrised mixture needs the symmetry, and draws from the model at −h: it must have
    been trained there."""
    if not system_info(system.name).flip_symmetric:
        raise ValueError(f"symmetrised sampling needs the global spin-flip symmetry, which {system.name} lacks")
    (_, _), (h_lo, h_hi) = model.cond_box
    outside = [float(h) for h in np.atleast_1d(field_values) if not h_lo - 1e-9 <= -h <= h_hi + 1e-9]
    if outside:
        raise ValueError(
            f"symmetrised sampling draws from the model at −h, outside its trained fields [{h_lo}, {h_hi}] "
            f"for h = {outside[:5]}: train on a field box symmetric about 0, or sample with symmetrised=False"
        )


def _sample_table(model, system, T_values, field_values, n_samples, draw, meta, *, seed, batch_size) -> pd.DataFrame:
    """The sample file of DESIGN §6: ``draw(conditions (c, 2), n, generator) -> (x, log_q)`` at
    every condition of the grid, in batches of about ``batch_size`` samples, ``meta`` columns first."""
    device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    conds = condition_grid(np.atleast_1d(T_values), np.atleast_1d(field_values))  # (C, 2)
    n = int(n_samples)
    per_call = max(1, int(batch_size) // n)  # conditions per draw
    gen = torch.Generator(device=device).manual_seed(int(seed))
    parts = []
    bar = Progress(len(conds), f"sample {meta['model']} {meta['source']} {system.name} {system.size}", "conditions")
    for c0 in range(0, len(conds), per_call):
        cc = torch.as_tensor(conds[c0 : c0 + per_call], dtype=torch.float64)
        x, log_q = draw(cc, n, gen)
        bar.update(len(cc))
        x = x.cpu()
        rows = cc.repeat_interleave(n, 0).numpy()
        packed = pack_states(x.numpy())
        parts.append(
            pd.DataFrame(
                {
                    "T": rows[:, 0],
                    "field": rows[:, 1],
                    "configuration": [r.tobytes() for r in packed],
                    "log_q": log_q.cpu().numpy().astype(np.float64),
                    "energy": system.energy(x).numpy().astype(np.float64),
                    "spin_sum": system.spin_sum(x).numpy().astype(np.float64),
                }
            )
        )
    bar.close()
    df = pd.concat(parts, ignore_index=True)
    for i, (k, v) in enumerate(meta.items()):
        df.insert(i, k, v)
    return df


@torch.no_grad()
def outpaint_model(
    model, target, T_values, field_values, n_samples: int, *, stride, seed: int, batch_size: int = 4096,
    symmetrised: bool = False, model_name: str | None = None, source: str | None = None,
) -> pd.DataFrame:
    """Samples of the ``target`` system out-painted by ``model`` (an any-order model of a smaller
    box: :mod:`lattherm.outpaint`) at every condition of ``T_values x field_values``: the sample
    file of DESIGN §6 with ``source = "outpaint-<model's size>"`` and the exact ``log_q`` of the
    out-painting (random orders inside the windows; ``n_orders`` 1)."""
    _check_count("n_samples", n_samples)
    draw, meta = outpaint_draw(model, target, field_values, stride=stride, symmetrised=symmetrised,
                               model_name=model_name, source=source)  # fmt: skip
    return _sample_table(model, target, T_values, field_values, n_samples, draw, meta, seed=seed, batch_size=batch_size)


def outpaint_draw(model, target, field_values, *, stride, symmetrised: bool = False, model_name: str | None = None,
                  source: str | None = None):  # fmt: skip
    """``(draw, meta)`` of :func:`outpaint_model` (as :func:`direct_draw`)."""
    from lattherm.outpaint import outpaint

    if symmetrised:
        _check_symmetrised(model, target, field_values)
    size0 = "x".join(str(n) for n in model.lattice.shape)

    def draw(cc, n, gen):
        x, log_q, _ = outpaint(model, target.lattice, cc, n, stride=stride, generator=gen, symmetrised=symmetrised)
        return x, log_q

    meta = {"system": target.name, "size": target.size, "model": model_name or model.name,
            "source": source or f"outpaint-{size0}", "symmetrised": bool(symmetrised), "n_orders": 1,
            "order": "random"}  # fmt: skip
    return draw, meta


def outpaint_grid(
    checkpoint_path: str | os.PathLike, source, target, T_values, field_values, n_samples: int, *,
    device: str = "auto", **sampling,
) -> pd.DataFrame:
    """Load the checkpoint's model (checked against the ``source`` system it was trained on) and
    :func:`outpaint_model` the ``target`` system with it."""
    model = load_model(checkpoint_path, system=source, device=resolve_device(device))
    return outpaint_model(model, target, T_values, field_values, n_samples, model_name=model.name, **sampling)


def sample_grid(
    checkpoint_path: str | os.PathLike, system, T_values, field_values, n_samples: int, *, device: str = "auto",
    trained_on=None, **sampling,
) -> pd.DataFrame:
    """Load the checkpoint's model (checked against ``system``) onto ``device`` and
    :func:`sample_model` it (``sampling``: its keyword arguments, ``seed`` among them).

    ``trained_on``: the system the checkpoint was trained on, when it is not ``system``: its
    weights are evaluated on ``system``'s box (size transfer, :func:`lattherm.models.transfer_model`;
    ``source = "transfer-<trained size>"``)."""
    model = load_model(checkpoint_path, system=trained_on or system, device=resolve_device(device))
    if trained_on is not None:
        model = transfer_model(model, system)
        sampling.setdefault("source", f"transfer-{trained_on.size}")
    return sample_model(model, system, T_values, field_values, n_samples, model_name=model.name, **sampling)


def sampler_density(checkpoint_path: str | os.PathLike, system, source: str, *, symmetrised: bool, n_orders: int = 1,
                    order: str = "random", trained_on=None, stride=None, device: str = "auto"):  # fmt: skip
    """The ``density(x, cond, generator)`` (:func:`direct_density`, :func:`outpaint_density`) of the
    procedure that drew a sample file of ``system`` with ``source`` ``direct``, ``transfer-<size0>``
    or ``outpaint-<size0>`` (``trained_on``: the ``size0`` system; ``stride``: the out-painting's)
    from the checkpoint, with the file's ``symmetrised``, ``n_orders`` and ``order``."""
    kind = source.split("-")[0]
    if kind not in ("direct", "transfer", "outpaint"):
        raise ValueError(f"source must be direct, transfer-<size> or outpaint-<size>, got {source!r}")
    if kind != "direct" and trained_on is None:
        raise ValueError(f"source {source!r} needs the system the model was trained on (trained_on)")
    model = load_model(checkpoint_path, system=system if kind == "direct" else trained_on,
                       device=resolve_device(device))  # fmt: skip
    if kind == "outpaint":
        if stride is None:
            raise ValueError("an out-painted sample file needs its stride")
        return outpaint_density(model, system, stride=stride, symmetrised=symmetrised)
    if kind == "transfer":
        model = transfer_model(model, system)
    return direct_density(model, symmetrised=symmetrised, n_orders=n_orders, order=order)


def smc_model(model, system, T_values, field_values, draw, meta, *, seed: int, reference_df=None,
              ref_method: str | None = None, T_start: float | str | None = None, **smc) -> pd.DataFrame:  # fmt: skip
    """The metric rows of the SMC estimator (:func:`lattherm.smc.smc_free_energy`) at every
    condition of ``T_values x field_values`` from ``draw`` (:func:`direct_draw`,
    :func:`outpaint_draw`), against ``reference_df`` where given: the sampler keys of ``meta``,
    :data:`ESTIMATE_COLUMNS` (``estimator = "smc"``), ``f_ref, f_ref_err, ref_method, delta_f (= f_est −
    f_ref), u, u_err, m, m_err`` and the run's ``T_start, levels, beta_levels, acceptance,
    log_z_spread``.

    ``T_start``: where the particles are drawn, ``None`` at each condition's own T, a number (the
    larger of it and T), or ``"box"`` (the top temperature of the model's condition box)."""
    from lattherm.smc import smc_free_energy

    if T_start == "box":
        T_start = float(model.cond_box[0][1])
    elif T_start is not None and not (isinstance(T_start, int | float) and np.isfinite(T_start) and T_start > 0):
        raise ValueError(f"T_start must be None, 'box' or a temperature > 0, got {T_start!r}")
    device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    conds = condition_grid(np.atleast_1d(T_values), np.atleast_1d(field_values))
    rows = []
    for c, (T, h) in enumerate(conds):
        T0 = float(T) if T_start is None else max(float(T_start), float(T))

        def draw_at(k, gen, T0=T0, h=h):
            return draw(torch.tensor([[T0, h]], dtype=torch.float64), k, gen)

        est = smc_free_energy(draw_at, system, T, h, T_start=T0, seed=derived_seed(seed, c), device=device, **smc)
        ref = row_at(reference_df, T, h)
        f_ref, f_ref_err = reference_f(ref)
        rows.append({
            "system": system.name, "size": system.size, "T": float(T), "field": float(h),
            **{k: meta[k] for k in ("model", "source", "symmetrised", "n_orders", "order")},
            "estimator": "smc", "f_est": est["f_est"], "f_est_err": est["f_est_err"], "est_draws": est["draws"],
            "est_sweeps": est["sweeps"], "est_wall_s": est["wall_s"], "est_converged": est["converged"],
            "f_ref": f_ref, "f_ref_err": f_ref_err, "ref_method": ref_method, "delta_f": est["f_est"] - f_ref,
            **{k: est[k] for k in ("u", "u_err", "m", "m_err")}, "T_start": T0,
            **{k: est[k] for k in ("levels", "beta_levels", "acceptance", "log_z_spread")},
        })  # fmt: skip
    return pd.DataFrame(rows)


#: one row per sampler: errors of F_NIS against the reference (``*_abs_delta_f`` per site in table
#: units, ``*_rel_delta_f`` of ``|delta_f / f_ref|``, ``max_delta_over_err`` of ``|delta_f|`` over the
#: combined error ``√(f_nis_err² + f_ref_err²)``: a Monte Carlo reference's own error counts) and where
#: the extremes are
_SAMPLER_KEYS = ("system", "size", "model", "source", "symmetrised", "n_orders", "order")
SUMMARY_COLUMNS = (
    *_SAMPLER_KEYS,
    "ref_method",
    "n_conditions",
    "n_samples",
    "max_abs_delta_f",
    "median_abs_delta_f",
    "max_rel_delta_f",
    "median_rel_delta_f",
    "T_worst",
    "field_worst",
    "max_delta_over_err",
    "ness_median",
    "ness_min",
    "T_ness_min",
    "field_ness_min",
)


#: the cost columns of the summary (:func:`sampler_costs`)
COST_COLUMNS = ("train_steps", "train_s", "s_per_step", "train_peak_mb", "sample_s", "samples_per_s",
                "sample_peak_mb")  # fmt: skip


def read_job_timing(path: str | os.PathLike) -> dict:
    """``{"s": wall seconds, "max_rss": peak resident memory in MB}`` of a finished Snakemake job
    from its ``benchmark:`` file; NaN for what the file does not record (a job shorter than the
    memory sampling interval records 0)."""
    try:
        row = pd.read_csv(path, sep="\t", na_values=["-", "NA"]).iloc[0]
    except (OSError, ValueError, IndexError, pd.errors.ParserError) as err:
        raise ValueError(f"{path} is not a Snakemake benchmark file ({type(err).__name__}: {err})") from err
    values = {k: pd.to_numeric(row.get(k), errors="coerce") for k in ("s", "max_rss")}
    return {k: float(v) if pd.notna(v) and v > 0 else float("nan") for k, v in values.items()}


def sampler_costs(metrics: pd.DataFrame, train_log: pd.DataFrame | Sequence[pd.DataFrame], *,
                  train_timing: Mapping | Sequence[Mapping], sample_timing: Mapping) -> dict:  # fmt: skip
    """The cost of one sampler's metric table (:data:`COST_COLUMNS`, with its :data:`_SAMPLER_KEYS`):
    its training (steps and wall time from the train log, so every call of a resumed training
    counts; s/step; the training job's peak memory, ``train_timing``) and its sampling (the
    sampling job's wall time and peak memory, ``sample_timing``; configurations per second over
    every condition). Weights made by several trainings (a fine-tuning chain) pass the logs and
    timings of each: their steps and walls add up, the peak memory is the largest."""
    logs = [train_log] if isinstance(train_log, pd.DataFrame) else list(train_log)
    timings = [train_timing] if isinstance(train_timing, Mapping) else list(train_timing)
    if not logs or len(logs) != len(timings):
        raise ValueError(f"one train timing per train log (got {len(logs)} logs and {len(timings)} timings)")
    check_columns(metrics, (*_SAMPLER_KEYS, "n_samples"), what="metric table")
    for log in logs:
        check_columns(log, ("step", "wall_s"), what="train log")
    keys = metrics.iloc[0][list(_SAMPLER_KEYS)].to_dict()
    steps = sum(int(log["step"].max()) for log in logs)
    train_s = sum(float(log["wall_s"].max()) for log in logs)
    peaks = [float(t["max_rss"]) for t in timings if np.isfinite(t["max_rss"])]  # NaN: not recorded
    sample_s = float(sample_timing["s"])
    return {**keys, "train_steps": steps, "train_s": train_s, "s_per_step": train_s / max(steps, 1),
            "train_peak_mb": max(peaks, default=float("nan")), "sample_s": sample_s,
            "samples_per_s": float(metrics["n_samples"].sum()) / sample_s,
            "sample_peak_mb": float(sample_timing["max_rss"])}  # fmt: skip


def _ref_err(table: pd.DataFrame):
    """The reference's own error per row (``f_ref_err``; 0 where missing: exact tables, and tables
    written before the column existed)."""
    return table["f_ref_err"].fillna(0.0) if "f_ref_err" in table else 0.0


def estimate_table(*tables: pd.DataFrame) -> pd.DataFrame:
    """Every free-energy estimate of one sample file side by side, one row per ``(T, field,
    estimator)``: the metric table's (importance sampling, with its ``ness``) and the refined
    table's (Bennett's, with its ``bar_overlap``), each with its error and claim, ``delta_f = f_est
    − f_ref`` and ``z = delta_f / √(f_est_err² + f_ref_err²)`` (a Monte Carlo reference's own error
    counts; 0 for exact tables and tables without ``f_ref_err``). ``best`` marks, at each condition, the claimed
    estimate (``est_converged``) with the smallest error bar; a condition where nothing is claimed
    has no best estimate."""
    keys = ["system", "size", "T", "field", "model", "source"]
    parts = []
    for t in tables:
        check_columns(t, (*keys, *ESTIMATE_COLUMNS, "f_ref"), what="metric or refined table")
        extra = [c for c in ("f_ref_err", "ness", "bar_overlap") if c in t]
        parts.append(t[[*keys, *ESTIMATE_COLUMNS, "f_ref", *extra]])
    out = pd.concat(parts, ignore_index=True).sort_values([*keys, "estimator"], ignore_index=True)
    if out.duplicated([*keys, "estimator"]).any():
        raise ValueError("two tables give the same estimator at one condition")
    out["delta_f"] = out["f_est"] - out["f_ref"]
    out["z"] = out["delta_f"] / np.hypot(out["f_est_err"], _ref_err(out))
    claimed = out[out["est_converged"].astype(bool) & np.isfinite(out["f_est_err"])]
    out["best"] = out.index.isin(claimed.groupby(keys)["f_est_err"].idxmin().to_numpy())
    return out


def accuracy_summary(metrics: pd.DataFrame, costs: Sequence[Mapping] | None = None) -> pd.DataFrame:
    """One row per sampler of one or more metric tables (columns :data:`SUMMARY_COLUMNS`, then
    :data:`COST_COLUMNS` where ``costs``, the :func:`sampler_costs` of the samplers, are given).

    The worst condition is the one of largest ``|delta_f|`` (per site); ``max_rel_delta_f`` is
    the largest ``|delta_f / f_ref|``, which may sit elsewhere where ``|f_ref|`` is small.
    Conditions without a reference (``f_ref`` NaN) count for the NESS but not for the errors; a
    sampler with no reference at all gets NaN errors.
    """
    summary = _accuracy_rows(metrics)
    if costs is None:
        return summary
    cost = pd.DataFrame(list(costs), columns=[*_SAMPLER_KEYS, *COST_COLUMNS])
    if cost.duplicated(list(_SAMPLER_KEYS)).any():
        raise ValueError("costs: more than one entry for a sampler")
    return summary.merge(cost, on=list(_SAMPLER_KEYS), how="left", validate="one_to_one")


def _accuracy_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    check_columns(metrics, (*_SAMPLER_KEYS, "T", "field", "n_samples", "f_ref", "ref_method", "delta_f",
                            "f_nis_err", "ness"), what="metric table")  # fmt: skip
    nan = float("nan")
    rows = []
    for keys, g in metrics.groupby(list(_SAMPLER_KEYS), sort=True):
        row = dict(zip(_SAMPLER_KEYS, keys, strict=True))
        ref = g[g["f_ref"].notna()]
        absd = ref["delta_f"].abs()
        rel = (ref["delta_f"] / ref["f_ref"]).abs()
        worst = ref.loc[absd.idxmax()] if len(ref) else None
        low = g.loc[g["ness"].idxmin()]
        methods = sorted(set(ref["ref_method"].dropna()))
        row.update(
            ref_method="+".join(methods) if methods else None,
            n_conditions=len(g),
            n_samples=int(g["n_samples"].min()),
            max_abs_delta_f=float(absd.max()) if len(ref) else nan,
            median_abs_delta_f=float(absd.median()) if len(ref) else nan,
            max_rel_delta_f=float(rel.max()) if len(ref) else nan,
            median_rel_delta_f=float(rel.median()) if len(ref) else nan,
            T_worst=float(worst["T"]) if worst is not None else nan,
            field_worst=float(worst["field"]) if worst is not None else nan,
            max_delta_over_err=float((absd / np.hypot(ref["f_nis_err"], _ref_err(ref))).max()) if len(ref) else nan,
            ness_median=float(g["ness"].median()),
            ness_min=float(low["ness"]),
            T_ness_min=float(low["T"]),
            field_ness_min=float(low["field"]),
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


#: the independent Metropolis–Hastings columns of a metric row (:mod:`lattherm.neural_mcmc`)
IMH_COLUMNS = ("imh_u", "imh_u_err", "imh_c", "imh_c_err", "imh_m", "imh_m_err", "imh_abs_m", "imh_abs_m_err",
               "imh_acceptance", "imh_n_effective", "imh_converged")  # fmt: skip


def _imh_columns(system, x, g: pd.DataFrame, T: float, h: float, *, seed: int) -> dict:
    """:data:`IMH_COLUMNS` of one condition: the chain over the samples in their drawn order."""
    from lattherm.neural_mcmc import imh_thermo

    if len(g) < 2:
        return dict.fromkeys(IMH_COLUMNS, float("nan"))
    E = g["energy"].to_numpy() if "energy" in g else system.energy(x).double().numpy()
    M = g["spin_sum"].to_numpy() if "spin_sum" in g else system.spin_sum(x).double().numpy()
    r = imh_thermo(E, M, g["log_q"].to_numpy(), T, h, system.n_sites, seed=seed, k_B=float(system.k_B))
    return {f"imh_{k}": r[k] for k in ("u", "u_err", "c", "c_err", "m", "m_err", "abs_m", "abs_m_err", "acceptance",
                                        "n_effective", "converged")}  # fmt: skip


def reference_f(ref: pd.Series | None) -> tuple[float, float]:
    """``(f, its one-sigma error)`` of a reference row: the error is 0 for exact tables, ``f_err``
    for Monte Carlo ones (β and field integration); NaN without a row."""
    if ref is None:
        return float("nan"), float("nan")
    return float(ref["f"]), float(ref["f_err"]) if "f_err" in ref else 0.0


def metrics_table(
    samples_df: pd.DataFrame,
    system,
    model: str,
    source: str,
    reference_df: pd.DataFrame | None,
    ref_method: str | None,
    *,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """The metric table (module doc) of a sample table, one row per ``(T, field)``."""
    check_columns(samples_df, ("T", "field", "configuration", "log_q"), what="sample table")
    for col, want in (("system", system.name), ("size", system.size)):
        if col in samples_df and not (samples_df[col] == want).all():
            raise ValueError(f"sample table has {col} {sorted(set(samples_df[col]))}, expected {want!r}")
    if reference_df is not None:
        check_columns(reference_df, ("T", "field", "f"), what="reference table")
    sym = sorted(set(samples_df["symmetrised"])) if "symmetrised" in samples_df else [False]
    if len(sym) != 1:
        raise ValueError("sample table mixes symmetrised and plain samples")
    n_ord = sorted(set(samples_df["n_orders"])) if "n_orders" in samples_df else [1]
    if len(n_ord) != 1:
        raise ValueError(f"sample table mixes samplers with {n_ord} orders per sample")
    if "order" in samples_df:
        kinds = sorted(set(samples_df["order"]))
    else:  # a table from before the order column: the FO-ARM's own order, else one random order per sample
        kinds = ["fixed" if model in MODEL_NAMES and is_fixed_order(model) else "random"]
    if len(kinds) != 1:
        raise ValueError(f"sample table mixes samplers with orders {kinds}")
    rows = []
    for (T, h), g in samples_df.groupby(["T", "field"], sort=True):
        packed = np.stack([np.frombuffer(b, dtype=np.uint8) for b in g["configuration"]])
        x = torch.from_numpy(unpack_states(packed, system.n_sites).astype(np.int64))
        est = estimate_thermo(system, x, g["log_q"].to_numpy(), T, h, n_boot=n_boot, seed=seed)
        ref = row_at(reference_df, T, h)
        f_ref, f_ref_err = reference_f(ref)
        row = {
            "system": system.name,
            "size": system.size,
            "T": float(T),
            "field": float(h),
            "model": model,
            "source": source,
            "symmetrised": bool(sym[0]),
            "n_orders": int(n_ord[0]),
            "order": str(kinds[0]),
            "n_samples": est.pop("n_samples"),
            "f_var": est.pop("f_var"),
            "f_nis": est["f_nis"],
            "f_nis_err": est["f_nis_err"],
            "ness": est["ness"],
            "estimator": "nis",
            "f_est": est["f_nis"],
            "f_est_err": est.pop("f_nis_err"),
            "est_draws": int(len(g)),
            "est_sweeps": 0,
            "est_wall_s": float("nan"),
            "est_converged": bool(est.pop("ness") * len(g) >= MIN_EFFECTIVE),
            "f_ref": f_ref,
            "f_ref_err": f_ref_err,
            "ref_method": ref_method,
            "delta_f": est.pop("f_nis") - f_ref,
        }
        for q in ("u", "c", "m", "x_au"):
            if q in est:
                row[q], row[f"{q}_err"] = est[q], est[f"{q}_err"]
        row.update(_imh_columns(system, x, g, T, h, seed=derived_seed(seed, len(rows))))
        for q in ("u", "c", "m"):
            if reference_df is not None and q in reference_df:
                row[f"{q}_ref"] = float(ref[q]) if ref is not None else float("nan")
        rows.append(row)
    out = pd.DataFrame(rows)
    missing = int(out["f_ref"].isna().sum())
    if reference_df is not None and missing:
        log.warning("%d of %d conditions have no reference f (%s)", missing, len(out), ref_method)
    return out
