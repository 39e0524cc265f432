"""FID feature extraction on this machine with and without the batch norms folded into the convolutions, in one
process, on the real Inception weights (the measurement behind the README's 'Measured' table):
    python results/fid_fold_bench.py [--inception ../shared/fid/inception-2015-12-05.pt] [--batches 8 16 32 64]"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fid  # noqa: E402


def images_per_second(net, images, batch):
    fid.features(net, images[:8])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(images), batch):
        fid.features(net, images[i:i + batch])
    return len(images) / (time.perf_counter() - t0)


def conv_profile(net, images, batch):
    """Seconds and GFLOP/s of each folded conv unit at one batch (the convolutions are most of the time)."""
    x = fid.preprocess(images[:batch]).contiguous(memory_format=torch.channels_last)
    times, flops = {}, {}

    def timed(name, unit):
        forward = unit.forward

        def run(inp):
            t0 = time.perf_counter()
            out = forward(inp)
            times[name] = time.perf_counter() - t0
            flops[name] = 2 * unit.conv.weight[0].numel() * out.numel()
            return out
        unit.forward = run
    for name, m in net.named_modules():
        if isinstance(m, fid.BasicConv2d):
            timed(name, m)
    with torch.no_grad():
        t0 = time.perf_counter()
        net(x)
        total = time.perf_counter() - t0
    for name in sorted(times, key=times.get, reverse=True)[:8]:
        print(f'  {name:28s} {1000 * times[name]:7.1f} ms  {flops[name] / times[name] / 1e9:6.1f} GFLOP/s')
    print(f'  all convolutions: {sum(times.values()):.2f} s of {total:.2f} s ({100 * sum(times.values()) / total:.0f} %), '
          f'{sum(flops.values()) / sum(times.values()) / 1e9:.1f} GFLOP/s on average')


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--inception', default='../shared/fid/inception-2015-12-05.pt')
    p.add_argument('--num', type=int, default=64)
    p.add_argument('--batches', type=int, nargs='+', default=[8, 16, 32, 64])
    args = p.parse_args()
    net = fid.load_inception(args.inception)  # folded
    images = torch.randint(0, 256, (args.num, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    units = [m for m in net.modules() if isinstance(m, fid.BasicConv2d)]
    folded = [(m.folded_weight, m.folded_bias) for m in units]
    for batch in args.batches:
        for m in units:  # conv, batch norm, ReLU as three passes
            m.folded_weight = m.folded_bias = None
        unfolded_ips = images_per_second(net, images, batch)
        for m, (w, b) in zip(units, folded):
            m.folded_weight, m.folded_bias = w, b
        print(f'batch {batch}: unfolded {unfolded_ips:.2f} img/s, folded {images_per_second(net, images, batch):.2f} '
              f'img/s  (cpu, {torch.get_num_threads()} threads)', flush=True)
    print(f'the slowest conv units at batch {args.batches[-1]} (folded):')
    conv_profile(net, images, args.batches[-1])


if __name__ == '__main__':
    main()
