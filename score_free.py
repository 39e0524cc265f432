"""Score-free one-step training (arXiv 2502.08005, "DiffRatio"): a density ratio instead of teacher scores.

  one GPU:   python score_free.py --dataset cifar10
  8 GPUs:    torchrun --standalone --nproc_per_node=8 score_free.py --dataset cifar10
  members:   --divergence rkl (DiKL, default) | js (DiJS) | fkl | hellinger
  ablations: --cls-init random    speed: python score_free.py --bench  (same config as diff_instruct.py --bench)

The method. The generator G_θ(z) = D_θ(σ_init·z; σ_init) is initialised from a diffusion teacher, exactly as in
Diff-Instruct; what changes is how the score difference s_q − s_p of the noised generator (q_σ) and data (p_σ)
distributions is estimated. s_q − s_p = ∇ₓ log(q_σ/p_σ), and a classifier c_φ(x, σ) trained with binary
cross-entropy to tell noisy generated samples (label 1) from noisy real images (label 0), same σ for both,
converges to the log-ratio c* = log q_σ − log p_σ. No teacher forward pass and no fake score network are
needed: the data set is used instead. For an f-divergence D_f(p_σ ‖ q_σ) = E_q[f(p_σ/q_σ)], with u = e^{−c},
    ∇_θ D_f = E[ h(c)·∇ₓc(x_σ, σ)ᵀ ∂x_σ/∂θ ],    h(c) = u² f''(u),
so one generator loss covers the family:  L_G = E[ w(σ) · stopgrad(h(c)) · c_φ(G(z) + σε, σ) ]  (φ frozen).
With w(σ) = σ² and h = 1 (reverse KL) its expected gradient is exactly Diff-Instruct's (--weight sigma2
--gen-sigma-max inf, the spec). The defaults differ where real images showed they must (results/pilot_score_free.md):
a learned classifier saturates at small σ and is near chance at large σ, so each image's ∇ₓc is rescaled to unit
RMS (--weight normalized), the generator's σ is drawn only up to 2 (--gen-sigma-max 2), and the classifier takes
two steps per generator step (--cls-steps 2), so that it keeps ahead of the generator it is judging.
The classifier is the teacher U-Net's encoder half (same blocks and σ embedding), pooled, with a linear head.
"""
import argparse
import contextlib
import copy
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

import common
import edm_import
import fid

