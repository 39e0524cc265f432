"""The exact 2-D testbed: the paper's central argument measured where every score is known.

  python results/exact2d.py run       run (or resume) every job, one at a time; records go to results/exact2d/records
  python results/exact2d.py report    write results/exact2d/README.md and its figures from the records
  python results/exact2d.py run --dry a few steps of everything (minutes; numbers meaningless, records in /tmp)

The argument (the paper's later versions put it first): Diff-Instruct's update is the difference of two separately
learned scores, s_q − s_p, so it inherits both networks' errors; a classifier's log-ratio c = log q_σ/p_σ estimates
the difference itself, ∇ₓc = s_q − s_p. Here p is a mixture of 40 points, so p_σ, its score and its denoiser are
closed forms, and so are q_σ and s_q − s_p for the fixed distributions q of part 1.
  1  static q: the ratio's ∇ₓc against the two-network difference (EDM-preconditioned, and plain score nets)
  2  end to end: a one-step generator from a teacher, trained by Diff-Instruct and by each score-free member
  3  the image recipe's departures from the specification, one at a time, and the specification itself
  4  the ratio as a verifier: resampling k candidates by e^{−c}, with the exact and the learned ratio
Every loss and update is the project's own (common.edm_loss, score_free.classifier_loss / iteration,
diff_instruct.iteration): points are 2-channel 1×1 "images", so the image scripts' functions run unchanged.

Units: the protocol's grid lies in [−4, 4]²; the networks see it scaled by 1/SCALE so that its RMS per coordinate is
EDM's σ_data = 0.5, and the image scripts' σ-distributions, σ_init and --gen-sigma-max mean what they mean on
images (relative to the data). Every σ on the page is in the protocol's units (σ·SCALE).
"""
import argparse
import copy
import json
import math
import os
import sys
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import common  # noqa: E402
import diff_instruct  # noqa: E402
import score_free  # noqa: E402

OUT = os.path.join(ROOT, 'results', 'exact2d')
SIGMA_RANGE = (0.05, 2.0)                       # protocol units: where the estimators are trained and measured
BANDS = [0.05, 0.125, 0.32, 0.8, 2.0]          # four log-spaced σ bands (protocol units)
KL_SIGMAS = [0.1, 0.3, 1.0]                    # the noised divergences of part 2 (protocol units)
SIZES = {  # the protocol's size, and the reduced one that fits ten seeds in the CPU budget
    'full': dict(batch=2048, steps=20000, evals=[1250, 2500, 5000, 10000, 20000]),
    'small': dict(batch=512, steps=5000, evals=[1250, 2500, 5000]),
    'dry': dict(batch=64, steps=20, evals=[10, 20]),
}


# ------------------------------------------------------------------------------------------------------
# The exact distributions: mixtures of point masses, noised
# ------------------------------------------------------------------------------------------------------

def grid_points(seed=0, jitter=0.2):
    """The protocol's p: 40 points on a 5×8 grid in [−4, 4]², each moved by a uniform jitter (fixed seed)."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = torch.linspace(-4, 4, 8, dtype=torch.float64), torch.linspace(-4, 4, 5, dtype=torch.float64)
    pts = torch.stack(torch.meshgrid(xs, ys, indexing='ij'), -1).reshape(-1, 2)
    return (pts + jitter * (2 * torch.rand(pts.shape, generator=g, dtype=torch.float64) - 1)).clamp(-4, 4)


P_POINTS = grid_points()
SCALE = float(P_POINTS.pow(2).mean().sqrt() / 0.5)  # protocol units per network unit


class Mixture:
    """Points μ_m with weights w_m (network units); noised with σ: p_σ(x) = Σ w_m N(x; μ_m, σ²I). Closed forms in
    float64: log-density, posterior over points, denoiser D = E[μ | x] and score (D − x)/σ²."""

    def __init__(self, points, weights=None):
        self.points = points.to(torch.float64)
        w = torch.ones(len(points), dtype=torch.float64) if weights is None else weights.to(torch.float64)
        self.log_w = (w / w.sum()).log()

    def _logits(self, x, sigma):  # [N, M]: log w_m + log N(x; μ_m, σ²I) up to the shared normaliser
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1)
        return self.log_w - torch.cdist(x.to(torch.float64), self.points).pow(2) / (2 * sigma ** 2)

    def log_prob(self, x, sigma):
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
        return torch.logsumexp(self._logits(x, sigma), 1) - torch.log(2 * math.pi * sigma ** 2)

    def denoise(self, x, sigma):
        return torch.softmax(self._logits(x, sigma), 1) @ self.points

    def score(self, x, sigma):
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1)
        return (self.denoise(x, sigma) - x.to(torch.float64)) / sigma ** 2

    def sample(self, n, generator):
        """(points, component index) of n draws."""
        idx = torch.multinomial(self.log_w.exp(), n, replacement=True, generator=generator)
        return self.points[idx], idx


def chunked(fn, x, sigma, chunk=4096):
    sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(len(x))
    return torch.cat([fn(x[i:i + chunk], sigma[i:i + chunk]) for i in range(0, len(x), chunk)])


def p_mixture():
    return Mixture(P_POINTS / SCALE)


def q_mixtures():
    """The fixed q of part 1. far: the grid shrunk by 0.8 and shifted by (0.6, −0.4), as a generator early in
    training (every point moved by more than the largest small-σ band); near: each point of p moved by 0.15 in a
    random direction (fixed seed), as late in training (apart at σ ≤ 0.1, nearly equal above 0.5)."""
    g = torch.Generator().manual_seed(1)
    angle = 2 * math.pi * torch.rand(len(P_POINTS), generator=g, dtype=torch.float64)
    near = P_POINTS + 0.15 * torch.stack([angle.cos(), angle.sin()], 1)
    far = 0.8 * P_POINTS + torch.tensor([0.6, -0.4], dtype=torch.float64)
    return {'far': Mixture(far / SCALE), 'near': Mixture(near / SCALE)}


def log_uniform_sigma(n, generator, lo=SIGMA_RANGE[0], hi=SIGMA_RANGE[1]):
    """σ (network units) log-uniform on [lo, hi] protocol units."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return (math.log(lo) + u * (math.log(hi) - math.log(lo))).exp() / SCALE


# ------------------------------------------------------------------------------------------------------
# Networks: MLPs (4 hidden layers of 256, SiLU) with the noise level as an input
# ------------------------------------------------------------------------------------------------------

class MLP(nn.Module):
    """F(x, c_noise): the 2-D point and c_noise = ln(σ)/4 in, out_dim values out; points may come as [N, 2, 1, 1]."""

    def __init__(self, out_dim=2, width=256, depth=4, zero_out=False):
        super().__init__()
        dims = [3] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(width, out_dim)
        if zero_out:  # a classifier starts at logit 0: ratio 1
            nn.init.zeros_(self.out.weight), nn.init.zeros_(self.out.bias)

    def features(self, x, c_noise):
        h = torch.cat([x.reshape(len(x), 2), c_noise.reshape(len(x), 1)], 1)
        for layer in self.hidden:
            h = F.silu(layer(h))
        return h

    def forward(self, x, c_noise, class_labels=None, augment_labels=None):
        return self.out(self.features(x, c_noise)).reshape(x.shape[:1] + (-1,) + x.shape[2:])


