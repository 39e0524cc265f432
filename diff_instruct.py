"""Diff-Instruct (Luo et al. 2023, arXiv 2305.18455): distil a diffusion teacher into a one-step generator.

  one GPU:      python diff_instruct.py --dataset cifar10 --teacher edm-cifar10-uncond
  8 GPUs:       torchrun --standalone --nproc_per_node=8 diff_instruct.py --dataset cifar10
  own teacher:  --teacher runs/teacher/checkpoint.pt

The method. G_θ(z) = D_θ(σ_init·z; σ_init) with z ~ N(0, I) makes images x₀ with distribution q. Diff-Instruct
minimises the integral KL ∫ w(σ) KL(q_σ ‖ p_σ) dσ between the noised generator and data distributions, whose
gradient is E[w(σ)·(s_q(x_σ) − s_p(x_σ))ᵀ ∂x_σ/∂θ] with x_σ = x₀ + σε. The data score s_p comes from the frozen
teacher; the generator's score s_q from a "fake" score network f_ψ trained online on generator samples with
EDM's loss. Since s = (D − x)/σ², the per-image surrogate Σ_pixels (D_fake(x_σ) − D_teacher(x_σ))·x₀, with both
denoisers evaluated without gradient, has gradient σ²(s_q − s_p) w.r.t. x₀: w(σ) = σ², σ ~ EDM's log-normal.
Each iteration: fake-score step(s), then one generator step. Defaults follow the official CIFAR-10 code, but
for those marked (ours) in --help.
"""
import argparse
import copy
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import common
import edm_import
import fid


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter, allow_abbrev=False)
    p.add_argument('--dataset', default='cifar10', help='cifar10 | fashion-mnist | folder or zip (reals grid, FID)')
    p.add_argument('--data-dir', default=common.DEFAULT_DATA_DIR, help='where cifar-10-python.tar.gz is downloaded')
    p.add_argument('--no-download', action='store_true', help='never download data or teacher')
    p.add_argument('--teacher', default='edm-cifar10-uncond',
                   help='teacher.py checkpoint, EDM .pkl/URL or short name (the paper: EDM CIFAR-10)')
    p.add_argument('--cond', type=int, default=0, help='class-conditional (needs a conditional teacher)')
    p.add_argument('--sigma-init', type=float, default=1.0, help='σ at which G evaluates the teacher net (DI)')
    p.add_argument('--batch', type=int, default=128, help='total batch over all GPUs (DI, CIFAR-10)')
    p.add_argument('--lr', type=float, default=1e-5, help='generator Adam lr (DI)')
    p.add_argument('--fake-lr', type=float, default=1e-5, help='fake-score Adam lr (DI)')
    p.add_argument('--betas', type=float, nargs=2, default=[0.0, 0.999], help='Adam betas, both nets (DI)')
    p.add_argument('--fake-steps', type=int, default=1, help='fake-score steps per generator step (DI)')
    p.add_argument('--augment', type=float, default=None, help='EDM\'s augmentation of the samples the fake score '
                   'trains on, with augment labels (DI: 0.12 for EDM\'s teachers); default: 0.12 when the teacher has '
                   'augment labels, else 0')
    p.add_argument('--ema-halflife-kimg', type=float, default=500, help='EMA half-life of G (DI)')
    p.add_argument('--total-kimg', type=float, default=50000, help='generator images to train on (ours)')
    common.add_runtime_args(p, outdir='runs/diff_instruct', tick_kimg=10, snapshot_ticks=10)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if min(args.batch, args.total_kimg, args.fake_steps, args.sigma_init, args.ema_halflife_kimg) <= 0 or min(
            args.lr, args.fake_lr) < 0 or not 0 <= (args.augment or 0) <= 1:
        p.error('--batch, --total-kimg, --fake-steps, --sigma-init and --ema-halflife-kimg must be positive, --lr and '
                '--fake-lr at least 0, --augment a probability')
    common.check_runtime_args(p, argv, args)
    return args