DIVERGENCES = ('rkl', 'js', 'fkl', 'hellinger')
WEIGHTS = ('sigma2', 'damped', 'one', 'normalized')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset', default='cifar10', help='cifar10 | fashion-mnist | folder or zip of images')
    p.add_argument('--data-dir', default=common.DEFAULT_DATA_DIR)
    p.add_argument('--split', default='train')
    p.add_argument('--no-download', action='store_true', help='never download data or teacher')
    p.add_argument('--xflip', type=int, default=0, help='x-flip the real images the classifier sees (ours: off)')
    p.add_argument('--teacher', default='edm-cifar10-uncond',
                   help='initialisation only: teacher.py checkpoint, EDM .pkl/URL or short name (the paper: EDM)')
    p.add_argument('--cond', type=int, default=0, help='class-conditional (needs a conditional teacher)')
    p.add_argument('--divergence', default='rkl', help=f'one of {DIVERGENCES} (the paper\'s family; rkl = DiKL)')
    p.add_argument('--sigma-init', type=float, default=1.0, help='σ at which G evaluates the net (as DI: 1.0)')
    p.add_argument('--weight', default='normalized', choices=WEIGHTS,
                   help='normalized (pilot on real images, results/pilot_score_free.md) rescales each image\'s ∇ₓc to '
                        'unit RMS; sigma2 makes rkl the exact counterpart of Diff-Instruct (the spec); damped bounds '
                        'σ² at large σ; one (see sigma_weight and normalized_generator_loss)')
    p.add_argument('--gen-sigma-max', type=float, default=2.0,
                   help='the generator\'s σ is drawn from the log-normal truncated to [--gen-sigma-min, this]. 2 (pilot: '
                        'above it the classifier is near chance, yet its gradient there made the blotches; '
                        'results/classifier_sigma.md); inf: the spec')
    p.add_argument('--gen-sigma-min', type=float, default=0.0,
                   help='lower end of the generator\'s σ range (ours: 0, the spec). At small σ a saturated classifier\'s '
                        'input gradient points almost anywhere (cosine with Diff-Instruct\'s ~0.1, classifier_sigma.md)')
    p.add_argument('--P-mean', type=float, default=-1.2, help='ln σ mean, classifier and generator (EDM / DI)')
    p.add_argument('--P-std', type=float, default=1.2, help='ln σ std (EDM / DI)')
    p.add_argument('--batch', type=int, default=128, help='total batch (DI official)')
    p.add_argument('--lr', type=float, default=1e-5, help='generator Adam lr (DI official)')
    p.add_argument('--cls-lr', type=float, default=1e-3, help='classifier Adam lr: 100x the generator\'s (pilot, '
                   'results/pilot_score_free.md: at 1x it stays at chance; at 100x it holds ~95%% accuracy for 8 kimg '
                   'at generator lr 1e-5). For the edm preset 1e-3 is also EDM\'s own lr for that network')
    p.add_argument('--betas', type=float, nargs=2, default=[0.0, 0.999], help='generator Adam betas (DI official)')
    p.add_argument('--eps', type=float, default=1e-8, help='Adam epsilon (DI official)')
    p.add_argument('--cls-betas', type=float, nargs=2, default=[0.0, 0.999], help='classifier Adam betas (as DI\'s '
                   'fake score)')
    p.add_argument('--lr-rampup-kimg', type=float, default=0, help='linear lr warm-up, both nets (ours: none)')
    p.add_argument('--cls-encoder-lr', type=float, default=1.0,
                   help='the classifier encoder\'s lr as a multiple of --cls-lr (the head always trains at --cls-lr); '
                        '0 freezes the teacher\'s encoder (a σ-conditioned probe of its features). Ours: 1')
    p.add_argument('--cls-steps', type=int, default=2,
                   help='classifier steps per generator step, the extra ones on fresh samples (pilot, '
                        'results/pilot_score_free.md: with 1 the classifier falls back to chance as the generator moves '
                        'and FID-2k varies 232-286 over seeds; with 2 it stays ahead, 204-228). The spec: "one (or k)"')
    p.add_argument('--cls-reuse-x0', type=int, default=0,
                   help='1: the extra classifier steps reuse the generator step\'s x₀ (fresh noise, σ and reals) instead '
                        'of a fresh generator pass: unbiased per step, correlated across steps; saves a generator '
                        'forward per extra step (ours; README). 0: fresh samples')
    p.add_argument('--cls-grad-penalty', type=float, default=0.0,
                   help='γ of the classifier\'s gradient penalty γ/2·σ²‖∇ₓc‖² on real and generated samples (ours)')
    p.add_argument('--cls-warmup', type=int, default=100,
                   help='iterations of classifier steps only before the first generator step, fresh runs (pilot: 100 '
                        'at lr 1e-3 take the BCE from 1.386 to 0.33; scaled as 0.1 / --cls-lr)')
    p.add_argument('--cls-init', default='teacher', choices=['teacher', 'random'],
                   help='classifier encoder from the teacher (the paper) or random')
    p.add_argument('--cls-head', default='pool', choices=['pool', 'multi', 'unet'],
                   help='pool: deepest encoder features, pooled, linear (the spec); multi: every resolution, MLP; '
                        'unet: the whole teacher U-Net\'s last features')
    p.add_argument('--cls-loss', default='image', choices=['image', 'patch'],
                   help='image: one BCE per image on the pooled logit (the spec); patch: one BCE per location of the '
                        'head applied before pooling (as PatchGAN), the logit the generator sees is their mean')
    p.add_argument('--cls-head-norm', type=int, default=1,
                   help='1: GroupNorm before pooling (as the U-Net\'s output layer); 0: pool the raw residual features, '
                        'which keep each image\'s global colour and brightness that a GroupNorm removes (pool head)')
    p.add_argument('--cls-global', type=int, default=0,
                   help='add a σ-conditioned quadratic in each channel\'s mean and mean square to the logit (ours: '
                        'GroupNorm hides global brightness, colour and contrast from the encoder)')
    p.add_argument('--cls-dropout', type=float, default=0.0, help='dropout in the classifier encoder (ours)')
    p.add_argument('--dropout', type=float, default=None, help='override the teacher\'s dropout in G')
    p.add_argument('--ema-halflife-kimg', type=float, default=500, help='EMA half-life of G (as DI official: 0.5 Mimg)')
    p.add_argument('--ema-rampup', type=float, default=0.05, help='EMA ramp-up ratio (EDM)')
    p.add_argument('--total-kimg', type=float, default=50000, help='generator images to train on (ours)')
    common.add_runtime_args(p, outdir='runs/score_free', tick_kimg=10, snapshot_ticks=10)
    p.add_argument('--preset', default='edm', help='network for --bench only (random weights)')
    args = p.parse_args(argv)
    if args.divergence not in DIVERGENCES:
        p.error(f'--divergence must be one of {DIVERGENCES}, not {args.divergence!r}')
    if args.batch <= 0 or args.total_kimg <= 0 or args.cls_steps < 1 or args.sigma_init <= 0:
        p.error('--batch, --total-kimg, --cls-steps and --sigma-init must be positive')
    if not 0 <= args.gen_sigma_min < args.gen_sigma_max:
        p.error('need 0 <= --gen-sigma-min < --gen-sigma-max')
    if args.cls_encoder_lr < 0:
        p.error('--cls-encoder-lr must be 0 (frozen encoder) or positive')
    if not args.cls_head_norm and args.cls_head != 'pool':
        p.error('--cls-head-norm 0 needs --cls-head pool')
    if args.cls_loss == 'patch' and args.cls_head == 'multi':
        p.error('--cls-loss patch needs per-location logits: --cls-head pool or unet')
    if args.bench and args.preset not in common.PRESETS:
        p.error(f'--preset must be one of {sorted(common.PRESETS)}')
    return args


