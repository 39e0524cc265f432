"""Does `--compile 1` change what a training step computes? One EDM loss forward + backward of a fresh net with
dropout (EDM's CIFAR-10 0.13), eager against torch.compile, same seed, same inputs: the gradients' distance, how many
gradient signs differ (all, and among entries above 1e-4 of the gradient's RMS), and whether the RNG stream is left
in the same state. Compiled twice: with `common.COMPILE_EAGER_RNG` (the default: Inductor falls back to eager's
random numbers) and without. Then ten Adam steps (lr 1e-3) eager and compiled with eager's RNG: the losses side by side;
and the compiled step's time with and without eager's RNG (two blocks each, after a warm-up).

    python results/compile_check.py [--preset tiny] [--batch 16] [--dropout 0.13]   (CPU: ~3 min, most of it compiling)
"""
import argparse
import copy
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import common  # noqa: E402


def step(model, params, x, seed):
    """Loss, flat gradient, and a probe of the RNG state after one EDM loss forward + backward."""
    for p in params:
        p.grad = None
    torch.manual_seed(seed)
    loss = common.edm_loss(model, x).mean()
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in params]), torch.rand(1).item()


def compiled(net, eager_rng):
    torch._dynamo.reset()  # else the second compile reuses the first one's graph (same code, same shapes)
    common.COMPILE_EAGER_RNG = eager_rng
    return common.maybe_compile(net, True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--preset', default='tiny')
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--dropout', type=float, default=0.13)
    p.add_argument('--time-steps', type=int, default=10)
    args = p.parse_args()
    os.environ.setdefault('TORCHINDUCTOR_CACHE_DIR', tempfile.mkdtemp())  # compile from scratch
    torch.manual_seed(0)
    net = common.build_net(args.preset, 32, 3, 0, args.dropout).train()
    x = torch.rand(args.batch, 3, 32, 32) * 2 - 1
    loss_e, g_e, rng_e = step(net, list(net.parameters()), x, seed=1)
    rms = g_e.pow(2).mean().sqrt()
    print(f'{args.preset} preset, dropout {args.dropout}, batch {args.batch}, torch {torch.__version__}, '
          f'{g_e.numel()} gradient entries')
    for eager_rng in (True, False):
        twin = copy.deepcopy(net)
        loss_c, g_c, rng_c = step(compiled(twin, eager_rng), list(twin.parameters()), x, seed=1)
        flips = g_e.sign() != g_c.sign()
        print(f'compiled, COMPILE_EAGER_RNG={eager_rng}: loss {loss_c:.6f} (eager {loss_e:.6f}); gradient '
              f'{((g_c - g_e).norm() / g_e.norm()).item():.2e} apart (relative); signs differ in {flips.sum().item()} '
              f'entries, {(flips & (g_e.abs() > 1e-4 * rms)).sum().item()} of them above 1e-4 RMS; RNG state after '
              f'the step {"the same" if rng_c == rng_e else "different"}')

    # Ten Adam steps each way, from the same weights, with eager's RNG in the compiled net.
    losses = []
    for use_compile in (False, True):
        torch.manual_seed(0)
        twin = copy.deepcopy(net)
        model = compiled(twin, True) if use_compile else twin
        opt = common.make_adam(twin.parameters(), 1e-3, (0.9, 0.999))
        torch.manual_seed(3)
        run = []
        for _ in range(10):
            loss = common.edm_loss(model, x).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            common.optimizer_step(opt, twin.parameters())
            run.append(loss.item())
        losses.append(run)
    print('ten Adam steps, loss eager / compiled:', '  '.join(f'{a:.2f}/{b:.2f}' for a, b in zip(*losses)))
    print(f'largest relative difference: {max(abs(b - a) / a for a, b in zip(*losses)):.2e}')

    # What keeping eager's random numbers costs: the compiled step's time with and without it, in blocks (each
    # compile resets dynamo, which drops the other model's code), twice over (the second compiles hit the cache).
    times = {True: [], False: []}
    for _ in range(2):
        for rng in (True, False):
            model = compiled(copy.deepcopy(net), rng)
            for _ in range(2):  # compile and warm up
                common.edm_loss(model, x).mean().backward()
            for _ in range(args.time_steps):
                t0 = time.perf_counter()
                common.edm_loss(model, x).mean().backward()
                times[rng].append(time.perf_counter() - t0)
    for rng in (True, False):
        print(f'compiled step, COMPILE_EAGER_RNG={rng}: best {1000 * min(times[rng]):.1f} ms, median '
              f'{1000 * sorted(times[rng])[len(times[rng]) // 2]:.1f} ms over {len(times[rng])} steps')

if __name__ == '__main__':
    main()
