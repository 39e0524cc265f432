"""fid.py --compile against eager sampling: the same seeds through checkpoint_sampler without and with
torch.compile, the images compared value by value, and the time of the first (compiling) and a second call.

    python results/sample_compile_check.py [--ckpt runs/study/cpu/teacher/checkpoint.pt] [--steps 18] [--num 8]
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import fid  # noqa: E402

p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
p.add_argument('--ckpt', default='runs/study/cpu/teacher/checkpoint.pt')
p.add_argument('--steps', type=int, default=18)
p.add_argument('--num', type=int, default=8)
p.add_argument('--device', default='cpu')
args = p.parse_args()
device, seeds = torch.device(args.device), list(range(args.num))
t0 = time.time()
eager = fid.checkpoint_sampler(args.ckpt, device, steps=args.steps)[0](seeds).int()
t1 = time.time()
sample = fid.checkpoint_sampler(args.ckpt, device, steps=args.steps, compile=True)[0]
t2 = time.time()
first = sample(seeds).int()
t3 = time.time()
again = sample(seeds).int()
t4 = time.time()
d = (eager - first).abs().float()
print(f'{args.num} images, {args.steps} steps: eager {t1 - t0:.1f} s; compiled first call {t3 - t2:.1f} s (compilation '
      f'included), second {t4 - t3:.1f} s; |compiled - eager| in 255 levels: max {d.max():.0f}, mean {d.mean():.4f}, '
      f'share equal {(d == 0).float().mean():.4f}; second call equal to the first: {torch.equal(first, again)}')