# ------------------------------------------------------------------------------------------------------
# The method: h(c), the two losses, the classifier
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


def sigma_weight(sigma, kind, sigma_data=0.5):
    """w(σ) of the generator loss. sigma2: Diff-Instruct's (exact with an exact ratio, where σ²∇ₓc* = D_q − D_p
    stays bounded); damped: σ²·σ_d²/(σ² + σ_d²), the same at small σ but bounded by σ_d² at large σ, where a
    learned classifier is at chance yet its σ²-weighted input gradient grows like σ; one: w = 1."""
    sigma = sigma.flatten()
    if kind == 'sigma2':
        return sigma ** 2
    if kind == 'damped':
        return sigma ** 2 * sigma_data ** 2 / (sigma ** 2 + sigma_data ** 2)
    if kind == 'one':
        return torch.ones_like(sigma)
    raise ValueError(f'unknown weight {kind!r}; choose one of {WEIGHTS}')


def classifier_side_loss(classifier, x, sigma, labels=None, generated=True, grad_penalty=0.0, per_location=False):
    """One side of the classifier's binary cross-entropy (generated = 1, real = 0), x noised with σ: per image.
    grad_penalty γ adds γ/2·σ²‖∇ₓc‖² (an R1-style penalty, σ-scaled because the log-ratio's gradient grows like
    1/σ): it keeps the logit smooth, so that its input gradient, which is all the generator sees, is less of an
    adversarial direction. Also returns the side's accuracy (logit > 0 = generated)."""
    x = (x.detach() + sigma * torch.randn_like(x)).requires_grad_(grad_penalty > 0)
    c = classifier(x, sigma, labels, per_location=True) if per_location else classifier(x, sigma, labels)
    loss = F.softplus(-c if generated else c)  # −log σ(c) for generated, −log(1 − σ(c)) for real
    logit = c
    if per_location:  # one BCE per patch, averaged; the image's logit (for the accuracy) is the patches' mean
        loss, logit = loss.flatten(1).mean(1), c.flatten(1).mean(1)
    if grad_penalty > 0:
        g, = torch.autograd.grad(c.sum(), x, create_graph=True)
        loss = loss + grad_penalty / 2 * (sigma ** 2 * g.float() ** 2).flatten(1).sum(1)
    return loss, ((logit > 0) if generated else (logit < 0)).float().mean()


def classifier_loss(classifier, fake, real, sigma, labels_fake=None, labels_real=None, grad_penalty=0.0,
                    per_location=False):
    """The classifier's loss per pair of images (one generated, one real, both noised with the same σ) and the
    accuracy on each side. Training backpropagates the two sides one after the other (classifier_step)."""
    loss_fake, acc_fake = classifier_side_loss(classifier, fake, sigma, labels_fake, True, grad_penalty, per_location)
    loss_real, acc_real = classifier_side_loss(classifier, real, sigma, labels_real, False, grad_penalty, per_location)
    return loss_fake + loss_real, acc_fake, acc_real


def classifier_step(args, cls, cls_train, opt, scaler, autocast, fake, real, sigma, labels_fake, labels_real):
    """One classifier update on the mean pair loss. The generated side is run forward and backward before the real
    side is: the same gradient as one pass over both (every layer treats images independently), with half the
    activation memory, which matters here because the generator step's graph of x₀ is held meanwhile
    (results/activation_memory.py: on the edm net the peak drops from 1.68 to 1.34 G forwards' worth). Under DDP
    the first backward skips the all-reduce (no_sync), the second averages the summed gradient once."""
    opt.zero_grad(set_to_none=True)
    losses, accs = [], []
    for generated, x, labels in ((True, fake, labels_fake), (False, real, labels_real)):
        defer = cls_train.no_sync() if generated and hasattr(cls_train, 'no_sync') else contextlib.nullcontext()
        with defer:
            with autocast():
                loss, acc = classifier_side_loss(cls_train, x, sigma, labels, generated, args.cls_grad_penalty,
                                                 args.cls_loss == 'patch')
                loss = loss.mean()
            (scaler.scale(loss) if scaler else loss).backward()
        losses.append(loss.detach()), accs.append(acc)
    common.optimizer_step(opt, cls.parameters(), scaler)
    return losses[0] + losses[1], accs[0], accs[1]


def generator_loss(classifier, x0, sigma, noise, divergence, weight='sigma2', labels=None):
    """Per image: w(σ)·stopgrad(h(c))·c_φ(x₀ + σ·noise, σ). The classifier's weights are not updated here, but
    the gradient flows through c_φ into x₀ and on into the generator: ∇ = w·h(c)·∇ₓc ∂x/∂θ."""
    if weight == 'normalized':
        return normalized_generator_loss(classifier, x0, sigma, noise, divergence, labels)
    c = classifier(x0 + sigma * noise, sigma, labels)
    return sigma_weight(sigma, weight) * f_weight(c, divergence).detach() * c


