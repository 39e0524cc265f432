#!/usr/bin/env bash
# FID feature extraction on CPU, side by side across the commits that changed it, on this machine, in one go:
#   2eed074 round 1's Inception (NCHW, batch norm after each conv)        a76e86c channels_last
#   55a1f0d + each batch norm folded into its conv                         f27f4ed + chunks of 16 images
#   HEAD    what is checked out now
# Each commit runs from a temporary git worktree; the rounds alternate the commits so that a drift of the shared VM
# spreads over all of them. Features are the same in all (tests: golden features vs NVIDIA's TorchScript to 1e-5).
#   bash results/fid_history_bench.sh  [ROUNDS=2 NUM=128 BATCH=32 INCEPTION=../shared/fid/inception-2015-12-05.pt]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}; NUM=${NUM:-128}; BATCH=${BATCH:-32}
INCEPTION=$(realpath "${INCEPTION:-../shared/fid/inception-2015-12-05.pt}")
COMMITS=(2eed074 a76e86c 55a1f0d f27f4ed)
TMP=$(mktemp -d); trap 'for c in "${COMMITS[@]}"; do git worktree remove --force "$TMP/$c" 2>/dev/null || true; done; rm -rf "$TMP"' EXIT
for c in "${COMMITS[@]}"; do git worktree add -q --detach "$TMP/$c" "$c"; done
echo "vector units in /proc/cpuinfo: $(grep -q avx512f /proc/cpuinfo && echo AVX-512 || echo 'AVX2 at most')"
for r in $(seq "$ROUNDS"); do
  for c in "${COMMITS[@]}" HEAD; do
    dir=$([ "$c" = HEAD ] && pwd || echo "$TMP/$c")
    rate=$(cd "$dir" && python fid.py bench --inception "$INCEPTION" --num "$NUM" --batch "$BATCH" --device cpu 2>&1 \
           | grep -o '[0-9.]* img/s' | head -1)
    echo "round $r  $c  batch $BATCH  $rate"
  done
done
