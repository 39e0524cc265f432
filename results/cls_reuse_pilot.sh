#!/usr/bin/env bash
# --cls-reuse-x0 on real images: the study's score-free (reverse-KL) arm, CPU tier (tiny teacher of the study,
# 16 kimg at batch 64, FID-1k at 8 and 16 kimg), with the second classifier step on fresh generator samples
# (the default, reuse 0) and on the generator step's x₀ again (reuse 1), both arms for every seed. The reuse-0 arm
# is the study's sf_rkl arm (results/README.md; the same flags less --fid-at-start 1), run again here so that both
# arms of a seed share one teacher. Needs the study's teacher and reference statistics first:
# `python results/study.py run --arms ''` (~12 min on 2 cores: teacher, reference statistics, teacher FID).
# ~4 min per run on a 2-core AVX-512 VM (~13 min on the older AVX2 VMs). Run from the repo root.
# SEEDS="0 1 2 3" bash results/cls_reuse_pilot.sh (default: seeds 0 and 1).
set -euo pipefail
SHARED=${SHARED:-../shared}; STUDY=${STUDY:-runs/study/cpu}; OUT=${OUT:-runs/reuse}
for seed in ${SEEDS:-0 1}; do
  for reuse in 1 0; do
    python score_free.py --divergence rkl --dataset "$SHARED/data/cifar10-jpeg-train.zip" \
      --teacher "$STUDY/teacher/checkpoint.pt" --device cpu --fid-num 1000 --lr 3e-5 --fid-ref "$STUDY/ref.npz" \
      --inception "$SHARED/fid/inception-2015-12-05.pt" --batch 64 --ema-halflife-kimg 2 --total-kimg 16 \
      --tick-kimg 4 --snapshot-ticks 2 --seed $seed --cls-reuse-x0 $reuse --outdir "$OUT/s${seed}_reuse$reuse" \
      2>&1 | grep -E '^tick|fid1k' | sed "s/^/seed $seed reuse $reuse: /"
  done
done
