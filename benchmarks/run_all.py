"""Run the benchmarks of ``benchmarks/manifest.yaml`` this machine can (``make bench``; ``make bench
ONLY="training cuau_energy"`` runs those). Entries that need trained checkpoints (``needs:
[checkpoint]``) are never run here, and those that need a GPU (``needs: [gpu]``) are skipped without a
CUDA device (``benchmarks/gpu_check.sh`` runs them on one); each skip says why. Each benchmark records
its own runs under ``benchmarks/results/``.

    python benchmarks/run_all.py [NAME ...] [--list] [--dry-run]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.yaml"
NEEDS = {"cpu", "gpu", "checkpoint"}
FIELDS = {"script", "measures", "needs", "runtime", "records", "args", "usage"}
REQUIRED = {"script", "measures", "needs", "runtime", "records"}


def load_manifest(path: Path = MANIFEST) -> dict[str, dict]:
    """The manifest's entries by name, checked for their fields."""
    import yaml

    entries = yaml.safe_load(path.read_text()) or {}
    for name, e in entries.items():
        if not isinstance(e, dict) or not REQUIRED <= set(e) or not set(e) <= FIELDS:
            raise SystemExit(f"{path}: entry {name!r} needs {sorted(REQUIRED)} (may have {sorted(FIELDS - REQUIRED)})")
        if not set(e["needs"]) <= NEEDS:
            raise SystemExit(f"{path}: entry {name!r}: needs {e['needs']} not within {sorted(NEEDS)}")
    return entries


def skip_reason(entry: dict, has_cuda: bool) -> str | None:
    """Why this machine does not run ``entry`` (None: it does)."""
    if "checkpoint" in entry["needs"]:
        usage = entry.get("usage") or f"python benchmarks/{entry['script']} CHECKPOINT ..."
        return f"needs trained checkpoints on its command line (run by hand: {usage})"
    if "gpu" in entry["needs"] and not has_cuda:
        return "needs a CUDA device and none is visible (bash benchmarks/gpu_check.sh runs it on one)"
    return None


def plan(entries: dict[str, dict], only: list[str], has_cuda: bool) -> list[tuple[str, dict, str | None]]:
    """(name, entry, skip reason or None) for the selected entries, in manifest order."""
    unknown = [o for o in only if o not in entries]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; the manifest has {sorted(entries)}")
    return [(n, e, skip_reason(e, has_cuda)) for n, e in entries.items() if not only or n in only]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("only", nargs="*", metavar="NAME", help="these manifest entries only (default: all)")
    ap.add_argument("--list", action="store_true", help="print the manifest and exit")
    ap.add_argument("--dry-run", action="store_true", help="say what would run and what would be skipped")
    args = ap.parse_args(argv)
    entries = load_manifest()
    only = [n for o in args.only for n in o.replace(",", " ").split()]
    if args.list:
        for name, e in entries.items():
            print(f"{name:16} needs {','.join(e['needs']):10} {e['runtime']}\n{'':16} {e['measures']}\n"
                  f"{'':16} records: {', '.join(e['records'])}")  # fmt: skip
        return
    import torch

    failed = []
    for name, entry, why in plan(entries, only, torch.cuda.is_available()):
        cmd = [sys.executable, str(HERE / entry["script"]), *map(str, entry.get("args", []))]
        print(f"== {name} ({entry['script']}, {entry['runtime']})", flush=True)
        if why:
            print(f"   skipped: {why}", flush=True)
        elif args.dry_run:
            print(f"   would run: {' '.join(cmd)}", flush=True)
        elif subprocess.run(cmd, check=False).returncode != 0:
            failed.append(name)
    if failed:
        sys.exit(f"benchmarks failed: {failed}")


if __name__ == "__main__":
    main()
