"""Make .carry/ for results/gpu_bench.sh: the CIFAR-10 test zip and the FID Inception weights rounded to fp16.

The real weights (87 MB) do not fit the 64 MiB a device call carries; as a torchvision-named state_dict in fp16
they take 43.7 MB and fid.load_inception reads them as they are (loading casts them back to fp32). Features from
them differ from the exact ones by ~3e-3 relative (printed below): good for timing, not for reported FIDs.
Run from the repo root: python results/gpu_bench_carry.py [--shared ../shared]"""
import argparse
import os
import shutil
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fid  # noqa: E402

p = argparse.ArgumentParser(description=__doc__)
p.add_argument('--shared', default='../shared')
p.add_argument('--out', default='.carry')
args = p.parse_args()
exact_path = os.path.join(args.shared, 'fid', 'inception-2015-12-05.pt')
os.makedirs(args.out, exist_ok=True)
shutil.copy(os.path.join(args.shared, 'data', 'cifar10-jpeg-test.zip'), args.out)
with warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)
    state = fid.tf_to_torchvision_names(torch.jit.load(exact_path, map_location='cpu').state_dict())
big = [k for k, v in state.items() if v.is_floating_point() and v.abs().max() >= 65504]
if big:
    raise SystemExit(f'error: {big} do not fit fp16')
half_path = os.path.join(args.out, 'inception_fp16.pth')
torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, half_path)
images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
exact, half = (np.asarray(fid.features(fid.load_inception(path), images)) for path in (exact_path, half_path))
print(f'wrote {args.out}/: features of 8 random images from the fp16 copy differ by '
      f'{np.linalg.norm(exact - half) / np.linalg.norm(exact):.1e} relative')
