"""Score-free one-step training (arXiv 2502.08005, "DiffRatio"): a density ratio instead of teacher scores.

  one GPU:   python score_free.py --dataset cifar10
  8 GPUs:    torchrun --standalone --nproc_per_node=8 score_free.py --dataset cifar10
  members:   --divergence rkl (DiKL, default) | js (DiJS) | fkl | hellinger
  ablation:  --cls-init random --cls-frozen-levels 0 (the classifier without the teacher's encoder)
  the spec:  --weight sigma2 --gen-sigma-max inf (the exact counterpart of Diff-Instruct)
  verifier:  python score_free.py verify --ckpt runs/score_free/generator.pt --k 4 --ref refs/cifar10-train.npz

The method. The generator G_θ(z) = D_θ(σ_init·z; σ_init) is initialised from a diffusion teacher, exactly as in
Diff-Instruct; what changes is how the score difference s_q − s_p of the noised generator (q_σ) and data (p_σ)
distributions is estimated. s_q − s_p = ∇ₓ log(q_σ/p_σ), and a classifier c_φ(x, σ) trained with binary
cross-entropy to tell noisy generated samples (label 1) from noisy real images (label 0), same σ for both,
converges to the log-ratio c* = log q_σ − log p_σ. No teacher forward pass and no fake score network are
needed: the data set is used instead. For an f-divergence D_f(p_σ ‖ q_σ) = E_q[f(p_σ/q_σ)], with u = e^{−c},
    ∇_θ D_f = E[ h(c)·∇ₓc(x_σ, σ)ᵀ ∂x_σ/∂θ ],    h(c) = u² f''(u),
so one generator loss covers the family:  L_G = E[ w(σ) · stopgrad(h(c)) · c_φ(G(z) + σε, σ) ]  (φ frozen).
With w(σ) = σ² and h = 1 (reverse KL) its expected gradient is exactly Diff-Instruct's (--weight sigma2
--gen-sigma-max inf, the spec). The default recipe differs where real images showed it must (results/NOTES.md,
"the pilot"): a learned classifier saturates at small σ and is near chance at large σ, so each image's ∇ₓc is
rescaled to unit RMS (--weight normalized), the generator's σ is drawn only up to 2 (--gen-sigma-max 2), and the
classifier takes two steps per generator step, each on half of the iteration's batch (--cls-steps 2), so that it
keeps ahead of the generator it judges. The classifier is the teacher U-Net's encoder half (same blocks and σ
embedding), pooled, with a linear head; all but its coarsest resolution keep the teacher's weights
(--cls-frozen-levels -1). With the split steps this makes an iteration 0.43-0.48x Diff-Instruct's time on CPU,
and a better generator on Fashion-MNIST than training every weight (results/NOTES.md, issue 47).
"""
import argparse
import contextlib
import copy
import math
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

