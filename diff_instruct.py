"""Diff-Instruct (Luo et al. 2023, arXiv 2305.18455): distil a diffusion teacher into a one-step generator.

  one GPU:   python diff_instruct.py --dataset cifar10 --teacher edm-cifar10-uncond
  8 GPUs:    torchrun --standalone --nproc_per_node=8 diff_instruct.py --dataset cifar10 --teacher edm-cifar10-uncond
  own teacher: --teacher runs/teacher/checkpoint.pt        speed: python diff_instruct.py --bench

The method. G_θ(z) = D_θ(σ_init·z; σ_init) with z ~ N(0, I) makes images x₀ with distribution q. Diff-Instruct
minimises the integral KL ∫ w(σ) KL(q_σ ‖ p_σ) dσ between the noised generator and data distributions, whose
gradient is E[w(σ)·(s_q(x_σ) − s_p(x_σ))ᵀ ∂x_σ/∂θ] with x_σ = x₀ + σε. The data score s_p comes from the frozen
teacher; the generator's score s_q from a "fake" score network f_ψ trained online on generator samples with
EDM's loss. Since s = (D − x)/σ², the per-image surrogate Σ_pixels (D_fake(x_σ) − D_teacher(x_σ))·x₀, with both
denoisers evaluated without gradient, has gradient σ²(s_q − s_p) w.r.t. x₀: w(σ) = σ², σ ~ EDM's log-normal.
Each iteration: fake-score step(s), then one generator step. Defaults follow the official CIFAR-10 code.
"""
import argparse
import contextlib
import copy
import os
import time

import torch

import common
import edm_import
import fid


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset', default='cifar10', help='cifar10 | fashion-mnist | folder or zip (reals grid, labels)')
    p.add_argument('--data-dir', default=common.DEFAULT_DATA_DIR)
    p.add_argument('--split', default='train')
    p.add_argument('--no-download', action='store_true', help='never download data or teacher')
    p.add_argument('--teacher', default='edm-cifar10-uncond',
                   help='teacher.py checkpoint, EDM .pkl/URL or short name (the paper: EDM CIFAR-10)')
    p.add_argument('--cond', type=int, default=0, help='class-conditional (needs a conditional teacher)')
    p.add_argument('--sigma-init', type=float, default=1.0, help='σ at which G evaluates the teacher net (DI: 1.0)')
    p.add_argument('--batch', type=int, default=128, help='total batch (DI official CIFAR-10)')
    p.add_argument('--lr', type=float, default=1e-5, help='generator Adam lr (DI official)')
    p.add_argument('--fake-lr', type=float, default=1e-5, help='fake-score Adam lr (DI official)')
    p.add_argument('--betas', type=float, nargs=2, default=[0.0, 0.999], help='Adam betas, both nets (DI official)')
    p.add_argument('--eps', type=float, default=1e-8, help='Adam epsilon (DI official)')
    p.add_argument('--lr-rampup-kimg', type=float, default=0, help='linear lr warm-up, both nets (ours: none)')
    p.add_argument('--fake-steps', type=int, default=1, help='fake-score steps per generator step (DI: 1)')
    p.add_argument('--augment', type=float, default=None, help='EDM\'s augmentation of the generator samples the '
                   'fake score trains on, with augment labels (DI official: 0.12 for EDM\'s teachers; default: '
                   '0.12 when the teacher has augment labels, else 0)')
    p.add_argument('--P-mean', type=float, default=-1.2, help='ln σ mean, both losses (DI = EDM)')
    p.add_argument('--P-std', type=float, default=1.2, help='ln σ std, both losses (DI = EDM)')
    p.add_argument('--dropout', type=float, default=None, help='override the teacher\'s dropout in all nets')
    p.add_argument('--dropout-mode', default='official', choices=['official', 'eval'],
                   help='official: dropout on in training forward passes, the teacher and fake nets share masks '
                        'in the generator loss, G samples for the fake step without dropout; eval: no dropout')
    p.add_argument('--ema-halflife-kimg', type=float, default=500, help='EMA half-life of G (DI official: 0.5 Mimg)')
    p.add_argument('--ema-rampup', type=float, default=0.05, help='EMA ramp-up ratio (EDM)')
    p.add_argument('--total-kimg', type=float, default=50000, help='generator images to train on (ours)')
    common.add_runtime_args(p, outdir='runs/diff_instruct', tick_kimg=10, snapshot_ticks=10)
    p.add_argument('--exact-scores', type=int, default=1, help='teacher and fake denoiser passes of the generator '
                   'step in fp32 under bf16/fp16 (ours, measured: see README; 2 of the 5 network passes per image)')
    p.add_argument('--preset', default='edm', help='network for --bench only (random weights)')
    args = p.parse_args(argv)
    if args.batch <= 0 or args.total_kimg <= 0 or args.fake_steps < 1 or args.sigma_init <= 0:
        p.error('--batch, --total-kimg, --fake-steps and --sigma-init must be positive')
    if args.bench and args.preset not in common.PRESETS:
        p.error(f'--preset must be one of {sorted(common.PRESETS)}')
    return args


