"""Why does teacher initialisation matter? Train the same one-step method from different generator inits.

  python scratch_init.py --dataset cifar10 --total-kimg 5000
  python scratch_init.py --dataset cifar10 --method diff_instruct --arms teacher,random --total-kimg 5000
  (any other flag is passed on to the method, as in `python score_free.py --help`: e.g. --divergence js)

The paper's claims 3 and 4 (arXiv 2502.08005): initialising the one-step generator from the teacher's weights is
indispensable (random initialisation fails), and what it contributes is not the teacher's input→output mapping
but its feature representations across noise levels. Each arm trains the same method for the same budget from
another generator initialisation and records its FID curve (the classifier / fake score start as usual):
  teacher       the teacher's weights (features at every noise level; its one-step output is blurry)
  random        fresh initialisation ("from scratch")
  mapping       random init, then regression of z ↦ teacher ODE sample (Heun, same z): the teacher's mapping,
                without its diffusion features
  single_sigma  random init, then denoising training at σ = σ_init only: diffusion features at one noise level
  io_reinit     the teacher's weights with the input conv and output layers re-initialised: the inner features,
                without the teacher's exact function
The paper predicts teacher ≫ mapping, single_sigma ≫ random failing. This script measures it.
"""
import argparse
import json
import os
import sys

import torch

import common
import diff_instruct
import score_free

ARMS = ('teacher', 'random', 'mapping', 'single_sigma', 'io_reinit')
METHODS = {'score_free': score_free, 'diff_instruct': diff_instruct}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter, allow_abbrev=False)
    p.add_argument('--method', default='score_free', choices=sorted(METHODS), help='the one-step method to train')
    p.add_argument('--arms', default='teacher,random,mapping,single_sigma', help=f'comma-separated, of {ARMS}')
    p.add_argument('--outdir', default='runs/scratch_init', help='one sub-folder per arm, plus summary.json')
    p.add_argument('--init-kimg', type=float, default=2000,
                   help='images for the mapping / single_sigma pre-training (ours)')
    p.add_argument('--init-lr', type=float, default=1e-4, help='Adam lr of that pre-training (ours)')
    p.add_argument('--init-batch', type=int, default=128, help='batch of that pre-training (ours)')
    p.add_argument('--mapping-pairs', type=int, default=50000, help='teacher Heun samples to regress on (ours)')
    p.add_argument('--mapping-steps', type=int, default=18, help='Heun steps for those samples (EDM)')
    argv = sys.argv[1:] if argv is None else argv
    args, rest = p.parse_known_args(argv)
    arms = [a for a in args.arms.split(',') if a]
    bad = [a for a in arms if a not in ARMS]
    if bad or not arms:
        p.error(f'--arms: unknown {bad}; choose from {ARMS}')
    args.arms = arms
    if 'mapping' not in arms:
        common.refuse_flags(p, argv, ['mapping_pairs', 'mapping_steps'], 'without the mapping arm')
    if not {'mapping', 'single_sigma'} & set(arms):
        common.refuse_flags(p, argv, ['init_kimg', 'init_lr', 'init_batch'], 'without a pre-trained arm (mapping, '
                            'single_sigma)')
    if any(a == '--resume' or a.startswith('--resume=') for a in rest):
        p.error('--resume is not supported here: an arm starts from its initialisation (the outdir is per arm)')
    if min(args.init_kimg, args.init_batch, args.mapping_pairs, args.init_lr) <= 0 or args.mapping_steps < 2:
        p.error('--init-kimg, --init-batch, --init-lr and --mapping-pairs must be positive, --mapping-steps at least 2')
    method_args = METHODS[args.method].parse_args(rest + ['--outdir', args.outdir])
    if method_args.cond and 'mapping' in arms:  # refused here, not after the arms before it have trained
        p.error('--cond 1: the mapping arm is for unconditional teachers only; leave it out of --arms')
    return args, method_args


# ------------------------------------------------------------------------------------------------------
# The initialisations: each changes G in place
# ------------------------------------------------------------------------------------------------------

def fresh_weights(G, seed):
    """A newly initialised network of G's architecture (EDM's init), reproducible from seed; the training's own
    random stream is left where it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return common.EDMPrecond(**G.config).state_dict()


def init_random(G, seed=0):
    G.load_state_dict(fresh_weights(G, seed))


def init_io_reinit(G, seed=0):
    """Keep the teacher's inner blocks; re-initialise the input conv and the output norm + conv (DDPM++'s aux_*
    layers, ADM's out_*)."""
    fresh = fresh_weights(G, seed)
    first = next(iter(G.model.enc))
    res = G.img_resolution
    out = (('model.out_norm.', 'model.out_conv.') if hasattr(G.model, 'out_conv') else
           (f'model.dec.{res}x{res}_aux_norm.', f'model.dec.{res}x{res}_aux_conv.'))
    io = (f'model.enc.{first}.',) + out
    G.load_state_dict({k: fresh[k] if k.startswith(io) else v for k, v in G.state_dict().items()})