# ------------------------------------------------------------------------------------------------------
# The method: two losses, as pure functions (tests call them directly)
# ------------------------------------------------------------------------------------------------------

def fake_score_loss(fake, x0, labels=None, augment_pipe=None):
    """EDM's denoising loss of the fake score network on (stop-gradient) generator samples, per image; with an
    augment pipe the samples are augmented and the network is told how (as EDM trains the teacher), in float32
    whatever the autocast around it, as EDM augments (its resampling in bf16 would move pixels by up to 0.4)."""
    x0, augment_labels = x0.detach().float(), None
    if augment_pipe:
        with torch.autocast(x0.device.type, enabled=False):
            x0, augment_labels = augment_pipe(x0)
    return common.edm_loss(fake, x0, labels, augment_labels=augment_labels)


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


def generator_loss(teacher, fake, x0, sigma, noise, labels=None):
    """Σ_pixels (D_fake(x_σ) − D_teacher(x_σ))·x₀ per image, x_σ = x₀ + σ·noise; the denoisers get no gradient,
    so ∂/∂x₀ = D_fake − D_teacher = σ²(s_q − s_p): Diff-Instruct's KL gradient with w(σ) = σ². The two denoiser
    passes run in float32 whatever the precision around them: they are nearly equal networks and their difference
    is the whole signal, which in bf16 is partly rounding (results/NOTES.md, precision)."""
    x_sigma = x0.detach() + sigma * noise
    with torch.no_grad(), common.full_precision(x0.device.type):
        D_p, D_q = same_randomness(x0.device, lambda: teacher(x_sigma, sigma, labels),
                                   lambda: fake(x_sigma, sigma, labels))
    return ((D_q - D_p).to(x0.dtype) * x0).flatten(1).sum(1)


def random_labels(batch, num_classes, device):
    """One-hot labels of uniformly random classes (None when unconditional): what G makes and the fake score sees."""
    return None if not num_classes else F.one_hot(torch.randint(num_classes, (batch,), device=device),
                                                  num_classes).float()


def resolve_augment(augment, teacher):
    """--augment: as officially, 0.12 for teachers trained with EDM's augmentation (they read augment labels)."""
    if augment is None:
        return 0.12 if teacher.model.map_augment is not None else 0.0
    if augment and teacher.model.map_augment is None:
        raise ValueError(f'--augment {augment} needs a teacher with augment labels (augment_dim 9); this one has none')
    return augment


# ------------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------------

@dataclass
class Nets:
    """The networks and optimizers of a Diff-Instruct run. The last five are what the passes call: compiled when
    asked (wrap), and in DDP where a gradient is averaged over processes; by default the plain modules."""
    G: nn.Module
    fake: nn.Module
    teacher: nn.Module
    opt_G: torch.optim.Optimizer
    opt_fake: torch.optim.Optimizer
    G_sample: nn.Module = None      # the fake-score step's samples (no gradients)
    G_train: nn.Module = None       # the generator step's pass
    fake_eval: nn.Module = None     # the fake denoiser of the generator loss
    fake_train: nn.Module = None    # the fake-score step
    teacher_eval: nn.Module = None  # the teacher denoiser of the generator loss

    def __post_init__(self):
        self.G_sample, self.G_train = self.G_sample or self.G, self.G_train or self.G
        self.fake_eval, self.fake_train = self.fake_eval or self.fake, self.fake_train or self.fake
        self.teacher_eval = self.teacher_eval or self.teacher

    def wrap(self, compile, device, world):
        self.G_sample, self.fake_eval, self.teacher_eval = (common.maybe_compile(net, compile)
                                                            for net in (self.G, self.fake, self.teacher))
        self.G_train = common.ddp_wrap(self.G_sample, device, world)
        self.fake_train = common.ddp_wrap(self.fake_eval, device, world)
        return self


