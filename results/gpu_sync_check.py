"""Host syncs per training step on a GPU, counted with torch.cuda.set_sync_debug_mode('warn'): every call that makes
the host wait for the GPU (.item(), a blocking copy, a data-dependent shape, ...) is recorded with the line of our
code that made it. Counted, after two warm-up steps, over two steps of each trainer's --bench iteration (the real
iteration on random data: teacher, Diff-Instruct, score-free), over two batches of the data sampler (labels and
x-flips, CIFAR-10), over EDM's Heun sampler, and over two batches of FID statistics from a one-step generator.
One device call, part of results/gpu_bench.sh's probe stage; on CPU it runs the same code and counts nothing.
  python results/gpu_sync_check.py --data .carry/cifar10-jpeg-test.zip --inception .carry/inception_fp16.pth
"""
import argparse
import collections
import os
import sys
import traceback
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import common  # noqa: E402
import diff_instruct  # noqa: E402
import fid  # noqa: E402
import score_free  # noqa: E402
import teacher  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SyncCounter:
    """Records each synchronising call as the innermost line of this repository's code that led to it."""

    def __init__(self):
        self.where = collections.Counter()

    def __enter__(self):
        self.catch = warnings.catch_warnings()
        self.catch.__enter__()
        warnings.simplefilter('always')
        warnings.showwarning = self.record
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode('warn')
        return self

    def __exit__(self, *exc):
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode('default')
        self.catch.__exit__(*exc)

    def record(self, message, category, filename, lineno, file=None, line=None):
        if 'synchroniz' not in str(message):
            return
        ours = [f for f in traceback.extract_stack()[:-1]
                if f.filename.startswith(ROOT) and not f.filename.endswith('gpu_sync_check.py')]
        self.where[f'{os.path.relpath(ours[-1].filename, ROOT)}:{ours[-1].lineno} {ours[-1].line}' if ours
                   else 'outside this repository'] += 1

    def report(self, what, steps):
        total = sum(self.where.values())
        print(f'sync check: {what}: {total / steps:g} syncs per step ({total} in {steps})')
        for where, n in self.where.most_common():
            print(f'sync check:   {n:3d}  {where}')


def count_bench(module, argv, steps=2):
    """Run module's --bench, but count the syncs of `steps` iterations (after two warm-up ones) instead of timing."""
    def counted(name, step, args, device, flops, params):
        for _ in range(2):
            step()
        common.sync(device)
        with SyncCounter() as c:
            for _ in range(steps):
                step()
        common.sync(device)
        precision = args.precision if device.type == 'cuda' else 'fp32'
        c.report(f'{name} --bench iteration ({args.preset}, batch {args.batch}, {precision})', steps)
    real, common.run_bench = common.run_bench, counted
    try:
        module.main(argv)
    finally:
        common.run_bench = real


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data', default='.carry/cifar10-jpeg-test.zip', help='a dataset with labels (the sampler)')
    p.add_argument('--inception', default='.carry/inception_fp16.pth')
    p.add_argument('--preset', default='edm')
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = p.parse_args()
    device = torch.device(args.device)
    print(f'sync check: device {device} ({"counting" if device.type == "cuda" else "dry run, nothing is counted"})')
    bench = ['--bench', '--device', args.device, '--preset', args.preset, '--batch', str(args.batch),
             '--bench-steps', '1']
    count_bench(teacher, bench)
    count_bench(diff_instruct, bench)
    count_bench(score_free, bench)

    data = common.load_dataset(args.data, common.DEFAULT_DATA_DIR, 'test', False)
    sampler = common.BatchSampler(data, args.batch, device, xflip=True)
    next(sampler), common.sync(device)
    with SyncCounter() as c:
        for _ in range(2):
            next(sampler)
    c.report(f'BatchSampler (labels, x-flip, batch {args.batch})', 2)

    G = common.to_device(common.build_net(args.preset, 32, 3, 0, 0.0), device).eval().requires_grad_(False)
    detector = fid.get_detector(args.inception, device, allow_download=False)

    def batches(n):
        for i in range(n):
            with torch.no_grad():
                yield common.to_uint8(common.generate_one_step(G, torch.randn(args.batch, 3, 32, 32, device=device), 2.5))
    z = torch.randn(args.batch, 3, 32, 32, device=device)
    with torch.no_grad():
        common.edm_sampler(common.net_denoiser(G), z, num_steps=3)
        common.sync(device)
        with SyncCounter() as c:
            common.edm_sampler(common.net_denoiser(G), z, num_steps=3)
    c.report(f'Heun sampler, 3 steps (batch {args.batch}), per network call', 5)
    fid.stats_from_batches(batches(1), detector, 'tf', device)
    common.sync(device)
    with SyncCounter() as c:  # the end of stats_from_batches syncs once, to time the whole
        fid.stats_from_batches(batches(2), detector, 'tf', device)
    c.report(f'FID statistics of one-step samples (batch {args.batch}), two batches and the final sync', 2)


if __name__ == '__main__':
    main()
