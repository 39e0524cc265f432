"""Speed of each trainer's real iteration and of the FID features, apart from training (as nanoGPT's bench.py).

  python results/bench.py                                  every part: teacher, diff_instruct, score_free, fid
  python results/bench.py teacher --compile 1              one or more parts by name
  python results/bench.py --preset small --batch 16 --steps 3 --device cpu     (the README's CPU rows)
  python results/bench.py score_free --cls-steps 1         other flags go to the one trainer named
  python results/bench.py carry                            .carry/ for a device call (results/gpu.sh)

Each trainer runs its own iteration function (teacher.training_step, diff_instruct.iteration,
score_free.iteration) on random weights of --preset and synthetic 32×32 images, after a warm-up, and prints
img/s, ms/step, peak memory (GPU: allocated; CPU: the process's peak RSS), GFLOP per image (forward + backward
of everything the iteration computes) and MFU (GPU: against the datasheet dense bf16 peak; CPU: against the
fp32 matrix-multiply rate measured in the same process, the practical ceiling of a network of convolutions).
Diff-Instruct and score-free run at the same network and batch, so their ratio is side by side.
"""
import argparse
import copy
import os
import shutil
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import common  # noqa: E402
import diff_instruct  # noqa: E402
import fid  # noqa: E402
import score_free  # noqa: E402
import teacher  # noqa: E402

PARTS = ('teacher', 'diff_instruct', 'score_free', 'fid')
# Dense bf16 tensor-core peaks from NVIDIA's datasheets (TFLOP/s), for MFU.
PEAK_TFLOPS = {'H200': 989.4, 'H100': 989.4, 'A100': 312.0, 'L40S': 362.0, 'A10G': 125.0, 'RTX 4090': 165.2}


def count_flops(fn, module_prefix=None):
    """Floating-point operations of one call of fn() (a multiply-add counts as 2); with module_prefix, also those of
    each submodule whose name starts with it (a dict)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    if module_prefix is None:
        return counter.get_total_flops()
    return counter.get_total_flops(), {k: sum(v.values()) for k, v in counter.get_flop_counts().items()
                                       if k.startswith(module_prefix)}


def matmul_roof(device, n=2048, reps=5):
    """The device's measured fp32 matrix-multiply rate (FLOP/s, TF32 off), the best of a few n³ products. On CPU
    the product is also timed as a 1×1 convolution in channels_last (oneDNN, which runs every convolution there)
    and the better rate kept: on AMD cores MKL's matmul takes its AVX2 path while oneDNN uses AVX-512."""
    def best_time(product):
        product()
        best = float('inf')
        for _ in range(reps):
            common.sync(device)
            t0 = time.perf_counter()
            product()
            common.sync(device)
            best = min(best, time.perf_counter() - t0)
        return best

    with common.full_precision(device.type):
        a, b = torch.randn(2, n, n, device=device).unbind(0)
        best = best_time(lambda: a @ b)
        if device.type == 'cpu':
            x = torch.randn(1, n, n // 64, 64).contiguous(memory_format=torch.channels_last)
            w = torch.randn(n, n, 1, 1)
            best = min(best, best_time(lambda: F.conv2d(x, w)))
    return 2 * n ** 3 / best


def device_name(device):
    return torch.cuda.get_device_name(device) if device.type == 'cuda' else f'cpu ({torch.get_num_threads()} threads)'


def time_steps(step, steps, warmup, device):
    """Seconds per call of step() after `warmup` calls (compilation, cuDNN autotuning, the allocator)."""
    for _ in range(warmup):
        step()
    common.sync(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    common.sync(device)
    return (time.perf_counter() - t0) / steps


def report(name, seconds, batch, flops_per_image, params, args, device, roof):
    ips = batch / seconds
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in device_name(device)), None) if device.type == 'cuda' else None
    if peak:
        mfu = f'{100 * ips * flops_per_image / (peak * 1e12):.1f}% of {peak:g} TFLOP/s'
    elif roof:
        mfu = f'{100 * ips * flops_per_image / roof:.0f}% of the measured fp32 matmul rate ({roof / 1e9:.0f} GFLOP/s)'
    else:
        mfu = 'n/a (add this GPU to PEAK_TFLOPS)'
    precision = args.precision if device.type == 'cuda' else 'fp32'
    print(f'bench {name}: preset {args.preset}  params {params / 1e6:.2f}M  batch {batch}  precision {precision}  '
          f'compile {args.compile}  device {device_name(device)}')
    print(f'bench {name}: {ips:.1f} img/s  {1000 * seconds:.1f} ms/step  peak mem {common.peak_memory_gb(device):.2f} '
          f'GiB  {flops_per_image / 1e9:.2f} GFLOP/img  MFU {mfu}', flush=True)
    return ips