def normalized_generator_loss(classifier, x0, sigma, noise, divergence, labels=None):
    """As generator_loss, but each image's ∇ₓc is rescaled to unit RMS per pixel before h(c) multiplies it (cf.
    DMD's normalisation of its score difference). Why: a BCE-trained classifier saturates where the two sides are
    easy to tell apart (small σ), so its input gradient there is far smaller than the true log-ratio's, and with
    w = σ² the update comes almost only from large σ (results/classifier_sigma.md). The surrogate
    Σ_pixels stopgrad(g)·x₀ has gradient g w.r.t. x₀ (as Diff-Instruct's); the value returned is h(c)·c."""
    x = (x0 + sigma * noise).detach().requires_grad_(True)
    with torch.enable_grad():
        c = classifier(x, sigma, labels)
        g, = torch.autograd.grad(c.sum(), x)
    g = g.float() / g.float().flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-20).reshape(-1, 1, 1, 1)
    h = f_weight(c, divergence).detach()
    surrogate = (g * h.reshape(-1, 1, 1, 1) * x0.float()).flatten(1).sum(1)  # h survives the rescaling
    return surrogate - surrogate.detach() + h * c.detach()  # its value, for the log: h(c)·c


class Classifier(nn.Module):
    """c_φ(x, σ) -> one logit: EDM's preconditioned input c_in·x and c_noise = ln(σ)/4 through the teacher's
    σ embedding and encoder blocks (same names, so the teacher's weights load), then GroupNorm, SiLU, global
    average pooling and a linear head (head='pool', the spec). Class-conditional: + ⟨label projection, pooled
    features⟩. Experimental heads: 'multi' (every resolution's last features, pooled, an MLP) and 'unet' (the
    whole teacher U-Net, its last decoder features pooled). per_location=True returns the linear head at every
    location (their mean is the logit), for --cls-loss patch. head_norm=False pools the raw residual features
    instead of GroupNorm'ed ones: a GroupNorm removes each image's per-group means, i.e. most of its global colour
    and brightness, which the residual stream still carries."""

    def __init__(self, teacher_config, dropout=0.0, head='pool', global_stats=False, head_norm=True):
        super().__init__()
        cfg = dict(teacher_config)
        self.sigma_data, self.label_dim = cfg.pop('sigma_data'), cfg['label_dim']
        res, ch = cfg.pop('img_resolution'), cfg.pop('img_channels')
        cfg['dropout'] = dropout
        self.model = common.SongUNet(img_resolution=res, in_channels=ch, out_channels=ch, **cfg)
        self.head_kind = head
        if head == 'unet':  # the whole U-Net: its last decoder features (before the output conv), pooled
            del self.model.dec[f'{res}x{res}_aux_conv']
            width = self.model.dec[f'{res}x{res}_aux_norm'].weight.numel()
            self.head = common.Linear(width, 1, init_weight=0)
        else:
            del self.model.dec  # the encoder half only
        if head == 'pool':  # the spec: deepest features, pooled, one linear unit
            width = list(self.model.enc.values())[-1].out_channels
            self.head_norm = common.GroupNorm(width) if head_norm else nn.Identity()
            self.head = common.Linear(width, 1, init_weight=0)  # starts at logit 0: h(c) neutral, ratio 1
        elif head == 'multi':  # the last features of every resolution, pooled, then a two-layer MLP
            names = list(self.model.enc)
            last = {name.split('_')[0]: i for i, name in enumerate(names)}  # resolution -> its last output
            self.levels = sorted(last.values())
            widths = [self.model.enc[names[i]].out_channels for i in self.levels]
            self.head_norms = nn.ModuleList(common.GroupNorm(w) for w in widths)
            width = sum(widths)
            self.head_hidden = common.Linear(width, width)
            self.head = common.Linear(width, 1, init_weight=0)
        elif head != 'unet':
            raise ValueError(f'unknown classifier head {head!r}; choose pool, multi or unet')
        self.label_proj = common.Linear(self.label_dim, width, bias=False, init_weight=0) if self.label_dim else None
        # Optional: global brightness, colour and contrast are what the generator drifts along first (pilot); this
        # term gives the logit an explicit σ-conditioned quadratic in them: per channel, the mean and mean square
        # of c_in·x, weighted by coefficients computed from the σ embedding (zero at the start).
        emb_width = self.model.map_layer1.out_features
        self.global_stats = common.Linear(emb_width, 2 * ch, init_weight=0) if global_stats else None

    def forward(self, x, sigma, class_labels=None, per_location=False):
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1, 1, 1)
        sigma = sigma.expand(x.shape[0], 1, 1, 1)
        c_in = 1 / (self.sigma_data ** 2 + sigma ** 2).sqrt()
        labels = None
        if self.label_dim:
            labels = (torch.zeros([x.shape[0], self.label_dim], device=x.device) if class_labels is None
                      else class_labels.to(torch.float32))
        emb = self.model.embed((sigma.log() / 4).flatten(), labels)
        features = self.model.encode(c_in * x, emb)
        if self.head_kind == 'multi':
            h = torch.cat([F.silu(norm(features[i])).mean(dim=(2, 3)) for i, norm in zip(self.levels, self.head_norms)], 1)
            logit = self.head(F.silu(self.head_hidden(h)))[:, 0]
            if per_location:
                raise ValueError('the multi head has no per-location logits (--cls-loss patch needs pool or unet)')
        else:  # a linear head on pooled features = the mean of the same linear head applied at every location
            f = self.head_norm(features[-1]) if self.head_kind == 'pool' else self.model.decode(features, emb)
            f = F.silu(f)  # (the unet's decode ends with aux_norm: its output conv was removed)
            if per_location:
                logit = self.head(f.permute(0, 2, 3, 1))[..., 0]  # [batch, H, W]: one logit per patch
                if self.label_proj is not None:
                    logit = logit + torch.einsum('bc,bchw->bhw', self.label_proj(labels).to(f.dtype), f)
                if self.global_stats is not None:
                    logit = logit + self.global_term(c_in * x, emb)[:, None, None]
                return logit.float()
            h = f.mean(dim=(2, 3))
            logit = self.head(h)[:, 0]
        if self.label_proj is not None:
            logit = logit + (self.label_proj(labels).to(h.dtype) * h).sum(1)
        if self.global_stats is not None:
            logit = logit + self.global_term(c_in * x, emb)
        return logit.float()

    def global_term(self, x, emb):
        stats = torch.cat([x.mean(dim=(2, 3)), x.square().mean(dim=(2, 3))], 1)  # [batch, 2·channels]
        return (self.global_stats(emb).float() * stats.float()).sum(1)

    def load_teacher_encoder(self, teacher_state):
        """Copy the teacher's mapping network and encoder; every classifier 'model.*' tensor must be there."""
        own = {k: v for k, v in self.state_dict().items() if k.startswith('model.')}
        missing = [k for k in own if k not in teacher_state or teacher_state[k].shape != own[k].shape]
        if missing:
            raise ValueError(f'teacher weights do not fit the classifier encoder: {missing[:5]}')
        self.load_state_dict({k: teacher_state[k] for k in own}, strict=False)