DIVERGENCES = ('rkl', 'js', 'fkl', 'hellinger')
WEIGHTS = ('normalized', 'sigma2')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter, allow_abbrev=False)
    p.add_argument('--dataset', default='cifar10', help='cifar10 | fashion-mnist | folder or zip of images (the reals)')
    p.add_argument('--data-dir', default=common.DEFAULT_DATA_DIR, help='where cifar-10-python.tar.gz is downloaded')
    p.add_argument('--no-download', action='store_true', help='never download data or teacher')
    p.add_argument('--teacher', default='edm-cifar10-uncond',
                   help='initialisation only: teacher.py checkpoint, EDM .pkl/URL or short name (the paper: EDM)')
    p.add_argument('--cond', type=int, default=0, help='class-conditional (needs a conditional teacher)')
    p.add_argument('--divergence', default='rkl', choices=DIVERGENCES, help='the member of the family (rkl = DiKL)')
    p.add_argument('--weight', default='normalized', choices=WEIGHTS,
                   help='w(σ) of the generator loss: normalized = each image\'s ∇ₓc at unit RMS (ours, the pilot); '
                        'sigma2 = the spec, Diff-Instruct\'s exact counterpart')
    p.add_argument('--gen-sigma-max', type=float, default=2.0,
                   help='the generator\'s σ: EDM\'s log-normal truncated to σ ≤ this (ours, the pilot: above it the '
                        'classifier is near chance); inf = the spec')
    p.add_argument('--sigma-init', type=float, default=1.0, help='σ at which G evaluates the net (Diff-Instruct)')
    p.add_argument('--cls-init', default='teacher', choices=['teacher', 'random'],
                   help='classifier encoder from the teacher (the paper) or random')
    p.add_argument('--cls-steps', type=int, default=2,
                   help='K classifier steps per generator step, the i-th on the i-th of K equal parts of the '
                        'iteration\'s generated and real batch: K updates at one full-batch step\'s compute (ours, '
                        'issue 47); 1 = the spec ("one (or k)")')
    p.add_argument('--cls-frozen-levels', type=int, default=-1,
                   help='the embedding (σ, labels) and the encoder resolutions [:N] (a Python slice, finest first: '
                        '-1 = all but the coarsest, e.g. 32² and 16² of 32/16/8) keep the teacher\'s weights; the '
                        'coarsest and the head train (ours, issue 47); 0 = all trained, the spec')
    p.add_argument('--cls-warmup', type=int, default=100,
                   help='iterations of classifier steps only before the first generator step (ours, the pilot)')
    p.add_argument('--batch', type=int, default=128, help='total batch over all GPUs (Diff-Instruct)')
    p.add_argument('--lr', type=float, default=1e-5, help='generator Adam lr, betas (0, 0.999) (Diff-Instruct)')
    p.add_argument('--cls-lr', type=float, default=1e-3, help='classifier Adam lr, betas (0, 0.999) (ours, the '
                   'pilot: at the generator\'s lr it stays at chance)')
    p.add_argument('--ema-halflife-kimg', type=float, default=500, help='EMA half-life of G (Diff-Instruct)')
    p.add_argument('--total-kimg', type=float, default=50000, help='generator images to train on (ours)')
    common.add_runtime_args(p, outdir='runs/score_free', tick_kimg=10, snapshot_ticks=10)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if min(args.batch, args.total_kimg, args.cls_steps, args.sigma_init, args.gen_sigma_max, args.cls_lr,
           args.ema_halflife_kimg) <= 0 or args.lr < 0 or args.cls_warmup < 0:
        p.error('--batch, --total-kimg, --cls-steps, --sigma-init, --gen-sigma-max, --cls-lr and --ema-halflife-kimg '
                'must be positive, --lr and --cls-warmup at least 0')
    if args.cls_frozen_levels and args.cls_init != 'teacher':
        p.error('--cls-init random has no teacher weights to keep: add --cls-frozen-levels 0')
    common.check_runtime_args(p, argv, args)
    return args


# ------------------------------------------------------------------------------------------------------
# The method: h(c), the two losses, the generator's σ, the classifier
# ------------------------------------------------------------------------------------------------------

def f_weight(logit, divergence):
    """h(c) = u²f''(u) at u = p/q = e^{−c}, for D_f(p ‖ q) = E_q[f(p/q)]:
      rkl        f = −log u                                    h = 1
      js         f = ½[u log u − (1+u) log((1+u)/2)]           h = u/(2(1+u)) = ½·sigmoid(−c)
      fkl        f = u log u                                   h = u = e^{−c}
      hellinger  f = (√u − 1)²                                 h = ½·u^{1/2} = ½·e^{−c/2}
    Computed without overflow: the exponent is clipped to ±80 (e^80 ≈ 5.5e34 < float32's max)."""
    c = logit.float()
    if divergence == 'rkl':
        return torch.ones_like(c)
    if divergence == 'js':
        return 0.5 * torch.sigmoid(-c)
    if divergence == 'fkl':
        return torch.exp((-c).clamp(-80, 80))
    if divergence == 'hellinger':
        return 0.5 * torch.exp((-c / 2).clamp(-80, 80))
    raise ValueError(f'unknown divergence {divergence!r}; choose one of {DIVERGENCES}')


def generator_loss(classifier, x0, sigma, noise, divergence, weight='sigma2', labels=None):
    """Per image: w(σ)·stopgrad(h(c))·c_φ(x₀ + σ·noise, σ). The classifier's weights are not updated here, but
    the gradient flows through c_φ into x₀ and on into the generator: ∇ = w·h(c)·∇ₓc ∂x/∂θ. With w = σ², where
    σ²∇ₓc* = D_q − D_p stays bounded, this is Diff-Instruct's gradient for an exact ratio."""
    if weight == 'normalized':
        return normalized_generator_loss(classifier, x0, sigma, noise, divergence, labels)
    c = classifier(x0 + sigma * noise, sigma, labels)
    return sigma.flatten() ** 2 * f_weight(c, divergence).detach() * c


