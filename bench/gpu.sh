#!/usr/bin/env bash
# One-shot engine benchmark on the lent H200, in one command, under 8 minutes.
#
# 1. Here (any machine with the venv and internet to PyPI):   make gpu-kit
#    (fills the ignored .gpu-kit/: cp312 wheels of diffusers, peft, transformers, regex,
#    dlib-bin, invisible-watermark, pywavelets at the lock's versions; the two dlib model
#    files and a CJK label font, xz; about 57 MiB, checked against the 64 MiB carry limit.)
# 2. The device tool's `run`, from the repo root, exactly:
#      command:   bash bench/gpu.sh
#      carry:     [".gpu-kit"]
#      timeout_s: 540
#    The script keeps itself to GPU_BENCH_BUDGET_S (default 450 s) of sections; the rest of
#    timeout_s is slack for pip and Python start-up. Results come back in $OUT:
#      gpu-report.md    tables: serving at batch 1/4/8/16 (sd15-random, 512 px, 20 steps,
#                       CFG 7.5: images/s, share of the bf16 peak by FLOP counter), instant
#                       identity vs the issue #15 targets (identity ready, first portrait,
#                       16 identities vs 16 samples of one), training (steps/s, peak memory),
#                       adapter switch, mixed-avatar vs single-avatar batches, whole avatar
#                       and generation jobs, torch.compile recompiles
#      gpu-report.json  everything, per section (status, seconds, results, error tails)
#      gpu-log.txt      every section's output
# 3. Give the machine back (give_back) unless you rerun at once.
#
# Each section runs in its own process with a time cap; one failed or slow section is
# recorded and the others still run (see bench/gpu_run.py for the sections). Options:
#   --cpu-smoke       dry run here on the CPU with the tiny models (no kit needed; results in
#                     var/gpu-smoke/ unless OUT is set)
#   --only a,b        only these sections (env, install, device_tests, identity_model,
#                     serving, training, job, compile; serving brings identity_model along)
#   --budget-s N      overall budget in seconds
set -u
cd "$(dirname "$0")/.." || exit 1
PYTHON=python3
for arg in "$@"; do
  if [ "$arg" = "--cpu-smoke" ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
done
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
exec "$PYTHON" bench/gpu_run.py "$@"