VERIFIER_RULES = ('resample', 'best')


def load_classifier(ckpt, device):
    """The classifier saved with a score-free run (generator.pt or checkpoint.pt), frozen."""
    if ckpt.get('method') != 'score_free' or 'classifier' not in ckpt:
        raise ValueError('the ratio verifier needs a score-free checkpoint with its classifier (a generator.pt '
                         'written by score_free.py)')
    config = ckpt['config']
    cls = Classifier(ckpt['net_config'], config.get('cls_dropout', 0.0), config.get('cls_head', 'pool'),
                     bool(config.get('cls_global', 0)), bool(config.get('cls_head_norm', 1)))
    cls.load_state_dict(ckpt['classifier'])
    return cls.to(device).eval().requires_grad_(False)


def verified_sampler(G, cls, sigma_init, device, k, sigma=0.1, rule='resample'):
    """sample(seeds) -> uint8 images, with the density ratio as a verifier (the paper's v5, "DiffRatio"): draw k
    one-step candidates per image, score each by the classifier's logit c = log q_σ/p_σ at a small σ, and keep
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


# ------------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------------

def wrap_nets(G, cls, args, device, world):
    """(modules, what the forward passes call): compiled if asked, DDP around the two trained nets. The generator
    comes twice: as it is compiled, for the samples drawn without gradients (nothing to all-reduce), and inside DDP
    for the generator step. The gradient penalty differentiates the classifier twice, which compiled graphs do
    not support ('torch.compile with aot_autograd does not currently support double backward'), so with it the
    classifier step runs the eager classifier; the generator step (one derivative) still runs the compiled one."""
    G_c, cls_c = common.maybe_compile(G, args.compile), common.maybe_compile(cls, args.compile)
    cls_step = cls if args.cls_grad_penalty > 0 else cls_c
    return G_c, common.ddp_wrap(G_c, device, world), cls, cls_c, common.ddp_wrap(cls_step, device, world)


def iteration(args, nets, opts, scalers, autocast, reals, batch, device, train_G=True):
    """One score-free iteration. One generator pass x₀ = G(z) serves both halves: (1) args.cls_steps classifier
    steps, the first on x₀.detach() (further ones on fresh samples, or on x₀ again with --cls-reuse-x0), so the
    classifier has seen the current generator before it is used; (2) one generator step through the updated,
    frozen classifier on the same x₀.
    In expectation this is the usual alternation (classifier step on fresh samples, then generator step) at one
    generator forward pass instead of two. train_G=False (the classifier warm-up) skips (2)."""
    G, G_train, cls, cls_c, cls_train = nets
    shape = [batch, G.img_channels, G.img_resolution, G.img_resolution]
    real, labels = next(reals)  # a conditional generator makes the classes of the real batch
    x0_labels = labels = labels if G.label_dim else None
    with torch.set_grad_enabled(train_G), autocast():
        x0 = common.generate_one_step(G_train, torch.randn(shape, device=device), args.sigma_init, labels)
    fake, fake_labels = x0, x0_labels
    set_trainable(opts[1], True)
    for i in range(args.cls_steps):
        if i > 0:
            real, labels = next(reals)
            labels = labels if G.label_dim else None
            if not args.cls_reuse_x0:  # else: the same x₀ again, under fresh noise and σ, against fresh reals
                fake_labels = labels
                with torch.no_grad(), autocast():
                    fake = common.generate_one_step(G, torch.randn(shape, device=device), args.sigma_init, labels)
        sigma = common.edm_sigma(batch, device, args.P_mean, args.P_std)
        loss_cls, acc_fake, acc_real = classifier_step(args, cls, cls_train, opts[1], scalers[1], autocast, fake,
                                                       real, sigma, fake_labels, labels)
    if not train_G:
        return torch.stack([loss_cls.detach(), torch.zeros_like(loss_cls), acc_fake, acc_real])

    set_trainable(opts[1], False)  # φ frozen: gradients flow through c_φ into x₀ and on into G
    with autocast():
        sigma = generator_sigma(batch, device, args)
        loss_G = generator_loss(cls_c, x0, sigma, torch.randn_like(x0), args.divergence, args.weight, x0_labels)
        loss_G = loss_G.mean()
    opts[0].zero_grad(set_to_none=True)
    (scalers[0].scale(loss_G) if scalers[0] else loss_G).backward()
    common.optimizer_step(opts[0], G.parameters(), scalers[0])
    return torch.stack([loss_cls.detach(), loss_G.detach(), acc_fake, acc_real])


def truncated_lognormal_sigma(batch, device, P_mean, P_std, lo, hi):
    """σ with ln σ ~ N(P_mean, P_std²) conditioned on lo ≤ σ ≤ hi, by the inverse CDF (every image counts, no
    rejection, no host sync): u uniform between F(lo) and F(hi), F the log-normal's CDF; σ = F⁻¹(u)."""
    def F(s):
        if s <= 0:
            return 0.0
        return 1.0 if s == float('inf') else 0.5 * math.erfc(-(math.log(s) - P_mean) / (P_std * math.sqrt(2)))
    u = F(lo) + (F(hi) - F(lo)) * torch.rand([batch, 1, 1, 1], device=device, dtype=torch.float64)
    return (P_mean + P_std * torch.special.ndtri(u)).exp().float().clamp(lo, hi)