def normalized_generator_loss(classifier, x0, sigma, noise, divergence, labels=None):
    """As generator_loss, but each image's ∇ₓc is rescaled to unit RMS per pixel before h(c) multiplies it (cf.
    DMD's normalisation of its score difference): a BCE-trained classifier saturates where the two sides are easy
    to tell apart (small σ), so its input gradient there is far smaller than the true log-ratio's, and with w = σ²
    the update would come almost only from large σ. The surrogate Σ_pixels stopgrad(g)·x₀ has gradient g w.r.t.
    x₀ (as Diff-Instruct's); the value returned is h(c)·c."""
    x = (x0 + sigma * noise).detach().requires_grad_(True)
    with torch.enable_grad():
        c = classifier(x, sigma, labels)
        g, = torch.autograd.grad(c.sum(), x)
    g = g.float() / g.float().flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-20).reshape(-1, 1, 1, 1)
    h = f_weight(c, divergence).detach()
    surrogate = (g * h.reshape(-1, 1, 1, 1) * x0.float()).flatten(1).sum(1)  # h survives the rescaling
    return surrogate - surrogate.detach() + h * c.detach()  # its value, for the log: h(c)·c


def classifier_side_loss(classifier, x, sigma, labels=None, generated=True):
    """One side of the classifier's binary cross-entropy (generated = 1, real = 0), x noised with σ: per image, and
    the side's accuracy (logit > 0 = generated)."""
    c = classifier(x.detach() + sigma * torch.randn_like(x), sigma, labels)
    loss = F.softplus(-c if generated else c)  # −log σ(c) for generated, −log(1 − σ(c)) for real
    return loss, ((c > 0) if generated else (c < 0)).float().mean()


def classifier_loss(classifier, fake, real, sigma, labels_fake=None, labels_real=None):
    """The classifier's loss per pair of images (one generated, one real, both noised with the same σ) and the
    accuracy on each side. Training backpropagates the two sides one after the other (classifier_step)."""
    loss_fake, acc_fake = classifier_side_loss(classifier, fake, sigma, labels_fake, True)
    loss_real, acc_real = classifier_side_loss(classifier, real, sigma, labels_real, False)
    return loss_fake + loss_real, acc_fake, acc_real


def generator_sigma(batch, device, sigma_max, P_mean=-1.2, P_std=1.2):
    """The generator step's σ: EDM's log-normal (the spec), or the same conditioned on σ ≤ sigma_max, by the inverse
    CDF (every image counts, no rejection, no host sync): u uniform below F(sigma_max), σ = F⁻¹(u). Truncating
    gives a masked loss's expected gradient up to the constant factor F(sigma_max), from the whole batch."""
    if sigma_max == float('inf'):
        return common.edm_sigma(batch, device, P_mean, P_std)
    F_max = 0.5 * math.erfc(-(math.log(sigma_max) - P_mean) / (P_std * math.sqrt(2)))
    u = F_max * torch.rand([batch, 1, 1, 1], device=device, dtype=torch.float64)
    return (P_mean + P_std * torch.special.ndtri(u)).exp().float().clamp(max=sigma_max)


