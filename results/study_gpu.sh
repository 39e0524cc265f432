#!/usr/bin/env bash
# The study's GPU tier as one prepared device call (results/study.py, TIERS['gpu']): a `small` teacher and every
# arm, sized in seconds by two --bench runs on the device itself, each FID point saved as a zip of samples (the
# 87 MB Inception weights do not travel with the 54 MB data), everything but checkpoints packed into $OUT.
#
# here, once (the data travels as a carried ignored path):
#   mkdir -p .carry/data && cp ../shared/data/cifar10-jpeg-train.zip .carry/data/ && echo /.carry/ >> .git/info/exclude
# the device call (tool `run`): command `bash results/study_gpu.sh`, carry [".carry"], timeout_s 600
# here, after (files_at: the folder the reply names):
#   python results/study.py unpack --tier gpu <files_at>/study_gpu_*.tar
#   python results/study.py fid --tier gpu       # the reference + ~21 sets of 1000 images: ~45 min on 2 CPU cores
#   python results/study.py report --tier gpu    # -> results/README_gpu.md
# dry run of the plumbing on CPU (numbers meaningless; on the 2-core VM, shared with another job, it ran 8.5 min and
# was stopped at 500 s during the second arm): TIER=gpu_dry SHARED=../shared bash results/study_gpu.sh
set -uo pipefail
TIER=${TIER:-gpu}
export SHARED=${SHARED:-$PWD/.carry} PYTHONUNBUFFERED=1
OUT=${OUT:-runs/study_${TIER}_out}
mkdir -p "runs/study/$TIER" "$OUT"
python -c "import json, torch; json.dump({'name': torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu',
  'torch': torch.__version__}, open('runs/study/$TIER/device.json', 'w'))"
# Stop the study in time to pack: the device kills the call at 600 s, and only $OUT comes back.
timeout "${STUDY_SECONDS:-500}" python results/study.py run --tier "$TIER" 2>&1 | tee "runs/study/$TIER/study.log"
python results/study.py pack --tier "$TIER" --to "$OUT"
