"""Train the EDM diffusion teacher (Karras et al. 2022) that Diff-Instruct and the score-free methods start from.

  one GPU:        python teacher.py --dataset cifar10
  8 GPUs:         torchrun --standalone --nproc_per_node=8 teacher.py --dataset cifar10
  quick teacher:  python teacher.py --dataset cifar10 --preset small --total-kimg 20000 --lr-rampup-kimg 1000 \
                      --ema-halflife-kimg 100
  samples:        python teacher.py --sample 64 --ckpt runs/teacher/checkpoint.pt --outdir runs/teacher-samples
  speed:          python teacher.py --bench [--compile]
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
import time

import torch

import common
import fid


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Data
    p.add_argument('--dataset', default='cifar10', help='cifar10 | fashion-mnist | folder or zip of images')
    p.add_argument('--data-dir', default=common.DEFAULT_DATA_DIR, help='where cifar-10-python.tar.gz lives')
    p.add_argument('--split', default='train', help='train | test')
    p.add_argument('--no-download', action='store_true', help='never download; fail if data is missing')
    p.add_argument('--augment', type=float, default=None, help='probability of EDM\'s geometric augmentation '
                   '(EDM CIFAR-10: 0.12, the default for --preset edm; else 0); the net gets 9 augment labels')
    p.add_argument('--xflip', type=int, default=None, help='random x-flips of the data (default: 1 without '
                   '--augment, 0 with it, since the augmentation flips with its own label)')
    p.add_argument('--cond', type=int, default=0, help='class-conditional (EDM cond: 1.79 FID vs 1.97)')
    # Network
    p.add_argument('--preset', default='edm', help='edm (DDPM++, 55.7M; EDM) | small (ours) | tiny (tests)')
    p.add_argument('--dropout', type=float, default=0.13, help='dropout in every UNet block (EDM CIFAR-10)')
    # Optimisation
    p.add_argument('--batch', type=int, default=512, help='total batch over all GPUs (EDM)')
    p.add_argument('--lr', type=float, default=1e-3, help='Adam learning rate (EDM)')
    p.add_argument('--lr-rampup-kimg', type=float, default=10000, help='linear lr warm-up (EDM: 10 Mimg)')
    p.add_argument('--betas', type=float, nargs=2, default=[0.9, 0.999], help='Adam betas (EDM)')
    p.add_argument('--eps', type=float, default=1e-8, help='Adam epsilon (EDM)')
    p.add_argument('--ema-halflife-kimg', type=float, default=500, help='EMA half-life (EDM: 0.5 Mimg)')
    p.add_argument('--ema-rampup', type=float, default=0.05, help='EMA ramp-up ratio (EDM)')
    p.add_argument('--P-mean', type=float, default=-1.2, help='mean of ln σ in training (EDM)')
    p.add_argument('--P-std', type=float, default=1.2, help='std of ln σ in training (EDM)')
    p.add_argument('--total-kimg', type=float, default=200000, help='training length (EDM: 200 Mimg)')
    common.add_runtime_args(p, outdir='runs/teacher', tick_kimg=50, snapshot_ticks=50)  # EDM's intervals
    p.add_argument('--steps', type=int, default=18, help='Heun steps for grids, FID and --sample (EDM)')
    # Other modes
    p.add_argument('--sample', type=int, default=0, help='write this many Heun samples from --ckpt and exit')
    p.add_argument('--ckpt', default=None, help='checkpoint for --sample')
    p.add_argument('--weights', default='ema', choices=['ema', 'net'], help='--sample from the EMA (EDM) or raw weights')
    p.add_argument('--import-edm', default=None, help='official EDM .pkl (path, URL or short name) to import')
    args = p.parse_args(argv)
    if args.batch <= 0 or args.total_kimg <= 0 or args.tick_kimg <= 0:
        p.error('--batch, --total-kimg and --tick-kimg must be positive')
    if args.preset not in common.PRESETS:
        p.error(f'--preset must be one of {sorted(common.PRESETS)}')
    if args.augment is None:
        args.augment = 0.12 if args.preset == 'edm' else 0.0
    if not 0 <= args.augment <= 1:
        p.error('--augment is a probability: 0 <= p <= 1')
    if args.xflip is None:
        args.xflip = 0 if args.augment else 1
    if args.sample and not args.ckpt:
        p.error('--sample needs --ckpt')
    return args


def augment_dim(args):
    """The preset's augment_dim, or 9 (AugmentPipe's labels) when training with augmentation."""
    return 9 if args.augment else None


def heun_images(net, seeds, device, steps=18, class_labels=None):
    """Heun samples for the given seeds (per-seed latents), as [-1, 1] float32."""
    z = common.seeded_latents(seeds, [net.img_channels, net.img_resolution, net.img_resolution], device)
    if class_labels is None:
        class_labels = common.seeded_labels(seeds, net.label_dim, device)
    return common.edm_sampler(common.net_denoiser(net), z, class_labels, num_steps=steps).to(torch.float32)


def save_samples(args, device):
    """--sample N: Heun samples from a checkpoint's EMA weights, as PNG files and one grid."""
    from PIL import Image
    ckpt = common.load_checkpoint(args.ckpt, 'teacher')
    net = common.net_from_config(ckpt['net_config']).to(device).eval()
    net.load_state_dict(ckpt[args.weights])
    os.makedirs(args.outdir, exist_ok=True)
    grid = []
    for start in range(0, args.sample, 256):
        seeds = list(range(start, min(start + 256, args.sample)))
        images = common.to_uint8(heun_images(net, seeds, device, args.steps)).cpu()
        for s, im in zip(seeds, images):
            arr = im.permute(1, 2, 0).numpy()
            Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(os.path.join(args.outdir, f'{s:06d}.png'))
        grid.append(images[:max(0, args.grid - sum(len(g) for g in grid))])
    common.save_grid(torch.cat(grid), os.path.join(args.outdir, 'grid.png'))
    print(f'wrote {args.sample} images to {args.outdir}')


