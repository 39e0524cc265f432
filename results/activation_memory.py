"""Where the training memory goes: the bytes each forward pass keeps for its backward, per image, on the `edm`
preset (CPU, fp32), and the activation peak each trainer's iteration reaches from them.

Why: on an H200 (2026-11-28, bf16, edm, batch 128) the score-free iteration peaked at 24.6 GB against
Diff-Instruct's 17.0 GB although it has no teacher pass and no fake score network. Activations, not weights, set
the peak at that batch, so this counts them exactly (a saved_tensors_hooks pack hook records every tensor autograd
keeps, parameters excluded, by storage) instead of reading a noisy resident-set size.

    python results/activation_memory.py [--batch 4] [--bf16]

--bf16 counts the generator's forward under CPU bf16 autocast too, by dtype: what mixed precision saves in
activation memory; and again with group_norm in float32, as CUDA's autocast runs it unless the network pins the
dtype (common.GroupNorm does since 2026-11-28): that was the H200's bf16 memory.

Per image = (bytes at batch 2b − bytes at batch b) / b, so what does not grow with the batch is left out.
"""
import argparse
import contextlib
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import common  # noqa: E402
import score_free  # noqa: E402


def saved_bytes(fn, exclude, by_dtype=None):
    """Bytes of the distinct storages autograd saves for backward while fn() runs (storages in exclude not
    counted: the parameters, which are resident anyway); by_dtype, a dict, collects them per dtype."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in exclude and s.data_ptr() not in storages:
            storages[s.data_ptr()] = s.nbytes()
            if by_dtype is not None:
                by_dtype[t.dtype] = by_dtype.get(t.dtype, 0) + s.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def per_image(fn, b, exclude, by_dtype=None):
    """Saved bytes per image: the difference between batches 2b and b, over b. The difference removes what does not
    grow with the batch, such as the bf16 copies of the weights that autocast keeps for the backward."""
    low, high = {}, {}
    small, large = saved_bytes(lambda: fn(b), exclude, low), saved_bytes(lambda: fn(2 * b), exclude, high)
    if by_dtype is not None:
        by_dtype.update({k: (high.get(k, 0) - low.get(k, 0)) / b for k in high})
    return (large - small) / b


def group_norm_in_float32(self, x):
    """What CUDA's autocast does with group_norm (its float32 list): inputs cast up, a float32 output. common.GroupNorm
    pins the autocast dtype instead; this stands in for the network before it did, here on CPU."""
    with torch.autocast(x.device.type, enabled=False):
        return torch.nn.functional.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(),
                                              self.eps)


@contextlib.contextmanager
def patched(owner, name, value):
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--bf16', action='store_true', help='also the generator forward under bf16 autocast')
    args = p.parse_args()
    torch.manual_seed(0)
    G = common.build_net('edm', 32, 3, 0, 0.13).requires_grad_(True)
    cls = score_free.Classifier(G.config)
    params = {q.untyped_storage().data_ptr() for net in (G, cls) for q in net.parameters()}
    generator = lambda n: common.generate_one_step(G, torch.randn(n, 3, 32, 32), 2.5)
    # the generator step: gradients flow into the classifier's input
    classifier = lambda n: cls(torch.randn(n, 3, 32, 32, requires_grad=True), torch.full([n], 0.5))
    g, c = per_image(generator, args.batch, params), per_image(classifier, args.batch, params)
    print(f'{"G forward (generator, full U-Net)":38s} {g / 2 ** 20:8.2f} MiB per image kept for backward (fp32)')
    print(f'{"classifier forward (encoder half)":38s} {c / 2 ** 20:8.2f} MiB per image kept for backward (fp32)')
    if args.bf16:
        for name, norm in (('G forward under bf16 autocast', common.GroupNorm.forward),
                           ('the same, group_norm in float32', group_norm_in_float32)):
            by_dtype = {}
            with torch.autocast('cpu', dtype=torch.bfloat16), patched(common.GroupNorm, 'forward', norm):
                total = per_image(generator, args.batch, params, by_dtype)
            parts = ', '.join(f'{v / 2 ** 20:.2f} in {str(k).removeprefix("torch.")}' for k, v in by_dtype.items())
            print(f'{name:38s} {total / 2 ** 20:8.2f} MiB per image ({parts}): {total / g:.2f}x the fp32 figure')
    print(f'ratio classifier / G: {c / g:.3f}')
    print('activation peak of one iteration at batch B, in units of G forward(B):')
    print(f'  Diff-Instruct  (G step: G graph, teacher and fake score without grad; fake step: one U-Net): 1.000')
    print(f'  score-free, classifier step on fake and real at once (2B) while the G graph waits: {1 + 2 * c / g:.3f}')
    print(f'  score-free, fake and real halves one after the other (B each): {1 + c / g:.3f}'
          f'  (= the generator step: G graph + the classifier graph it backpropagates through)')


if __name__ == '__main__':
    main()
