"""Train the EDM diffusion teacher (Karras et al. 2022) that Diff-Instruct and the score-free methods start from.

  one GPU:        python teacher.py --dataset cifar10
  8 GPUs:         torchrun --standalone --nproc_per_node=8 teacher.py --dataset cifar10
  quick teacher:  python teacher.py --dataset cifar10 --preset small --total-kimg 20000 --lr-rampup-kimg 1000 \
                      --ema-halflife-kimg 100
  samples:        python teacher.py --sample 64 --ckpt runs/teacher/checkpoint.pt --outdir runs/teacher-samples
  official net:   python teacher.py --import-edm edm-cifar10-uncond --outdir runs/edm-uncond

The method, in EDM's notation: draw ln σ ~ N(−1.2, 1.2²), noise the image x₀ to x₀ + σε, and regress the
preconditioned denoiser D(x₀ + σε; σ) on x₀ with weight λ(σ) = (σ² + σ_d²)/(σ·σ_d)². Sampling solves the
probability-flow ODE dx/dσ = (x − D(x; σ))/σ with Heun's method on EDM's ρ = 7 schedule (18 steps, 35 NFE).
Defaults are EDM's CIFAR-10 recipe (DDPM++, batch 512, Adam lr 1e-3 with a 10 Mimg ramp, EMA half-life
0.5 Mimg, dropout 0.13, 200 Mimg, geometric augmentation with probability 0.12 and 9 augment labels).
"""
import argparse
import copy
import os
import sys
import time

import torch

import common
import edm_import
import fid


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter, allow_abbrev=False)
    p.add_argument('--dataset', default='cifar10', help='cifar10 | fashion-mnist | folder or zip of images')
    p.add_argument('--data-dir', default=common.DEFAULT_DATA_DIR, help='where cifar-10-python.tar.gz is downloaded')
    p.add_argument('--split', default='train', choices=['train', 'test'], help='which part of the dataset')
    p.add_argument('--no-download', action='store_true', help='never download; fail if data is missing')
    p.add_argument('--augment', type=float, default=None, help='probability of EDM\'s geometric augmentation, with '
                   '9 augment labels; default: 0.12 for --preset edm (EDM, CIFAR-10), else 0')
    p.add_argument('--xflip', type=int, default=None, help='random x-flips of the data; default: 1 without '
                   '--augment (ours), 0 with it (the augmentation flips with its own label) and for adm (EDM)')
    p.add_argument('--cond', type=int, default=0, help='class-conditional (EDM cond: FID 1.79 vs 1.97)')
    p.add_argument('--preset', default='edm', choices=sorted(common.PRESETS),
                   help='edm: DDPM++, 55.7M (EDM, CIFAR-10) | adm: ADM, 296M, with EDM\'s ImageNet-64 recipe for the '
                        'flags below that are not given | small (ours, one GPU) | tiny, adm-tiny (ours, CPU)')
    p.add_argument('--dropout', type=float, default=0.13, help='dropout in every U-Net block (EDM, CIFAR-10; adm: 0.10)')
    p.add_argument('--batch', type=int, default=512, help='total batch over all GPUs (EDM, CIFAR-10; adm: 4096)')
    p.add_argument('--lr', type=float, default=1e-3, help='Adam learning rate (EDM, CIFAR-10; adm: 1e-4)')
    p.add_argument('--lr-rampup-kimg', type=float, default=10000, help='linear lr warm-up (EDM)')
    p.add_argument('--betas', type=float, nargs=2, default=[0.9, 0.999], help='Adam betas (EDM)')
    p.add_argument('--ema-halflife-kimg', type=float, default=500, help='EMA half-life (EDM, CIFAR-10; adm: 50000)')
    p.add_argument('--total-kimg', type=float, default=200000, help='training length (EDM, CIFAR-10; adm: 2500000)')
    common.add_runtime_args(p, outdir='runs/teacher', tick_kimg=50, snapshot_ticks=50, one_step=False)
    p.add_argument('--steps', type=int, default=None, help='sampler steps for grids, FID and --sample; default: 18 '
                   'for heun (EDM, CIFAR-10), 256 for stochastic (EDM, ImageNet-64)')
    p.add_argument('--sampler', default='heun', choices=['heun', 'stochastic'], help='EDM\'s deterministic Heun '
                   'sampler, or its stochastic one with the ImageNet-64 settings (S_churn 40, S_min 0.05, S_max 50, '
                   'S_noise 1.003)')
    p.add_argument('--sample', type=int, default=0, help='write this many samples of --ckpt\'s EMA (--sampler) and exit')
    p.add_argument('--ckpt', default=None, help='the teacher checkpoint for --sample')
    p.add_argument('--import-edm', default=None, help='an official EDM .pkl (path, URL or short name) to import')
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = common.SAMPLER_STEPS[args.sampler]
    given = common.given_flags(p, argv)
    if args.import_edm:  # a mode of its own: only where to write and whether to download
        common.refuse_flags(p, argv, [d for d in vars(args) if d not in ('import_edm', 'outdir', 'no_download')],
                            'with --import-edm')
    elif args.sample:
        common.refuse_flags(p, argv, [d for d in vars(args) if d not in SAMPLE_FLAGS], 'with --sample')
        if not args.ckpt or args.sample < 1 or args.steps < 2 or args.grid < 1:
            p.error('--sample N (N at least 1) needs --ckpt, --steps at least 2 and --grid at least 1')
        return args
    elif 'ckpt' in given:
        p.error('--ckpt: no effect without --sample')
    if min(args.batch, args.total_kimg, args.lr, args.ema_halflife_kimg, args.steps - 1) <= 0 or args.lr_rampup_kimg < 0:
        p.error('--batch, --total-kimg, --lr, --ema-halflife-kimg must be positive, --steps at least 2, '
                '--lr-rampup-kimg at least 0')
    common.check_runtime_args(p, argv, args)
    if args.preset == 'adm':  # EDM's ImageNet-64 recipe (its README's training table) where no flag says otherwise
        for dest, value in IMAGENET_RECIPE.items():
            if dest not in given:
                setattr(args, dest, value)
    if args.augment is None:
        args.augment = 0.12 if args.preset == 'edm' else 0.0
    if not 0 <= args.augment <= 1:
        p.error('--augment is a probability: 0 <= p <= 1')
    if args.xflip is None:
        args.xflip = 0 if args.augment else 1
    return args