def bench(args, device):
    """img/s, ms/step, peak memory and MFU of the real training step (forward, backward, Adam, EMA)."""
    autocast, scaler = common.setup_precision(device, args.precision, args.tf32)
    net = common.to_device(common.build_net(args.preset, 32, 3, 10 if args.cond else 0, args.dropout,
                                            augment_dim(args)), device).train()
    pipe = common.AugmentPipe(args.augment) if args.augment else None
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = common.make_adam(net.parameters(), args.lr, args.betas, args.eps, device)
    model = common.maybe_compile(net, args.compile)
    x = torch.rand([args.batch, 3, 32, 32], device=device) * 2 - 1
    labels = common.random_labels(args.batch, 10 if args.cond else 0, device)
    flops = 3 * common.count_flops(lambda: net(x[:1], torch.ones(1, device=device), None if labels is None else labels[:1]))

    def step():
        opt.zero_grad(set_to_none=True)
        images, augment_labels = pipe(x) if pipe else (x, None)
        with autocast():
            loss = common.edm_loss(model, images, labels, args.P_mean, args.P_std, augment_labels=augment_labels).mean()
        (scaler.scale(loss) if scaler else loss).backward()
        common.optimizer_step(opt, net.parameters(), scaler)
        common.ema_update(ema, net, 0.999)

    common.run_bench('teacher', step, args, device, flops, sum(p.numel() for p in net.parameters()))


def check_precision(args, device):
    """--check-precision: along a short fp32 run of a fresh --preset net on the data, the cosine between the EDM
    loss gradient of one fixed batch (same σ, noise and dropout masks) in --precision and in fp32."""
    data = common.load_dataset(args.dataset, args.data_dir, args.split, not args.no_download)
    label_dim = data.num_classes if args.cond else 0
    sampler = common.BatchSampler(data, args.batch, device, args.seed, 0, bool(args.xflip))
    net = common.to_device(common.build_net(args.preset, data.resolution, data.channels, label_dim, args.dropout,
                                            augment_dim(args)), device).train()
    opt = common.make_adam(net.parameters(), args.lr, args.betas, args.eps, device)
    pipe = common.AugmentPipe(args.augment) if args.augment else None
    x, labels = next(sampler)
    mixed = common.autocast_factory(device.type, args.precision)

    def gradient(low_precision):
        def loss():
            images, augment_labels = pipe(x) if pipe else (x, None)
            with (mixed() if low_precision else common.full_precision(device.type)):
                return common.edm_loss(net, images, labels, args.P_mean, args.P_std,
                                       augment_labels=augment_labels).mean()
        return common.seeded_gradient(net.parameters(), device, loss)  # same augmentation, σ, noise, dropout

    def train_step():
        images, batch_labels = next(sampler)
        images, augment_labels = pipe(images) if pipe else (images, None)
        opt.zero_grad(set_to_none=True)
        common.edm_loss(net, images, batch_labels, args.P_mean, args.P_std, augment_labels=augment_labels).mean().backward()
        common.optimizer_step(opt, net.parameters())
    print(f'check-precision teacher: {args.precision} autocast, preset {args.preset}, batch {args.batch}')
    common.check_precision('teacher', args.precision, gradient, train_step,
                           checkpoints=[int(k) for k in args.check_steps.split(',')])