class Classifier(nn.Module):
    """c_φ(x, σ) -> one logit: EDM's preconditioned input c_in·x and c_noise = ln(σ)/4 through the teacher's σ
    embedding and encoder blocks (DDPM++ or ADM; the same names, so the teacher's weights load), then GroupNorm,
    SiLU, global average pooling and a zero-initialised linear head, so that training starts at logit 0 (ratio 1).
    Class-conditional: + ⟨label projection, pooled features⟩."""

    def __init__(self, teacher_config):
        super().__init__()
        self.sigma_data, self.label_dim = teacher_config['sigma_data'], teacher_config['label_dim']
        self.model = common.EDMPrecond(**dict(teacher_config, dropout=0.0)).model  # the teacher's U-Net ...
        self.model.drop_decoder()  # ... its embedding and encoder only
        width = list(self.model.enc.values())[-1].out_channels
        self.head_norm = common.GroupNorm(width)
        self.head = common.Linear(width, 1, init_weight=0)
        self.label_proj = common.Linear(self.label_dim, width, bias=False, init_weight=0) if self.label_dim else None

    def forward(self, x, sigma, class_labels=None):
        x = x.to(torch.float32)
        if x.device.type == 'cpu':  # torch 2.13's CPU GroupNorm backward crashes on a channels_last input that needs
            x = x.contiguous()      # no gradient, which is what a frozen level hands the first trained block
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1, 1, 1)
        sigma = sigma.expand(x.shape[0], 1, 1, 1)
        c_in = 1 / (self.sigma_data ** 2 + sigma ** 2).sqrt()
        labels = None
        if self.label_dim:
            labels = (torch.zeros([x.shape[0], self.label_dim], device=x.device) if class_labels is None
                      else class_labels.to(torch.float32))
        emb = self.model.embed((sigma.log() / 4).flatten(), labels)
        h = F.silu(self.head_norm(self.model.encode(c_in * x, emb)[-1])).mean(dim=(2, 3))
        logit = self.head(h)[:, 0]
        if self.label_proj is not None:
            logit = logit + (self.label_proj(labels).to(h.dtype) * h).sum(1)
        return logit.float()

    def load_teacher_encoder(self, teacher_state):
        """Copy the teacher's mapping network and encoder; every classifier 'model.*' tensor must be there."""
        own = {k: v for k, v in self.state_dict().items() if k.startswith('model.')}
        missing = [k for k in own if k not in teacher_state or teacher_state[k].shape != own[k].shape]
        if missing:
            raise ValueError(f'teacher weights do not fit the classifier encoder: {missing[:5]}')
        self.load_state_dict({k: teacher_state[k] for k in own}, strict=False)

    def freeze_levels(self, levels):
        """Hold the embedding (σ, labels) and the encoder's resolutions [:levels] (finest first) at their weights;
        0 freezes nothing. Nothing below the trained blocks then needs a gradient in a classifier step, so autograd
        skips their backward pass."""
        res = [int(name.split('x')[0]) for name in self.model.enc]  # each block's level: the resolution it outputs
        n = len(set(res))
        if not -n < levels <= n:
            raise ValueError(f'--cls-frozen-levels {levels}: the encoder has {n} resolutions (valid: {1 - n} to {n})')
        if levels == 0:
            return
        frozen = sorted(set(res), reverse=True)[:levels]
        self.model.requires_grad_(False)
        for r, block in zip(res, self.model.enc.values()):
            block.requires_grad_(r not in frozen)


# ------------------------------------------------------------------------------------------------------
# The ratio as a verifier (the paper's v5): k candidates per image, one kept by the classifier
# ------------------------------------------------------------------------------------------------------

VERIFIER_RULES = ('resample', 'best')
# Options of the classifier that were tried and removed (results/NOTES.md); commit eb25876 still reads their runs.
REMOVED_OPTIONS = {'cls_head': 'pool', 'cls_loss': 'image', 'cls_global': 0, 'cls_head_norm': 1, 'cls_dropout': 0.0}


def load_classifier(ckpt, device):
    """The classifier saved with a score-free run (generator.pt or checkpoint.pt), frozen."""
    if ckpt.get('method') != 'score_free' or 'classifier' not in ckpt:
        raise ValueError('the ratio verifier needs a score-free checkpoint with its classifier (a generator.pt '
                         'written by score_free.py)')
    for key, default in REMOVED_OPTIONS.items():
        if ckpt['config'].get(key, default) != default:
            raise ValueError(f'this classifier was trained with --{key.replace("_", "-")} '
                             f'{ckpt["config"][key]}, an option since removed; `git checkout eb25876` reads it')
    cls = Classifier(ckpt['net_config'])
    common.load_net_state(cls, ckpt['classifier'], 'the checkpoint\'s classifier')
    return cls.to(device).eval().requires_grad_(False)


