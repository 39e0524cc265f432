"""Why did the fp32 teacher step not finish in 120 s on an H200? (2026-11-28: `teacher.py --precision fp32 --preset
edm --batch 512` printed its start-up lines and no step in 120 s, while bf16 took 3.6 s for its first step and
0.5 s for each after.) EDM's own fp32 trainer does 366 img/s there, 1.4 s a step. Suspects: cuDNN's autotuner
(`cudnn.benchmark`, on in every trainer) and fp32 convolutions in channels_last layout (on for every CUDA net),
whose kernels are known to be slow for some shapes, mostly in the weight-gradient pass.

    python results/gpu_fp32_probe.py [--batch 512] [--timeout 60]

One child process per (layout, autotuner) pair, each with its own timeout, times one EDM loss forward + backward
of the edm net in fp32 with TF32 off (the teacher's fp32 setting): the first step (autotuning included) and the
next two, then the same in bf16 autocast as the control.
"""
import argparse
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import common  # noqa: E402


def child(layout, benchmark, precision, batch):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = benchmark
    device = torch.device('cuda')
    net = common.build_net('edm', 32, 3, 0, 0.13).to(device)
    if layout == 'channels_last':
        net = net.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 32, 32, device=device)
    autocast = common.autocast_factory('cuda', precision)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        with autocast():
            loss = common.edm_loss(net, x, None, -1.2, 1.2).mean()
        loss.backward()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    print(f'{layout:14s} benchmark {int(benchmark)}  {precision}  batch {batch}: first step {times[0]:.2f} s, '
          f'then {times[1]:.3f} / {times[2]:.3f} s ({batch / times[2]:.0f} img/s fwd+bwd)', flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch', type=int, default=512)
    p.add_argument('--timeout', type=int, default=60)
    p.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit('error: this probe times CUDA kernels; run it on a GPU machine')
    if args.child:
        return child(args.child[0], args.child[1] == '1', args.child[2], args.batch)
    for precision, layout, benchmark in [('fp32', 'channels_last', 1), ('fp32', 'channels_last', 0),
                                         ('fp32', 'contiguous', 1), ('fp32', 'contiguous', 0),
                                         ('bf16', 'channels_last', 1)]:
        try:
            subprocess.run([sys.executable, __file__, '--batch', str(args.batch), '--child', layout, str(benchmark),
                            precision], timeout=args.timeout, check=False)
        except subprocess.TimeoutExpired:
            print(f'{layout:14s} benchmark {benchmark}  {precision}  batch {args.batch}: no 3 steps in '
                  f'{args.timeout} s', flush=True)


if __name__ == '__main__':
    main()
