"""accuracy_summary: one row per sampler, the extremes and where they are, from a table built by hand."""

import numpy as np
import pandas as pd
import pytest

from lattherm.evaluation import SUMMARY_COLUMNS, accuracy_summary


def _metrics(model, n_orders, f_ref, f_nis, f_err, ness, T, h):
    n = len(f_ref)
    return pd.DataFrame({
        "system": "ising", "size": "8x8", "model": model, "source": "direct", "symmetrised": True,
        "n_orders": n_orders, "order": "fixed" if model.startswith("fo-") else "random", "T": T, "field": h,
        "n_samples": 1000, "f_ref": f_ref, "ref_method": "exact",
        "f_nis": f_nis, "delta_f": np.asarray(f_nis) - np.asarray(f_ref), "f_nis_err": f_err, "ness": ness,
    }, index=range(n))  # fmt: skip


def test_summary_extremes_and_where():
    a = _metrics("fo-arm-mlp", 1, [-2.0, -4.0, -1.0], [-2.002, -4.001, -1.0005], [1e-3, 1e-3, 1e-4],
                 [0.9, 0.5, 0.7], [1.5, 2.5, 3.5], [0.0, 0.5, -1.0])  # fmt: skip
    b = _metrics("ao-arm-mlp", 4, [-2.0, np.nan], [-1.999, -3.0], [1e-3, 1e-3], [0.2, 0.1], [1.5, 2.0], [0.0, 1.0])
    s = accuracy_summary(pd.concat([a, b], ignore_index=True))
    assert list(s.columns) == list(SUMMARY_COLUMNS) and len(s) == 2
    fo = s.set_index("model").loc["fo-arm-mlp"]
    assert fo["n_conditions"] == 3 and fo["n_orders"] == 1 and fo["ref_method"] == "exact"
    assert fo["max_abs_delta_f"] == pytest.approx(2e-3) and (fo["T_worst"], fo["field_worst"]) == (1.5, 0.0)
    assert fo["median_abs_delta_f"] == pytest.approx(1e-3)
    assert fo["max_rel_delta_f"] == pytest.approx(1e-3) and fo["median_rel_delta_f"] == pytest.approx(5e-4)
    assert fo["max_delta_over_err"] == pytest.approx(5.0)  # 5e-4 / 1e-4 at T = 3.5
    assert fo["ness_median"] == 0.7 and fo["ness_min"] == 0.5 and (fo["T_ness_min"], fo["field_ness_min"]) == (2.5, 0.5)
    ao = s.set_index("model").loc["ao-arm-mlp"]
    # the condition without a reference counts for the NESS only
    assert ao["max_abs_delta_f"] == pytest.approx(1e-3) and ao["n_conditions"] == 2
    assert ao["ness_min"] == 0.1 and (ao["T_ness_min"], ao["field_ness_min"]) == (2.0, 1.0)


def test_summary_z_counts_the_references_own_error():
    """A Monte Carlo reference's error (``f_ref_err``) joins the estimate's in ``max_delta_over_err``."""
    a = _metrics("ao-transformer", 1, [-2.0, -3.0], [-2.0004, -3.0001], [1e-4, 1e-4], [0.9, 0.8], [2.0, 3.0],
                 [0.5, 0.5]).assign(ref_method="field_integration", f_ref_err=[3e-4, 0.0])  # fmt: skip
    s = accuracy_summary(a).iloc[0]
    assert s["max_delta_over_err"] == pytest.approx(4e-4 / np.hypot(1e-4, 3e-4))  # not 4.0
    assert s["max_abs_delta_f"] == pytest.approx(4e-4)


def test_summary_without_reference_and_bad_table():
    a = _metrics("mam-mlp", 1, [np.nan], [-1.0], [1e-3], [0.4], [2.0], [0.0])
    s = accuracy_summary(a.assign(ref_method=None))
    assert np.isnan(s["max_abs_delta_f"]).all() and s["ref_method"].isna().all() and s["ness_min"].iloc[0] == 0.4
    with pytest.raises(ValueError, match="ness"):
        accuracy_summary(a.drop(columns="ness"))


def test_costs_from_the_train_log_and_the_job_timings(tmp_path):
    """sampler_costs: steps and wall time of the whole training (its log), s/step, the jobs' peak
    memory and the sampling rate over every condition; the summary carries them per sampler."""
    from lattherm.evaluation import COST_COLUMNS, read_job_timing, sampler_costs

    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (tmp_path / "train.tsv").write_text(head + "1805.2\t0:30:05\t612.5\t900\t600\t601\t0\t1\t99\t1790\n")
    (tmp_path / "sample.tsv").write_text(head + "42.0\t0:00:42\t0\t0\t0\t0\t0\t0\t0\t40\n")  # too short: no memory
    train, sample = read_job_timing(tmp_path / "train.tsv"), read_job_timing(tmp_path / "sample.tsv")
    assert train == {"s": 1805.2, "max_rss": 612.5} and sample["s"] == 42.0 and np.isnan(sample["max_rss"])
    a = _metrics("fo-arm-mlp", 1, [-2.0, -4.0], [-2.002, -4.001], [1e-3, 1e-3], [0.9, 0.5], [1.5, 2.5], [0.0, 0.5])
    log = pd.DataFrame({"step": [100, 200, 300], "wall_s": [10.0, 20.0, 1500.0]})  # resumed: the last call's total
    cost = sampler_costs(a, log, train_timing=train, sample_timing=sample)
    assert cost["train_steps"] == 300 and cost["train_s"] == 1500.0 and cost["s_per_step"] == pytest.approx(5.0)
    assert cost["train_peak_mb"] == 612.5 and cost["samples_per_s"] == pytest.approx(2000 / 42.0)
    # weights of a fine-tuning chain: every training's steps and wall, the largest peak memory
    stage = pd.DataFrame({"step": [50, 80], "wall_s": [30.0, 61.0]})
    chain = sampler_costs(a, [log, stage], train_timing=[train, {"s": 62.0, "max_rss": 900.0}], sample_timing=sample)
    assert chain["train_steps"] == 380 and chain["train_s"] == 1561.0 and chain["train_peak_mb"] == 900.0
    assert sampler_costs(a, [log, stage], train_timing=[train, sample], sample_timing=sample)["train_peak_mb"] == 612.5
    with pytest.raises(ValueError, match="one train timing per train log"):
        sampler_costs(a, [log, stage], train_timing=[train], sample_timing=sample)
    b = _metrics("ao-arm-mlp", 4, [-2.0], [-1.999], [1e-3], [0.2], [1.5], [0.0])
    s = accuracy_summary(pd.concat([a, b], ignore_index=True), [cost])
    assert list(s.columns) == [*SUMMARY_COLUMNS, *COST_COLUMNS] and len(s) == 2
    rows = s.set_index("model")
    assert rows.loc["fo-arm-mlp", "sample_s"] == 42.0 and np.isnan(rows.loc["ao-arm-mlp", "train_s"])
    with pytest.raises(ValueError, match="more than one entry"):
        accuracy_summary(a, [cost, cost])
    (tmp_path / "bad.tsv").write_text("")
    with pytest.raises(ValueError, match="bad.tsv is not a Snakemake benchmark file"):
        read_job_timing(tmp_path / "bad.tsv")
