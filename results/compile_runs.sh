#!/usr/bin/env bash
# --compile 1 in real runs on CPU (tiny preset, CIFAR-10 test split as JPEG):
#   1. teacher.py ten steps eager, compiled, and compiled with Inductor's own RNG (common.COMPILE_EAGER_RNG off):
#      the logged losses side by side
#   2. each trainer under torchrun with two processes and --compile 1 (two iterations, from the teacher of 1)
#   3. Diff-Instruct and score-free, one process, five iterations eager and compiled (every forward pass compiled,
#      the no-grad samples included): the logged losses side by side
#   bash results/compile_runs.sh   [DATA=../shared/data/cifar10-jpeg-test.zip WORK=runs/compile_runs]   (~10 min)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cifar10-jpeg-test.zip}; WORK=${WORK:-runs/compile_runs}
rm -rf "$WORK"; mkdir -p "$WORK"
export TORCHINDUCTOR_CACHE_DIR=$WORK/inductor_cache  # compile from scratch
A=(--dataset "$DATA" --split test --preset tiny --batch 32 --device cpu --lr 1e-3 --lr-rampup-kimg 0 --total-kimg 0.32
   --tick-kimg 0.032 --snapshot-ticks 1000 --fid-ref none --grid 16 --augment 0)
python teacher.py "${A[@]}" --outdir "$WORK/eager" > "$WORK/eager.txt" 2>&1
python teacher.py "${A[@]}" --compile 1 --outdir "$WORK/compiled" > "$WORK/compiled.txt" 2>&1
python -c "import sys, common, teacher; common.COMPILE_EAGER_RNG = False; teacher.main(sys.argv[1:])" \
  "${A[@]}" --compile 1 --outdir "$WORK/compiled_own_rng" > "$WORK/compiled_own_rng.txt" 2>&1
python - "$WORK" <<'PY'
import json, sys
runs = {name: [json.loads(l)['loss'] for l in open(f'{sys.argv[1]}/{name}/log.jsonl') if '"loss"' in l]
        for name in ('eager', 'compiled', 'compiled_own_rng')}
for name in ('compiled', 'compiled_own_rng'):
    gap = max(abs(b - a) / a for a, b in zip(runs['eager'], runs[name]))
    print(f'teacher, 10 steps, loss eager / {name}:', ' '.join(f'{a:.4f}/{b:.4f}' for a, b in zip(runs['eager'], runs[name])))
    print(f'  largest relative difference: {gap:.2e}')
PY
TEACHER=$WORK/eager/checkpoint.pt
T=(--dataset "$DATA" --split test --batch 8 --tick-kimg 0.008 --grid 4 --device cpu --fid-ref none --total-kimg 0.016
   --compile 1)
run2() { OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc_per_node 2 "$@" > "$WORK/last.txt" 2>&1 \
         && echo "torchrun x2 --compile 1: $1 ran ($(grep -c '^tick' "$WORK/last.txt") ticks)" \
         || { echo "torchrun x2 --compile 1: $1 FAILED"; tail -5 "$WORK/last.txt"; }; }
run2 teacher.py "${T[@]}" --preset tiny --outdir "$WORK/ddp_teacher"
run2 diff_instruct.py "${T[@]}" --teacher "$TEACHER" --outdir "$WORK/ddp_di"
run2 score_free.py "${T[@]}" --teacher "$TEACHER" --cls-warmup 1 --outdir "$WORK/ddp_sf"
O=(--dataset "$DATA" --split test --batch 8 --tick-kimg 0.008 --grid 4 --device cpu --fid-ref none --total-kimg 0.04
   --teacher "$TEACHER" --lr 1e-3)
for script in diff_instruct score_free; do
  extra=(); [ $script = score_free ] && extra=(--cls-warmup 1)
  python $script.py "${O[@]}" "${extra[@]}" --outdir "$WORK/${script}_eager" > "$WORK/${script}_eager.txt" 2>&1
  python $script.py "${O[@]}" "${extra[@]}" --compile 1 --outdir "$WORK/${script}_compiled" \
    > "$WORK/${script}_compiled.txt" 2>&1
done
python - "$WORK" <<'PY'
import json, sys
for script, keys in (('diff_instruct', ('loss_fake', 'loss_G')), ('score_free', ('loss_cls', 'loss_G'))):
    runs = [[json.loads(l) for l in open(f'{sys.argv[1]}/{script}_{kind}/log.jsonl') if '"loss_G"' in l]
            for kind in ('eager', 'compiled')]
    for k in keys:
        a, b = ([r[k] for r in run] for run in runs)
        gap = max(abs(y - x) / max(abs(x), 1e-12) for x, y in zip(a, b))
        print(f'{script} {k} eager / compiled:', ' '.join(f'{x:.5g}/{y:.5g}' for x, y in zip(a, b)),
              f' largest relative difference {gap:.2e}')
PY
