#!/usr/bin/env bash
# GPU figures, in one go on a machine with a CUDA GPU (nothing else in the project needs one):
#   1. benchmarks/train_step.py on the GPU: fp32 and bf16, ProbSparse and full attention;
#   2. the ETTh1 reproduction sweep on the GPU (VARIANTS of EXPERIMENTS, 3 seeds; fp32 vs bf16
#      training at ETTh1 M 24), for at most SWEEP_SECONDS; finished runs are kept, and a second
#      call trains only what is missing.
# Usage: INFORMER_DATA_DIR=<dir with ETTh1.csv> [SWEEP_SECONDS=420] [EXPERIMENTS=a,b] [JOBS=12] \
#          [VARIANTS=paper,revin] [TRAIN_STEP=1] [FP32=1] [RESULTS_TGZ=file.tgz] \
#          bash benchmarks/gpu_checks.sh [out dir]
# RESULTS_TGZ: also pack what the tables need (each run's metrics.json, config.yaml, train.log
# and the text figures) without checkpoints or model weights (gigabytes), paths relative to out.
# EXPERIMENTS run in the order given (JOBS at a time), so list the ones that matter first.
set -u
out=${1:-runs/gpu}
sweep_seconds=${SWEEP_SECONDS:-420}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
if [ "${TRAIN_STEP:-1}" = 1 ]; then
  for attn in prob full; do
    for precision in 32-true bf16-mixed; do
      echo "== train_step $attn $precision" | tee -a "$out/train_step.txt"
      python3 benchmarks/train_step.py --device cuda --steps 50 --warmup 10 --attn "$attn" \
        --precision "$precision" 2>&1 | tail -6 | tee -a "$out/train_step.txt"
    done
  done
fi
gpu=(-- trainer.accelerator=gpu)
if [ "${FP32:-1}" = 1 ]; then
  timeout "$sweep_seconds" python3 benchmarks/reproduce_paper.py experiment=etth1_M_24 \
    variant=fp32 seed=2021,1,2 jobs=3 out="$out/reproduce" "${gpu[@]}" > "$out/fp32.log" 2>&1 &
fi
all=etth1_M_24,etth1_M_48,etth1_M_168,etth1_M_336,etth1_M_720
all=$all,etth1_S_24,etth1_S_48,etth1_S_168,etth1_S_336,etth1_S_720
timeout "$sweep_seconds" python3 benchmarks/reproduce_paper.py experiment="${EXPERIMENTS:-$all}" \
  variant="${VARIANTS:-paper,revin}" seed=2021,1,2 jobs="${JOBS:-12}" out="$out/reproduce" \
  "${gpu[@]}" 2>&1 | tee "$out/sweep.log"
wait
if [ -n "${RESULTS_TGZ:-}" ]; then
  tgz=$(realpath -m "$RESULTS_TGZ")
  (cd "$out" && find . -name metrics.json -o -name config.yaml -not -path '*/.hydra/*' \
     -o -name '*.txt' -o -name '*.log' | tar czf "$tgz" -T -)
fi