# ------------------------------------------------------------------------------------------------------
# The method: two losses, as pure functions (tests call them directly)
# ------------------------------------------------------------------------------------------------------

def fake_score_loss(fake, x0, labels=None, P_mean=-1.2, P_std=1.2, augment_pipe=None):
    """EDM's denoising loss of the fake score network on (stop-gradient) generator samples, per image; with an
    augment pipe the samples are augmented and the network is told how (as EDM trains the teacher)."""
    x0, augment_labels = augment_pipe(x0.detach()) if augment_pipe else (x0.detach(), None)
    return common.edm_loss(fake, x0, labels, P_mean, P_std, augment_labels=augment_labels)


def same_randomness(device, *fns):
    """Call each fn starting from the same RNG state, so teacher and fake draw identical dropout masks."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == 'cuda' else None
    out = []
    for fn in fns:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
        out.append(fn())
    return out


def generator_loss(teacher, fake, x0, sigma, noise, labels=None, exact_scores=True):
    """Σ_pixels (D_fake(x_σ) − D_teacher(x_σ))·x₀ per image, x_σ = x₀ + σ·noise; the denoisers get no gradient,
    so ∂/∂x₀ = D_fake − D_teacher = σ²(s_q − s_p): Diff-Instruct's KL gradient with w(σ) = σ².
    exact_scores: the two denoiser passes in float32 (no autocast, no TF32) whatever the precision around them.
    Their difference is the whole signal and they are nearly equal networks, so in bf16 it is mostly rounding."""
    x_sigma = x0.detach() + sigma * noise
    precision = common.full_precision(x0.device.type) if exact_scores else contextlib.nullcontext()
    with torch.no_grad(), precision:
        D_p, D_q = same_randomness(x0.device, lambda: teacher(x_sigma, sigma, labels),
                                   lambda: fake(x_sigma, sigma, labels))
    return ((D_q - D_p).to(x0.dtype) * x0).flatten(1).sum(1)


def resolve_augment(augment, teacher):
    """--augment: as officially, 0.12 for teachers trained with EDM's augmentation (they read augment labels)."""
    if augment is None:
        return 0.12 if teacher.model.map_augment is not None else 0.0
    if augment and teacher.model.map_augment is None:
        raise ValueError(f'--augment {augment} needs a teacher with augment labels (augment_dim 9); this one has none')
    return augment


def set_dropout(net, p):
    for m in net.modules():
        if isinstance(m, common.UNetBlock):
            m.dropout = p


# ------------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------------

def wrap_nets(G, fake, teacher, args, device, world):
    """(modules, what the forward passes call): compiled if asked, DDP around the two trained nets. The generator
    comes twice: as it is compiled, for the fake-score step's samples (no gradients, nothing to all-reduce), and
    inside DDP for the generator step."""
    G_c, fake_c, teacher_c = (common.maybe_compile(net, args.compile) for net in (G, fake, teacher))
    return (G_c, common.ddp_wrap(G_c, device, world), fake, fake_c, common.ddp_wrap(fake_c, device, world),
            teacher, teacher_c)