def build_nets(teacher, args, device):
    """Generator and fake score as trainable copies of the teacher (its EMA weights), Adam for both."""
    G = copy.deepcopy(teacher).requires_grad_(True)
    fake = copy.deepcopy(teacher).requires_grad_(True)
    return Nets(G, fake, teacher, common.make_adam(G.parameters(), args.lr, args.betas, device=device),
                common.make_adam(fake.parameters(), args.fake_lr, args.betas, device=device))


def iteration(nets, amp, batch, args, augment_pipe=None):
    """One Diff-Instruct iteration: args.fake_steps fake-score steps, then one generator step. Dropout as in the
    official code: on in the training passes, with teacher and fake sharing masks in the generator loss; G samples
    for the fake step without it."""
    G, label_dim = nets.G, nets.teacher.label_dim
    device = next(G.parameters()).device
    shape = [batch, G.img_channels, G.img_resolution, G.img_resolution]
    for _ in range(args.fake_steps):
        labels = random_labels(batch, label_dim, device)
        with torch.no_grad(), amp.autocast():
            G.eval()
            x0 = common.generate_one_step(nets.G_sample, torch.randn(shape, device=device), args.sigma_init, labels)
            G.train()
        nets.fake.train()
        with amp.autocast():
            loss_fake = fake_score_loss(nets.fake_train, x0, labels, augment_pipe).mean()
        nets.opt_fake.zero_grad(set_to_none=True)
        amp.backward(loss_fake)
        amp.step(nets.opt_fake)

    labels = random_labels(batch, label_dim, device)
    nets.teacher.train()  # dropout on in both denoisers, with shared masks
    with amp.autocast():
        x0 = common.generate_one_step(nets.G_train, torch.randn(shape, device=device), args.sigma_init, labels)
        sigma = common.edm_sigma(batch, device)
        loss_G = generator_loss(nets.teacher_eval, nets.fake_eval, x0, sigma, torch.randn_like(x0), labels).mean()
    nets.teacher.eval()
    nets.opt_G.zero_grad(set_to_none=True)
    amp.backward(loss_G)
    amp.step(nets.opt_G)
    return loss_fake.detach(), loss_G.detach()


