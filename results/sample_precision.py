"""What bf16 sampling (fid.py --sample-precision bf16) does to a teacher's Heun samples: the same seeds in fp32
and in bf16 autocast, pixel differences in 8-bit levels. On CPU bf16 is emulated (slow, same rounding).
Run from the repo root: python results/sample_precision.py --ckpt runs/study/cpu/teacher/checkpoint.pt
(The one-step generator's FID in both precisions: fid.py calc --sample-precision fp32 / bf16, README.)"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fid  # noqa: E402

p = argparse.ArgumentParser(description=__doc__)
p.add_argument('--ckpt', required=True, help='a teacher checkpoint (Heun) or a one-step generator.pt')
p.add_argument('--num', type=int, default=64, help='seeds 0..num-1')
p.add_argument('--steps', type=int, default=18, help='Heun steps (EDM: 18)')
p.add_argument('--device', default='cpu')
args = p.parse_args()
seeds, device = list(range(args.num)), torch.device(args.device)
full, half = (fid.checkpoint_sampler(args.ckpt, device, args.steps, precision=prec)[0](seeds).int().cpu()
              for prec in ('fp32', 'bf16'))
d = (full - half).abs().float()
print(f'{args.ckpt}: {args.num} seeds, fp32 vs bf16 sampling: mean |diff| {d.mean():.3f} levels, median '
      f'{d.median():.0f}, 99th percentile {d.flatten().quantile(0.99):.0f}, max {d.max():.0f}; '
      f'{100 * (d == 0).float().mean():.1f} % of values equal')