class Denoiser(common.EDMPrecond):
    """EDM's preconditioning (the project's EDMPrecond: c_skip, c_out, c_in, c_noise) around an MLP instead of a
    U-Net, as a 2-channel 1×1 image net, so that the image scripts' losses, generator and sampler take it as it is."""

    def __init__(self, sigma_data=0.5):
        nn.Module.__init__(self)  # EDMPrecond's own __init__ would build a U-Net
        self.img_resolution, self.img_channels, self.label_dim, self.sigma_data = 1, 2, 0, sigma_data
        self.config = dict(arch='mlp', sigma_data=sigma_data)
        self.model = MLP(out_dim=2)


class PlainScore(nn.Module):
    """A score net without preconditioning, as the literature's comparisons often are: s(x, σ) = F(x, ln σ / 4),
    trained by σ-weighted denoising score matching (plain_dsm_loss). Called as a denoiser D = x + σ²s."""

    def __init__(self):
        super().__init__()
        self.img_resolution, self.img_channels, self.label_dim = 1, 2, 0
        self.model = MLP(out_dim=2)

    def forward(self, x, sigma, class_labels=None, augment_labels=None):
        sigma = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1, 1, 1, 1).expand(len(x), 1, 1, 1)
        return x + sigma ** 2 * self.model(x, sigma.log().flatten() / 4)


def plain_dsm_loss(net, x0, sigma):
    """σ²‖s(x₀ + σε, σ) + ε/σ‖² per point (Vincent 2011, with Song & Ermon's λ(σ) = σ²)."""
    noise = torch.randn_like(x0)
    D = net(x0 + sigma * noise, sigma)
    s = (D - x0 - sigma * noise) / sigma ** 2
    return (sigma ** 2 * (s + noise / sigma) ** 2).flatten(1).sum(1)


class Classifier(nn.Module):
    """c(x, σ) -> one logit from c_in·x and c_noise (as score_free.Classifier's input), zero-initialised head."""

    def __init__(self, sigma_data=0.5):
        super().__init__()
        self.sigma_data, self.label_dim = sigma_data, 0
        self.model = MLP(out_dim=1, zero_out=True)

    def forward(self, x, sigma, class_labels=None):
        sigma = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1, 1, 1, 1).expand(len(x), 1, 1, 1)
        c_in = 1 / (self.sigma_data ** 2 + sigma ** 2).sqrt()
        return self.model(c_in * x.float(), sigma.log().flatten() / 4).reshape(len(x))

    def load_teacher_trunk(self, teacher):
        """The classifier from the teacher's features (score_free's --cls-init teacher): its hidden layers."""
        self.model.hidden.load_state_dict(teacher.model.hidden.state_dict())


def as_images(x):
    return x.float().reshape(len(x), 2, 1, 1)


# ------------------------------------------------------------------------------------------------------
# Part 1: the estimators' error on fixed q
# ------------------------------------------------------------------------------------------------------

def eval_set(q, n=16384, seed=12345):
    """Held-out noisy points x_σ ~ q_σ (σ log-uniform over the protocol's range) with the exact s_q − s_p."""
    g = torch.Generator().manual_seed(seed)
    x0, idx = q.sample(n, g)
    sigma = log_uniform_sigma(n, g)
    x = x0 + sigma[:, None] * torch.randn(n, 2, generator=g, dtype=torch.float64)
    p = p_mixture()
    truth = chunked(q.score, x, sigma) - chunked(p.score, x, sigma)
    return dict(x=x, sigma=sigma, idx=idx, truth=truth, n_points=len(q.points))


def score_difference(kind, nets, x, sigma, chunk=4096):
    """The estimate of s_q − s_p at (x, σ): ∇ₓc for the ratio, (D_fake − D_teacher)/σ² for two denoisers."""
    out = []
    for i in range(0, len(x), chunk):
        xi, si = as_images(x[i:i + chunk]), sigma[i:i + chunk].float()
        if 'cls' in nets:
            xi.requires_grad_(True)
            with torch.enable_grad():
                g, = torch.autograd.grad(nets['cls'](xi, si).sum(), xi)
        else:
            with torch.no_grad():
                g = (nets['fake'](xi, si) - nets['teacher'](xi, si)) / si.reshape(-1, 1, 1, 1) ** 2
        out.append(g.reshape(-1, 2).double())
    return torch.cat(out)


def rel_err(est, truth):
    """Pooled RMS relative error sqrt(mean ‖ŝ − s‖²) / sqrt(mean ‖s‖²)."""
    return float(((est - truth) ** 2).sum(1).mean().sqrt() / (truth ** 2).sum(1).mean().sqrt())


def metrics(est, ev):
    """Raw and σ²-weighted relative errors, the mean cosine (the normalized recipe's direction), overall and per
    band; the relative error of the parameter gradient for the generator whose parameters are q's points."""
    sigma_p = ev['sigma'] * SCALE
    w = (ev['sigma'] ** 2)[:, None]
    cos = F.cosine_similarity(est, ev['truth'], dim=1, eps=1e-30)
    out = {'raw': rel_err(est, ev['truth']), 'sigma2': rel_err(w * est, w * ev['truth']), 'cos': float(cos.mean())}
    for b, (lo, hi) in enumerate(zip(BANDS[:-1], BANDS[1:])):
        m = (sigma_p >= lo) & (sigma_p < hi)
        out[f'raw_b{b}'] = rel_err(est[m], ev['truth'][m])
        out[f'sigma2_b{b}'] = rel_err(w[m] * est[m], w[m] * ev['truth'][m])
        out[f'cos_b{b}'] = float(cos[m].mean())
    # The parameter gradient for a generator whose parameters are q's points: ∂/∂μ_m of E[w·ŝᵀx_σ] sums w·ŝ over
    # μ_m's samples. sigma2: w = σ² (the spec); normalized: each ŝ at unit norm (the image default), and s likewise.
    unit = lambda v: v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)  # noqa: E731
    for name, est_w, true_w in (('sigma2', w * est, w * ev['truth']), ('normalized', unit(est), unit(ev['truth']))):
        zeros = torch.zeros(ev['n_points'], 2, dtype=torch.float64)
        g_est, g_true = zeros.index_add(0, ev['idx'], est_w), zeros.index_add(0, ev['idx'], true_w)
        out[f'grad_{name}'] = float((g_est - g_true).norm() / g_true.norm())
    return out


