"""Shared pieces of the benchmark scripts: machine description and recording results.

Each ``benchmarks/bench_*.py`` measures something, prints a table and calls :func:`record`,
which writes ``benchmarks/results/<name>.json`` with the machine, the library versions and the
figures. ``make bench`` runs them all. Benchmarks are not tests: nothing here asserts speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """CPU model, core counts, memory, torch threads and versions of the main libraries."""
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
    try:
        info["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        pass
    return info


def record(name: str, results: list[dict] | dict, notes: str = "") -> Path:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "notes": notes,
        "results": results,
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    tmp.replace(out)
    print(f"recorded {out}")
    return out


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


def checkpoint_parser(doc: str, *, samples: int) -> argparse.ArgumentParser:
    """Command line of the benchmarks that evaluate trained checkpoints: the checkpoints,
    ``--samples`` per condition and ``--tag`` (suffix of the recorded result's name)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--samples", type=int, default=samples)
    ap.add_argument("--tag", default=None)
    return ap


def record_tagged(name: str, tag: str | None, rows: list[dict], notes: str) -> Path:
    """Print ``rows`` and record them as ``<name>[_<tag>].json``."""
    print_table(rows)
    return record(name + (f"_{tag}" if tag else ""), rows, notes=notes)
