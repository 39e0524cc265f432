"""Where one score-free iteration's time goes on this CPU (small preset, batch 16, fp32): the generator's passes,
one classifier step and the generator step through the classifier, each timed alone (mean of 3 after a warm-up),
then the whole iteration. Run from the repo root: python results/score_free_breakdown.py"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402
import score_free  # noqa: E402

args = score_free.parse_args(['--bench', '--preset', 'small', '--batch', '16', '--device', 'cpu'])
device = torch.device('cpu')
autocast, scaler = common.setup_precision(device, args.precision, args.tf32)
teacher = common.to_device(common.build_net(args.preset, 32, 3, 0, 0.13), device).eval()
G, G_ema, cls, opts = score_free.build_nets(teacher, args, device)
nets = score_free.wrap_nets(G, cls, args, device, 1)
reals = score_free.SyntheticReals(args.batch, device)
B = 16
z = torch.randn(B, 3, 32, 32)
def timed(name, fn, n=3):
    fn()
    t0 = time.perf_counter()
    for _ in range(n): fn()
    print(f'{name}: {1000 * (time.perf_counter() - t0) / n:.0f} ms', flush=True)
def g_fwd_nograd():
    with torch.no_grad():
        common.generate_one_step(G, z, args.sigma_init)
def g_fwd_bwd():
    x = common.generate_one_step(G, z, args.sigma_init); x.square().mean().backward()
real, _ = next(reals)
x0 = torch.randn(B, 3, 32, 32)
def cls_step():
    sigma = common.edm_sigma(B, device, args.P_mean, args.P_std)
    loss, *_ = score_free.classifier_loss(cls, x0, real, sigma)
    opts[1].zero_grad(); loss.mean().backward(); opts[1].step()
def g_step_through_cls():
    x = common.generate_one_step(G, z, args.sigma_init)
    sigma = common.edm_sigma(B, device, args.P_mean, args.P_std)
    cls.requires_grad_(False)
    l = score_free.generator_loss(cls, x, sigma, torch.randn_like(x), args.divergence, args.weight).mean()
    l.backward(); cls.requires_grad_(True)
def full():
    score_free.iteration(args, nets, opts, [None, None], autocast, reals, B, device)
timed('G fwd no_grad', g_fwd_nograd)
timed('G fwd+bwd', g_fwd_bwd)
timed('classifier step (32 images)', cls_step)
timed('G step through classifier', g_step_through_cls)
timed('full iteration (2 cls steps)', full)
