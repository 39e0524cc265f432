#!/usr/bin/env bash
# Everything this project measures on a borrowed GPU, as one prepared device call (no network there; 64 MiB in,
# 64 MiB out; the call is killed at 600 s).
#   here, once:  python results/bench.py carry        (.carry/: the CIFAR-10 test zip, the fp16-rounded Inception)
#   the call:    run(command="OUT=$OUT bash results/gpu.sh", carry=[".carry"], timeout_s=560)
#                STAGES picks and orders the stages: bench (default: bench curves fid) | fid | curves | study
#   the study alone (its train zip does not fit beside .carry in the 64 MiB a call carries):
#                mkdir -p .carry_study/data && cp ../shared/data/cifar10-jpeg-train.zip .carry_study/data/
#                run(command="STAGES=study OUT=$OUT bash results/gpu.sh", carry=[".carry_study"], timeout_s=560)
#   here, after: copy $OUT/gpu.txt into results/NOTES.md (benchmarks); for the study:
#                python results/study.py unpack --tier gpu <files>/study_gpu_*.tar && python results/study.py fid --tier gpu
#                && python results/study.py report --tier gpu
#   dry run on CPU: DEVICE=cpu PRESET=tiny BATCH=8 DIBATCH=8 STEPS=2 NUM1=64 NUMH=8 STOP=3000 bash results/gpu.sh
# The FIDs of the fp16-rounded weights are for timing only (features ~3e-3 relative off the exact ones).
# bench   results/bench.py: teacher bf16 eager and compiled (edm, batch 512; anchors in ../shared/README.md),
#         Diff-Instruct and score-free (edm, batch 128, eager; score-free with 1 and 2 classifier steps), the FID
#         features; results/precision.py with the GPU's bf16 kernels
# fid     one-step FID-50k end to end in fp32 and bf16; Heun (18 steps) on NUMH images, eager and compiled
# curves  the first 20 teacher steps on real images in fp32 (TF32 off) and bf16, same seed; then the one-step
#         trainers' own loops on CUDA from that teacher
# study   results/study.py run --tier gpu, stopped at STUDY_SECONDS, packed into $OUT
set -uo pipefail
DEVICE=${DEVICE:-cuda}; PRESET=${PRESET:-edm}; BATCH=${BATCH:-512}; DIBATCH=${DIBATCH:-128}; STEPS=${STEPS:-10}
NUM1=${NUM1:-50000}; NUMH=${NUMH:-2000}; STOP=${STOP:-500}; CARRY=${CARRY:-.carry}
OUT=${OUT:-runs/gpu_out}; mkdir -p "$OUT"
RUNS=runs/gpu_work; rm -rf "$RUNS"; mkdir -p "$RUNS"
LOG=$OUT/gpu.txt; FULL=$OUT/full.log
DATA=$CARRY/cifar10-jpeg-test.zip; INC=$CARRY/inception_fp16.pth
export PYTHONUNBUFFERED=1
# run TIMEOUT CMD...: skipped when fewer than 15 s are left of STOP; keeps the lines that carry numbers
run() {
  local t=$1; shift
  local left=$(( STOP - SECONDS ))
  if (( left < 15 )); then echo "skipped (out of time): $*" | tee -a "$LOG"; return; fi
  (( t > left )) && t=$left
  echo "\$ $*" | tee -a "$LOG"; echo "\$ $*" >> "$FULL"
  local t0=$SECONDS
  timeout "$t" "$@" > "$RUNS/last.txt" 2>&1; local rc=$?
  cat "$RUNS/last.txt" >> "$FULL"
  grep -E '^bench|^fid|^precision|^wrote|rror|Traceback' "$RUNS/last.txt" | tee -a "$LOG"
  echo "  [exit $rc, $(( SECONDS - t0 )) s wall]" | tee -a "$LOG"
}
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "device $DEVICE"
  python -c 'import torch; print("torch", torch.__version__)'; } | tee -a "$LOG"
B=(--device "$DEVICE" --preset "$PRESET" --steps "$STEPS")
T=(--dataset "$DATA" --split test --preset "$PRESET" --batch "$BATCH" --device "$DEVICE" --lr-rampup-kimg 0
   --total-kimg "$(python -c "print(20 * $BATCH / 1000)")" --tick-kimg "$(python -c "print($BATCH / 1000)")"
   --snapshot-ticks 1000 --fid-ref none --grid 16)
