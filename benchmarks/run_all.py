"""Run every ``benchmarks/bench_*.py`` in turn (``make bench``); each records its own JSON. Those that
evaluate given checkpoints (``checkpoint_parser``) are listed and skipped, and so are those marked
``GPU_ONLY = True`` when no CUDA device is visible (``benchmarks/gpu_check.sh`` runs them on one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
only = sys.argv[1:]
failed = []
for script in sorted(here.glob("bench_*.py")):
    if only and not any(o in script.stem for o in only):
        continue
    print(f"== {script.name}", flush=True)
    if "checkpoint_parser(" in script.read_text():  # evaluates given checkpoints: run by hand
        print(f"   skipped: needs trained checkpoints (python benchmarks/{script.name} CHECKPOINT ...)")
        continue
    if "\nGPU_ONLY = True" in script.read_text():
        import torch

        if not torch.cuda.is_available():
            print("   skipped: GPU benchmark and no CUDA device (benchmarks/gpu_check.sh)")
            continue
    if subprocess.run([sys.executable, str(script)], check=False).returncode != 0:
        failed.append(script.name)
if failed:
    sys.exit(f"benchmarks failed: {failed}")