def verified_sampler(G, cls, sigma_init, device, k, sigma=0.1, rule='resample'):
    """sample(seeds) -> uint8 images, with the density ratio as a verifier: draw k one-step candidates per image,
    score each by the classifier's logit c = log q_σ/p_σ at a small σ, and keep
      resample  candidate j with probability ∝ e^{−c_j} = p_σ/q_σ: self-normalised importance resampling from the
                generator towards the data (with an exact ratio, k → ∞ draws from p_σ); keeps diversity
      best      the candidate with the smallest c (best-of-k: sharper, but it trades diversity away)
    Every random choice comes from per-seed streams: image i depends only on seed i, and k = 1 is the plain
    one-step sampler (candidate j of seed s has latent seed s·k + j)."""
    if rule not in VERIFIER_RULES or k < 1:
        raise ValueError(f'verifier: rule must be one of {VERIFIER_RULES} and k at least 1, not {rule!r}, {k}')
    shape = [G.img_channels, G.img_resolution, G.img_resolution]

    @torch.no_grad()
    def sample(seeds):
        candidates = [int(s) * k + j for s in seeds for j in range(k)]
        labels = common.seeded_labels(seeds, G.label_dim, device)
        labels = None if labels is None else labels.repeat_interleave(k, 0)
        x = common.generate_one_step(G, common.seeded_latents(candidates, shape, device), sigma_init, labels)
        if k == 1:
            return common.to_uint8(x)
        noise = common.seeded_latents([c + (2 << 40) for c in candidates], shape, device)
        c = cls(x + sigma * noise, torch.full([len(candidates)], float(sigma), device=device), labels)
        c = c.reshape(len(seeds), k)
        if rule == 'best':
            pick = c.argmin(1)
        else:
            pick = torch.stack([torch.multinomial(torch.softmax(-row.double().cpu(), 0), 1,
                                                  generator=torch.Generator().manual_seed(int(s) + (3 << 40)))[0]
                                for row, s in zip(c, seeds)]).to(device)
        return common.to_uint8(x.reshape(len(seeds), k, *shape)[torch.arange(len(seeds), device=device), pick])
    return sample


def verify_main(argv):
    """python score_free.py verify: FID (or the saved samples) of a score-free generator with its own verifier."""
    p = argparse.ArgumentParser(prog='score_free.py verify', description=verify_main.__doc__,
                                formatter_class=common.HelpFormatter, allow_abbrev=False)
    p.add_argument('--ckpt', required=True, help='generator.pt (or checkpoint.pt) of a score-free run')
    p.add_argument('--k', type=int, default=4, help='candidates per image; 1 = the plain one-step sampler')
    p.add_argument('--sigma', type=float, default=0.1, help='σ at which the classifier scores them (ours)')
    p.add_argument('--rule', default='resample', choices=VERIFIER_RULES, help='resample ∝ e^{-c} (ours) | best')
    p.add_argument('--num', type=int, default=50000, help='images (seeds 0..num-1; the standard FID: 50000)')
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument('--ref', help='FID against these reference statistics (fid.py ref)')
    out.add_argument('--out', help='write the images to this zip instead (fid.py calc --images measures it)')
    p.add_argument('--inception', default=None, help='local Inception weights (offline); default: download')
    p.add_argument('--batch', type=int, default=250, help='images per pass (each of k candidates: k x the memory)')
    p.add_argument('--device', default='auto', help='auto | cuda | cpu')
    args = p.parse_args(argv)
    if args.k < 1 or args.sigma <= 0 or args.num < 2 or args.batch < 1:
        p.error('--k and --batch must be at least 1, --sigma positive and --num at least 2')
    if args.out:
        common.refuse_flags(p, argv, ['inception'], 'with --out (no FID is computed)')
    if args.k == 1:
        common.refuse_flags(p, argv, ['sigma', 'rule'], 'with --k 1 (the plain sampler scores nothing)')
    device = torch.device(('cuda' if torch.cuda.is_available() else 'cpu') if args.device == 'auto' else args.device)
    try:
        ckpt = common.load_checkpoint(args.ckpt, 'generator')
        G = common.EDMPrecond(**ckpt['net_config']).eval().requires_grad_(False)
        G.load_state_dict(ckpt['ema'])
        sample = verified_sampler(common.to_device(G, device), load_classifier(ckpt, device), ckpt['sigma_init'],
                                  device, args.k, args.sigma, args.rule)
        if args.ref:
            fid.load_ref(args.ref)  # a wrong --ref stops here, before any sampling
        if args.out:
            fid.save_samples(sample, args.num, args.out, batch=args.batch)
            print(f'wrote {args.out}: {args.num} images of {args.ckpt}, verifier k {args.k}')
            return
        value = fid.fid_in_loop(sample, args.num, args.ref, device, args.inception, batch=args.batch)
        print(f'{fid.metric_name(args.num)} {value:.4f}')
        return value
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)


