#!/usr/bin/env bash
# The pilot behind score_free.py's defaults (issue "the paper's method must learn on real images"): one tiny
# teacher on the JPEG copy of CIFAR-10, then Diff-Instruct and score-free variants from it with the same budget,
# each scored by FID-2k (real Inception weights, TF pipeline) against 200 training images per class.
# CPU scale: ~5 min per arm + ~4 min per FID on 2 cores. Runs that are done are skipped; run from the repo root.
#   bash results/pilot_score_free.sh [arm ...]        (no arm: all of them)
#   bash results/pilot_score_free.sh verifier [k ...]
# The arms and screens that used options since removed (other classifier heads and losses, --weight damped / one,
# --gen-sigma-min, a gradient penalty, classifier momentum, ...) are in results/NOTES.md with the commit that runs
# them (eb25876).
set -euo pipefail
SHARED=${SHARED:-../shared}
DATA=$SHARED/data/cifar10-jpeg-train.zip
INCEPTION=$SHARED/fid/inception-2015-12-05.pt
RUNS=${RUNS:-runs/pilot}
TEACHER=$RUNS/teacher/checkpoint.pt
REF=$RUNS/ref-200-per-class.npz
mkdir -p "$RUNS"

# 1. The teacher: tiny preset, 120 kimg (~25 min on 2 cores), resumable.
if [ ! -f "$RUNS/teacher/done" ]; then
  python teacher.py --dataset "$DATA" --preset tiny --batch 64 --lr 1e-3 --lr-rampup-kimg 10 \
    --ema-halflife-kimg 10 --total-kimg 120 --tick-kimg 10 --snapshot-ticks 4 --fid-ref none --device cpu \
    --outdir "$RUNS/teacher" $([ -f "$TEACHER" ] && echo --resume auto)
  touch "$RUNS/teacher/done"
fi
[ -f "$REF" ] || python fid.py ref --dataset "$DATA" --per-class 200 --inception "$INCEPTION" --out "$REF"

# 2. The arms: the same data, teacher, batch, generator lr, EMA and budget for every one. The arms written before
# score_free.py's defaults became --weight normalized --gen-sigma-max 2 --cls-steps 2 name the values they ran with.
# (Until that change --gen-sigma-max masked the loss above it; it now draws σ from the truncated log-normal: the
# same expected gradient up to a constant factor, 0.94 at σ ≤ 2.)
COMMON=(--dataset "$DATA" --teacher "$TEACHER" --batch 64 --lr 1e-4 --ema-halflife-kimg 2 --total-kimg 16
        --tick-kimg 2 --snapshot-ticks 1000 --fid-ref none --device cpu)