def generator_sigma(batch, device, args):
    """The generator step's σ: EDM's log-normal (the spec), or the same truncated to [gen_sigma_min, gen_sigma_max].
    Truncating gives the masked loss's expected gradient up to the constant factor P(band), from the whole batch."""
    if args.gen_sigma_min == 0 and args.gen_sigma_max == float('inf'):
        return common.edm_sigma(batch, device, args.P_mean, args.P_std)
    return truncated_lognormal_sigma(batch, device, args.P_mean, args.P_std, args.gen_sigma_min, args.gen_sigma_max)


def build_nets(teacher, args, device):
    G = copy.deepcopy(teacher).requires_grad_(True)
    if args.dropout is not None:
        for m in G.modules():
            if isinstance(m, common.UNetBlock):
                m.dropout = args.dropout
    G.train()
    cls = common.to_device(Classifier(teacher.config, args.cls_dropout, args.cls_head, bool(args.cls_global),
                                      bool(args.cls_head_norm)), device)
    if args.cls_init == 'teacher':
        cls.load_teacher_encoder(teacher.state_dict())
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opts = [common.make_adam(G.parameters(), args.lr, args.betas, args.eps, device),
            common.make_adam(classifier_param_groups(cls, args.cls_lr, args.cls_encoder_lr), args.cls_lr,
                             args.cls_betas, args.eps, device)]
    return G, G_ema, cls, opts


def classifier_param_groups(cls, lr, encoder_lr):
    """Adam groups: the teacher-initialised encoder ('model.*') at encoder_lr × lr, the new head at lr
    (common.lr_ramp honours each group's lr_scale). encoder_lr = 0 leaves the encoder out: frozen."""
    encoder = [p for n, p in cls.named_parameters() if n.startswith('model.')]
    head = [p for n, p in cls.named_parameters() if not n.startswith('model.')]
    if encoder_lr == 0:
        for p in encoder:
            p.requires_grad_(False)
        return [dict(params=head, lr=lr)]
    return [dict(params=encoder, lr=lr * encoder_lr, lr_scale=encoder_lr), dict(params=head, lr=lr)]


def set_trainable(opt, flag):
    """requires_grad on exactly the parameters the optimizer updates (a frozen encoder stays frozen)."""
    for group in opt.param_groups:
        for p in group['params']:
            p.requires_grad_(flag)


class SyntheticReals:
    """Random 'real' batches for --bench."""

    def __init__(self, batch, device):
        self.x = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1

    def __next__(self):
        return self.x, None


