"""Did pinning GroupNorm to the autocast dtype change anything on CPU? CPU's autocast already ran group_norm on bf16
inputs in bf16, so the `--check-precision` cosines measured there should hold for the new code exactly. This runs
one EDM loss forward + backward under CPU bf16 autocast with GroupNorm as it is now and as it was before
2026-11-28 (F.group_norm with the weights cast to the input's dtype, autocast deciding), same weights, same seed,
and compares the loss and every gradient. Then, on the tiny preset, what torch.compile makes of the new GroupNorm
under autocast: graph breaks (torch._dynamo.explain) and the compiled gradient against the eager one.

    python results/group_norm_check.py [--presets tiny small] [--batch 4]   (CPU, ~1 min, most of it compiling)
"""
import argparse
import copy
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import common  # noqa: E402


def previous_forward(self, x):
    return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


def loss_and_grad(net, x, forward):
    saved = common.GroupNorm.forward
    common.GroupNorm.forward = forward
    try:
        net.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            loss = common.edm_loss(net, x).mean()
        loss.backward()
    finally:
        common.GroupNorm.forward = saved
    return loss.item(), torch.cat([p.grad.flatten() for p in net.parameters()])


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--presets', nargs='+', default=['tiny', 'small'])
    p.add_argument('--batch', type=int, default=4)
    args = p.parse_args()
    for preset in args.presets:
        torch.manual_seed(0)
        net = common.build_net(preset, 32, 3, 0, 0.0)
        x = torch.rand(args.batch, 3, 32, 32) * 2 - 1
        (l_old, g_old), (l_new, g_new) = (loss_and_grad(net, x, f) for f in (previous_forward, common.GroupNorm.forward))
        print(f'{preset}: loss {l_old:.6f} before, {l_new:.6f} now; gradients bit-identical: {torch.equal(g_old, g_new)} '
              f'(largest difference {(g_old - g_new).abs().max().item():.3g})')

    torch.manual_seed(0)
    net = common.build_net('tiny', 32, 3, 0, 0.0)
    x = torch.rand(args.batch, 3, 32, 32) * 2 - 1

    def forward(x, sigma):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            return net(x, sigma)
    explained = torch._dynamo.explain(forward)(x, torch.ones(args.batch))
    print(f'torch.compile under bf16 autocast: {explained.graph_count} graph(s), {explained.graph_break_count} breaks')
    twin = copy.deepcopy(net)
    _, g_eager = loss_and_grad(net, x, common.GroupNorm.forward)
    _, g_comp = loss_and_grad(common.maybe_compile(twin, True), x, common.GroupNorm.forward)
    cosine = F.cosine_similarity(g_eager, g_comp, dim=0).item()
    print(f'compiled vs eager bf16 gradient: cosine {cosine:.6f}, relative distance '
          f'{((g_comp - g_eager).norm() / g_eager.norm()).item():.2e}')


if __name__ == '__main__':
    main()