def train_static(kind, q, size, seed, work):
    """Train one estimator of s_q − s_p at this size and seed; its metrics at each of the size's eval steps.
    kind: ratio (a classifier, score_free.classifier_loss), edm (two EDM denoisers, common.edm_loss) or plain (two
    plain score nets). The teacher on p is the same for both q: trained once per (kind, size, seed), kept in work."""
    cfg, p, ev = SIZES[size], p_mixture(), eval_set(q)
    torch.manual_seed(seed)
    if kind == 'ratio':
        nets = {'cls': Classifier()}
    else:
        nets = {'teacher': Denoiser() if kind == 'edm' else PlainScore(), 'fake': Denoiser() if kind == 'edm' else
                PlainScore()}
    opts = {k: torch.optim.Adam(v.parameters(), lr=1e-3) for k, v in nets.items()}
    g_q, g_p, g_sigma = (torch.Generator().manual_seed(seed * 1000 + i) for i in range(3))
    cached = os.path.join(work, f'static_teacher_{kind}_{size}_{seed}.pt')
    saved = torch.load(cached) if 'teacher' in nets and os.path.exists(cached) else None
    records, t0 = {}, time.time()
    for step in range(1, cfg['steps'] + 1):
        sigma = log_uniform_sigma(cfg['batch'], g_sigma).float().reshape(-1, 1, 1, 1)
        losses = {}
        if 'cls' in nets:
            fake, real = as_images(q.sample(cfg['batch'], g_q)[0]), as_images(p.sample(cfg['batch'], g_p)[0])
            losses['cls'] = score_free.classifier_loss(nets['cls'], fake, real, sigma)[0]
        else:
            loss_fn = common.edm_loss if kind == 'edm' else plain_dsm_loss
            losses['fake'] = loss_fn(nets['fake'], as_images(q.sample(cfg['batch'], g_q)[0]), sigma=sigma)
            if saved is None:
                losses['teacher'] = loss_fn(nets['teacher'], as_images(p.sample(cfg['batch'], g_p)[0]), sigma=sigma)
        for name, loss in losses.items():
            opts[name].zero_grad(set_to_none=True)
            loss.mean().backward()
            opts[name].step()
        if step in cfg['evals']:
            if 'teacher' in nets and saved is not None:
                nets['teacher'].load_state_dict(saved[step])  # the cached teacher after as many steps
            records[step] = dict(metrics(score_difference(kind, nets, ev['x'], ev['sigma']), ev),
                                 train_s=time.time() - t0)
            if 'teacher' in losses:
                records[step]['teacher_state'] = copy.deepcopy(nets['teacher'].state_dict())
            print(f'  {kind} {size} seed {seed} step {step}: raw {records[step]["raw"]:.3f}  '
                  f'σ² {records[step]["sigma2"]:.3f}  cos {records[step]["cos"]:.3f}', flush=True)
    if 'teacher' in nets and saved is None:
        os.makedirs(work, exist_ok=True)
        torch.save({s: r.pop('teacher_state') for s, r in records.items()}, cached + '.tmp')
        os.replace(cached + '.tmp', cached)
    return records


# ------------------------------------------------------------------------------------------------------
# Part 2–4: one-step generators trained end to end, with the image scripts' iterations
# ------------------------------------------------------------------------------------------------------

E2E = dict(teacher_steps=10000, teacher_batch=2048, steps=2000, batch=256, evals=[0, 250, 500, 1000, 2000],
           kl_samples=4096, sigma_init=1.0, cls_warmup=100)
E2E_DRY = dict(teacher_steps=20, teacher_batch=64, steps=20, batch=64, evals=[0, 10, 20], kl_samples=256,
               sigma_init=1.0, cls_warmup=2)
# The image scripts' defaults (score_free.py --help), and the specification's exact setting. The image default's
# --cls-frozen-levels has no counterpart: this classifier has no resolutions (freezing its first layers did not
# help, results/NOTES.md, issue 47).
# cls_lr None: the generator's lr (the spec); Diff-Instruct's fake score is always at the generator's lr (its code).
DEFAULT = dict(divergence='rkl', weight='normalized', gen_sigma_max=2.0, cls_steps=2, cls_lr=1e-3)
SPEC = dict(divergence='rkl', weight='sigma2', gen_sigma_max=float('inf'), cls_steps=1, cls_lr=None)
ARMS = {  # name: (method, overrides of the default recipe)
    'di': ('diff_instruct', {}),
    'sf_rkl': ('score_free', {}),
    'sf_js': ('score_free', dict(divergence='js')),
    'sf_fkl': ('score_free', dict(divergence='fkl')),
    'sf_hellinger': ('score_free', dict(divergence='hellinger')),
    'sf_spec': ('score_free', SPEC),
    'sf_weight_sigma2': ('score_free', dict(weight='sigma2')),      # each departure undone alone
    'sf_sigma_inf': ('score_free', dict(gen_sigma_max=float('inf'))),
    'sf_cls_steps_1': ('score_free', dict(cls_steps=1)),
    'sf_cls_lr_1x': ('score_free', dict(cls_lr=None)),
}
GEN_LRS = [3e-5, 1e-4, 3e-4]  # every method's generator lr is chosen from these by the same rule (tune_lr)
LONG = dict(steps=10000, evals=[0, 1000, 2000, 4000, 7000, 10000], seeds=[0, 1, 2])  # where the curves go


def train_teacher(cfg, seed, work):
    """The teacher of part 2: an EDM denoiser on p with EDM's loss as teacher.py trains it (log-normal σ)."""
    path = os.path.join(work, f'e2e_teacher_{seed}_{cfg["teacher_steps"]}.pt')
    net = Denoiser()
    if os.path.exists(path):
        net.load_state_dict(torch.load(path))
        return net.eval().requires_grad_(False)
    torch.manual_seed(seed)
    opt, p, g = torch.optim.Adam(net.parameters(), lr=1e-3), p_mixture(), torch.Generator().manual_seed(seed)
    for _ in range(cfg['teacher_steps']):
        loss = common.edm_loss(net, as_images(p.sample(cfg['teacher_batch'], g)[0])).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    os.makedirs(work, exist_ok=True)
    torch.save(net.state_dict(), path + '.tmp')
    os.replace(path + '.tmp', path)
    return net.eval().requires_grad_(False)


