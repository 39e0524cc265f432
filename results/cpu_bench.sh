#!/usr/bin/env bash
# The CPU rows of the README's benchmark table: every trainer's --bench (the real iteration on synthetic data),
# small preset, batch 16, fp32 (autocast is not used on CPU), run back to back ROUNDS times so that ratios are
# side by side on the same (shared, noisy) machine. COMPILE=1 adds a compiled teacher run at the end.
#   bash results/cpu_bench.sh  [ROUNDS=2 PRESET=small BATCH=16 STEPS=3 COMPILE=0]   (~5 min on 2 cores)
set -euo pipefail
ROUNDS=${ROUNDS:-2}; PRESET=${PRESET:-small}; BATCH=${BATCH:-16}; STEPS=${STEPS:-3}; COMPILE=${COMPILE:-0}
B=(--bench --device cpu --preset "$PRESET" --batch "$BATCH" --bench-steps "$STEPS")
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  python teacher.py "${B[@]}" | grep '^bench'
  python diff_instruct.py "${B[@]}" | grep '^bench'
  python score_free.py "${B[@]}" | grep '^bench'
  python score_free.py "${B[@]}" --cls-steps 1 | grep '^bench'
done
if [ "$COMPILE" = 1 ]; then python teacher.py "${B[@]}" --compile 1 | grep '^bench'; fi
