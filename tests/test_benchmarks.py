"""The benchmark suite's bookkeeping (cheap: no benchmark runs): ``benchmarks/manifest.yaml`` lists
every ``bench_*.py`` and nothing else, every record under ``benchmarks/results/`` is written by a
manifest entry and cited in ``docs/results.md``, every run in a record carries its parameters and the
machine, and ``_harness.record_run`` / ``run_all`` behave as documented."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
DOCS = ROOT / "docs" / "results.md"

#: records of scripts owned elsewhere, still in the former one-run layout (parameters only in the
#: file name). ``_harness.record`` rewrites them in the run layout at their next run.
LEGACY_LAYOUT = {"mcmc.json", "cuau_mcmc.json", "mcmc_reference_check.json"}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


run_all = _load("run_all")
harness = _load("_harness")
MANIFEST = run_all.load_manifest()


def _owner(record: str) -> str | None:
    for name, entry in MANIFEST.items():
        if any(fnmatch.fnmatchcase(record, pattern) for pattern in entry["records"]):
            return name
    return None


def test_manifest_lists_every_script_and_nothing_else():
    scripts = {p.name for p in BENCH.glob("bench_*.py")}
    listed = [e["script"] for e in MANIFEST.values()]
    assert len(listed) == len(set(listed)), "a script listed twice"
    assert set(listed) == scripts, f"not listed: {scripts - set(listed)}; no such script: {set(listed) - scripts}"
    for name, entry in MANIFEST.items():
        assert entry["script"] == f"bench_{name}.py", name
        assert entry["needs"] and entry["records"] and entry["measures"].strip() and str(entry["runtime"]).strip(), name


def test_every_record_is_written_by_an_entry_and_cited():
    docs = DOCS.read_text()
    records = sorted(p.name for p in RESULTS.iterdir() if not p.name.startswith("."))
    assert records
    for record in records:
        assert record.endswith(".json"), f"benchmarks/results/{record}: not a record"
        assert _owner(record), f"{record}: no manifest entry writes it"
        cited = f"`{record}`" in docs or f"benchmarks/results/{record}" in docs
        assert cited, f"{record}: not cited in docs/results.md"


def test_docs_cite_only_records_of_the_manifest():
    """A record cited in docs/results.md is one some entry writes (catches renamed or deleted records)."""
    cited = set(re.findall(r"([\w.-]+\.json)\b", DOCS.read_text()))
    assert cited
    assert not {c for c in cited if not _owner(c)}, "docs/results.md cites records no benchmark writes"


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_every_run_carries_parameters_and_machine(path):
    data = json.loads(path.read_text())
    if path.name in LEGACY_LAYOUT and "runs" not in data:
        assert isinstance(data.get("machine"), dict) and data.get("date"), path.name
        return
    assert data.get("benchmark") == path.stem and isinstance(data.get("runs"), list) and data["runs"], path.name
    seen = set()
    for i, run in enumerate(data["runs"]):
        where = f"{path.name} run {i}"
        assert isinstance(run.get("parameters"), dict) and run["parameters"], f"{where}: no parameters"
        assert isinstance(run.get("machine"), dict) and "cpu" in run["machine"], f"{where}: no machine"
        assert run.get("date") and "git" in run and "results" in run, f"{where}: date, git or results missing"
        key = json.dumps(run["parameters"], sort_keys=True)
        assert key not in seen, f"{where}: two runs with identical parameters"
        seen.add(key)


def test_record_run_appends_and_replaces_identical_parameters(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    monkeypatch.setattr(harness, "machine", lambda: {"cpu": "test"})
    monkeypatch.setattr(harness, "git_revision", lambda: "abc1234")
    harness.record_run("demo", {"model": "a", "minutes": 30.0}, [{"x": 1}])
    harness.record_run("demo", {"model": "b", "minutes": 30.0}, [{"x": 2}])
    harness.record_run("demo", {"minutes": 30.0, "model": "a"}, [{"x": 3}], notes="rerun")  # same, other key order
    runs = harness.load_runs(tmp_path / "demo.json")
    assert [(r["parameters"]["model"], r["results"][0]["x"]) for r in runs] == [("b", 2), ("a", 3)]
    assert runs[-1]["git"] == "abc1234" and runs[-1]["machine"] == {"cpu": "test"} and runs[-1]["notes"] == "rerun"
    assert [r["results"][0]["x"] for r in harness.find_runs("demo", model="a")] == [3]
    with pytest.raises(ValueError):
        harness.record_run("demo", {}, [])


def test_former_record_call_still_works(tmp_path, monkeypatch):
    """``record(name, results, notes=...)``, the call of scripts not yet moved to ``record_run``: the
    command line is the run's parameters; a file in the former one-run layout is replaced whole."""
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    monkeypatch.setattr(harness, "machine", lambda: {"cpu": "test"})
    monkeypatch.setattr(harness, "git_revision", lambda: None)
    monkeypatch.setattr(sys, "argv", ["bench_demo.py", "--check"])
    (tmp_path / "demo.json").write_text(json.dumps({"benchmark": "demo", "date": "d", "machine": {"cpu": "old"},
                                                    "notes": "", "results": [1]}))  # fmt: skip
    assert harness.load_runs(tmp_path / "demo.json")[0]["parameters"] is None
    harness.record("demo", [{"y": 1}], notes="n")
    harness.record("demo", [{"y": 2}], notes="n")
    runs = harness.load_runs(tmp_path / "demo.json")
    assert len(runs) == 1 and runs[0]["parameters"] == {"argv": ["--check"]} and runs[0]["results"] == [{"y": 2}]