declare -A ARMS=(
  [init]="score_free.py --lr 0 --total-kimg 0.064 --weight sigma2 --gen-sigma-max inf --cls-steps 1"   # the untrained teacher-initialised generator
  [di]="diff_instruct.py --fake-lr 1e-4"
  # score-free, reverse KL: round 1's settings (classifier as DI's fake score: lr = generator lr, no warm-up)
  [rkl_r1]="score_free.py --divergence rkl --cls-lr 1e-4 --cls-warmup 0 --weight sigma2 --cls-steps 1 --gen-sigma-max inf"
  [rkl_w100_lr1e-3]="score_free.py --divergence rkl --cls-lr 1e-3 --cls-warmup 100 --weight sigma2 --cls-steps 1 --gen-sigma-max inf"
  [js_w100_lr1e-3]="score_free.py --divergence js --cls-lr 1e-3 --cls-warmup 100 --weight sigma2 --cls-steps 1 --gen-sigma-max inf"
  # the generator 3.3x slower than Diff-Instruct's, the classifier 33x faster than the generator
  [rkl_w100_lr1e-3_glr3e-5]="score_free.py --divergence rkl --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight sigma2 --cls-steps 1 --gen-sigma-max inf"
  [js_w100_lr1e-3_glr3e-5]="score_free.py --divergence js --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight sigma2 --cls-steps 1 --gen-sigma-max inf"
  # Diff-Instruct's official generator lr (1e-5) for both methods, the classifier still at 1e-3 (100x)
  [di_glr1e-5]="diff_instruct.py --lr 1e-5 --fake-lr 1e-5"
  [rkl_glr1e-5]="score_free.py --divergence rkl --lr 1e-5 --cls-lr 1e-3 --cls-warmup 100 --weight sigma2 --cls-steps 1 --gen-sigma-max inf"
  # each image's classifier gradient rescaled to unit RMS (--weight normalized): mid and small σ count too
  [rkl_norm]="score_free.py --divergence rkl --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max inf --cls-steps 1"
  [rkl_norm_glr1e-5]="score_free.py --divergence rkl --lr 1e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max inf --cls-steps 1"
  [rkl_norm_glr3e-5]="score_free.py --divergence rkl --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max inf --cls-steps 1"
  [js_norm]="score_free.py --divergence js --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max inf --cls-steps 1"
  [js_glr1e-5]="score_free.py --divergence js --lr 1e-5 --cls-lr 1e-3 --cls-warmup 100 --weight sigma2 --cls-steps 1 --gen-sigma-max inf"
  # the generator loss only at σ ≤ 2, where the classifier is right (round-5 screens)
  [rkl_smax2]="score_free.py --divergence rkl --cls-lr 1e-3 --cls-warmup 100 --gen-sigma-max 2 --weight sigma2 --cls-steps 1"
  # both: each image's gradient normalised and only σ ≤ 2 (the first arm that learns: FID-2k 232.0 / 286.2, seeds 0 / 1)
  [rkl_norm_smax2_glr3e-5]="score_free.py --divergence rkl --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max 2 --cls-steps 1"
  [rkl_norm_smax2_glr3e-5_seed1]="score_free.py --divergence rkl --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max 2 --seed 1 --cls-steps 1"
  [rkl_norm_smax2_glr3e-5_seed2]="score_free.py --divergence rkl --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max 2 --seed 2 --cls-steps 1"
  [js_norm_smax2_glr3e-5]="score_free.py --divergence js --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max 2 --cls-steps 1"
  # two classifier steps per generator step (the GAN n_critic remedy), on seed 0 and on the seed that lagged
  [rkl_norm_smax2_glr3e-5_k2]="score_free.py --divergence rkl --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max 2 --cls-steps 2"
  [rkl_norm_smax2_glr3e-5_k2_seed1]="score_free.py --divergence rkl --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max 2 --cls-steps 2 --seed 1"
  [rkl_norm_smax2_glr3e-5_k2_seed2]="score_free.py --divergence rkl --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max 2 --cls-steps 2 --seed 2"
  [js_norm_smax2_glr3e-5_k2]="score_free.py --divergence js --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max 2 --cls-steps 2"
  [js_norm_smax2_glr3e-5_k2_seed1]="score_free.py --divergence js --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max 2 --cls-steps 2 --seed 1"
  [js_norm_smax2_glr3e-5_k2_seed2]="score_free.py --divergence js --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max 2 --cls-steps 2 --seed 2"
  [di_seed2]="diff_instruct.py --fake-lr 1e-4 --seed 2"
  [di_seed1]="diff_instruct.py --fake-lr 1e-4 --seed 1"
  # the recipe at Diff-Instruct's official generator lr (score_free.py's default), and Diff-Instruct at the recipe's
  [rkl_norm_smax2_glr1e-5]="score_free.py --divergence rkl --lr 1e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max 2 --cls-steps 1"
  [di_glr3e-5]="diff_instruct.py --lr 3e-5 --fake-lr 3e-5"
)
run_arm() {
  local name=$1 script=$2; shift 2
  local out=$RUNS/$name
  [ -f "$out/generator.pt" ] || python "$script" "${COMMON[@]}" "$@" --outdir "$out"
  [ -f "$out/fid2k.txt" ] || python fid.py calc --ckpt "$out/generator.pt" --num 2000 --ref "$REF" \
    --inception "$INCEPTION" > "$out/fid2k.txt"
  echo "$name $(cat "$out/fid2k.txt")"
}
[ -f "$RUNS/teacher/fid2k.txt" ] || python fid.py calc --ckpt "$TEACHER" --num 2000 --ref "$REF" \
  --inception "$INCEPTION" > "$RUNS/teacher/fid2k.txt"
echo "teacher (Heun, 35 NFE) $(cat "$RUNS/teacher/fid2k.txt")"
# 3. The ratio as a verifier on the best score-free arm: FID-1k with k candidates per image (score_free.py verify).
verifier() {
  local gen=$RUNS/rkl_norm_glr3e-5/generator.pt
  for k in "${@:-1 2 4 8}"; do
    local out=$RUNS/rkl_norm_glr3e-5/verifier_k$k.txt
    [ -f "$out" ] || python score_free.py verify --ckpt "$gen" --num 1000 --ref "$REF" --inception "$INCEPTION" \
      --k "$k" --sigma 0.1 --rule resample > "$out"
    echo "k=$k $(cat "$out")"
  done
}
[ "${1:-}" = verifier ] && { shift; verifier "$@"; exit 0; }
for name in "${@:-${!ARMS[@]}}"; do
  run_arm "$name" ${ARMS[$name]}
done