def iteration(args, nets, opts, scalers, autocast, batch, label_dim, device, pipe=None):
    """One Diff-Instruct iteration: args.fake_steps fake-score steps, then one generator step."""
    G, G_train, fake, fake_c, fake_train, teacher, teacher_c = nets
    official = args.dropout_mode == 'official'
    shape = [batch, G.img_channels, G.img_resolution, G.img_resolution]
    for _ in range(args.fake_steps):
        labels = common.random_labels(batch, label_dim, device)
        with torch.no_grad(), autocast():
            G.eval()  # the official code samples for the fake step without dropout
            x0 = common.generate_one_step(G, torch.randn(shape, device=device), args.sigma_init, labels)
            G.train(official)
        fake.train(official)
        with autocast():
            loss_fake = fake_score_loss(fake_train, x0, labels, args.P_mean, args.P_std, pipe).mean()
        opts[1].zero_grad(set_to_none=True)
        (scalers[1].scale(loss_fake) if scalers[1] else loss_fake).backward()
        common.optimizer_step(opts[1], fake.parameters(), scalers[1])

    labels = common.random_labels(batch, label_dim, device)
    teacher.train(official)  # dropout on (train mode) in both denoisers, with shared masks, as officially
    fake.train(official)
    with autocast():
        x0 = common.generate_one_step(G_train, torch.randn(shape, device=device), args.sigma_init, labels)
        sigma = common.edm_sigma(batch, device, args.P_mean, args.P_std)
        loss_G = generator_loss(teacher_c, fake_c, x0, sigma, torch.randn_like(x0), labels, args.exact_scores).mean()
    teacher.eval()
    opts[0].zero_grad(set_to_none=True)
    (scalers[0].scale(loss_G) if scalers[0] else loss_G).backward()
    common.optimizer_step(opts[0], G.parameters(), scalers[0])
    return loss_fake.detach(), loss_G.detach()


def bench(args, device):
    """The real iteration on random weights of --preset (no teacher or data needed)."""
    autocast, scaler = common.setup_precision(device, args.precision, args.tf32)
    teacher = common.to_device(common.build_net(args.preset, 32, 3, 0, 0.13), device).eval().requires_grad_(False)
    G, fake = copy.deepcopy(teacher).requires_grad_(True), copy.deepcopy(teacher).requires_grad_(True)
    G_ema = copy.deepcopy(teacher)
    opts = [common.make_adam(n.parameters(), args.lr, args.betas, args.eps, device) for n in (G, fake)]
    scalers = [scaler, torch.amp.GradScaler('cuda') if scaler else None]
    nets = wrap_nets(G, fake, teacher, args, device, 1)
    augment = resolve_augment(args.augment, teacher)
    pipe = common.AugmentPipe(augment) if augment else None

    def step():
        iteration(args, nets, opts, scalers, autocast, args.batch, 0, device, pipe)
        common.ema_update(G_ema, G, 0.999)
    x = torch.zeros(1, 3, 32, 32, device=device)
    f = common.count_flops(lambda: teacher(x, torch.ones(1, device=device)))
    # per image: fake step = G fwd + fake fwd/bwd (1 + 3); G step = G fwd/bwd + teacher + fake fwd (3 + 2)
    flops = f * (args.fake_steps * 4 + 5)
    common.run_bench('diff_instruct', step, args, device, flops, sum(p.numel() for p in G.parameters()))


