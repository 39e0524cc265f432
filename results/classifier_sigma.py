"""Where does the score-free generator's update come from? A per-σ look at a classifier trained on real images.

  python results/classifier_sigma.py [--steps 150] [--di-steps 150] [--teacher runs/pilot/teacher/checkpoint.pt]
                                     [score_free flags]

Trains score_free.py's classifier for --steps iterations against the frozen teacher-initialised generator (the
warm-up, on the JPEG CIFAR-10 of ../shared), then, for a fixed grid of σ, prints on 128 generated and 128 real
images: the accuracy on each side, the mean logit on each side, the mean norm of the generator-side input
gradient σ²‖∇ₓc‖ (what w(σ) = σ² multiplies), and that norm's share of the whole update once weighted by how
often EDM's log-normal draws σ. Writes the table to results/classifier_sigma.md (OUT=... elsewhere). Variants of the classifier measured this way
with options since removed are in results/NOTES.md.

With --di-steps N it also trains Diff-Instruct's fake score (a copy of the teacher, diff_instruct.fake_score_loss,
lr 1e-4, Adam β = (0, 0.999)) for N steps on the same frozen generator, and compares per σ, image by image, the two
methods' updates of x₀: Diff-Instruct's D_fake − D_teacher (= σ²(s_q − s_p) as the two denoisers estimate it) and
score-free's σ²∇ₓc (the same quantity as the classifier estimates it): their norms, their shares, and the cosine
between them (1: the classifier points where Diff-Instruct, which works at this scale, points).
"""
import copy
import os
import sys
import time
import zlib

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import common  # noqa: E402
import diff_instruct  # noqa: E402
import edm_import  # noqa: E402
import score_free  # noqa: E402

SIGMAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20)