def random_teacher(args, device, augment_dim=None):
    net = common.build_net(args.preset, 32, 3, 0, 0.13, augment_dim)
    return common.to_device(net, device).eval().requires_grad_(False)


def one_step_flags(args, extra):
    return ['--batch', str(args.batch or 128), '--precision', args.precision, '--compile', str(args.compile)] + extra


def bench_teacher(args, device, extra):
    batch = args.batch or 512
    augment = 0.12 if args.preset == 'edm' else 0.0  # EDM's CIFAR-10 recipe, as teacher.py's default
    net = random_teacher(args, device, 9 if augment else None).train().requires_grad_(True)
    pipe = common.AugmentPipe(augment) if augment else None
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = common.make_adam(net.parameters(), 1e-3, (0.9, 0.999), device=device)
    amp, model = common.Precision(device, args.precision), common.maybe_compile(net, args.compile)
    x = torch.rand([batch, 3, 32, 32], device=device) * 2 - 1

    def step():
        teacher.training_step(model, opt, amp, x, None, pipe)
        common.ema_update(ema, net, 0.999)
    flops = 3 * count_flops(lambda: net(x[:1], torch.ones(1, device=device)))
    return step, batch, flops, sum(p.numel() for p in net.parameters())


def bench_diff_instruct(args, device, extra):
    a = diff_instruct.parse_args(one_step_flags(args, extra))
    t = random_teacher(args, device)
    nets = diff_instruct.build_nets(t, a, device).wrap(a.compile, device, 1)
    G_ema = copy.deepcopy(nets.G)
    amp = common.Precision(device, a.precision)
    augment = diff_instruct.resolve_augment(a.augment, t)  # as the trainer: 0.12 for the edm preset's augment labels
    pipe = common.AugmentPipe(augment) if augment else None

    def step():
        diff_instruct.iteration(nets, amp, a.batch, a, pipe)
        common.ema_update(G_ema, nets.G, 0.999)
    f = count_flops(lambda: t(torch.zeros(1, 3, 32, 32, device=device), torch.ones(1, device=device)))
    # per image: a fake step = G forward + fake forward/backward (1 + 3); the generator step = G forward/backward
    # + teacher and fake forwards (3 + 2)
    return step, a.batch, f * (4 * a.fake_steps + 5), sum(p.numel() for p in nets.G.parameters())


def bench_score_free(args, device, extra):
    a = score_free.parse_args(one_step_flags(args, extra))
    t = random_teacher(args, device)
    nets = score_free.build_nets(t, a, device).wrap(a.compile, device, 1)
    G_ema = copy.deepcopy(nets.G)
    amp = common.Precision(device, a.precision)
    x = torch.rand(a.batch, 3, 32, 32, device=device) * 2 - 1
    reals = iter(lambda: (x, None), None)

    def step():
        score_free.iteration(nets, amp, reals, a.batch, a)
        common.ema_update(G_ema, nets.G, 0.999)
    one, s = torch.zeros(1, 3, 32, 32, device=device), torch.ones(1, device=device)
    fg = count_flops(lambda: nets.G(one, s))
    fc, by_block = count_flops(lambda: nets.cls(one, s), 'Classifier.model.enc.')
    frozen = sum(by_block.get(f'Classifier.model.enc.{name}', 0)
                 for name, block in nets.cls.model.enc.items() if not any(q.requires_grad for q in block.parameters()))
    # per image: G forward/backward and a classifier forward/backward in the generator step; in the classifier steps
    # (k parts of one batch: one full step's work in all) a generated and a real forward, and a backward through the
    # blocks that train
    print(f'bench score_free: classifier {sum(p.numel() for p in nets.cls.parameters()) / 1e6:.2f}M params, '
          f'{a.cls_steps} classifier steps, frozen levels {a.cls_frozen_levels} ({frozen / fc:.0%} of its forward)')
    flops = 3 * fg + 3 * fc + 2 * (fc + 2 * (fc - frozen))
    return step, a.batch, flops, sum(p.numel() for p in nets.G.parameters())


