#!/usr/bin/env bash
# The GPU side of the speed issue, prepared on CPU for one device call (no network there; synthetic data only):
#   run: bash results/gpu_bench.sh   (on the device, one call of <= 10 min: each command gets TIMEOUT=150 s; every
#        line printed also goes to $OUT/gpu_bench.txt)
#   dry run on CPU: DEVICE=cpu PRESET=tiny BATCH=4 DIBATCH=4 STEPS=2 bash results/gpu_bench.sh
# 1. teacher iteration, edm preset, batch 512: fp32 (EDM's default), bf16, bf16 + torch.compile (target: 2500 img/s)
# 2. Diff-Instruct vs score-free iteration, edm preset, batch 128, bf16 (targets: score-free ≤ 0.6x the time,
#    ≤ 0.7x the peak memory), eager and compiled
# 3. FID feature extraction, if INCEPTION names the weights (87 MB: more than one call carries; bring it in parts)
set -uo pipefail
DEVICE=${DEVICE:-cuda}; PRESET=${PRESET:-edm}; BATCH=${BATCH:-512}; DIBATCH=${DIBATCH:-128}; STEPS=${STEPS:-20}
OUT=${OUT:-runs/gpu_bench}; mkdir -p "$OUT"
LOG=$OUT/gpu_bench.txt
run() { echo "\$ $*" | tee -a "$LOG"; timeout "${TIMEOUT:-150}" "$@" 2>&1 | grep -E '^bench|^fid bench|Error|error' | tee -a "$LOG"; }
B=(--bench --device "$DEVICE" --preset "$PRESET" --bench-steps "$STEPS")
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "device $DEVICE"; } | tee -a "$LOG"
run python teacher.py "${B[@]}" --batch "$BATCH" --precision fp32
run python teacher.py "${B[@]}" --batch "$BATCH" --precision bf16
run python teacher.py "${B[@]}" --batch "$BATCH" --precision bf16 --compile 1
for c in 0 1; do
  run python diff_instruct.py "${B[@]}" --batch "$DIBATCH" --precision bf16 --compile $c
  run python score_free.py "${B[@]}" --batch "$DIBATCH" --precision bf16 --compile $c
done
if [ -n "${INCEPTION:-}" ]; then
  run python fid.py bench --inception "$INCEPTION" --num 2048 --batch 256 --device "$DEVICE"
fi