def main(argv):
    own = {'--steps': 150, '--di-steps': 0}
    for flag in own:
        if flag in argv:
            i = argv.index(flag)
            own[flag] = int(argv[i + 1])
            argv = argv[:i] + argv[i + 2:]
    steps, di_steps = own['--steps'], own['--di-steps']
    shared = os.environ.get('SHARED', os.path.join(os.path.dirname(ROOT), 'shared'))
    defaults = ['--dataset', os.path.join(shared, 'data', 'cifar10-jpeg-train.zip'), '--teacher',
                os.path.join(ROOT, 'runs', 'pilot', 'teacher', 'checkpoint.pt'), '--batch', '64', '--cls-lr', '1e-3',
                '--device', 'cpu']
    args = score_free.parse_args(defaults + argv)
    torch.manual_seed(0)
    device = torch.device('cpu')
    data = common.load_dataset(args.dataset, args.data_dir, 'train', False)
    reals = common.BatchSampler(data, args.batch, device, 0, 0, False)
    teacher, _ = edm_import.load_teacher(args.teacher, device, False)
    nets = score_free.build_nets(teacher, args, device)
    G, cls, fp32 = nets.G, nets.cls, common.Precision(device, 'fp32')
    t0 = time.time()
    for i in range(steps):
        stats = score_free.iteration(nets, fp32, reals, args.batch, args, train_G=False)
    print(f'{steps} classifier steps in {time.time() - t0:.0f} s: BCE {stats[0]:.3f}, accuracy fake / real '
          f'{stats[2]:.2f} / {stats[3]:.2f}')
    cls.requires_grad_(False)
    real = torch.cat([next(reals)[0], next(reals)[0]])[:128]
    with torch.no_grad():
        x0 = common.generate_one_step(G, torch.randn(128, G.img_channels, G.img_resolution, G.img_resolution),
                                      args.sigma_init)
    rng = torch.get_rng_state()  # the comparison below sees the same noise whether the fake score is cached or not
    fake = train_fake_score(teacher, G, args, di_steps) if di_steps else None
    torch.set_rng_state(rng)
    log_normal = torch.distributions.Normal(-1.2, 1.2)  # EDM's ln σ
    rows = []
    for s in SIGMAS:
        sigma = torch.full((128, 1, 1, 1), float(s))
        x = (x0 + s * torch.randn_like(x0)).requires_grad_(True)
        c = cls(x, sigma)
        g, = torch.autograd.grad(c.sum(), x)
        with torch.no_grad():
            c_real = cls(real + s * torch.randn_like(real), sigma)
        density = log_normal.log_prob(torch.tensor(float(s)).log()).exp().item()  # per unit of ln σ
        rows.append(dict(sigma=s, density=density, acc_fake=(c > 0).float().mean().item(),
                         acc_real=(c_real < 0).float().mean().item(), c_fake=c.mean().item(),
                         c_real=c_real.mean().item(), grad=(s ** 2 * g).flatten(1).norm(dim=1).mean().item()))
        if fake is not None:
            with torch.no_grad():
                d = (fake(x, sigma) - teacher(x, sigma)).flatten(1)  # Diff-Instruct's D_q − D_p at the same x_σ
            rows[-1].update(di=d.norm(dim=1).mean().item(),
                            cos=torch.nn.functional.cosine_similarity(d, (s ** 2 * g).flatten(1), dim=1).mean().item())
    total = sum(r['density'] * r['grad'] for r in rows)
    lines = ['# Where the score-free update comes from (per σ)', '',
             f'Made by `python results/classifier_sigma.py --steps {steps}{f" --di-steps {di_steps}" if di_steps else ""}'
             f'{"".join(" " + a for a in argv)}`: the classifier after {steps} warm-up '
             f'steps (lr {args.cls_lr:g}) against the frozen generator initialised from `{os.path.relpath(args.teacher, ROOT)}` '
             f'({data.name}). Final BCE {stats[0]:.3f}, accuracy fake / real {stats[2]:.2f} / {stats[3]:.2f}.',
             '"share" = density of ln σ under EDM\'s log-normal × σ²‖∇ₓc‖, normalised over the grid.', '',
             '| σ | density of ln σ | acc fake | acc real | mean c fake | mean c real | σ²‖∇ₓc‖ | share |',
             '|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f'| {r["sigma"]} | {r["density"]:.3f} | {r["acc_fake"]:.2f} | {r["acc_real"]:.2f} | '
                     f'{r["c_fake"]:+.2f} | {r["c_real"]:+.2f} | {r["grad"]:.4f} | {r["density"] * r["grad"] / total:.3f} |')
    if fake is not None:
        total_di = sum(r['density'] * r['di'] for r in rows)
        lines += ['', f'## Against Diff-Instruct\'s update (fake score trained {di_steps} steps on the same generator)',
                  '', 'Per image at the same x_σ: DI = D_fake − D_teacher, SF = σ²∇ₓc; "share" as above; cosine '
                  'averaged over the 128 images (0: unrelated directions).', '',
                  '| σ | ‖DI‖ | DI share | σ²‖∇ₓc‖ | SF share | cos(SF, DI) |', '|---|---|---|---|---|---|']
        for r in rows:
            lines.append(f'| {r["sigma"]} | {r["di"]:.4f} | {r["density"] * r["di"] / total_di:.3f} | {r["grad"]:.4f} '
                         f'| {r["density"] * r["grad"] / total:.3f} | {r["cos"]:+.3f} |')
    out = os.environ.get('OUT', os.path.join(ROOT, 'results', 'classifier_sigma.md'))
    open(out, 'w').write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


def train_fake_score(teacher, G, args, steps, lr=1e-4):
    """Diff-Instruct's fake score after `steps` steps on the frozen generator (its fake-score step, eval mode),
    cached under runs/diag (it does not depend on the classifier flags being compared)."""
    cache = os.path.join(ROOT, 'runs', 'diag', f'fake_{steps}_{zlib.crc32(os.path.abspath(args.teacher).encode()):08x}.pt')
    fake = copy.deepcopy(teacher)
    if os.path.exists(cache):
        fake.load_state_dict(torch.load(cache))
        return fake.eval().requires_grad_(False)
    fake.requires_grad_(True)
    opt = common.make_adam(fake.parameters(), lr, (0.0, 0.999))
    t0 = time.time()
    for _ in range(steps):
        with torch.no_grad():
            z = torch.randn(args.batch, G.img_channels, G.img_resolution, G.img_resolution)
            x0 = common.generate_one_step(G, z, args.sigma_init)
        loss = diff_instruct.fake_score_loss(fake, x0).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    print(f'{steps} fake-score steps in {time.time() - t0:.0f} s')
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    torch.save(fake.state_dict(), cache)
    return fake.eval().requires_grad_(False)


if __name__ == '__main__':
    main(sys.argv[1:])