IMAGENET_RECIPE = dict(batch=4096, lr=1e-4, dropout=0.10, ema_halflife_kimg=50000, total_kimg=2500000, xflip=0)


SAMPLE_FLAGS = ('sample', 'ckpt', 'outdir', 'steps', 'sampler', 'grid', 'device')  # what --sample uses


def save_samples(args, device):
    """--sample N: samples of a checkpoint's EMA weights (EDM's sampler), as PNG files and one grid."""
    from PIL import Image
    ckpt = common.load_checkpoint(args.ckpt, 'teacher')
    net = common.EDMPrecond(**ckpt['net_config']).to(device).eval()
    net.load_state_dict(ckpt['ema'])
    os.makedirs(args.outdir, exist_ok=True)
    sample = common.diffusion_sampler(net, device, args.steps, args.sampler == 'stochastic')
    grid, progress = [], common.Progress(f'{args.sampler} samples ({args.steps} steps)', args.sample)
    for start in range(0, args.sample, 256):
        seeds = list(range(start, min(start + 256, args.sample)))
        images = sample(seeds).cpu()
        progress.update(len(seeds))
        for s, im in zip(seeds, images):
            arr = im.permute(1, 2, 0).numpy()
            Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(os.path.join(args.outdir, f'{s:06d}.png'))
        grid.append(images[:max(0, args.grid - sum(len(g) for g in grid))])
    common.save_grid(torch.cat(grid), os.path.join(args.outdir, 'grid.png'))
    print(f'wrote {args.sample} images to {args.outdir}')


def lr_ramp(optimizer, lr, cur_nimg, rampup_kimg):
    """EDM's linear learning-rate warm-up over rampup_kimg; none if 0."""
    for g in optimizer.param_groups:
        g['lr'] = lr * (min(cur_nimg / (rampup_kimg * 1000), 1) if rampup_kimg > 0 else 1)


def training_step(model, opt, amp, images, labels, augment_pipe=None):
    """One EDM step on a batch: augment (non-leaking: the net is told what was done), the loss, Adam. model is what
    the forward pass calls (net compiled and/or in DDP). Returns the per-image losses."""
    images, augment_labels = augment_pipe(images) if augment_pipe else (images, None)
    with amp.autocast():
        loss = common.edm_loss(model, images, labels, augment_labels=augment_labels)
    opt.zero_grad(set_to_none=True)
    amp.backward(loss.mean())  # mean over the local batch; DDP averages over ranks: EDM's sum / global batch
    amp.step(opt)
    return loss.detach()


