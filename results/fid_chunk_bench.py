"""FID feature extraction on this machine by images per detector pass, in one process, alternating, on the real
Inception weights; optionally Inductor with frozen weights against eager (the measurements behind fid.CPU_CHUNK
and the README's 'Measured' table):
    python results/fid_chunk_bench.py [--inception ../shared/fid/inception-2015-12-05.pt] [--sizes 8 16 24 250]
                                      [--repeats 2] [--inductor]"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fid  # noqa: E402


def images_per_second(net, images, per_pass):
    """fid.features with the CPU chunk set to per_pass; warm-up at that shape (oneDNN builds kernels per shape)."""
    fid.CPU_CHUNK = per_pass
    fid.features(net, images[:per_pass])
    t0 = time.perf_counter()
    out = fid.features(net, images)
    return len(images) / (time.perf_counter() - t0), out


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--inception', default=os.path.join('..', 'shared', 'fid', 'inception-2015-12-05.pt'))
    p.add_argument('--sizes', type=int, nargs='+', default=[8, 16, 24, 250])
    p.add_argument('--num', type=int, default=96)
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--inductor', action='store_true', help='also torch.compile with frozen weights, at 32 per pass')
    args = p.parse_args()
    net = fid.load_inception(args.inception)
    torch.manual_seed(0)
    for _ in range(args.repeats):
        for n in args.sizes:
            images = torch.randint(0, 256, (max(args.num, n), 3, 32, 32), dtype=torch.uint8)
            print(f'{n:4d} images per pass: {images_per_second(net, images, n)[0]:.1f} img/s', flush=True)
    if args.inductor:
        from torch._inductor import config as inductor_config
        inductor_config.freezing = True
        images = torch.randint(0, 256, (args.num, 3, 32, 32), dtype=torch.uint8)
        eager, ref = images_per_second(net, images, 32)
        compiled, out = images_per_second(torch.compile(net), images, 32)  # the warm-up pass compiles
        print(f'eager {eager:.1f} img/s, inductor + freezing {compiled:.1f} img/s, '
              f'max |difference| {(out - ref).abs().max().item():.2e}')


if __name__ == '__main__':
    main()