# ------------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------------

@dataclass
class Nets:
    """The networks and optimizers of a score-free run. The last three are what the passes call: compiled when
    asked (wrap), and in DDP where a gradient is averaged over processes; by default the plain modules."""
    G: nn.Module
    cls: Classifier
    opt_G: torch.optim.Optimizer
    opt_cls: torch.optim.Optimizer
    G_train: nn.Module = None    # the generator pass that the generator step backpropagates through
    cls_eval: nn.Module = None   # the classifier the generator step looks through (φ frozen)
    cls_train: nn.Module = None  # the classifier step

    def __post_init__(self):
        self.G_train = self.G_train or self.G
        self.cls_eval, self.cls_train = self.cls_eval or self.cls, self.cls_train or self.cls

    def wrap(self, compile, device, world):
        self.G_train = common.ddp_wrap(common.maybe_compile(self.G, compile), device, world)
        self.cls_eval = common.maybe_compile(self.cls, compile)
        self.cls_train = common.ddp_wrap(self.cls_eval, device, world)
        return self


def build_nets(teacher, args, device):
    """G as a trainable copy of the teacher (dropout as the teacher's), the classifier, and Adam for both."""
    G = copy.deepcopy(teacher).requires_grad_(True).train()
    cls = common.to_device(Classifier(teacher.config), device)
    if args.cls_init == 'teacher':
        cls.load_teacher_encoder(teacher.state_dict())
    if args.cls_frozen_levels:
        cls.freeze_levels(args.cls_frozen_levels)
    betas = (0.0, 0.999)  # Diff-Instruct's, for the generator and (as its fake score) the classifier
    return Nets(G, cls, common.make_adam(G.parameters(), args.lr, betas, device=device),
                common.make_adam([q for q in cls.parameters() if q.requires_grad], args.cls_lr, betas, device=device))


def set_trainable(nets, flag):
    """Switch the classifier's trained weights (those its optimizer holds) on or off; frozen ones stay off."""
    for q in nets.opt_cls.param_groups[0]['params']:
        q.requires_grad_(flag)


def classifier_step(nets, amp, fake, real, sigma, labels_fake, labels_real):
    """One classifier update on the mean pair loss. The generated side runs forward and backward before the real
    side does: the same gradient as one pass over both (every layer treats images independently), with half the
    activation memory while the generator step's graph of x₀ waits. Under DDP the first backward skips the
    all-reduce (no_sync), the second averages the summed gradient once."""
    nets.opt_cls.zero_grad(set_to_none=True)
    losses, accs = [], []
    for generated, x, labels in ((True, fake, labels_fake), (False, real, labels_real)):
        defer = nets.cls_train.no_sync() if generated and hasattr(nets.cls_train, 'no_sync') else contextlib.nullcontext()
        with defer:
            with amp.autocast():
                loss, acc = classifier_side_loss(nets.cls_train, x, sigma, labels, generated)
                loss = loss.mean()
            amp.backward(loss)
        losses.append(loss.detach()), accs.append(acc)
    amp.step(nets.opt_cls)
    return losses[0] + losses[1], accs[0], accs[1]