def check_precision(args, device):
    """--check-precision: along 100 fp32 iterations from the teacher, the generator gradient of one fixed batch in
    --precision (with the exact-scores setting given) against fp32. At step 0 the fake score equals the teacher,
    so the exact gradient is zero and anything a low precision produces is noise."""
    teacher, _ = edm_import.load_teacher(args.teacher, device, not args.no_download)
    G, fake = copy.deepcopy(teacher).requires_grad_(True), copy.deepcopy(teacher).requires_grad_(True)
    opts = [common.make_adam(n.parameters(), lr, args.betas, args.eps, device) for n, lr in ((G, args.lr),
                                                                                         (fake, args.fake_lr))]
    nets = wrap_nets(G, fake, teacher, args, device, 1)
    augment = resolve_augment(args.augment, teacher)
    pipe = common.AugmentPipe(augment) if augment else None
    z, noise, sigma, labels = common.fixed_generator_batch(G, args.batch, args.P_mean, args.P_std, device)
    mixed = common.autocast_factory(device.type, args.precision)

    def gradient(low_precision):
        def loss():
            teacher.train(args.dropout_mode == 'official')
            fake.train(args.dropout_mode == 'official')
            with (mixed() if low_precision else common.full_precision(device.type)):
                x0 = common.generate_one_step(G, z, args.sigma_init, labels)
                return generator_loss(teacher, fake, x0, sigma, noise, labels, args.exact_scores).mean()
        g = common.seeded_gradient(G.parameters(), device, loss)
        teacher.eval()
        return g
    print(f'check-precision diff_instruct: {args.precision} autocast with exact_scores {args.exact_scores}, '
          f'batch {args.batch}, teacher {args.teacher}')
    steps = [int(k) for k in args.check_steps.split(',')]
    common.check_precision('diff_instruct', args.precision, gradient, checkpoints=steps, train_step=lambda: iteration(
        args, nets, opts, [None, None], contextlib.nullcontext, args.batch, teacher.label_dim, device, pipe))