def test_run_all_skips_what_the_machine_cannot_run():
    entries = {
        "a": {"script": "bench_a.py", "needs": ["cpu"]},
        "b": {"script": "bench_b.py", "needs": ["gpu"]},
        "c": {"script": "bench_c.py", "needs": ["checkpoint"], "usage": "python benchmarks/bench_c.py CK"},
    }
    skips = {n: why for n, _, why in run_all.plan(entries, [], has_cuda=False)}
    assert skips["a"] is None and "CUDA" in skips["b"] and "bench_c.py CK" in skips["c"]
    skips = {n: why for n, _, why in run_all.plan(entries, [], has_cuda=True)}
    assert skips["b"] is None and skips["c"]
    assert [n for n, _, _ in run_all.plan(entries, ["b"], has_cuda=True)] == ["b"]
    with pytest.raises(SystemExit, match="unknown"):
        run_all.plan(entries, ["nope"], has_cuda=False)
    assert all(set(e["needs"]) <= run_all.NEEDS for e in MANIFEST.values())


def _baseline_table(delta, err, ness, n=1000):
    """A two-condition Ising metric table: f_ref −2 at both, the given ΔF, F_NIS errors and NESS."""
    import pandas as pd

    return pd.DataFrame({"system": "ising", "size": "8x8", "model": "m", "source": "direct", "symmetrised": True,
                         "n_orders": 1, "order": "random", "T": [2.0, 3.0], "field": 0.0, "n_samples": n,
                         "f_ref": -2.0, "ref_method": "transfer_matrix", "delta_f": delta, "f_nis_err": err,
                         "ness": ness})  # fmt: skip


def test_baselines_floor_verdicts():
    """bench_baselines.compare: worse only beyond 3 error bars above the floor or below half the NESS
    floor; another sample count is not comparable; errors relative to |f_ref| for Ising."""
    bench = _load("bench_baselines")
    floor = {"error": 1e-4, "ness_min": 0.8, "n_samples": 1000}
    ok = bench.compare(_baseline_table([2e-4, -1e-5], [2e-5, 2e-5], [0.9, 0.5]), floor, relative=True)
    assert ok["error"] == pytest.approx(1e-4) and ok["sigma"] == pytest.approx(1e-5)
    assert ok["T_worst"] == 2.0 and ok["ness_min"] == 0.5 and ok["verdict"] == "no worse"
    bad = bench.compare(_baseline_table([2e-4, -2.8e-4], [2e-5, 2e-5], [0.9, 0.5]), floor, relative=True)
    assert bad["error"] == pytest.approx(1.4e-4) and bad["excess_sigma"] == pytest.approx(4.0)
    assert bad["T_worst"] == 3.0 and bad["worse_error"] and bad["verdict"] == "worse"
    low = bench.compare(_baseline_table([0.0, 0.0], [2e-5, 2e-5], [0.9, 0.39]), floor, relative=True)
    assert low["worse_ness"] and not low["worse_error"] and low["verdict"] == "worse"
    other = bench.compare(_baseline_table([0.0, 0.0], [2e-5, 2e-5], [0.9, 0.9], n=4000), floor, relative=True)
    assert other["verdict"] == "not comparable"
    floors = bench.load_floors()
    assert {m for (_, _, m) in floors} <= {"fo-arm-mlp", "ao-arm-mlp", "mam-mlp", "mam-transformer"}
