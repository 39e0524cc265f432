#!/usr/bin/env bash
# The GPU side of the speed issue, prepared on CPU for one device call (no network there).
#   carry:  .carry/cifar10-jpeg-test.zip (10.9 MB, ../shared/data) and .carry/inception_fp16.pth, the FID weights
#           with fp16-rounded values (43.7 MB; the 87 MB file does not fit the 64 MiB a call carries; made by
#           `python results/gpu_bench_carry.py`). Features from it differ from the exact ones by ~3e-3 relative,
#           so the FIDs printed there are for timing only; exact FIDs are computed here on CPU.
#   run:    bash results/gpu_bench.sh   (one call; stops starting commands after STOP=500 s; every line printed
#           also goes to $OUT/gpu_bench.txt, each command's whole output to $OUT/full.log)
#   dry run on CPU: DEVICE=cpu PRESET=tiny BATCH=8 DIBATCH=8 STEPS=2 NUM1=64 NUMH=8 PERCLASS=2 NUMB=16 STOP=3000 \
#           bash results/gpu_bench.sh
# In order (the cheap eager measurements first, compilation last, since it may not finish in the call):
# 1. Diff-Instruct vs score-free iteration, edm preset, batch 128, bf16, eager (targets: score-free ≤ 0.6x the
#    time, ≤ 0.7x the peak memory), score-free with 2 (default) and 1 classifier steps, and 2 with --cls-reuse-x0 1
# 2. teacher iteration, edm preset, batch 512, bf16 eager
# 3. the loss over the first 20 teacher steps on real images (CIFAR-10 test split), fp32 (TF32 off, EDM's
#    default) and bf16 autocast, same seed, lr 1e-3 from the first step (no ramp-up, so the updates matter);
#    the fp32 run's log also gives the fp32 training speed, and its checkpoint is the teacher for 4
# 4. FID timings: a one-step generator (Diff-Instruct, one iteration from that teacher) FID-50k end to end; Heun
#    (18 steps, 35 NFE) on NUMH images in fp32 and in bf16 (×50000/NUMH for FID-50k); fid.py bench
# 5. teacher bf16 + torch.compile (target 2500 img/s), then compiled Diff-Instruct and score-free if time is left
set -uo pipefail
DEVICE=${DEVICE:-cuda}; PRESET=${PRESET:-edm}; BATCH=${BATCH:-512}; DIBATCH=${DIBATCH:-128}; STEPS=${STEPS:-10}
NUM1=${NUM1:-50000}; NUMH=${NUMH:-2000}; PERCLASS=${PERCLASS:-100}; NUMB=${NUMB:-2000}; STOP=${STOP:-500}; CARRY=${CARRY:-.carry}
OUT=${OUT:-runs/gpu_bench}; mkdir -p "$OUT"
RUNS=runs/gpu_bench_work; rm -rf "$RUNS"; mkdir -p "$RUNS"
LOG=$OUT/gpu_bench.txt; FULL=$OUT/full.log
DATA=$CARRY/cifar10-jpeg-test.zip; INC=$CARRY/inception_fp16.pth
export PYTHONUNBUFFERED=1
# run TIMEOUT CMD...: skipped when fewer than 15 s are left of STOP; prints the lines that carry numbers
run() {
  local t=$1; shift
  local left=$(( STOP - SECONDS ))
  if (( left < 15 )); then echo "skipped (out of time): $*" | tee -a "$LOG"; return; fi
  (( t > left )) && t=$left
  echo "\$ $*" | tee -a "$LOG"; echo "\$ $*" >> "$FULL"
  local t0=$SECONDS
  timeout "$t" "$@" > "$RUNS/last.txt" 2>&1; local rc=$?
  cat "$RUNS/last.txt" >> "$FULL"
  grep -E '^bench|^fid bench|^FID|^fid|^wrote|rror|Traceback' "$RUNS/last.txt" | tee -a "$LOG"
  echo "  [exit $rc, $(( SECONDS - t0 )) s wall]" | tee -a "$LOG"
}
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || echo "device $DEVICE"
  python -c 'import torch; print("torch", torch.__version__)'; } | tee -a "$LOG"