def train(args, rank, world, device, init_generator=None):
    """init_generator(G, teacher, data, device), if given, re-initialises G in place before training (used by
    scratch_init.py for the initialisation study); by default G starts as the teacher."""
    torch.manual_seed(args.seed * world + rank)
    autocast, scaler = common.setup_precision(device, args.precision, args.tf32)
    scalers = [scaler, torch.amp.GradScaler('cuda') if scaler else None]
    if args.batch % world:
        raise SystemExit(f'error: --batch {args.batch} is not divisible by the {world} processes')
    batch = args.batch // world
    log = common.Logger(args.outdir, rank)
    if rank == 0:
        os.makedirs(args.outdir, exist_ok=True)

    data = common.load_dataset(args.dataset, args.data_dir, args.split, not args.no_download)
    teacher, teacher_path = edm_import.load_teacher(args.teacher, device, not args.no_download)
    common.check_teacher_fits_data(teacher, data, args.cond)
    fid_ref = fid.reference_stats(args.fid_ref, data, device, args.inception, rank)
    label_dim = teacher.label_dim
    augment = resolve_augment(args.augment, teacher)
    pipe = common.AugmentPipe(augment) if augment else None
    if args.dropout is not None:
        set_dropout(teacher, args.dropout)
    # Generator, fake score and the generator's EMA all start as copies of the teacher (EMA weights).
    G = copy.deepcopy(teacher).requires_grad_(True)
    fake = copy.deepcopy(teacher).requires_grad_(True)
    if init_generator is not None and not args.resume:
        init_generator(G, teacher, data, device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opts = [common.make_adam(G.parameters(), args.lr, args.betas, args.eps, device),
            common.make_adam(fake.parameters(), args.fake_lr, args.betas, args.eps, device)]
    cur_nimg = 0
    resume = os.path.join(args.outdir, 'checkpoint.pt') if args.resume == 'auto' else args.resume
    if resume:
        ckpt = common.load_checkpoint(resume, 'generator')
        same_run = ['dataset', 'teacher', 'cond', 'sigma_init', 'batch', 'fake_steps', 'dropout_mode', 'augment', 'seed']
        common.check_resume_config(ckpt['config'], vars(args), same_run, defaults={'augment': None})
        if ckpt.get('method') != 'diff_instruct' or 'fake' not in ckpt:
            raise ValueError(f'{resume!r} is not a Diff-Instruct training checkpoint')
        for net, key in ((G, 'G'), (fake, 'fake'), (G_ema, 'ema')):
            common.load_net_state(net, ckpt[key], resume)
        for opt, key in zip(opts, ('opt_G', 'opt_fake')):
            opt.load_state_dict(ckpt[key])
        common.set_rng_state(common.pick_rank_state(ckpt['rng'], rank))
        cur_nimg = ckpt['cur_nimg']
        common.print0(f'resumed from {resume} at {cur_nimg / 1000:.1f} kimg', rank=rank)
    nets = wrap_nets(G, fake, teacher, args, device, world)
    common.print0(f'diff_instruct: teacher {teacher_path}  {sum(p.numel() for p in G.parameters()) / 1e6:.2f}M '
                  f'params per net  σ_init {args.sigma_init}  fake-score augmentation {augment}  world {world}  '
                  f'device {device}', rank=rank)
    p = common.precision_name(device, args.precision)
    common.print0(f'precision: G and fake-score training {p}, teacher and fake denoisers in the generator step '
                  f'{"fp32 (--exact-scores 1)" if args.exact_scores else p}, TF32 {"on" if args.tf32 else "off"}', rank=rank)

    grid_seeds = list(range(args.grid))
    sample = common.one_step_sampler(G_ema, args.sigma_init, device)
    if rank == 0 and not resume:
        common.save_grid(data.images[:args.grid], os.path.join(args.outdir, 'reals.png'))
        common.save_grid(sample(grid_seeds), os.path.join(args.outdir, 'fakes_init.png'))
    if fid_ref and args.fid_at_start and cur_nimg == 0:  # the first point of the FID curve: the initial G
        log(fid.fid_point(sample, args, fid_ref, device, rank, world, 0.0))

    tick, tick_nimg, tick_time = 0, cur_nimg, time.time()
    while True:
        common.lr_ramp(zip(opts, (args.lr, args.fake_lr)), cur_nimg, args.lr_rampup_kimg)
        loss_fake, loss_G = iteration(args, nets, opts, scalers, autocast, batch, label_dim, device, pipe)
        cur_nimg += args.batch
        common.ema_update(G_ema, G, common.ema_beta(cur_nimg, args.batch, args.ema_halflife_kimg, args.ema_rampup))
        done = cur_nimg >= args.total_kimg * 1000
        if not done and cur_nimg < tick_nimg + args.tick_kimg * 1000:
            continue

        common.sync(device)
        pixels = G.img_channels * G.img_resolution ** 2  # the fake-score loss is logged per pixel, as EDM does
        losses = {'loss_fake': common.all_reduce_mean(loss_fake, world).item() / pixels,
                  'loss_G': common.all_reduce_mean(loss_G, world).item()}
        common.check_finite(losses, cur_nimg)
        dt = time.time() - tick_time
        log({'tick': tick, 'step': cur_nimg // args.batch, 'kimg': round(cur_nimg / 1000, 3),
             **losses, 'img/s': (cur_nimg - tick_nimg) / dt,
             'sec/kimg': dt * 1000 / (cur_nimg - tick_nimg), 'mem_gb': round(common.peak_memory_gb(device), 2)})
        tick += 1
        if done or tick % args.snapshot_ticks == 0:
            rngs = common.gather_states(common.rng_state(), world)
            if rank == 0:
                state = {'kind': 'generator', 'method': 'diff_instruct', 'config': vars(args),
                         'net_config': G.config, 'sigma_init': args.sigma_init, 'teacher': teacher_path,
                         'ema': G_ema.state_dict(), 'G': G.state_dict(), 'fake': fake.state_dict(),
                         'opt_G': opts[0].state_dict(), 'opt_fake': opts[1].state_dict(), 'rng': rngs,
                         'cur_nimg': cur_nimg}
                common.save_one_step_snapshot(args.outdir, state, sample, grid_seeds, done)
            if fid_ref:
                log(fid.fid_point(sample, args, fid_ref, device, rank, world, round(cur_nimg / 1000, 3)))
            if world > 1:
                torch.distributed.barrier()
        tick_nimg, tick_time = cur_nimg, time.time()
        if done:
            break


def main(argv=None):
    args = parse_args(argv)
    common.run_main(args, lambda rank, world, device: bench(args, device) if args.bench
                    else check_precision(args, device) if args.check_precision else train(args, rank, world, device))


if __name__ == '__main__':
    main()