def bench_fid(args, device, roof):
    """Feature extraction (preprocessing + Inception, exact fp32) and one 2048-d Fréchet distance."""
    batch, num = args.batch or 250, max(args.num, args.batch or 250)
    detector = fid.get_detector(args.inception, device)
    images = torch.randint(0, 256, (num, 3, 32, 32), dtype=torch.uint8)
    batches = list(fid.image_batches(images, batch))
    seconds = time_steps(lambda: [fid.features(detector, b, device) for b in batches], 1, 1, device)
    one = fid.preprocess(images[:1]).to(device)
    with torch.no_grad():
        flops = count_flops(lambda: detector(one))
    ips = num / seconds
    mfu = f'{100 * ips * flops / roof:.0f}% of the measured fp32 matmul rate ({roof / 1e9:.1f} GFLOP/s)'
    print(f'bench fid: {ips:.1f} img/s feature extraction  {1000 * seconds / len(batches):.0f} ms/batch  batch {batch}  '
          f'{device_name(device)}  peak mem {common.peak_memory_gb(device):.2f} GiB  {flops / 1e9:.3g} GFLOP/img  {mfu}')
    a, b = np.random.default_rng(0).normal(size=(2, 4096, 2048))
    s1, s2 = np.cov(a, rowvar=False), np.cov(np.abs(b), rowvar=False)
    t0 = time.perf_counter()
    fid.frechet_distance(a.mean(0), s1, np.abs(b).mean(0), s2)
    print(f'bench fid: Frechet distance 2048x2048: {time.perf_counter() - t0:.2f} s', flush=True)
    return ips


def make_carry(shared, out):
    """.carry/ for a device call: the CIFAR-10 test zip and the FID Inception weights rounded to fp16 (the 87 MB
    original does not fit the 64 MiB a call carries; 43.7 MB as fp16). Their features differ from the exact ones by
    ~3e-3 relative (printed): good for timing, not for reported FIDs."""
    exact = os.path.join(shared, 'fid', 'inception-2015-12-05.pt')
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(shared, 'data', 'cifar10-jpeg-test.zip'), out)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        state = fid.tf_to_torchvision_names(torch.jit.load(exact, map_location='cpu').state_dict())
    half = os.path.join(out, 'inception_fp16.pth')
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, half)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a, b = (fid.features(fid.load_inception(p), images) for p in (exact, half))
    print(f'wrote {out}/: features of 8 random images from the fp16 copy differ by {(a - b).norm() / a.norm():.1e} relative')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter)
    p.add_argument('parts', nargs='*', default=list(PARTS), help=f'any of {", ".join(PARTS)}, or carry')
    p.add_argument('--preset', default='edm', choices=sorted(common.PRESETS), help='the network (random weights)')
    p.add_argument('--batch', type=int, default=0, help='0: each part\'s default (teacher 512, one-step 128, fid 250)')
    p.add_argument('--steps', type=int, default=20, help='timed iterations')
    p.add_argument('--warmup', type=int, default=3, help='untimed iterations first (10 with --compile 1)')
    p.add_argument('--precision', default='bf16', choices=['bf16', 'fp16', 'fp32'], help='on CUDA; CPU runs fp32')
    p.add_argument('--compile', type=int, default=0, help='torch.compile the networks')
    p.add_argument('--device', default='auto', help='auto | cuda | cpu')
    p.add_argument('--inception', default=None, help='fid: the Inception weights (default: download)')
    p.add_argument('--num', type=int, default=100, help='fid: random images through the network')
    p.add_argument('--shared', default=os.path.join(os.path.dirname(ROOT), 'shared'), help='carry: ../shared')
    args, extra = p.parse_known_args(argv)
    if args.parts == ['carry']:
        return make_carry(args.shared, os.path.join(ROOT, '.carry'))
    bad = [x for x in args.parts if x not in PARTS]
    if bad:
        p.error(f'unknown parts {bad}; choose from {PARTS} or carry')
    if extra and sum(x in args.parts for x in ('diff_instruct', 'score_free')) != 1:
        p.error(f'{extra}: other flags go to one one-step trainer; name diff_instruct or score_free alone')
    device = torch.device(('cuda' if torch.cuda.is_available() else 'cpu') if args.device == 'auto' else args.device)
    # CPU: the roof is measured before and after the timed steps and the better one kept (a shared VM's speed drifts)
    roof = matmul_roof(device) if device.type == 'cpu' else None
    results = {}
    for part in args.parts:
        torch.manual_seed(0)
        if part == 'fid':
            results[part] = bench_fid(args, device, roof or matmul_roof(device))
            continue
        step, batch, flops, params = globals()[f'bench_{part}'](args, device, extra)
        seconds = time_steps(step, args.steps, 10 if args.compile else args.warmup, device)
        results[part] = (seconds, batch, flops, params)
    if roof:
        roof = max(roof, matmul_roof(device))
    for part, (seconds, batch, flops, params) in [(k, v) for k, v in results.items() if k != 'fid']:
        results[part] = report(part, seconds, batch, flops, params, args, device, roof)
    if 'diff_instruct' in results and 'score_free' in results:
        print(f'bench: score_free takes {results["diff_instruct"] / results["score_free"]:.2f}x Diff-Instruct\'s time '
              f'per image (same network and batch)')
    return results


if __name__ == '__main__':
    main()
