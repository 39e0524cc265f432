"""Where the training memory goes: the bytes each forward pass keeps for its backward, per image, on the `edm`
preset (CPU, fp32), and the activation peak each trainer's iteration reaches from them.

Why: on an H200 (2026-11-28, bf16, edm, batch 128) the score-free iteration peaked at 24.6 GB against
Diff-Instruct's 17.0 GB although it has no teacher pass and no fake score network. Activations, not weights, set
the peak at that batch, so this counts them exactly (a saved_tensors_hooks pack hook records every tensor autograd
keeps, parameters excluded, by storage) instead of reading a noisy resident-set size.

    python results/activation_memory.py [--batch 4]

Each pass's bytes scale linearly with the batch, so a small batch gives the per-image figures.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import common  # noqa: E402
import score_free  # noqa: E402


def saved_bytes(fn, exclude):
    """Bytes of the distinct storages autograd saves for backward while fn() runs (storages in exclude not
    counted: the parameters, which are resident anyway)."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in exclude:
            storages[s.data_ptr()] = s.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch', type=int, default=4)
    args = p.parse_args()
    torch.manual_seed(0)
    G = common.build_net('edm', 32, 3, 0, 0.13).requires_grad_(True)
    cls = score_free.Classifier(G.config)
    params = {q.untyped_storage().data_ptr() for net in (G, cls) for q in net.parameters()}
    b = args.batch
    z, sigma = torch.randn(b, 3, 32, 32), torch.full([b], 0.5)
    x = torch.randn(b, 3, 32, 32, requires_grad=True)  # the generator step: gradients flow into the input
    per_image = {
        'G forward (generator, full U-Net)': saved_bytes(lambda: common.generate_one_step(G, z, 2.5), params) / b,
        'classifier forward (encoder half)': saved_bytes(lambda: cls(x, sigma), params) / b,
    }
    for name, v in per_image.items():
        print(f'{name:38s} {v / 2 ** 20:8.2f} MiB per image kept for backward (fp32)')
    g, c = per_image.values()
    print(f'ratio classifier / G: {c / g:.3f}')
    print('activation peak of one iteration at batch B, in units of G forward(B):')
    print(f'  Diff-Instruct  (G step: G graph, teacher and fake score without grad; fake step: one U-Net): 1.000')
    print(f'  score-free, classifier step on fake and real at once (2B) while the G graph waits: {1 + 2 * c / g:.3f}')
    print(f'  score-free, fake and real halves one after the other (B each): {1 + c / g:.3f}'
          f'  (= the generator step: G graph + the classifier graph it backpropagates through)')


if __name__ == '__main__':
    main()