TEACHER=$RUNS/teacher_bf16/checkpoint.pt

stage_bench() {
  run 60 python results/bench.py teacher "${B[@]}" --batch "$BATCH"
  run 280 python results/bench.py teacher "${B[@]}" --batch "$BATCH" --compile 1
  run 90 python results/bench.py diff_instruct score_free "${B[@]}" --batch "$DIBATCH"
  run 60 python results/bench.py score_free "${B[@]}" --batch "$DIBATCH" --cls-steps 1
  run 40 python results/bench.py fid --device "$DEVICE" --inception "$INC" --num 2000 --batch 1000
}
stage_curves() {
  run 60 python teacher.py "${T[@]}" --precision bf16 --outdir "$RUNS/teacher_bf16"
  run 90 python teacher.py "${T[@]}" --precision fp32 --outdir "$RUNS/teacher_fp32"
  python - "$RUNS" <<'EOF' 2>&1 | tee -a "$LOG"
import json, os, sys
curves = [[json.loads(l) for l in open(f) if '"loss"' in l] if os.path.exists(f) else []
          for f in (f'{sys.argv[1]}/teacher_{p}/log.jsonl' for p in ('fp32', 'bf16'))]
pairs = [(a['loss'], b['loss']) for a, b in zip(*curves)]
print('loss per step fp32 / bf16:', '  '.join(f'{a:.4f}/{b:.4f}' for a, b in pairs))
if pairs:
    print(f'max |bf16 - fp32| / fp32 over {len(pairs)} steps: {max(abs(b - a) / a for a, b in pairs):.2e}')
EOF
  run 60 python diff_instruct.py --teacher "$TEACHER" --dataset "$DATA" --batch "$DIBATCH" --device "$DEVICE" \
    --total-kimg "$(python -c "print($DIBATCH / 1000)")" --fid-ref none --grid 16 --outdir "$RUNS/di"
  run 60 python score_free.py --teacher "$TEACHER" --dataset "$DATA" --batch "$DIBATCH" --device "$DEVICE" \
    --cls-warmup 2 --total-kimg "$(python -c "print(2 * $DIBATCH / 1000)")" --fid-ref none --grid 16 --outdir "$RUNS/sf"
  run 90 python results/precision.py --teacher "$TEACHER" --dataset "$DATA" --device "$DEVICE" --batch 64 --steps 0,1,10
}
stage_fid() {
  run 60 python fid.py ref --dataset "$DATA" --split test --per-class 100 --out "$RUNS/ref.npz" --inception "$INC" \
    --device "$DEVICE"
  for p in bf16 fp32; do
    run 90 python fid.py calc --ckpt "$RUNS/di/generator.pt" --ref "$RUNS/ref.npz" --num "$NUM1" --inception "$INC" \
      --device "$DEVICE" --sample-precision $p
  done
  run 60 python fid.py calc --ckpt "$TEACHER" --ref "$RUNS/ref.npz" --num "$NUMH" --inception "$INC" \
    --device "$DEVICE" --sample-precision bf16
  run 200 python fid.py calc --ckpt "$TEACHER" --ref "$RUNS/ref.npz" --num "$((2 * NUMH))" --inception "$INC" \
    --device "$DEVICE" --sample-precision bf16 --compile 1
}
stage_study() {
  export SHARED=$PWD/${STUDY_CARRY:-.carry_study}
  local tier=${TIER:-gpu} left=$(( STOP - SECONDS - 30 ))  # 30 s kept for packing
  if (( left < 60 )); then echo "skipped (out of time): study" | tee -a "$LOG"; return; fi
  mkdir -p "results/study_$tier/records"
  python -c "import json, torch; json.dump({'name': torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu',
    'torch': torch.__version__}, open('results/study_$tier/records/device.json', 'w'))"
  timeout "${STUDY_SECONDS:-$left}" python results/study.py run --tier "$tier" 2>&1 | tail -20 | tee -a "$LOG"
  python results/study.py pack --tier "$tier" --to "$OUT" | tee -a "$LOG"
}
for stage in ${STAGES:-bench curves fid}; do "stage_$stage"; done
echo "total $SECONDS s" | tee -a "$LOG"
