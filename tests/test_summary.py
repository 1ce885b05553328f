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


def test_summary_without_reference_and_bad_table():
    a = _metrics("mam-mlp", 1, [np.nan], [-1.0], [1e-3], [0.4], [2.0], [0.0])
    s = accuracy_summary(a.assign(ref_method=None))
    assert np.isnan(s["max_abs_delta_f"]).all() and s["ref_method"].isna().all() and s["ness_min"].iloc[0] == 0.4
    with pytest.raises(ValueError, match="ness"):
        accuracy_summary(a.drop(columns="ness"))