def train(args, rank, world, device):
    torch.manual_seed(args.seed * world + rank)
    autocast, scaler = common.setup_precision(device, args.precision, args.tf32)
    if args.batch % world:
        raise SystemExit(f'error: --batch {args.batch} is not divisible by the {world} processes')
    batch_local = args.batch // world
    log = common.Logger(args.outdir, rank)
    if rank == 0:
        os.makedirs(args.outdir, exist_ok=True)

    # Data: the whole training set in memory as uint8.
    data = common.load_dataset(args.dataset, args.data_dir, args.split, not args.no_download)
    label_dim = data.num_classes if args.cond else 0
    if args.cond and not label_dim:
        raise SystemExit(f'error: --cond 1 needs labels, but {args.dataset!r} has none (no class folders)')
    common.print0(f'data: {data.name}  {len(data)} images {tuple(data.images.shape[1:])}  '
                  f'classes {data.num_classes}  {data.checksum or ""}', rank=rank)
    sampler = common.BatchSampler(data, batch_local, device, args.seed, rank, bool(args.xflip))
    fid_ref = fid.reference_stats(args.fid_ref, data, device, args.inception, rank)

    # Network, EMA, optimizer.
    # on the device first: the EMA copy then has the net's memory layout, which its one-kernel update needs
    net = common.to_device(common.build_net(args.preset, data.resolution, data.channels, label_dim, args.dropout,
                                            augment_dim(args)), device)
    pipe = common.AugmentPipe(args.augment) if args.augment else None
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = common.make_adam(net.parameters(), args.lr, args.betas, args.eps, device)
    config = vars(args).copy()
    cur_nimg = 0
    resume = os.path.join(args.outdir, 'checkpoint.pt') if args.resume == 'auto' else args.resume
    if resume:
        ckpt = common.load_checkpoint(resume, 'teacher')
        common.check_resume_config(ckpt['config'], config, ['dataset', 'split', 'cond', 'preset', 'dropout', 'batch',
                                                            'xflip', 'augment', 'P_mean', 'P_std', 'seed'],
                                  defaults={'augment': 0.0})
        if ckpt['net_config'] != net.config:
            raise ValueError(f'cannot resume: network config differs ({ckpt["net_config"]} vs {net.config})')
        net.load_state_dict(ckpt['net'])
        ema.load_state_dict(ckpt['ema'])
        opt.load_state_dict(ckpt['opt'])
        sampler.load_state_dict(ckpt['sampler'][rank] if rank < len(ckpt['sampler']) else ckpt['sampler'][0])
        common.set_rng_state(ckpt['rng'][rank] if rank < len(ckpt['rng']) else ckpt['rng'][0])
        cur_nimg = ckpt['cur_nimg']
        common.print0(f'resumed from {resume} at {cur_nimg / 1000:.1f} kimg', rank=rank)
    model = common.ddp_wrap(common.maybe_compile(net, args.compile), device, world)
    common.print0(f'net: {args.preset}  {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M params  '
                  f'label_dim {label_dim}  world {world}  device {device}  precision '
                  f'{common.precision_name(device, args.precision)}  augment {args.augment}', rank=rank)

    # Fixed grid noise and the reals grid.
    grid_seeds = list(range(args.grid))
    grid_labels = common.seeded_labels(grid_seeds, label_dim, device)
    if rank == 0 and not resume:
        common.save_grid(data.images[:args.grid], os.path.join(args.outdir, 'reals.png'))

    # Training loop: one EDM step per batch, a progress line per tick, a snapshot every few ticks.
    tick, tick_nimg, tick_time = 0, cur_nimg, time.time()
    while True:
        x, labels = next(sampler)
        x, augment_labels = pipe(x) if pipe else (x, None)  # non-leaking: the net is told what was done
        with autocast():
            loss = common.edm_loss(model, x, labels, args.P_mean, args.P_std, augment_labels=augment_labels)
        opt.zero_grad(set_to_none=True)
        # Mean over the local batch; DDP averages over ranks, so this is EDM's sum / global batch.
        (scaler.scale(loss.mean()) if scaler else loss.mean()).backward()
        common.lr_ramp([(opt, args.lr)], cur_nimg, args.lr_rampup_kimg)
        common.optimizer_step(opt, net.parameters(), scaler)
        cur_nimg += args.batch
        common.ema_update(ema, net, common.ema_beta(cur_nimg, args.batch, args.ema_halflife_kimg, args.ema_rampup))
        done = cur_nimg >= args.total_kimg * 1000
        if not done and cur_nimg < tick_nimg + args.tick_kimg * 1000:
            continue

        # Tick: progress line.
        common.sync(device)
        # Logged per pixel, as EDM's logs do (the loss itself is summed over pixels).
        loss_mean = common.all_reduce_mean(loss.detach().mean(), world).item() / x[0].numel()
        common.check_finite({'loss': loss_mean}, cur_nimg)
        dt = time.time() - tick_time
        log({'tick': tick, 'step': cur_nimg // args.batch, 'kimg': round(cur_nimg / 1000, 3),
             'loss': loss_mean, 'lr': opt.param_groups[0]['lr'],
             'img/s': (cur_nimg - tick_nimg) / dt, 'sec/kimg': dt * 1000 / (cur_nimg - tick_nimg),
             'mem_gb': round(common.peak_memory_gb(device), 2)})
        tick += 1
        if done or tick % args.snapshot_ticks == 0:
            snapshot(args, rank, world, device, net, ema, opt, sampler, cur_nimg, grid_seeds, grid_labels, log,
                     fid_ref)
        tick_nimg, tick_time = cur_nimg, time.time()
        if done:
            break