B=(--bench --device "$DEVICE" --preset "$PRESET" --bench-steps "$STEPS" --precision bf16)

# 1-2. eager iterations
run 60 python diff_instruct.py "${B[@]}" --batch "$DIBATCH"
run 60 python score_free.py "${B[@]}" --batch "$DIBATCH"
run 60 python score_free.py "${B[@]}" --batch "$DIBATCH" --cls-steps 1
run 60 python score_free.py "${B[@]}" --batch "$DIBATCH" --cls-reuse-x0 1
run 60 python teacher.py "${B[@]}" --batch "$BATCH"

# 3. loss curves, fp32 and bf16 (one progress line per step)
T=(--dataset "$DATA" --split test --preset "$PRESET" --batch "$BATCH" --device "$DEVICE" --lr-rampup-kimg 0
   --total-kimg "$(python -c "print(20 * $BATCH / 1000)")" --tick-kimg "$(python -c "print($BATCH / 1000)")"
   --snapshot-ticks 1000 --fid-ref none --grid 16)
run 120 python teacher.py "${T[@]}" --precision fp32 --outdir "$RUNS/teacher_fp32"
run 60 python teacher.py "${T[@]}" --precision bf16 --outdir "$RUNS/teacher_bf16"
for p in fp32 bf16; do cp "$RUNS/teacher_$p/log.jsonl" "$OUT/teacher_$p.jsonl" 2>/dev/null; done
python - "$OUT" <<'EOF2' 2>&1 | tee -a "$LOG"
import json, sys
curves = [[json.loads(l) for l in open(f'{sys.argv[1]}/teacher_{p}.jsonl') if '"loss"' in l] for p in ('fp32', 'bf16')]
pairs = [(a['loss'], b['loss']) for a, b in zip(*curves)]
print('loss per step fp32 / bf16:', '  '.join(f'{a:.4f}/{b:.4f}' for a, b in pairs))
print(f'max |bf16 - fp32| / fp32 over {len(pairs)} steps: {max(abs(b - a) / a for a, b in pairs):.2e}')
for name, c in zip(('fp32', 'bf16'), curves):
    late = c[2:]
    print(f'{name} training: {sum(r["img/s"] for r in late) / len(late):.0f} img/s (steps 3+), {c[-1]["mem_gb"]} GB')
EOF2

# 4. FID timings (end to end: process start, sampling, features, Fréchet distance)
TEACHER=$RUNS/teacher_fp32/checkpoint.pt
run 60 python diff_instruct.py --teacher "$TEACHER" --dataset "$DATA" --split test --batch "$DIBATCH" \
  --device "$DEVICE" --total-kimg "$(python -c "print($DIBATCH / 1000)")" --fid-ref none --grid 16 --outdir "$RUNS/di"
run 60 python fid.py ref --dataset "$DATA" --split test --per-class "$PERCLASS" --out "$RUNS/ref.npz" --inception "$INC" \
  --device "$DEVICE"
run 90 python fid.py calc --ckpt "$RUNS/di/generator.pt" --ref "$RUNS/ref.npz" --num "$NUM1" --inception "$INC" \
  --device "$DEVICE"
for p in fp32 bf16; do
  run 60 python fid.py calc --ckpt "$TEACHER" --ref "$RUNS/ref.npz" --num "$NUMH" --inception "$INC" \
    --device "$DEVICE" --sample-precision $p
done
run 60 python fid.py bench --inception "$INC" --num "$NUMB" --device "$DEVICE"

# 5. compiled
run 300 python teacher.py "${B[@]}" --batch "$BATCH" --compile 1
run 200 python score_free.py "${B[@]}" --batch "$DIBATCH" --compile 1
run 200 python diff_instruct.py "${B[@]}" --batch "$DIBATCH" --compile 1
echo "total $SECONDS s" | tee -a "$LOG"
