"""Does bf16 keep the direction of each trainer's update? Along a short fp32 run of the trainer's own iteration, at
a few steps: the cosine between the gradient of one fixed batch (same z, σ, noise and dropout masks) computed
under bf16 autocast and in fp32 with TF32 off.

  python results/precision.py --teacher runs/pilot/teacher/checkpoint.pt                every trainer, CPU
  python results/precision.py score_free --lr 1e-4 --cls-lr 1e-3 --teacher ...      other flags go to the one named

On CPU bf16 autocast is emulated (CPU kernels, not a GPU's); on a GPU this measures the real ones. The teacher part
trains a fresh --preset net on the data; the one-step parts start from --teacher, score-free after its classifier
warm-up. Diff-Instruct's teacher and fake denoiser passes stay fp32 under any precision (diff_instruct.py).
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import common  # noqa: E402
import diff_instruct  # noqa: E402
import edm_import  # noqa: E402
import score_free  # noqa: E402
import teacher  # noqa: E402

PARTS = ('teacher', 'diff_instruct', 'score_free')


def seeded_gradient(params, device, loss_fn, seed=2):
    """The gradient of loss_fn() as one vector, from the same RNG state every call (the same dropout masks)."""
    params = list(params)
    with torch.random.fork_rng(devices=[device] if device.type == 'cuda' else []):
        torch.manual_seed(seed)
        for p in params:
            p.grad = None
        loss_fn().backward()
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().float() for p in params])


def compare(name, gradient, train_step, steps, dtype):
    """At each step in `steps` of the fp32 run: cosine and norm ratio of gradient(low precision) to gradient(fp32)."""
    results = []
    for step in range(max(steps) + 1):
        if step in steps:
            ref, low = gradient(None), gradient(dtype)
            if ref.norm() == 0:
                cos, ratio = float('nan'), float('inf') if low.norm() > 0 else float('nan')
            else:
                cos = F.cosine_similarity(low.double(), ref.double(), dim=0).item()
                ratio = (low.norm() / ref.norm()).item()
            results.append((step, cos, ratio))
            print(f'precision {name}: step {step:3d}  cosine(bf16, fp32) {cos:.4f}  |g_bf16| / |g_fp32| {ratio:.3f}',
                  flush=True)
        if step < max(steps):
            train_step()
    return results


def fixed_batch(G, batch, device, seed=1):
    """z, noise, σ (EDM's log-normal) and labels of one fixed generator batch."""
    gen = torch.Generator(device).manual_seed(seed)
    shape = [batch, G.img_channels, G.img_resolution, G.img_resolution]
    z, noise = torch.randn(shape, generator=gen, device=device), torch.randn(shape, generator=gen, device=device)
    sigma = (torch.randn([batch, 1, 1, 1], generator=gen, device=device) * 1.2 - 1.2).exp()
    return z, noise, sigma, diff_instruct.random_labels(batch, G.label_dim, device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter)
    p.add_argument('parts', nargs='*', default=list(PARTS), help=f'any of {", ".join(PARTS)}')
    p.add_argument('--teacher', required=True, help='the one-step trainers\' teacher (teacher.py checkpoint)')
    p.add_argument('--dataset', default=os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'cifar10-jpeg-train.zip'),
                   help='the real images (teacher, score-free)')
    p.add_argument('--preset', default='tiny', choices=sorted(common.PRESETS), help='the teacher part\'s network')
    p.add_argument('--batch', type=int, default=16, help='batch of the run and of the fixed batch')
    p.add_argument('--steps', default='0,1,10,100', help='after how many fp32 iterations to compare')
    p.add_argument('--device', default='cpu', help='cpu | cuda')
    args, extra = p.parse_known_args(argv)
    if extra and len(args.parts) != 1:
        p.error(f'{extra}: other flags go to one trainer; name it alone')
    device, steps = torch.device(args.device), [int(s) for s in args.steps.split(',')]
    fp32 = common.Precision(device, 'fp32')

    def mixed(dtype):  # under bf16 autocast (emulated on CPU), or exactly fp32
        return torch.autocast(device.type, dtype=dtype) if dtype else common.full_precision(device.type)

    data = common.load_dataset(args.dataset, split='train', allow_download=False)
    for part in args.parts:
        torch.manual_seed(0)
        if part == 'teacher':
            reals = common.BatchSampler(data, args.batch, device)
            net = common.to_device(common.build_net(args.preset, data.resolution, data.channels, 0, 0.13), device)
            opt = common.make_adam(net.parameters(), 1e-3, (0.9, 0.999))
            x, _ = next(reals)

            def gradient(dtype):
                def loss():
                    with mixed(dtype):
                        return common.edm_loss(net, x).mean()
                return seeded_gradient(net.parameters(), device, loss)
            compare(part, gradient, lambda: teacher.training_step(net, opt, fp32, next(reals)[0], None),
                    steps, torch.bfloat16)
            continue
        t, _ = edm_import.load_teacher(args.teacher, device, allow_download=False)
        module = diff_instruct if part == 'diff_instruct' else score_free
        a = module.parse_args(['--batch', str(args.batch), '--teacher', args.teacher] + extra)
        nets = module.build_nets(t, a, device)
        z, noise, sigma, labels = fixed_batch(nets.G, args.batch, device)
        if part == 'diff_instruct':
            def gradient(dtype):
                def loss():
                    nets.teacher.train(), nets.fake.train()  # dropout on, masks shared, as in training
                    with mixed(dtype):
                        x0 = common.generate_one_step(nets.G, z, a.sigma_init, labels)
                        return diff_instruct.generator_loss(nets.teacher, nets.fake, x0, sigma, noise, labels).mean()
                g = seeded_gradient(nets.G.parameters(), device, loss)
                nets.teacher.eval()
                return g
            train_step = lambda: diff_instruct.iteration(nets, fp32, args.batch, a)  # noqa: E731
        else:
            reals = common.BatchSampler(data, args.batch, device)
            for _ in range(a.cls_warmup):
                score_free.iteration(nets, fp32, reals, args.batch, a, train_G=False)

            def gradient(dtype):
                def loss():
                    nets.cls.requires_grad_(False)  # frozen in the generator step
                    with mixed(dtype):
                        x0 = common.generate_one_step(nets.G, z, a.sigma_init, labels)
                        return score_free.generator_loss(nets.cls, x0, sigma, noise, a.divergence, a.weight,
                                                         labels).mean()
                return seeded_gradient(nets.G.parameters(), device, loss)
            train_step = lambda: score_free.iteration(nets, fp32, reals, args.batch, a)  # noqa: E731
        compare(part, gradient, train_step, steps, torch.bfloat16)


if __name__ == '__main__':
    main()