def snapshot(args, rank, world, device, net, ema, opt, sampler, cur_nimg, grid_seeds, grid_labels, log,
                     fid_ref):
    """Checkpoint (all ranks' RNG and data-stream states, so resume continues exactly), grid and FID."""
    rngs, samplers = [common.rng_state()], [sampler.state_dict()]
    if world > 1:  # gather every rank's RNG and sampler state to rank 0
        rngs_all, samplers_all = [None] * world, [None] * world
        torch.distributed.all_gather_object(rngs_all, rngs[0])
        torch.distributed.all_gather_object(samplers_all, samplers[0])
        rngs, samplers = rngs_all, samplers_all
    if rank == 0:
        common.save_checkpoint(os.path.join(args.outdir, 'checkpoint.pt'), {
            'kind': 'teacher', 'config': vars(args), 'net_config': net.config, 'net': net.state_dict(),
            'ema': ema.state_dict(), 'opt': opt.state_dict(), 'sampler': samplers, 'rng': rngs,
            'cur_nimg': cur_nimg})
        images = heun_images(ema, grid_seeds, device, args.steps, grid_labels)
        common.save_grid(images, os.path.join(args.outdir, f'fakes_{cur_nimg // 1000:06d}.png'))
    if fid_ref:
        label_dim = ema.label_dim
        sample = lambda seeds: common.to_uint8(heun_images(ema, seeds, device, args.steps,
                                                           common.seeded_labels(seeds, label_dim, device)))
        log(fid.fid_point(sample, args, fid_ref, device, rank, world, round(cur_nimg / 1000, 3)))
    if world > 1:
        torch.distributed.barrier()


def main(argv=None):
    args = parse_args(argv)
    if args.import_edm:
        import edm_import
        return common.run_main(args, lambda *_: edm_import.import_to_checkpoint(
            args.import_edm, os.path.join(args.outdir, 'checkpoint.pt'), allow_download=not args.no_download))
    common.run_main(args, lambda rank, world, device: bench(args, device) if args.bench
                    else check_precision(args, device) if args.check_precision
                    else save_samples(args, device) if args.sample else train(args, rank, world, device))


if __name__ == '__main__':
    main()