def iteration(nets, amp, reals, batch, args, train_G=True):
    """One score-free iteration; returns [classifier loss, generator loss, accuracy on generated, on real].
    One generator pass x₀ = G(z) serves both halves: (1) args.cls_steps classifier steps, the i-th on the i-th part of
    x₀.detach() and of the real batch, so the classifier has seen the current generator before it is used (k
    Adam updates at one full-batch step's compute, no second generator pass); (2) one generator step through the
    updated, frozen classifier on the whole x₀. The classifier loss and accuracies returned are the last part's.
    train_G=False (the warm-up) skips (2)."""
    G = nets.G  # in train mode: dropout on, so the classifier learns the generator that the generator step trains
    shape = [batch, G.img_channels, G.img_resolution, G.img_resolution]
    real, labels = next(reals)  # a conditional generator makes the classes of the real batch
    labels = labels if G.label_dim else None
    with torch.set_grad_enabled(train_G), amp.autocast():
        x0 = common.generate_one_step(nets.G_train, torch.randn(shape, device=real.device), args.sigma_init, labels)
    set_trainable(nets, True)
    k = args.cls_steps
    parts_y = [None] * k if labels is None else labels.tensor_split(k)
    for fake, r, y in zip(x0.tensor_split(k), real.tensor_split(k), parts_y):
        loss_cls, acc_fake, acc_real = classifier_step(nets, amp, fake, r, common.edm_sigma(len(r), r.device), y, y)
    if not train_G:
        return torch.stack([loss_cls.detach(), torch.zeros_like(loss_cls), acc_fake, acc_real])

    set_trainable(nets, False)  # φ frozen: gradients flow through c_φ into x₀ and on into G
    with amp.autocast():
        sigma = generator_sigma(batch, real.device, args.gen_sigma_max)
        loss_G = generator_loss(nets.cls_eval, x0, sigma, torch.randn_like(x0), args.divergence, args.weight,
                                labels).mean()
    nets.opt_G.zero_grad(set_to_none=True)
    amp.backward(loss_G)
    amp.step(nets.opt_G)
    return torch.stack([loss_cls.detach(), loss_G.detach(), acc_fake, acc_real])