def bench(args, device):
    """The real iteration on random weights of --preset, at diff_instruct.py --bench's config and batch."""
    autocast, scaler = common.setup_precision(device, args.precision, args.tf32)
    teacher = common.to_device(common.build_net(args.preset, 32, 3, 0, 0.13), device).eval()
    G, G_ema, cls, opts = build_nets(teacher, args, device)
    scalers = [scaler, torch.amp.GradScaler('cuda') if scaler else None]
    nets = wrap_nets(G, cls, args, device, 1)
    reals = SyntheticReals(args.batch, device)

    def step():
        iteration(args, nets, opts, scalers, autocast, reals, args.batch, device)
        common.ema_update(G_ema, G, 0.999)
    x = torch.zeros(1, 3, 32, 32, device=device)
    fg = common.count_flops(lambda: G(x, torch.ones(1, device=device)))
    fc = common.count_flops(lambda: cls(x, torch.ones(1, device=device)))
    # per image: one G fwd/bwd, one cls fwd/bwd in the G step; per classifier step 2 cls fwd/bwd (fake, real),
    # and one G fwd for every classifier step after the first (none with --cls-reuse-x0)
    flops = 3 * fg + 3 * fc + args.cls_steps * 6 * fc + (0 if args.cls_reuse_x0 else args.cls_steps - 1) * fg
    print(f'bench score_free: classifier {sum(p.numel() for p in cls.parameters()) / 1e6:.2f}M params')
    common.run_bench('score_free', step, args, device, flops, sum(p.numel() for p in G.parameters()))