def train(args, rank, world, device, init_generator=None):
    """init_generator(G, teacher, data, device), if given, re-initialises G in place before training (used by
    scratch_init.py for the initialisation study); by default G starts as the teacher."""
    if args.batch % world:
        raise SystemExit(f'error: --batch {args.batch} is not divisible by the {world} processes')
    allow = not args.no_download
    common.preflight([lambda: common.dataset_source(args.dataset, args.data_dir, allow),
                      lambda: edm_import.teacher_checkpoint(args.teacher, allow), *fid.preflight(args, allow)])
    ckpt = common.load_resume(args, 'generator', 'diff_instruct', ['dataset', 'teacher', 'cond', 'sigma_init', 'batch',
                                                                   'fake_steps', 'augment', 'seed'])
    torch.manual_seed(args.seed * world + rank)
    amp = common.Precision(device, args.precision)
    batch = args.batch // world
    teacher, teacher_path = edm_import.load_teacher(args.teacher, device, allow)
    data = common.load_dataset(args.dataset, args.data_dir, 'train', allow)
    common.check_teacher_fits_data(teacher, data, args.cond)
    if rank == 0:
        os.makedirs(args.outdir, exist_ok=True)
    log = common.Logger(args.outdir, rank)
    fid_ref = fid.reference_stats(args.fid_ref, data, device, args.inception, rank)
    augment = resolve_augment(args.augment, teacher)
    pipe = common.AugmentPipe(augment) if augment else None
    nets = build_nets(teacher, args, device)
    G = nets.G
    if init_generator is not None and not args.resume:
        init_generator(G, teacher, data, device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    cur_nimg = 0
    if ckpt:
        for net, key in ((G, 'G'), (nets.fake, 'fake'), (G_ema, 'ema')):
            common.load_net_state(net, ckpt[key], ckpt['path'])
        nets.opt_G.load_state_dict(ckpt['opt_G'])
        nets.opt_fake.load_state_dict(ckpt['opt_fake'])
        common.set_rng_state(common.pick_rank_state(ckpt['rng'], rank))
        cur_nimg = ckpt['cur_nimg']
        common.print0(f'resumed from {ckpt["path"]} at {cur_nimg / 1000:.1f} kimg', rank=rank)
    resumed, ckpt = ckpt is not None, None  # the states are in the nets now
    nets.wrap(args.compile, device, world)
    common.print0(f'diff_instruct: teacher {teacher_path}  {sum(p.numel() for p in G.parameters()) / 1e6:.2f}M '
                  f'params per net  σ_init {args.sigma_init}  fake-score augmentation {augment}  world {world}  '
                  f'device {device}  precision {amp.name} (teacher and fake denoisers of the generator loss: fp32)',
                  rank=rank)

    grid_seeds = list(range(args.grid))
    sample = common.one_step_sampler(G_ema, args.sigma_init, device)
    grid = lambda seeds: sample(seeds, common.grid_labels(len(seeds), G.label_dim, device))  # noqa: E731
    if rank == 0 and not resumed:
        common.save_grid(common.reals_grid(data, args.grid), os.path.join(args.outdir, 'reals.png'))
        common.save_grid(grid(grid_seeds), os.path.join(args.outdir, 'fakes_init.png'))
    if fid_ref and args.fid_at_start and cur_nimg == 0:  # the first point of the FID curve: the initial G
        log(fid.fid_point(sample, args, fid_ref, device, rank, world, 0.0))

    tick, tick_nimg, tick_time, tick_losses = 0, cur_nimg, time.time(), []
    while True:
        tick_losses.append(torch.stack(iteration(nets, amp, batch, args, pipe)))
        common.ema_update(G_ema, G, common.ema_beta(cur_nimg, args.batch, args.ema_halflife_kimg))
        cur_nimg += args.batch
        done = cur_nimg >= round(args.total_kimg * 1000)  # whole images: x·1000 is not exact in floats
        if not done and cur_nimg < tick_nimg + round(args.tick_kimg * 1000):
            continue

        common.sync(device)
        loss_fake, loss_G = common.all_reduce_mean(torch.stack(tick_losses).mean(0), world).tolist()  # tick's mean
        pixels = G.img_channels * G.img_resolution ** 2  # the fake-score loss is logged per pixel, as EDM does
        losses = {'loss_fake': loss_fake / pixels, 'loss_G': loss_G}
        common.check_finite(losses, cur_nimg)
        log({'tick': tick, 'step': cur_nimg // args.batch, 'kimg': round(cur_nimg / 1000, 3), **losses,
             **common.tick_speed(cur_nimg, tick_nimg, tick_time, device)})
        tick += 1
        if done or tick % args.snapshot_ticks == 0:
            rngs = common.gather_states(common.rng_state(), world)
            if rank == 0:
                state = {'kind': 'generator', 'format': common.FORMAT, 'method': 'diff_instruct',
                         'config': vars(args), 'net_config': G.config, 'sigma_init': args.sigma_init,
                         'teacher': teacher_path, 'ema': G_ema.state_dict(), 'G': G.state_dict(),
                         'fake': nets.fake.state_dict(), 'opt_G': nets.opt_G.state_dict(),
                         'opt_fake': nets.opt_fake.state_dict(), 'rng': rngs, 'cur_nimg': cur_nimg}
                common.save_one_step_snapshot(args.outdir, state, grid, grid_seeds, done)
            if fid_ref:
                log(fid.fid_point(sample, args, fid_ref, device, rank, world, round(cur_nimg / 1000, 3)))
            if world > 1:
                torch.distributed.barrier()
        tick_nimg, tick_time, tick_losses = cur_nimg, time.time(), []
        if done:
            break


def main(argv=None):
    args = parse_args(argv)
    common.run_main(args, lambda rank, world, device: train(args, rank, world, device))


if __name__ == '__main__':
    main()