def generate(G, n, seed, sigma_init):
    z = torch.randn(n, 2, 1, 1, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return common.generate_one_step(G, z, sigma_init).reshape(n, 2).double()


def kl_noised(x_fit, x_eval, sigma):
    """KL(q_σ ‖ p_σ) with q_σ the mixture of Gaussians at the samples x_fit, by Monte Carlo over x_eval + σε
    (independent samples): E[log q̂_σ − log p_σ]. Its bias is measured by giving it p's own samples (exact 0)."""
    g = torch.Generator().manual_seed(7)
    x = x_eval + sigma * torch.randn(x_eval.shape, generator=g, dtype=torch.float64)
    q_hat, p = Mixture(x_fit), p_mixture()
    return float((chunked(q_hat.log_prob, x, sigma, 1024) - chunked(p.log_prob, x, sigma)).mean())


def sample_metrics(x, kl_n):
    """Exact-as-possible measures of generator samples x (network units): KL(q_σ ‖ p_σ) at KL_SIGMAS, the fraction
    of the 40 points covered (at least a quarter of their share within 0.3 protocol units), the mass off them."""
    d = torch.cdist(x * SCALE, P_POINTS)
    near = d.min(1)
    counts = torch.bincount(near.indices[near.values < 0.3], minlength=len(P_POINTS))
    out = {'covered': float((counts >= 0.25 * len(x) / len(P_POINTS)).double().mean()),
           'off_mass': float((near.values >= 0.3).double().mean())}
    for s in KL_SIGMAS:
        out[f'kl_{s:g}'] = kl_noised(x[:kl_n], x[kl_n:2 * kl_n], s / SCALE)
    return out


def train_arm(arm, lr, seed, cfg, work, teacher=None):
    """One arm from the teacher: the image scripts' own iteration (diff_instruct.iteration or score_free.iteration)
    at the image defaults but the generator lr; sample metrics at cfg['evals'] generator steps."""
    method, overrides = ARMS[arm]
    teacher = teacher or train_teacher(cfg, 0, work)
    torch.manual_seed(seed)
    amp, batch = common.Precision(torch.device('cpu'), 'fp32'), cfg['batch']
    G = copy.deepcopy(teacher).requires_grad_(True).train()
    opt_G = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.0, 0.999))  # Diff-Instruct's betas, as both scripts
    if method == 'diff_instruct':
        fake = copy.deepcopy(teacher).requires_grad_(True)
        nets = diff_instruct.Nets(G, fake, teacher, opt_G, torch.optim.Adam(fake.parameters(), lr=lr, betas=(0.0, 0.999)))
        args = SimpleNamespace(sigma_init=cfg['sigma_init'], fake_steps=1)
        step_fn = lambda: diff_instruct.iteration(nets, amp, batch, args)  # noqa: E731
    else:
        r = dict(DEFAULT, **overrides)
        cls = Classifier()
        cls.load_teacher_trunk(teacher)
        nets = score_free.Nets(G, cls, opt_G, torch.optim.Adam(cls.parameters(), lr=r['cls_lr'] or lr,
                                                                 betas=(0.0, 0.999)))
        args = SimpleNamespace(sigma_init=cfg['sigma_init'], cls_steps=r['cls_steps'], divergence=r['divergence'],
                               weight=r['weight'], gen_sigma_max=r['gen_sigma_max'])
        p, g = p_mixture(), torch.Generator().manual_seed(10_000 + seed)
        reals = iter(lambda: (as_images(p.sample(batch, g)[0]), None), None)
        for _ in range(cfg['cls_warmup']):
            score_free.iteration(nets, amp, reals, batch, args, train_G=False)
        step_fn = lambda: score_free.iteration(nets, amp, reals, batch, args)  # noqa: E731
    out, t0 = {'curve': [], 'points_init': None, 'points': None}, time.time()
    for step in range(cfg['steps'] + 1):
        if step in cfg['evals']:
            x = generate(G, 2 * cfg['kl_samples'], 99, cfg['sigma_init'])
            out['curve'].append(dict(step=step, train_s=time.time() - t0, **sample_metrics(x, cfg['kl_samples'])))
            out['points_init' if step == 0 else 'points'] = (x[:500] * SCALE).round(decimals=3).tolist()
            if not all(math.isfinite(v) for v in out['curve'][-1].values()):
                break
        if step < cfg['steps']:
            step_fn()
    state = {'G': G.state_dict(), 'cls': nets.cls.state_dict() if method == 'score_free' else None}
    return out, state


def teacher_samples(teacher, n, seed=99):
    """The teacher's own Heun samples (EDM's sampler, 18 steps, 35 evaluations): how good the start can be."""
    z = torch.randn(n, 2, 1, 1, generator=torch.Generator().manual_seed(seed))
    return common.edm_sampler(teacher, z).reshape(n, 2).double()


def verifier_metrics(G, cls, cfg, ks, sigma_p=0.1):
    """Part 4: draw k one-step candidates per sample, keep one with probability ∝ e^{−c} (score_free's resample
    rule) at σ = sigma_p, with the learned c and with the exact one, log q̂_σ − log p_σ (q̂_σ: the mixture of 16,384
    other generator samples, which is q_σ up to sampling error). Sample metrics of the kept points per k."""
    n, sigma = 2 * cfg['kl_samples'], sigma_p / SCALE
    q_hat, p = Mixture(generate(G, 16384, 123, cfg['sigma_init'])), p_mixture()
    out = {}
    for k in ks:
        x = generate(G, n * k, 1000 + k, cfg['sigma_init'])
        noisy = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(2000 + k), dtype=torch.float64)
        logits = {'exact': chunked(q_hat.log_prob, noisy, sigma, 1024) - chunked(p.log_prob, noisy, sigma)}
        with torch.no_grad():
            logits['learned'] = torch.cat([cls(as_images(c), torch.full([len(c)], sigma, dtype=torch.float32)).double()
                                           for c in noisy.split(4096)])
        for name, c in logits.items():
            pick = torch.multinomial(torch.softmax(-c.reshape(n, k), 1), 1,
                                     generator=torch.Generator().manual_seed(3000 + k))[:, 0]
            out[f'{name}_k{k}'] = sample_metrics(x.reshape(n, k, 2)[torch.arange(n), pick], cfg['kl_samples'])
    return out


# ------------------------------------------------------------------------------------------------------
# The jobs, their records, and the page
# ------------------------------------------------------------------------------------------------------

STATIC_SEEDS = {'small': list(range(10)), 'full': [0]}
TUNE_SEEDS, E2E_SEEDS, VERIFIER_KS = [0, 1], list(range(10)), [1, 2, 4, 8, 16]
# The verdict rule, fixed before the runs: A is lower than B when mean(B) − mean(A) exceeds twice the standard
# error of the difference of the seed means (Welch), higher when the opposite does, otherwise "no difference
# beyond 2 SE". For paired measurements (the same seed's estimators on the same evaluation set; the verifier against
# k = 1) the SE is that of the paired differences.


def record_path(records, name):
    return os.path.join(records, name.replace(':', '_') + '.json')