def check_precision(args, device):
    """--check-precision: after the classifier warm-up, along 100 fp32 iterations, the generator gradient of one
    fixed batch in --precision against fp32 (TF32 off)."""
    data = common.load_dataset(args.dataset, args.data_dir, args.split, not args.no_download)
    reals = common.BatchSampler(data, args.batch, device, args.seed, 0, bool(args.xflip))
    teacher, _ = edm_import.load_teacher(args.teacher, device, not args.no_download)
    G, _, cls, opts = build_nets(teacher, args, device)
    nets = (G, G, cls, cls, cls)
    for _ in range(args.cls_warmup):
        iteration(args, nets, opts, [None, None], contextlib.nullcontext, reals, args.batch, device, train_G=False)
    z, noise, sigma, labels = common.fixed_generator_batch(G, args.batch, args.P_mean, args.P_std, device)
    mixed = common.autocast_factory(device.type, args.precision)

    def gradient(low_precision):
        def loss():
            cls.requires_grad_(False)  # the classifier is frozen in the generator step
            with (mixed() if low_precision else common.full_precision(device.type)):
                x0 = common.generate_one_step(G, z, args.sigma_init, labels)
                return generator_loss(cls, x0, sigma, noise, args.divergence, args.weight, labels).mean()
        return common.seeded_gradient(G.parameters(), device, loss)
    print(f'check-precision score_free: {args.precision} autocast, batch {args.batch}, divergence '
          f'{args.divergence}, teacher {args.teacher}, after {args.cls_warmup} classifier warm-up steps')
    steps = [int(k) for k in args.check_steps.split(',')]
    common.check_precision('score_free', args.precision, gradient, checkpoints=steps, train_step=lambda: iteration(
        args, nets, opts, [None, None], contextlib.nullcontext, reals, args.batch, device))


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
    common.print0(f'data: {data.name}  {len(data)} images  {data.checksum or ""}', rank=rank)
    reals = common.BatchSampler(data, batch, device, args.seed, rank, bool(args.xflip))
    teacher, teacher_path = edm_import.load_teacher(args.teacher, device, not args.no_download)
    common.check_teacher_fits_data(teacher, data, args.cond)
    fid_ref = fid.reference_stats(args.fid_ref, data, device, args.inception, rank)
    G, G_ema, cls, opts = build_nets(teacher, args, device)
    if init_generator is not None and not args.resume:
        init_generator(G, teacher, data, device)
        G_ema.load_state_dict(G.state_dict())
    del teacher  # from here on the teacher is not used: no teacher forward pass, no score network
    cur_nimg = 0
    resume = os.path.join(args.outdir, 'checkpoint.pt') if args.resume == 'auto' else args.resume
    if resume:
        ckpt = common.load_checkpoint(resume, 'generator')
        same_run = ['dataset', 'teacher', 'cond', 'divergence', 'sigma_init', 'weight', 'batch', 'cls_steps', 'seed',
                    'xflip', 'cls_head', 'cls_loss', 'cls_global', 'cls_encoder_lr', 'cls_head_norm',
                    'gen_sigma_min', 'gen_sigma_max', 'cls_reuse_x0']
        common.check_resume_config(ckpt['config'], vars(args), same_run,  # defaults: keys older runs lack
                                   defaults={'cls_head': 'pool', 'cls_loss': 'image', 'cls_global': 0,
                                             'cls_encoder_lr': 1.0, 'cls_head_norm': 1, 'gen_sigma_min': 0.0,
                                             'gen_sigma_max': float('inf'), 'cls_reuse_x0': 0})
        if ckpt.get('method') != 'score_free' or 'classifier' not in ckpt:
            raise ValueError(f'{resume!r} is not a score-free training checkpoint')
        for net, key in ((G, 'G'), (cls, 'classifier'), (G_ema, 'ema')):
            common.load_net_state(net, ckpt[key], resume)
        for opt, key in zip(opts, ('opt_G', 'opt_cls')):
            opt.load_state_dict(ckpt[key])
        reals.load_state_dict(common.pick_rank_state(ckpt['sampler'], rank))
        common.set_rng_state(common.pick_rank_state(ckpt['rng'], rank))
        cur_nimg = ckpt['cur_nimg']
        common.print0(f'resumed from {resume} at {cur_nimg / 1000:.1f} kimg', rank=rank)
    nets = wrap_nets(G, cls, args, device, world)
    common.print0(f'score_free: divergence {args.divergence}  teacher {teacher_path} (init only)  G '
                  f'{sum(p.numel() for p in G.parameters()) / 1e6:.2f}M  classifier '
                  f'{sum(p.numel() for p in cls.parameters()) / 1e6:.2f}M ({args.cls_init} init)  '
                  f'world {world}  device {device}', rank=rank)
    common.print0(f'precision: G and classifier {common.precision_name(device, args.precision)}, TF32 '
                  f'{"on" if args.tf32 else "off"}', rank=rank)
    if args.compile and args.cls_grad_penalty > 0:
        common.print0('compile: G and the generator step\'s classifier; the classifier step runs eager (its gradient '
                      'penalty needs a second derivative, which torch.compile does not support)', rank=rank)

    grid_seeds = list(range(args.grid))
    sample = common.one_step_sampler(G_ema, args.sigma_init, device)
    if rank == 0 and not resume:
        common.save_grid(data.images[:args.grid], os.path.join(args.outdir, 'reals.png'))
        common.save_grid(sample(grid_seeds), os.path.join(args.outdir, 'fakes_init.png'))
    if fid_ref and args.fid_at_start and cur_nimg == 0:  # the first point of the FID curve: the initial G
        log(fid.fid_point(sample, args, fid_ref, device, rank, world, 0.0))

    if cur_nimg == 0 and args.cls_warmup:  # the classifier learns to tell the two apart before G follows it
        t0 = time.time()
        for i in range(args.cls_warmup):
            stats = iteration(args, nets, opts, scalers, autocast, reals, batch, device, train_G=False)
            if i == 0 or i == args.cls_warmup - 1:
                values = common.all_reduce_mean(stats, world).tolist()
                common.print0(f'classifier warm-up step {i + 1}/{args.cls_warmup}: loss_cls {values[0]:.4f}  '
                              f'acc_fake {values[2]:.3f}  acc_real {values[3]:.3f}  ({time.time() - t0:.1f} s)', rank=rank)
    tick, tick_nimg, tick_time, tick_stats = 0, cur_nimg, time.time(), []
    while True:
        common.lr_ramp(zip(opts, (args.lr, args.cls_lr)), cur_nimg, args.lr_rampup_kimg)
        tick_stats.append(iteration(args, nets, opts, scalers, autocast, reals, batch, device))
        cur_nimg += args.batch
        common.ema_update(G_ema, G, common.ema_beta(cur_nimg, args.batch, args.ema_halflife_kimg, args.ema_rampup))
        done = cur_nimg >= args.total_kimg * 1000
        if not done and cur_nimg < tick_nimg + args.tick_kimg * 1000:
            continue

        common.sync(device)
        stats = common.all_reduce_mean(torch.stack(tick_stats).mean(0), world)  # averaged over the tick's steps
        values = dict(zip(('loss_cls', 'loss_G', 'acc_fake', 'acc_real'), stats.tolist()))
        common.check_finite(values, cur_nimg)
        dt = time.time() - tick_time
        log({'tick': tick, 'step': cur_nimg // args.batch, 'kimg': round(cur_nimg / 1000, 3),
             **values, 'img/s': (cur_nimg - tick_nimg) / dt,
             'sec/kimg': dt * 1000 / (cur_nimg - tick_nimg), 'mem_gb': round(common.peak_memory_gb(device), 2)})
        tick += 1
        if done or tick % args.snapshot_ticks == 0:
            rngs = common.gather_states(common.rng_state(), world)
            samplers = common.gather_states(reals.state_dict(), world)
            if rank == 0:
                state = {'kind': 'generator', 'method': 'score_free', 'config': vars(args),
                         'net_config': G.config, 'sigma_init': args.sigma_init, 'teacher': teacher_path,
                         'ema': G_ema.state_dict(), 'G': G.state_dict(), 'classifier': cls.state_dict(),
                         'opt_G': opts[0].state_dict(), 'opt_cls': opts[1].state_dict(), 'rng': rngs,
                         'sampler': samplers, 'cur_nimg': cur_nimg}
                common.save_one_step_snapshot(args.outdir, state, sample, grid_seeds, done)
            if fid_ref:
                log(fid.fid_point(sample, args, fid_ref, device, rank, world, round(cur_nimg / 1000, 3)))
            if world > 1:
                torch.distributed.barrier()
        tick_nimg, tick_time, tick_stats = cur_nimg, time.time(), []
        if done:
            break


def main(argv=None):
    args = parse_args(argv)
    common.run_main(args, lambda rank, world, device: bench(args, device) if args.bench
                    else check_precision(args, device) if args.check_precision else train(args, rank, world, device))


if __name__ == '__main__':
    main()