def pretrain(G, loss_fn, steps, lr):
    opt = torch.optim.Adam(G.parameters(), lr=lr)
    G.train()
    for _ in range(steps):
        loss = loss_fn().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        common.nan_to_num_grads(G.parameters())
        opt.step()
    return loss.item()


def teacher_samples(teacher, num, sigma_steps, batch, device):
    """(z, x) pairs: per-seed latents and the teacher's Heun samples from the same z."""
    shape = [teacher.img_channels, teacher.img_resolution, teacher.img_resolution]
    zs, xs = [], []
    for start in range(0, num, batch):
        seeds = list(range(start, min(start + batch, num)))
        z = common.seeded_latents(seeds, shape, device)
        xs.append(common.edm_sampler(teacher, z, num_steps=sigma_steps).float())
        zs.append(z)
    return torch.cat(zs), torch.cat(xs)


def init_mapping(G, teacher, sigma_init, args, device, seed=0):
    """Random init, then regress G(z) = D(σ_init·z; σ_init) onto the teacher's Heun sample from the same z
    (unconditional: the mapping of a conditional teacher would need labels too, so it is refused)."""
    if teacher.label_dim:
        raise ValueError('the mapping arm is implemented for unconditional teachers only')
    init_random(G, seed)
    z, x = teacher_samples(teacher, args.mapping_pairs, args.mapping_steps, args.init_batch, device)
    gen = torch.Generator().manual_seed(seed)

    def loss():
        idx = torch.randint(len(z), (args.init_batch,), generator=gen).to(device)
        return ((common.generate_one_step(G, z[idx], sigma_init) - x[idx]) ** 2).flatten(1).sum(1)
    return pretrain(G, loss, steps_for(args), args.init_lr)


def init_single_sigma(G, data, sigma_init, args, device, seed=0):
    """Random init, then EDM's denoising loss on real data at the single noise level σ = σ_init."""
    init_random(G, seed)
    reals = common.BatchSampler(data, args.init_batch, device, seed)
    labels_needed = G.label_dim > 0

    def loss():
        x, labels = next(reals)
        noisy = x + sigma_init * torch.randn_like(x)
        D = G(noisy, torch.full([x.shape[0]], sigma_init, device=device), labels if labels_needed else None)
        return common.edm_weight(torch.tensor(sigma_init)) * ((D - x) ** 2).flatten(1).sum(1)
    return pretrain(G, loss, steps_for(args), args.init_lr)


def steps_for(args):
    return max(1, int(args.init_kimg * 1000 // args.init_batch))


def make_init(arm, args, method_args):
    """The init_generator(G, teacher, data, device) hook for the method's train(), or None for 'teacher'."""
    sigma_init = method_args.sigma_init

    def init(G, teacher, data, device):
        if arm == 'random':
            init_random(G, method_args.seed)
        elif arm == 'io_reinit':
            init_io_reinit(G, method_args.seed)
        elif arm == 'mapping':
            loss = init_mapping(G, teacher, sigma_init, args, device, method_args.seed)
            print(f'scratch_init: mapping pre-training done, final regression loss {loss:.4g}')
        elif arm == 'single_sigma':
            loss = init_single_sigma(G, data, sigma_init, args, device, method_args.seed)
            print(f'scratch_init: single-σ pre-training done, final loss {loss:.4g}')
    return None if arm == 'teacher' else init


# ------------------------------------------------------------------------------------------------------
# The study
# ------------------------------------------------------------------------------------------------------

def read_curve(outdir):
    """[(kimg, {metric: value})] of every FID line in an arm's log.jsonl, and its last progress line."""
    curve, last = [], {}
    path = os.path.join(outdir, 'log.jsonl')
    if os.path.isfile(path):
        for line in open(path):
            rec = json.loads(line)
            fids = {k: v for k, v in rec.items() if k.startswith('fid')}
            if fids:
                curve.append((rec['kimg'], fids))
            elif 'tick' in rec:
                last = rec
    return curve, last


def main(argv=None):
    args, method_args = parse_args(argv)
    method = METHODS[args.method]
    summary = {'method': args.method, 'config': vars(method_args), 'arms': {}}

    def body(rank, world, device):
        for arm in args.arms:
            arm_args = argparse.Namespace(**vars(method_args))
            arm_args.outdir = os.path.join(args.outdir, arm)
            common.print0(f'=== scratch_init: arm {arm} ({args.method}) -> {arm_args.outdir}', rank=rank)
            method.train(arm_args, rank, world, device, init_generator=make_init(arm, args, method_args))
            curve, last = read_curve(arm_args.outdir)
            summary['arms'][arm] = {'fid_curve': curve, 'last_progress': last}
        if rank == 0:
            with open(os.path.join(args.outdir, 'summary.json'), 'w') as f:
                json.dump(summary, f, indent=1)
            print(f'=== scratch_init summary ({args.method}, {method_args.total_kimg} kimg per arm)')
            for arm, rec in summary['arms'].items():
                fids = ', '.join(f'{k}@{kimg}kimg {v:.2f}' for kimg, d in rec['fid_curve'] for k, v in d.items())
                print(f'  {arm:13s} {fids or "(no FID: --fid-ref none)"}')
    common.run_main(method_args, body)


if __name__ == '__main__':
    main()
