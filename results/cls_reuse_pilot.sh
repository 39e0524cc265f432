#!/usr/bin/env bash
# --cls-reuse-x0 on real images: the study's score-free (reverse-KL) arm, CPU tier (tiny teacher of the study,
# 16 kimg at batch 64, FID-1k at 8 and 16 kimg), with the second classifier step on fresh generator samples
# (the default) and on the generator step's x₀ again, seeds 0 and 1. Seed 0 with fresh samples is the study's own
# sf_rkl arm (results/README.md; the same flags plus --fid-at-start 1). Needs `python results/study.py run` first
# (its teacher and reference statistics). ~13 min per run on 2 cores. Run from the repo root.
# SEEDS="2 3" bash results/cls_reuse_pilot.sh adds seeds (both arms each).
set -euo pipefail
SHARED=${SHARED:-../shared}; STUDY=${STUDY:-runs/study/cpu}; OUT=${OUT:-runs/reuse}
for seed in ${SEEDS:-0 1}; do
  for reuse in 1 0; do
    [ "$seed$reuse" = 00 ] && continue  # the study's sf_rkl arm
    python score_free.py --divergence rkl --dataset "$SHARED/data/cifar10-jpeg-train.zip" \
      --teacher "$STUDY/teacher/checkpoint.pt" --device cpu --fid-num 1000 --lr 3e-5 --fid-ref "$STUDY/ref.npz" \
      --inception "$SHARED/fid/inception-2015-12-05.pt" --batch 64 --ema-halflife-kimg 2 --total-kimg 16 \
      --tick-kimg 4 --snapshot-ticks 2 --seed $seed --cls-reuse-x0 $reuse --outdir "$OUT/s${seed}_reuse$reuse" \
      2>&1 | grep -E '^tick|fid1k' | sed "s/^/seed $seed reuse $reuse: /"
  done
done