def train(args, rank, world, device, init_generator=None):
    """init_generator(G, teacher, data, device), if given, re-initialises G in place before training (used by
    scratch_init.py for the initialisation study); by default G starts as the teacher."""
    if args.batch % (world * args.cls_steps):
        raise ValueError(f'--batch {args.batch} must split into {world} process batches of --cls-steps '
                         f'{args.cls_steps} equal parts (each classifier step takes one part)')
    allow = not args.no_download
    common.preflight([lambda: common.dataset_source(args.dataset, args.data_dir, allow),
                      lambda: edm_import.teacher_checkpoint(args.teacher, allow), *fid.preflight(args, allow)])
    ckpt = common.load_resume(args, 'generator', 'score_free', ['dataset', 'teacher', 'cond', 'divergence', 'weight',
                                                                'gen_sigma_max', 'sigma_init', 'batch', 'cls_steps',
                                                                'cls_init', 'cls_frozen_levels',
                                                                'cls_warmup', 'seed'])
    torch.manual_seed(args.seed * world + rank)
    amp = common.Precision(device, args.precision)
    batch = args.batch // world
    teacher, teacher_path = edm_import.load_teacher(args.teacher, device, allow)
    data = common.load_dataset(args.dataset, args.data_dir, 'train', allow)
    common.print0(f'data: {data.name}  {len(data)} images  {data.checksum or ""}', rank=rank)
    common.check_teacher_fits_data(teacher, data, args.cond)
    reals = common.BatchSampler(data, batch, device, args.seed, rank)
    if rank == 0:
        os.makedirs(args.outdir, exist_ok=True)
    log = common.Logger(args.outdir, rank)
    nets = build_nets(teacher, args, device)  # before the FID statistics: a bad --cls-frozen-levels fails at once
    fid_ref = fid.reference_stats(args.fid_ref, data, device, args.inception, rank)
    G, cls = nets.G, nets.cls
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    if init_generator is not None and not args.resume:
        init_generator(G, teacher, data, device)
        G_ema.load_state_dict(G.state_dict())
    del teacher  # from here on the teacher is not used: no teacher forward pass, no score network
    cur_nimg = 0
    if ckpt:
        for net, key in ((G, 'G'), (cls, 'classifier'), (G_ema, 'ema')):
            common.load_net_state(net, ckpt[key], ckpt['path'])
        nets.opt_G.load_state_dict(ckpt['opt_G'])
        nets.opt_cls.load_state_dict(ckpt['opt_cls'])
        reals.load_state_dict(common.pick_rank_state(ckpt['sampler'], rank))
        common.set_rng_state(common.pick_rank_state(ckpt['rng'], rank))
        cur_nimg = ckpt['cur_nimg']
        common.print0(f'resumed from {ckpt["path"]} at {cur_nimg / 1000:.1f} kimg', rank=rank)
    resumed, ckpt = ckpt is not None, None  # the states are in the nets now
    nets.wrap(args.compile, device, world)
    common.print0(f'score_free: divergence {args.divergence}  teacher {teacher_path} (init only)  G '
                  f'{sum(p.numel() for p in G.parameters()) / 1e6:.2f}M  classifier '
                  f'{sum(p.numel() for p in cls.parameters()) / 1e6:.2f}M ({args.cls_init} init, '
                  f'{sum(q.numel() for q in nets.opt_cls.param_groups[0]["params"]) / 1e6:.2f}M trained)  '
                  f'world {world}  device {device}  precision {amp.name}', rank=rank)

    grid_seeds = list(range(args.grid))
    sample = common.one_step_sampler(G_ema, args.sigma_init, device)
    grid = lambda seeds: sample(seeds, common.grid_labels(len(seeds), G.label_dim, device))  # noqa: E731
    if rank == 0 and not resumed:
        common.save_grid(common.reals_grid(data, args.grid), os.path.join(args.outdir, 'reals.png'))
        common.save_grid(grid(grid_seeds), os.path.join(args.outdir, 'fakes_init.png'))
    if fid_ref and args.fid_at_start and cur_nimg == 0:  # the first point of the FID curve: the initial G
        log(fid.fid_point(sample, args, fid_ref, device, rank, world, 0.0))

    if cur_nimg == 0 and args.cls_warmup:  # the classifier learns to tell the two apart before G follows it
        progress, t0 = common.Progress('classifier warm-up', args.cls_warmup, 'iterations', rank), time.time()
        for i in range(args.cls_warmup):
            stats = iteration(nets, amp, reals, batch, args, train_G=False)
            progress.update(1)
            if i == 0 or i == args.cls_warmup - 1:
                values = common.all_reduce_mean(stats, world).tolist()
                common.print0(f'classifier warm-up step {i + 1}/{args.cls_warmup}: loss_cls {values[0]:.4f}  '
                              f'acc_fake {values[2]:.3f}  acc_real {values[3]:.3f}', rank=rank)
        log({'kimg': 0.0, 'warmup_iterations': args.cls_warmup, 'warmup_s': time.time() - t0})  # training time too
    tick, tick_nimg, tick_time, tick_stats = 0, cur_nimg, time.time(), []
    while True:
        tick_stats.append(iteration(nets, amp, reals, batch, args))
        common.ema_update(G_ema, G, common.ema_beta(cur_nimg, args.batch, args.ema_halflife_kimg))
        cur_nimg += args.batch
        done = cur_nimg >= round(args.total_kimg * 1000)  # whole images: x·1000 is not exact in floats
        if not done and cur_nimg < tick_nimg + round(args.tick_kimg * 1000):
            continue

        common.sync(device)
        stats = common.all_reduce_mean(torch.stack(tick_stats).mean(0), world)  # averaged over the tick's steps
        values = dict(zip(('loss_cls', 'loss_G', 'acc_fake', 'acc_real'), stats.tolist()))
        common.check_finite(values, cur_nimg)
        log({'tick': tick, 'step': cur_nimg // args.batch, 'kimg': round(cur_nimg / 1000, 3), **values,
             **common.tick_speed(cur_nimg, tick_nimg, tick_time, device)})
        tick += 1
        if done or tick % args.snapshot_ticks == 0:
            rngs = common.gather_states(common.rng_state(), world)
            samplers = common.gather_states(reals.state_dict(), world)
            if rank == 0:
                state = {'kind': 'generator', 'format': common.FORMAT, 'method': 'score_free', 'config': vars(args),
                         'net_config': G.config, 'sigma_init': args.sigma_init, 'teacher': teacher_path,
                         'ema': G_ema.state_dict(), 'G': G.state_dict(), 'classifier': cls.state_dict(),
                         'opt_G': nets.opt_G.state_dict(), 'opt_cls': nets.opt_cls.state_dict(), 'rng': rngs,
                         'sampler': samplers, 'cur_nimg': cur_nimg}
                common.save_one_step_snapshot(args.outdir, state, grid, grid_seeds, done)
            if fid_ref:
                log(fid.fid_point(sample, args, fid_ref, device, rank, world, round(cur_nimg / 1000, 3)))
            if world > 1:
                torch.distributed.barrier()
        tick_nimg, tick_time, tick_stats = cur_nimg, time.time(), []
        if done:
            break


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['verify']:
        return verify_main(argv[1:])
    args = parse_args(argv)
    common.run_main(args, lambda rank, world, device: train(args, rank, world, device))


if __name__ == '__main__':
    main()
