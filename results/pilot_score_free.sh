#!/usr/bin/env bash
# The pilot behind score_free.py's defaults (issue "the paper's method must learn on real images"): one tiny
# teacher on the JPEG copy of CIFAR-10, then Diff-Instruct and score-free variants from it with the same budget,
# each scored by FID-2k (real Inception weights, TF pipeline) against 200 training images per class.
# CPU scale: ~5 min per arm + ~4 min per FID on 2 cores. Runs that are done are skipped; run from the repo root.
#   bash results/pilot_score_free.sh [arm ...]        (no arm: all of them)
#   bash results/pilot_score_free.sh screens | screens2 [name ...]
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
  [rkl_w100_lr1e-3_one]="score_free.py --divergence rkl --cls-lr 1e-3 --cls-warmup 100 --weight one --cls-steps 1 --gen-sigma-max inf"
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
  # the generator's σ drawn from the log-normal truncated to [0.5, 2]: without the small σ where the classifier
  # is saturated and its gradient's direction is nearly random (results/classifier_sigma.md: cosine with DI ~0.1)
  [rkl_norm_band05_2_glr3e-5]="score_free.py --divergence rkl --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-min 0.5 --gen-sigma-max 2 --cls-steps 1"
  [rkl_norm_band05_2_glr3e-5_seed1]="score_free.py --divergence rkl --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-min 0.5 --gen-sigma-max 2 --seed 1 --cls-steps 1"
  [rkl_norm_band05_2_glr3e-5_seed2]="score_free.py --divergence rkl --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-min 0.5 --gen-sigma-max 2 --seed 2 --cls-steps 1"
  # the recipe at Diff-Instruct's official generator lr (score_free.py's default), and Diff-Instruct at the recipe's
  [rkl_norm_smax2_glr1e-5]="score_free.py --divergence rkl --lr 1e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max 2 --cls-steps 1"
  [di_glr3e-5]="diff_instruct.py --lr 3e-5 --fake-lr 3e-5"
  # the recipe with the whole teacher U-Net as the classifier (at the tiny preset the encoder half has 0.04M
  # parameters; Diff-Instruct's fake score is the whole 0.19M-parameter net)
  [rkl_norm_smax2_glr3e-5_unet]="score_free.py --divergence rkl --lr 3e-5 --cls-lr 1e-3 --cls-warmup 100 --weight normalized --gen-sigma-max 2 --cls-head unet --cls-steps 1"
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
# 3. Screens: 4 kimg, no FID, to see whether the classifier keeps up with the generator.
SCREEN=(--cls-steps 1 --weight sigma2 --gen-sigma-max inf --lr 1e-4 --cls-lr 1e-3 --cls-warmup 100 --total-kimg 4.096 --tick-kimg 1.024)
screens() {
  mkdir -p runs/screen
  [ -f runs/screen/one/generator.pt ] || python score_free.py "${COMMON[@]}" "${SCREEN[@]}" --weight one --outdir runs/screen/one
  [ -f runs/screen/k3/generator.pt ] || python score_free.py "${COMMON[@]}" "${SCREEN[@]}" --cls-steps 3 --outdir runs/screen/k3
  [ -f runs/screen/glr3e-5/generator.pt ] || python score_free.py "${COMMON[@]}" "${SCREEN[@]}" --lr 3e-5 --outdir runs/screen/glr3e-5
  [ -f runs/screen/gp1/generator.pt ] || python score_free.py "${COMMON[@]}" "${SCREEN[@]}" --cls-grad-penalty 1 --outdir runs/screen/gp1
}
# 4. Screens with FID: 4 kimg at generator lr 1e-4, FID-1k, one variable changed at a time (round 2).
SCREEN2=(--cls-steps 1 --weight sigma2 --gen-sigma-max inf --lr 1e-4 --cls-lr 1e-3 --cls-warmup 100 --total-kimg 4.096 --tick-kimg 1.024)
declare -A SCREENS2=(
  [base]=""                                        # the pilot's settings
  [damped]="--weight damped"                       # w = σ²σ_d²/(σ²+σ_d²): large σ damped
  [unet]="--cls-head unet"                         # the whole teacher U-Net as the classifier (4.9x params)
  [patch]="--cls-loss patch"                       # one BCE per 16x16 location (PatchGAN-style)
  [b9]="--cls-betas 0.9 0.999"                     # classifier Adam with momentum
  [b9_norm]="--cls-betas 0.9 0.999 --weight normalized"
  [global]="--cls-global 1"                        # + σ-conditioned quadratic in per-channel mean / mean square
  # round 3: keep the classifier's input gradient meaningful (smooth logit; the teacher's denoising features)
  [norm]="--weight normalized"
  [gp01]="--cls-grad-penalty 0.1"                  # R1-style penalty, 10x weaker than the 'gp1' screen
  [norm_gp01]="--weight normalized --cls-grad-penalty 0.1"
  [enc001]="--cls-encoder-lr 0.01"                 # encoder at 1e-5, head at 1e-3: the teacher's features kept
  [norm_enc001]="--weight normalized --cls-encoder-lr 0.01"
  [di]="DI"                                        # Diff-Instruct, the same 4 kimg (the target)
  # the pooled head's GroupNorm removes each image's global colour / brightness: pool the raw features instead
  [raw]="--cls-head-norm 0"
  [norm_raw]="--weight normalized --cls-head-norm 0"
  [norm_global]="--weight normalized --cls-global 1"
  # the teacher's encoder nearly frozen keeps its features, but a GroupNorm'ed head then cannot see global
  # brightness / colour (enc001 drifted to white): give the head raw features or explicit global statistics
  [enc001_raw]="--cls-encoder-lr 0.01 --cls-head-norm 0"
  [enc001_global]="--cls-encoder-lr 0.01 --cls-global 1"
  [enc01_raw]="--cls-encoder-lr 0.1 --cls-head-norm 0"
  # can the classifier with the teacher's features keep up if the generator is slower or it takes more steps?
  [enc001_raw_glr3e-5]="--cls-encoder-lr 0.01 --cls-head-norm 0 --lr 3e-5"
  [enc001_k3]="--cls-encoder-lr 0.01 --cls-steps 3"
  # round 4: the teacher's features kept, but denser supervision than one pooled logit per image
  [enc001_patch]="--cls-encoder-lr 0.01 --cls-loss patch"   # one BCE per location of the deepest features
  [enc001_multi]="--cls-encoder-lr 0.01 --cls-head multi"   # every resolution's features, MLP head
  [enc001_unet_patch]="--cls-encoder-lr 0.01 --cls-head unet --cls-loss patch"  # per-pixel, whole U-Net kept
  # Adam momentum in the generator (DI's β₁ = 0 turns a noisy classifier gradient into full-size steps)
  [gb9]="--betas 0.9 0.999"
  # round 5: the generator loss only where the classifier is right (σ ≤ 2; above it is near chance, yet w = σ²
  # makes its gradient there the largest)
  [smax2]="--gen-sigma-max 2"
  [enc001_smax2]="--cls-encoder-lr 0.01 --gen-sigma-max 2"
  [smax1]="--gen-sigma-max 1"
  [smax5]="--gen-sigma-max 5"
  [init]="--lr 0"                                  # the untrained teacher-initialised generator (the start)
)
screens2() {
  mkdir -p runs/screen2
  for name in "${@:-${!SCREENS2[@]}}"; do
    local out=runs/screen2/$name
    if [ "${SCREENS2[$name]}" = DI ]; then
      [ -f "$out/generator.pt" ] || python diff_instruct.py "${COMMON[@]}" --fake-lr 1e-4 --total-kimg 4.096 \
        --tick-kimg 1.024 --outdir "$out"
    else
      [ -f "$out/generator.pt" ] || python score_free.py "${COMMON[@]}" "${SCREEN2[@]}" ${SCREENS2[$name]} --outdir "$out"
    fi
    [ -f "$out/fid1k.txt" ] || python fid.py calc --ckpt "$out/generator.pt" --num 1000 --ref "$REF" \
      --inception "$INCEPTION" > "$out/fid1k.txt"
    echo "$name $(cat "$out/fid1k.txt")"
  done
}
# 5. The ratio as a verifier on the best score-free arm: FID-1k with k candidates per image (fid.py calc).
verifier() {
  local gen=$RUNS/rkl_norm_glr3e-5/generator.pt
  for k in "${@:-1 2 4 8}"; do
    local out=$RUNS/rkl_norm_glr3e-5/verifier_k$k.txt
    [ -f "$out" ] || python fid.py calc --ckpt "$gen" --num 1000 --ref "$REF" --inception "$INCEPTION" \
      --verifier-k "$k" --verifier-sigma 0.1 --verifier-rule resample > "$out"
    echo "k=$k $(cat "$out")"
  done
}
[ "${1:-}" = screens ] && { screens; exit 0; }
[ "${1:-}" = verifier ] && { shift; verifier "$@"; exit 0; }
[ "${1:-}" = screens2 ] && { shift; screens2 "$@"; exit 0; }
for name in "${@:-${!ARMS[@]}}"; do
  run_arm "$name" ${ARMS[$name]}
done