def save_record(records, name, obj):
    os.makedirs(records, exist_ok=True)
    path = record_path(records, name)
    with open(path + '.tmp', 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(path + '.tmp', path)


def load_record(records, name):
    path = record_path(records, name)
    return json.load(open(path)) if os.path.exists(path) else None


def chosen_lr(records, method):
    """The generator lr of a method: the one of GEN_LRS with the lowest mean final KL at σ 0.3 over TUNE_SEEDS."""
    means = {}
    for lr in GEN_LRS:
        recs = [load_record(records, f'tune:{method}:{lr:g}:{s}') for s in TUNE_SEEDS]
        if any(r is None for r in recs):
            return None
        finals = [r['curve'][-1] for r in recs]
        means[lr] = (sum(f.get('kl_0.3', math.inf) if math.isfinite(f.get('kl_0.3', math.inf)) else math.inf
                         for f in finals) / len(finals))
    return min(means, key=means.get)


def run(args):
    dry = args.dry
    records = os.path.join('/tmp/exact2d_dry' if dry else OUT, 'records')
    work = os.path.join('/tmp/exact2d_dry' if dry else os.path.join(ROOT, 'runs', 'exact2d'), 'work')
    cfg = E2E_DRY if dry else E2E
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    sizes = {'dry': [0, 1]} if dry else STATIC_SEEDS
    static = []  # the reduced size's ten seeds first; the protocol's size after everything else
    for size, seeds in sizes.items():
        for seed in seeds:
            for kind in ('ratio', 'edm', 'plain'):
                for qname in ('far', 'near'):
                    static.append((f'static:{size}:{seed}:{kind}:{qname}', lambda size=size, seed=seed, kind=kind,
                                   qname=qname: {'metrics': train_static(kind, q_mixtures()[qname], size, seed, work)}))
    todo = [job for job in static if ':full:' not in job[0]]
    def teacher_job():
        heun = teacher_samples(train_teacher(cfg, 0, work), 2 * cfg['kl_samples'])
        p_itself = p_mixture().sample(2 * cfg['kl_samples'], torch.Generator().manual_seed(5))[0]
        return {'heun': sample_metrics(heun, cfg['kl_samples']), 'p_itself': sample_metrics(p_itself, cfg['kl_samples']),
                'heun_points': (heun[:500] * SCALE).round(decimals=3).tolist()}
    todo.append(('teacher', teacher_job))
    for method in ('di', 'sf_rkl'):
        for lr in GEN_LRS:
            for seed in TUNE_SEEDS:
                todo.append((f'tune:{method}:{lr:g}:{seed}', lambda method=method, lr=lr, seed=seed:
                             {'curve': train_arm(method, lr, seed, cfg, work)[0]['curve']}))
    for seed in E2E_SEEDS[:2] if dry else E2E_SEEDS:
        for arm, (method, _) in ARMS.items():
            def job(arm=arm, method=method, seed=seed):
                lr = chosen_lr(records, 'di' if method == 'diff_instruct' else 'sf_rkl')
                result, state = train_arm(arm, lr, seed, cfg, work)
                if arm in ('sf_rkl', 'sf_spec'):  # the verifier's generators
                    torch.save(state, os.path.join(work, f'e2e_{arm}_{seed}.pt'))
                return {'lr': lr, **result}
            todo.append((f'e2e:{arm}:{seed}', job))
        for arm in ('sf_rkl', 'sf_spec'):
            def vjob(arm=arm, seed=seed):
                G, cls = Denoiser(), Classifier()
                state = torch.load(os.path.join(work, f'e2e_{arm}_{seed}.pt'))
                G.load_state_dict(state['G']), cls.load_state_dict(state['cls'])
                return {'ks': VERIFIER_KS, **verifier_metrics(G.eval(), cls.eval(), cfg, VERIFIER_KS)}
            todo.append((f'verifier:{arm}:{seed}', vjob))
    for arm in ('di', 'sf_rkl'):
        for seed in LONG['seeds'][:1] if dry else LONG['seeds']:
            def ljob(arm=arm, seed=seed):
                lr = chosen_lr(records, 'di' if arm == 'di' else 'sf_rkl')
                long = dict(cfg, steps=LONG['steps'] // (100 if dry else 1),
                            evals=[e // (100 if dry else 1) for e in LONG['evals']])
                return {'lr': lr, **train_arm(arm, lr, seed, long, work)[0]}
            todo.append((f'long:{arm}:{seed}', ljob))
    full = [job for job in static if ':full:' in job[0]]  # the two estimators of the question first, plain nets last
    todo += sorted(full, key=lambda job: ':plain:' in job[0])
    for name, fn in todo:
        if load_record(records, name) is not None:
            continue
        t0 = time.time()
        print(f'exact2d: {name}', flush=True)
        rec = fn()
        rec.update(job=name, seconds=round(time.time() - t0, 1), machine=machine())
        save_record(records, name, rec)
        print(f'exact2d: {name} done in {rec["seconds"]:.0f} s', flush=True)


def machine():
    try:
        info = open('/proc/cpuinfo').read()
        fam = info.split('cpu family')[1].split(':')[1].split()[0]
        model = info.split('\nmodel\t')[1].split(':')[1].split()[0]
        return f'{info.split("vendor_id")[1].split(":")[1].split()[0]} family {fam} model {model}, {os.cpu_count()} cores'
    except (OSError, IndexError):
        return 'unknown'



def mean_sd(values):
    n = len(values)
    m = sum(values) / n
    return m, (sum((v - m) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0


def cell(values, digits=3):
    if not values:
        return '–'
    m, sd = mean_sd(values)
    return f'{m:.{digits}f} ± {sd:.{digits}f}' if len(values) > 1 else f'{m:.{digits}f} (one seed)'


def compare(a, b, paired=False):
    """(verdict, difference mean(a) − mean(b), its SE) by the pre-set rule: 'lower' / 'higher' when the difference
    exceeds twice its SE, else 'no difference beyond 2 SE' (paired: SE of the per-seed differences)."""
    if len(a) < 2 or len(b) < 2:
        return 'too few seeds', math.nan, math.nan
    if paired:
        d = [x - y for x, y in zip(a, b)]
        diff, se = mean_sd(d)[0], mean_sd(d)[1] / len(d) ** 0.5
    else:
        diff = mean_sd(a)[0] - mean_sd(b)[0]
        se = (mean_sd(a)[1] ** 2 / len(a) + mean_sd(b)[1] ** 2 / len(b)) ** 0.5
    verdict = 'lower' if diff < -2 * se else 'higher' if diff > 2 * se else 'no difference beyond 2 SE'
    return verdict, diff, se


def scatter(points_by_name, path, size=220):
    """Side-by-side scatter plots of 2-D samples (protocol units), p's 40 points as red crosses."""
    from PIL import Image, ImageDraw
    names = list(points_by_name)
    img = Image.new('RGB', (size * len(names), size + 18), 'white')
    d = ImageDraw.Draw(img, 'RGBA')
    to_px = lambda v: (v + 5) / 10 * (size - 10) + 5  # noqa: E731  [−5, 5] in protocol units
    for i, name in enumerate(names):
        ox = i * size
        d.rectangle([ox + 2, 2, ox + size - 3, size - 3], outline=(180, 180, 180))
        for x, y in points_by_name[name]:
            px, py = ox + to_px(x), size - to_px(y)
            d.ellipse([px - 1, py - 1, px + 1, py + 1], fill=(31, 119, 180, 90))
        for x, y in P_POINTS.tolist():
            px, py = ox + to_px(x), size - to_px(y)
            d.line([px - 3, py, px + 3, py], fill=(214, 39, 40)), d.line([px, py - 3, px, py + 3], fill=(214, 39, 40))
        d.text((ox + 6, size + 3), name, fill='black')
    img.save(path)


def report(out, dry=False):
    """results/exact2d/README.md and its figures, every number from the records."""
    sys.path.insert(0, os.path.join(ROOT, 'results'))
    from study import plot_curves
    records = os.path.join(out, 'records')
    rec = lambda name: load_record(records, name)  # noqa: E731
    lines = ['# The exact 2-D testbed', '',
             'Made by `python results/exact2d.py report` from the records of `python results/exact2d.py run` '
             '(`results/exact2d/records`); no number here is typed by hand. The script\'s docstring has the design; '
             'every loss and update is the project\'s own (`common.edm_loss`, `score_free.classifier_loss`, '
             '`score_free.iteration`, `diff_instruct.iteration`) on points given as 2-channel 1×1 images.', '',
             f'**Data** p: 40 equally weighted points, a 5×8 grid in [−4, 4]² with uniform jitter ±0.2 (seed 0); the '
             f'networks see it divided by {SCALE:.3f}, so that its RMS is EDM\'s σ_data = 0.5 and the image recipe\'s '
             f'σ-distributions mean what they mean on images. **Every σ below is in the grid\'s units.** '
             '**Networks**: MLPs, 4 hidden layers of 256, SiLU, input (x, c_noise = ln σ / 4). '
             '**Verdicts**: "lower"/"higher" when the difference of seed means exceeds twice its standard error '
             '(paired by seed where both sides share the seed\'s evaluation set), otherwise "no difference beyond 2 '
             'SE" — the rule was fixed in the script before the runs.', '']
    machines = sorted({r['machine'] for r in (json.load(open(os.path.join(records, f)))
                                             for f in sorted(os.listdir(records))) if 'machine' in r})
    lines += [f'Made on: {", ".join(machines)}.', '']
    words = []

    # Part 1 -----------------------------------------------------------------------------------------
    kinds = {'ratio': 'ratio ∇ₓc (one classifier)', 'edm': 'D_fake − D_teacher (two EDM denoisers)',
             'plain': 's_fake − s_teacher (two plain score nets)'}
    lines += ['## 1. Estimator bias on fixed q', '',
              'q **far**: the grid shrunk by 0.8 and shifted by (0.6, −0.4) (a generator early in training); q **near**: '
              'each point moved by 0.15 in a random direction (late in training). Each estimator of s_q − s_p trained '
              f'with Adam 1e-3 on σ log-uniform over [{SIGMA_RANGE[0]}, {SIGMA_RANGE[1]}]; measured on 16,384 held-out '
              'x_σ ~ q_σ (σ log-uniform over the same range) against the closed form. **raw**: '
              '√mean‖ŝ − s‖² / √mean‖s‖² (pooled); **σ²**: the same for σ²ŝ (the specification\'s generator weight); '
              '**cos**: mean cosine of ŝ and s per point (the direction the normalized recipe uses; higher is '
              'better); **grad**: relative error of the parameter gradient of a generator whose parameters are q\'s '
              'points, with w = σ² and with the normalized recipe\'s unit directions.', '']
    static_seeds = {'dry': [0, 1]} if dry else STATIC_SEEDS
    e2e_seeds = E2E_SEEDS[:2] if dry else E2E_SEEDS
    for size, seeds in static_seeds.items():
        cfg = SIZES[size]
        last = str(cfg['steps'])
        lines += [f'### Size {size}: batch {cfg["batch"]}, {cfg["steps"]} updates, seeds {seeds[0]}–{seeds[-1]}'
                  if len(seeds) > 1 else f'### Size {size} (the protocol\'s): batch {cfg["batch"]}, {cfg["steps"]} '
                  f'updates, seed {seeds[0]}', '']
        for qname in ('far', 'near'):
            vals = {k: [r['metrics'][last] for r in (rec(f'static:{size}:{s}:{k}:{qname}') for s in seeds) if r]
                    for k in kinds}
            cols = ['raw', 'sigma2', 'cos', 'grad_sigma2', 'grad_normalized']
            lines += [f'q {qname}, after {last} updates:', '', '| estimator | seeds | ' + ' | '.join(cols) + ' |',
                      '|---|---|' + '---|' * len(cols)]
            for k, label in kinds.items():
                lines.append(f'| {label} | {len(vals[k])} | ' + ' | '.join(cell([v[c] for v in vals[k]]) for c in cols)
                             + ' |')
            lines.append('')
            if size == 'full' and vals['ratio'] and vals['edm']:  # one seed: numbers, no verdict
                words.append(f'q {qname} at the protocol\'s size ({min(len(vals["ratio"]), len(vals["edm"]))} seed, '
                             'no verdict by the rule), ratio against two EDM denoisers: ' + ', '.join(
                                 f'{c} {mean_sd([v[c] for v in vals["ratio"]])[0]:.3f} against '
                                 f'{mean_sd([v[c] for v in vals["edm"]])[0]:.3f}' for c in cols))
            if size != 'full':
                bands = [f'{lo:g}–{hi:g}' for lo, hi in zip(BANDS[:-1], BANDS[1:])]
                lines += ['| estimator | metric | ' + ' | '.join(f'σ {b}' for b in bands) + ' |',
                          '|---|---|' + '---|' * len(bands)]
                for k, label in kinds.items():
                    for m in ('raw', 'sigma2', 'cos'):
                        lines.append(f'| {k} | {m} | ' + ' | '.join(cell([v[f"{m}_b{b}"] for v in vals[k]])
                                                                    for b in range(len(bands))) + ' |')
                lines.append('')
                names = {'raw': 'raw error', 'sigma2': 'σ²-weighted error', 'cos': 'cosine',
                         'grad_sigma2': 'parameter-gradient error (σ²)', 'grad_normalized':
                         'parameter-gradient error (normalized)'}
                if min(len(vals['ratio']), len(vals['edm'])) >= 2:
                    for comp, m, better in [('edm', m, b) for m, b in (('raw', 'lower'), ('sigma2', 'lower'),
                                                                       ('cos', 'higher'), ('grad_sigma2', 'lower'),
                                                                       ('grad_normalized', 'lower'))] + [
                            ('plain', 'sigma2', 'lower'), ('plain', 'cos', 'higher')]:
                        a, b = [v[m] for v in vals['ratio']], [v[m] for v in vals[comp]]
                        if len(b) < 2:
                            continue
                        n = min(len(a), len(b))
                        verdict, diff, se = compare(a[:n], b[:n], paired=True)
                        ma, mb = mean_sd(a[:n])[0], mean_sd(b[:n])[0]
                        who = ('no difference beyond 2 SE' if verdict not in ('lower', 'higher') else
                               'the ratio is better' if verdict == better else 'the two networks are better')
                        words.append(f'q {qname}, {names[m]}: ratio {ma:.3f} vs two {comp.upper()} '
                                     f'{"denoisers" if comp == "edm" else "score nets"} {mb:.3f} '
                                     f'({n} seeds, paired difference {diff:+.3f} ± SE {se:.3f}'
                                     + (f', two-network ÷ ratio {mb / ma:.2f}' if better == 'lower' else '')
                                     + f'): {who}')
                    for b_i, band in enumerate(bands):
                        a = [v[f'sigma2_b{b_i}'] for v in vals['ratio']]
                        b = [v[f'sigma2_b{b_i}'] for v in vals['edm']]
                        n = min(len(a), len(b))
                        verdict, diff, se = compare(a[:n], b[:n], paired=True)
                        who = ('no difference beyond 2 SE' if verdict not in ('lower', 'higher') else
                               'the ratio is better' if verdict == 'lower' else 'the two networks are better')
                        words.append(f'q {qname}, σ {band}, σ²-weighted error: ratio {mean_sd(a[:n])[0]:.3f} vs two '
                                     f'EDM denoisers {mean_sd(b[:n])[0]:.3f}: {who}')
            # error against training for this size
            fig = f'static_{size}_{qname}.png'
            series = {}
            for k in kinds:
                curves = [[(int(st), r['metrics'][st]['sigma2']) for st in sorted(r['metrics'], key=int)]
                          for r in (rec(f'static:{size}:{s}:{k}:{qname}') for s in seeds) if r]
                if curves:
                    xs = [x for x, _ in curves[0]]
                    series[k] = [(x, mean_sd([c[i][1] for c in curves])[0], min(c[i][1] for c in curves),
                                  max(c[i][1] for c in curves)) for i, x in enumerate(xs)]
            plot_curves(series, os.path.join(out, fig), 'updates (sigma^2-weighted relative error; band: the seeds)')
            band_fig, per_band = f'bands_{size}_{qname}.png', {}
            for k in kinds:
                finals = [v[f'sigma2_b{b}'] for v in vals[k] for b in range(len(BANDS) - 1)]
                per_band[k] = [(b + 1, mean_sd(finals[b::len(BANDS) - 1])[0], min(finals[b::len(BANDS) - 1]),
                                max(finals[b::len(BANDS) - 1])) for b in range(len(BANDS) - 1)] if vals[k] else []
            plot_curves(per_band, os.path.join(out, band_fig), 'sigma band: ' + ', '.join(
                f'{b + 1} = {lo:g}-{hi:g}' for b, (lo, hi) in enumerate(zip(BANDS[:-1], BANDS[1:]))))
            lines += [f'| σ²-weighted error against training | per σ band, after {last} updates |', '|---|---|',
                      f'| ![against training]({fig}) | ![per band]({band_fig}) |', '']

    # Part 2 -----------------------------------------------------------------------------------------
    cfg = E2E_DRY if dry else E2E
    lines += ['## 2. End to end: one-step generators from a teacher', '',
              f'Teacher: an EDM denoiser trained on p by `common.edm_loss` (EDM\'s log-normal σ), {cfg["teacher_steps"]} '
              f'updates of batch {cfg["teacher_batch"]}, seed 0. Every arm starts its generator G(z) = D(σ_init·z; '
              f'σ_init), σ_init = {cfg["sigma_init"]}, as a copy of it and runs the image script\'s own iteration '
              f'(`diff_instruct.iteration`: one fake-score step, then the generator step; `score_free.iteration` after '
              f'{cfg["cls_warmup"]} classifier-only iterations, the classifier from the teacher\'s hidden layers), '
              f'batch {cfg["batch"]}, {cfg["steps"]} generator steps, Adam betas (0, 0.999), generator lr chosen per '
              f'method from {", ".join(f"{v:g}" for v in GEN_LRS)} by the lowest mean final KL at σ 0.3 over seeds '
              f'{TUNE_SEEDS} (Diff-Instruct\'s fake score at the generator\'s lr, the classifier at 1e-3, as the image '
              f'defaults). Measured on G itself (no EMA): **KL(q_σ ‖ p_σ)** at σ {", ".join(map(str, KL_SIGMAS))}'
              f' (p_σ exact; q_σ the mixture of {cfg["kl_samples"]} generator samples, evaluated at as many others), '
              '**covered**: the fraction of p\'s 40 points with at least a quarter of their share of samples within '
              '0.3, **off**: the mass farther than 0.3 from every point.', '']
    t = rec('teacher')
    cols = [f'kl_{s:g}' for s in KL_SIGMAS] + ['covered', 'off_mass']
    head = '| | ' + ' | '.join(cols) + ' |'
    if t:
        lines += [head, '|---|' + '---|' * len(cols),
                  '| p itself (the KL estimator\'s bias: exact value 0) | ' + ' | '.join(f'{t["p_itself"][c]:.4f}'
                                                                                        for c in cols) + ' |',
                  '| teacher, Heun (35 evaluations) | ' + ' | '.join(f'{t["heun"][c]:.4f}' for c in cols) + ' |', '']
    lrs = {m: chosen_lr(records, m) for m in ('di', 'sf_rkl')}
    lines += ['Generator lr tuning (final KL at σ 0.3, mean over the tuning seeds):', '',
              '| method | ' + ' | '.join(f'lr {v:g}' for v in GEN_LRS) + ' | chosen |', '|---|' + '---|' * (len(GEN_LRS) + 1)]
    for m in ('di', 'sf_rkl'):
        row = []
        for lr in GEN_LRS:
            rs = [rec(f'tune:{m}:{lr:g}:{s}') for s in TUNE_SEEDS]
            row.append(cell([r['curve'][-1].get('kl_0.3', math.nan) for r in rs if r]))
        lines.append(f'| {m} | ' + ' | '.join(row) + f' | {lrs[m] if lrs[m] else "–"} |')
    lines.append('')
    finals = {}
    for arm in ARMS:
        rs = [rec(f'e2e:{arm}:{s}') for s in e2e_seeds]
        finals[arm] = [r['curve'][-1] for r in rs if r and r['curve'][-1]['step'] == cfg['steps']]
    init = [r['curve'][0] for r in (rec(f'e2e:di:{s}') for s in e2e_seeds) if r]
    lines += [f'After {cfg["steps"]} generator steps (mean ± sd over seeds; a run that diverged is left out and '
              'counted):', '', '| arm | seeds | ' + ' | '.join(cols) + ' |', '|---|---|' + '---|' * len(cols)]
    if init:
        lines.append(f'| the initial generator (step 0) | {len(init)} | ' + ' | '.join(cell([v[c] for v in init])
                                                                                   for c in cols) + ' |')
    for arm in ARMS:
        lines.append(f'| {arm} | {len(finals[arm])} | ' + ' | '.join(cell([v[c] for v in finals[arm]]) for c in cols)
                     + ' |')
    lines.append('')
    for arm in ('sf_rkl', 'sf_js', 'sf_fkl', 'sf_hellinger'):
        for c in ('kl_0.1', 'kl_0.3'):
            verdict, diff, se = compare([v[c] for v in finals[arm]], [v[c] for v in finals['di']])
            if not math.isnan(diff):
                words.append(f'{arm} against di, {c}: {verdict} ({diff:+.4f} ± SE {se:.4f})')
    series = {}
    for arm in ('di', 'sf_rkl', 'sf_js', 'sf_fkl', 'sf_hellinger', 'sf_spec'):
        curves = [r['curve'] for r in (rec(f'e2e:{arm}:{s}') for s in e2e_seeds) if r and
                  r['curve'][-1]['step'] == cfg['steps']]
        if curves:
            series[arm] = [(pt['step'], mean_sd([c[i]['kl_0.3'] for c in curves])[0],
                            min(c[i]['kl_0.3'] for c in curves), max(c[i]['kl_0.3'] for c in curves))
                           for i, pt in enumerate(curves[0])]
    plot_curves(series, os.path.join(out, 'e2e_kl.png'), 'generator steps (KL at sigma 0.3)')
    lines += ['![KL at σ 0.3 against generator steps](e2e_kl.png)', '']
    long_runs = {arm: [r for r in (rec(f'long:{arm}:{s}') for s in LONG['seeds']) if r] for arm in ('di', 'sf_rkl')}
    if any(long_runs.values()):
        steps = [pt['step'] for pt in next(r for rs in long_runs.values() for r in rs)['curve']]
        lines += [f'The longer pair ({LONG["steps"]} generator steps, seeds {LONG["seeds"]}, the same lr and flags): KL at '
                  'σ 0.3 / covered along training:', '', '| arm | seeds | ' + ' | '.join(f'step {s}' for s in steps) + ' |',
                  '|---|---|' + '---|' * len(steps)]
        for arm, rs in long_runs.items():
            lines.append(f'| {arm} | {len(rs)} | ' + ' | '.join(
                cell([r['curve'][i]['kl_0.3'] for r in rs if len(r['curve']) > i], 3) + ' / ' +
                cell([r['curve'][i]['covered'] for r in rs if len(r['curve']) > i], 2) for i in range(len(steps))) + ' |')
        long_series = {arm: [(pt['step'], mean_sd([r['curve'][i]['kl_0.3'] for r in rs])[0],
                              min(r['curve'][i]['kl_0.3'] for r in rs), max(r['curve'][i]['kl_0.3'] for r in rs))
                             for i, pt in enumerate(rs[0]['curve'])] for arm, rs in long_runs.items()
                       if rs and all(len(r['curve']) == len(rs[0]['curve']) for r in rs)}
        plot_curves(long_series, os.path.join(out, 'long_kl.png'), 'generator steps (KL at sigma 0.3, the longer pair)')
        lines += ['', '![KL at σ 0.3, the longer pair](long_kl.png)']
        lines.append('')
        fin = {arm: [r['curve'][-1] for r in rs if r['curve'][-1]['step'] == steps[-1]] for arm, rs in long_runs.items()}
        verdict, diff, se = compare([v['kl_0.3'] for v in fin['sf_rkl']], [v['kl_0.3'] for v in fin['di']])
        words.append(f'after {LONG["steps"]} steps (the longer pair), sf_rkl against di, KL σ 0.3: {verdict} '
                     f'({diff:+.4f} ± SE {se:.4f})')
    pics = {}
    if t and 'heun_points' in t:
        pics['teacher (Heun)'] = t['heun_points']
    for arm in ('di', 'sf_rkl', 'sf_spec'):
        r = rec(f'e2e:{arm}:0')
        if r and 'points' in r:
            pics.setdefault('initial G', r['points_init'])
            pics[arm] = r['points']
    if pics:
        scatter(pics, os.path.join(out, 'samples.png'))
        lines += ['Samples of seed 0 (blue) and p\'s points (red):', '', '![samples](samples.png)', '']

    # Part 3 -----------------------------------------------------------------------------------------
    lines += ['## 3. The recipe: which departures from the specification survive', '',
              'The image default (normalized weight, generator σ ≤ 2 in image units, two classifier steps on the '
              'halves of each iteration\'s batch, the classifier at its own lr, 1e-3; its frozen encoder levels have no '
              'counterpart in this MLP) against each departure undone alone, and the specification '
              '(all four undone: σ² weight, EDM\'s full σ range, one classifier step, one lr), reverse KL, the same seeds:',
              '', '| arm | against sf_rkl (default), KL σ 0.1 | KL σ 0.3 |', '|---|---|---|']
    for arm in ('sf_weight_sigma2', 'sf_sigma_inf', 'sf_cls_steps_1', 'sf_cls_lr_1x', 'sf_spec'):
        row = []
        for c in ('kl_0.1', 'kl_0.3'):
            verdict, diff, se = compare([v[c] for v in finals[arm]], [v[c] for v in finals['sf_rkl']])
            row.append(f'{verdict} ({diff:+.4f} ± SE {se:.4f})' if not math.isnan(diff) else verdict)
        lines.append(f'| {arm} | ' + ' | '.join(row) + ' |')
        words.append(f'{arm} against the default: KL σ 0.3 {row[1]}')
    verdict, diff, se = compare([v['kl_0.3'] for v in finals['sf_spec']], [v['kl_0.3'] for v in finals['di']])
    words.append(f'the specification (sf_spec) against di, KL σ 0.3: {verdict} ({diff:+.4f} ± SE {se:.4f})')
    lines.append('')

    # Part 4 -----------------------------------------------------------------------------------------
    lines += ['## 4. The ratio as a verifier', '',
              'k one-step candidates per sample, one kept with probability ∝ e^{−c} at σ 0.1 (score_free\'s resample '
              'rule), c the learned classifier\'s logit or the exact log q̂_σ/p_σ (q̂_σ from 16,384 other samples). '
              'KL at σ 0.1 and the coverage of the kept samples, paired with k = 1 per seed:', '']
    for arm in ('sf_rkl', 'sf_spec'):
        vs = [r for r in (rec(f'verifier:{arm}:{s}') for s in e2e_seeds) if r]
        if not vs:
            continue
        lines += [f'{arm} ({len(vs)} seeds):', '', '| k | exact: KL σ 0.1 | covered | learned: KL σ 0.1 | covered |',
                  '|---|---|---|---|---|']
        for k in VERIFIER_KS:
            lines.append(f'| {k} | ' + ' | '.join(cell([v[f'{n}_k{k}'][c] for v in vs], 4) for n in ('exact', 'learned')
                                                   for c in ('kl_0.1', 'covered')) + ' |')
        for n in ('exact', 'learned'):
            k = VERIFIER_KS[-1]
            verdict, diff, se = compare([v[f'{n}_k{k}']['kl_0.1'] for v in vs], [v[f'{n}_k1']['kl_0.1'] for v in vs],
                                        paired=True)
            words.append(f'verifier ({arm}, {n} ratio), k = {k} against k = 1, KL σ 0.1: {verdict} '
                         f'({diff:+.4f} ± SE {se:.4f})')
        lines.append('')
    at = lines.index('## 1. Estimator bias on fixed q')
    lines[at:at] = ['## In words (generated from the verdicts below)', ''] + [f'- {w}' for w in words] + ['']
    with open(os.path.join(out, 'README.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print(f'wrote {os.path.join(out, "README.md")}')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('cmd', choices=['run', 'report'])
    p.add_argument('--dry', action='store_true', help='run: a few steps of every job, records under /tmp')
    args = p.parse_args(argv)
    if args.cmd == 'run':
        run(args)
    else:
        report('/tmp/exact2d_dry' if args.dry else OUT, args.dry)


if __name__ == '__main__':
    main()
