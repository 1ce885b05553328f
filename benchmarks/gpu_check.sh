#!/usr/bin/env bash
# The prepared GPU check (one call of a lent machine: about 5 minutes, at most 7.5, on one H100/H200;
# device tool: run with timeout_s 480):
#   1. tests/test_devices.py on CUDA: every architecture's sampler, exact normalisation,
#      bf16-autocast training, resume-after-kill and the sample/metrics path on the GPU;
#   2. benchmarks/bench_train_step.py --paper on 20x20: one training step's time and peak GPU memory,
#      AO-ARM MLP vs MAM MLP vs MAM Transformer at equal batch, and sampling throughput;
#   3. benchmarks/bench_paper_training.py: each model trained ~15 s with config/paper.yaml on 20x20
#      (bf16): s/step, samples/s, peak memory.
# Needs python3 with torch (CUDA), numpy, pandas, pyarrow, pyyaml, pytest; no Snakemake.
# Usage (repository root):  bash benchmarks/gpu_check.sh [OUT_DIR]
# Steps 2 and 3 each append a run (device cuda) to their record, benchmarks/results/train_step.json and
# benchmarks/results/paper_training.json (benchmarks/manifest.yaml); the records that changed are copied
# whole (earlier runs included), with the logs, to OUT_DIR (default: $OUT): copy them over the
# checkout's benchmarks/results/ to keep the GPU runs.
set -uo pipefail
out=${1:-${OUT:-/tmp/lattherm-gpu-check}}
mkdir -p "$out"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
stamp=$(mktemp)
status=0

nvidia-smi -L 2>&1 | tee "$out/gpu_check.log"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" \
    2>&1 | tee -a "$out/gpu_check.log" || exit 1

echo "== 1. device tests" | tee -a "$out/gpu_check.log"
CUBLAS_WORKSPACE_CONFIG=:4096:8 timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_devices.py 2>&1 | tee "$out/gpu_tests.log" || status=1

echo "== 2. one training step at paper widths, 20x20" | tee -a "$out/gpu_check.log"
(cd benchmarks && timeout 120 python3 bench_train_step.py --paper --sizes 20) 2>&1 | tee -a "$out/gpu_check.log" || status=1

echo "== 3. paper-config training throughput, 20x20" | tee -a "$out/gpu_check.log"
(cd benchmarks && timeout 180 python3 bench_paper_training.py --sizes 20x20 --minutes 0.25 --label gpu-check) 2>&1 \
    | tee -a "$out/gpu_check.log" || status=1

for record in train_step paper_training; do  # the records of steps 2 and 3, if this run wrote them
    [ benchmarks/results/$record.json -nt "$stamp" ] && cp benchmarks/results/$record.json "$out/"
done
rm -f "$stamp"
echo "gpu_check: status $status; files in $out" | tee -a "$out/gpu_check.log"
exit $status
