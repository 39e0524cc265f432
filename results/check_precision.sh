#!/usr/bin/env bash
# The precision check behind the README's bf16 defaults: the cosine between the generator (teacher: denoiser)
# gradient in bf16 autocast and in fp32 with TF32 off, along a short fp32 run. CPU is fine (bf16 autocast is
# emulated there); needs the pilot's tiny teacher (bash results/pilot_score_free.sh). Run from the repo root.
set -euo pipefail
SHARED=${SHARED:-../shared}
DATA=$SHARED/data/cifar10-jpeg-train.zip
TEACHER=${TEACHER:-runs/pilot/teacher/checkpoint.pt}
OUT=${OUT:-runs/pilot/check_precision.txt}
{
  # Diff-Instruct at its official lr (1e-5): the fake score is one Adam step away from the teacher at step 1
  python diff_instruct.py --check-precision --teacher "$TEACHER" --batch 16 --exact-scores 1 --device cpu
  python diff_instruct.py --check-precision --teacher "$TEACHER" --batch 16 --exact-scores 0 --device cpu
  python score_free.py --check-precision --dataset "$DATA" --teacher "$TEACHER" --batch 16 --lr 1e-4 --cls-lr 1e-3 \
    --cls-warmup 100 --device cpu
  python teacher.py --check-precision --dataset "$DATA" --preset tiny --batch 16 --device cpu
} 2>&1 | grep check-precision | tee "$OUT"