def train(args, rank, world, device):
    if args.batch % world:
        raise SystemExit(f'error: --batch {args.batch} is not divisible by the {world} processes')
    allow = not args.no_download
    common.preflight([lambda: common.dataset_source(args.dataset, args.data_dir, allow), *fid.preflight(args, allow)])
    ckpt = common.load_resume(args, 'teacher', None, ['dataset', 'split', 'cond', 'preset', 'dropout', 'batch', 'xflip',
                                                      'augment', 'seed'])
    torch.manual_seed(args.seed * world + rank)
    amp = common.Precision(device, args.precision)

    # Data: the whole training set in memory as uint8.
    data = common.load_dataset(args.dataset, args.data_dir, args.split, allow)
    label_dim = data.num_classes if args.cond else 0
    if args.cond and not label_dim:
        raise ValueError(f'--cond 1 needs labels, but {args.dataset!r} has none (no class folders)')
    common.print0(f'data: {data.name}  {len(data)} images {tuple(data.images.shape[1:])}  '
                  f'classes {data.num_classes}  {data.checksum or ""}', rank=rank)
    if rank == 0:
        os.makedirs(args.outdir, exist_ok=True)
    log = common.Logger(args.outdir, rank)
    sampler = common.BatchSampler(data, args.batch // world, device, args.seed, rank, bool(args.xflip))
    fid_ref = fid.reference_stats(args.fid_ref, data, device, args.inception, rank)

    # Network (on the device first: the EMA copy then has its memory layout, which the one-kernel update needs),
    # EMA, optimizer; augment_dim 9 when training with EDM's augmentation (the edm preset has it always).
    net = common.to_device(common.build_net(args.preset, data.resolution, data.channels, label_dim, args.dropout,
                                            9 if args.augment else None), device)
    pipe = common.AugmentPipe(args.augment) if args.augment else None
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = common.make_adam(net.parameters(), args.lr, args.betas, device=device)
    cur_nimg = 0
    if ckpt:
        common.load_net_state(net, ckpt['net'], ckpt['path'])
        common.load_net_state(ema, ckpt['ema'], ckpt['path'])
        opt.load_state_dict(ckpt['opt'])
        sampler.load_state_dict(common.pick_rank_state(ckpt['sampler'], rank))
        common.set_rng_state(common.pick_rank_state(ckpt['rng'], rank))
        cur_nimg = ckpt['cur_nimg']
        common.print0(f'resumed from {ckpt["path"]} at {cur_nimg / 1000:.1f} kimg', rank=rank)
    resumed, ckpt = ckpt is not None, None  # the states are in the nets now
    model = common.ddp_wrap(common.maybe_compile(net, args.compile), device, world)
    common.print0(f'net: {args.preset}  {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M params  '
                  f'label_dim {label_dim}  world {world}  device {device}  precision {amp.name}  '
                  f'augment {args.augment}', rank=rank)
    grid_seeds = list(range(args.grid))
    sample = common.diffusion_sampler(ema, device, args.steps, args.sampler == 'stochastic')
    if rank == 0 and not resumed:
        common.save_grid(common.reals_grid(data, args.grid), os.path.join(args.outdir, 'reals.png'))
    if args.lr_rampup_kimg > args.total_kimg:
        common.print0(f'note: the lr ramp (--lr-rampup-kimg {args.lr_rampup_kimg:g}) is longer than the run '
                      f'(--total-kimg {args.total_kimg:g}): the lr reaches only '
                      f'{args.total_kimg / args.lr_rampup_kimg:.1%} of --lr {args.lr:g}; shorten the ramp', rank=rank)

    # Training loop: one EDM step per batch, a progress line per tick, a snapshot every few ticks.
    tick, tick_nimg, tick_time, tick_losses = 0, cur_nimg, time.time(), []
    while True:
        x, labels = next(sampler)
        lr_ramp(opt, args.lr, cur_nimg, args.lr_rampup_kimg)
        tick_losses.append(training_step(model, opt, amp, x, labels, pipe).mean())
        common.ema_update(ema, net, common.ema_beta(cur_nimg, args.batch, args.ema_halflife_kimg))
        cur_nimg += args.batch
        done = cur_nimg >= round(args.total_kimg * 1000)  # whole images: x·1000 is not exact in floats
        if not done and cur_nimg < tick_nimg + round(args.tick_kimg * 1000):
            continue

        common.sync(device)
        # the tick's mean, per pixel, as EDM's logs (the loss itself is summed over pixels)
        loss_mean = common.all_reduce_mean(torch.stack(tick_losses).mean(), world).item() / x[0].numel()
        common.check_finite({'loss': loss_mean}, cur_nimg)
        log({'tick': tick, 'step': cur_nimg // args.batch, 'kimg': round(cur_nimg / 1000, 3), 'loss': loss_mean,
             'lr': opt.param_groups[0]['lr'], **common.tick_speed(cur_nimg, tick_nimg, tick_time, device)})
        tick += 1
        if done or tick % args.snapshot_ticks == 0:
            rngs = common.gather_states(common.rng_state(), world)
            samplers = common.gather_states(sampler.state_dict(), world)
            if rank == 0:
                common.save_checkpoint(os.path.join(args.outdir, 'checkpoint.pt'), {
                    'kind': 'teacher', 'config': vars(args), 'net_config': net.config, 'net': net.state_dict(),
                    'ema': ema.state_dict(), 'opt': opt.state_dict(), 'sampler': samplers, 'rng': rngs,
                    'cur_nimg': cur_nimg})
                common.save_grid(sample(grid_seeds, common.grid_labels(args.grid, label_dim, device)),
                                 common.grid_name(args.outdir, cur_nimg))
            if fid_ref:
                log(fid.fid_point(sample, args, fid_ref, device, rank, world, round(cur_nimg / 1000, 3)))
            if world > 1:
                torch.distributed.barrier()
        tick_nimg, tick_time, tick_losses = cur_nimg, time.time(), []
        if done:
            break


def main(argv=None):
    args = parse_args(argv)
    if args.import_edm:
        def body(rank, world, device):
            edm_import.import_to_checkpoint(args.import_edm, os.path.join(args.outdir, 'checkpoint.pt'),
                                            allow_download=not args.no_download)
    elif args.sample:
        def body(rank, world, device):
            save_samples(args, device)
    else:
        def body(rank, world, device):
            train(args, rank, world, device)
    common.run_main(args, body)


if __name__ == '__main__':
    main()
