"""Shared pieces of the benchmark scripts: the machine, the record files, timing and ``KEY=VALUE``
command-line settings.

``benchmarks/manifest.yaml`` lists every ``bench_*.py``: what it measures, what it needs and which
record file(s) under ``benchmarks/results/`` it writes; ``make bench`` (``run_all.py``) runs those
the machine can. A record file holds one benchmark's runs; its name carries no parameters::

    {"benchmark": "training",
     "runs": [{"parameters": {"system": "ising", "model": "ao-arm-mlp", "budget_minutes": 60, ...},
               "date": "2026-12-01T21:56:35+0000", "git": "66587f9", "machine": {"cpu": ...},
               "notes": "...", "results": [...] or {...}},
              ...]}

``parameters`` is what was asked for (the command line, the settings), ``results`` what was measured.
:func:`record_run` appends a run and replaces an earlier one with identical parameters: rerunning
the same settings replaces that measurement, other settings add a run. Benchmarks are not tests:
nothing here asserts speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

#: where records go; ``LATTHERM_BENCH_RESULTS=/tmp/x`` sends a trial run's records elsewhere
RESULTS = Path(os.environ.get("LATTHERM_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def machine() -> dict:
    """CPU model, core counts, memory, torch threads, GPU and versions of the main libraries."""
    import numpy
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as fh:
            mem_gb = round(int(fh.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    info = {
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "cores_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": mem_gb,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        pass
    return info


def git_revision() -> str | None:
    """Short hash of the checked-out commit (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                             cwd=Path(__file__).resolve().parent)  # fmt: skip
    except OSError:
        return None
    return out.stdout.strip() or None


def _plain(obj):
    """``obj`` as plain JSON values (tuples to lists, numpy and torch scalars to Python numbers)."""

    def default(o):
        if hasattr(o, "tolist"):
            return o.tolist()
        if hasattr(o, "item"):
            return o.item()
        return float(o)

    return json.loads(json.dumps(obj, default=default))


def same_parameters(a: dict | None, b: dict | None) -> bool:
    """Whether two runs' parameters are identical (order of keys aside)."""
    return a is not None and b is not None and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def portable_path(path: str | os.PathLike) -> str:
    """``path`` as a record names it: relative to the repository where it lies inside it, else its file
    name alone (a record must not name one machine's folders)."""
    full = Path(path).resolve()
    root = Path(__file__).resolve().parent.parent
    return str(full.relative_to(root)) if full.is_relative_to(root) else full.name


def record_path(name: str) -> Path:
    return RESULTS / f"{name}.json"


def load_runs(path: str | os.PathLike) -> list[dict]:
    """The runs of a record file. A file still in the former one-run layout (``benchmark``, ``date``,
    ``machine``, ``notes``, ``results`` at the top, its parameters in the file name) reads as one run
    whose ``parameters`` is None."""
    data = json.loads(Path(path).read_text())
    if "runs" in data:
        return data["runs"]
    mach = dict(data.get("machine") or {})
    return [{"parameters": None, "date": data.get("date"), "git": mach.pop("git", None), "machine": mach,
             "notes": data.get("notes", ""), "results": data.get("results")}]  # fmt: skip


def find_runs(name: str, **where) -> list[dict]:
    """Runs of ``benchmarks/results/<name>.json`` whose parameters include the items ``where``."""
    path = record_path(name)
    runs = load_runs(path) if path.exists() else []
    return [r for r in runs if all((r.get("parameters") or {}).get(k, object()) == v for k, v in _plain(where).items())]


@contextlib.contextmanager
def _locked():
    """Hold an exclusive lock on the results folder (concurrent benchmarks append to the same file)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    fd = os.open(RESULTS, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def record_run(name: str, parameters: dict, results, notes: str = "") -> Path:
    """Append a run to ``benchmarks/results/<name>.json``, replacing an earlier run with identical
    ``parameters`` (a file in the former one-run layout is replaced whole), and return the path."""
    params = _plain(parameters)
    if not isinstance(params, dict) or not params:
        raise ValueError(f"{name}: a run needs its parameters (a non-empty dict), got {parameters!r}")
    run = {
        "parameters": params,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_revision(),
        "machine": machine(),
        "notes": notes,
        "results": _plain(results),
    }
    out = record_path(name)
    with _locked():
        runs = load_runs(out) if out.exists() else []
        replaced = [r for r in runs if same_parameters(r.get("parameters"), params)]
        runs = [r for r in runs if r.get("parameters") is not None and not same_parameters(r["parameters"], params)]
        runs.append(run)
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"benchmark": name, "runs": runs}, indent=2) + "\n")
        tmp.replace(out)
    print(f"recorded {out} ({'replaced the run' if replaced else 'new run'} with these parameters; {len(runs)} runs)")
    return out


def record(name: str, results: list[dict] | dict, notes: str = "", parameters: dict | None = None) -> Path:
    """The former call: record ``results`` as a run of ``benchmarks/results/<name>.json`` whose
    parameters are ``parameters`` or, by default, the script's command line (``{"argv": [...]}``)."""
    return record_run(name, parameters if parameters else {"argv": sys.argv[1:]}, results, notes)


def print_table(rows: list[dict]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
    print("  ".join(c.rjust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).rjust(widths[c]) for c in cols))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def best_of(fn, repeats: int) -> float:
    """The shortest wall clock (s) of ``repeats`` calls of ``fn()`` (the machine may be shared)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _value(text: str):
    """A command-line value: None, a bool, an int, a float, else the text."""
    if text in ("None", "null"):
        return None
    if text in ("true", "false"):
        return text == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def key_values(items) -> dict:
    """``["steps=2500", "lr=3e-3"]`` (``--set`` / ``--model-set`` overrides) as a dict of values."""
    return {k: _value(v) for k, v in (a.split("=", 1) for a in items)}


def checkpoint_parser(doc: str, *, samples: int) -> argparse.ArgumentParser:
    """Command line of the benchmarks that evaluate trained checkpoints: the checkpoints,
    ``--samples`` per condition and ``--label`` (what the checkpoints are, e.g. "laptop run"; kept in
    each run's parameters, so that evaluations of different checkpoints at one path stay apart)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--samples", type=int, default=samples)
    ap.add_argument("--label", "--tag", dest="label", default=None,
                    help="what the checkpoints are (stored in the run's parameters)")  # fmt: skip
    return ap


def record_tagged(name: str, tag: str | None, rows: list[dict], notes: str) -> Path:
    """The former call: print ``rows`` and record them as a run of ``<name>.json`` (the command line
    and ``tag``, as ``label``, are its parameters)."""
    print_table(rows)
    return record(name, rows, notes=notes, parameters={"argv": sys.argv[1:], **({"label": tag} if tag else {})})
