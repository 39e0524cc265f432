"""Turn the pilot's runs (results/pilot_score_free.sh) into results/pilot_score_free.md: no number typed by hand.

  python results/summarize_pilot.py [runs/pilot]
"""
import glob
import json
import os
import sys

import numpy as np
import torch
from PIL import Image


def grid_stats(png, tile=32):
    """Mean brightness and colour spread of a sample grid, in [0, 1] units: the spread is the standard deviation
    across the grid's images of each image's mean colour, averaged over RGB. A generator collapsed to one colour
    (all white, all black) has a spread near 0 whatever its FID; the figures of reals.png are the reference."""
    x = np.asarray(Image.open(png).convert('RGB'), dtype=np.float64) / 255
    n = x.shape[0] // tile
    tiles = x[:n * tile, :n * tile].reshape(n, tile, n, tile, 3).transpose(0, 2, 1, 3, 4).reshape(n * n, tile, tile, 3)
    return f'{tiles.mean():.2f} / {tiles.mean(axis=(1, 2)).std(axis=0).mean():.3f}'


def arm_row(path):
    """One table row from a run folder: its flags (from generator.pt), FID-2k and the classifier's log."""
    ckpt = torch.load(os.path.join(path, 'generator.pt'), map_location='cpu', weights_only=True)
    cfg = ckpt['config']
    ticks = [json.loads(line) for line in open(os.path.join(path, 'log.jsonl')) if '"tick"' in line]
    fids = {}
    for name in ('fid2k', 'fid1k'):
        f = os.path.join(path, name + '.txt')
        fids[name] = open(f).read().split()[1] if os.path.isfile(f) and os.path.getsize(f) else 'n/a'
    later = ticks[len(ticks) // 2:]  # the second half of the run
    mean = lambda key: sum(t[key] for t in later) / len(later)
    grids = sorted(glob.glob(os.path.join(path, 'fakes_0*.png')))
    row = {'arm': os.path.basename(path), 'method': ckpt['method'], 'G lr': cfg['lr'], 'seed': cfg.get('seed', 0),
           'img/s': f'{sum(t["img/s"] for t in ticks) / len(ticks):.1f}', **fids,
           'last grid: brightness / colour spread': grid_stats(grids[-1]) if grids else 'n/a'}
    if ckpt['method'] == 'score_free':
        row.update({'divergence': cfg['divergence'], 'classifier lr': cfg['cls_lr'], 'warm-up': cfg['cls_warmup'],
                    'cls steps': cfg['cls_steps'], 'grad penalty': cfg.get('cls_grad_penalty', 0.0),
                    'w(σ)': cfg['weight'], 'BCE (2nd half)': f'{mean("loss_cls"):.3f}',
                    'G σ range': f'{cfg.get("gen_sigma_min", 0.0):g}–{cfg.get("gen_sigma_max", float("inf")):g}',
                    'head / loss': f'{cfg.get("cls_head", "pool")} / {cfg.get("cls_loss", "image")}',
                    'classifier β1': cfg['cls_betas'][0], 'encoder lr ×': cfg.get('cls_encoder_lr', 1.0),
                    'head norm': cfg.get('cls_head_norm', 1), 'global stats': cfg.get('cls_global', 0),
                    'acc fake / real (2nd half)': f'{mean("acc_fake"):.2f} / {mean("acc_real"):.2f}'})
    else:
        row.update({'divergence': 'ikl (DI)', 'classifier lr': f'fake score {cfg["fake_lr"]}', 'warm-up': '-',
                    'w(σ)': 'σ²', 'G σ range': '0–inf', 'BCE (2nd half)': '-', 'acc fake / real (2nd half)': '-', 'cls steps': '-',
                    'grad penalty': '-', 'head / loss': '-', 'classifier β1': '-', 'encoder lr ×': '-',
                    'head norm': '-', 'global stats': '-'})
    return row


def seeds_table(root):
    """Arms run with several seeds (<arm>, <arm>_seed1, ...): each seed's FID-2k, their mean and range."""
    fids = {}
    for f in sorted(glob.glob(os.path.join(root, '*', 'fid2k.txt'))):
        if not os.path.getsize(f):  # a FID still running
            continue
        name = os.path.basename(os.path.dirname(f))
        base, _, seed = name.rpartition('_seed')
        base, seed = (base, int(seed)) if base and seed.isdigit() else (name, 0)
        fids.setdefault(base, {})[seed] = float(open(f).read().split()[1])
    rows = [(b, v) for b, v in sorted(fids.items()) if len(v) > 1]
    if not rows:
        return []
    di = np.mean(list(fids['di'].values())) if 'di' in fids else None
    lines = ['', '## Arms with several seeds (FID-2k; the training seed is --seed, the FID samples come from the same seeds in every arm)', '',
             '"÷ DI": the mean over the Diff-Instruct arm\'s mean (the issue\'s bar: at most 1.10).', '',
             '| arm | FID-2k per seed | mean | range | ÷ DI |', '|---|---|---|---|---|']
    for base, v in rows:
        vals = list(v.values())
        per = ', '.join(f'{s}: {x:.1f}' for s, x in sorted(v.items()))
        ratio = f'{np.mean(vals) / di:.3f}' if di else '-'
        lines.append(f'| {base} | {per} | {np.mean(vals):.1f} | {min(vals):.1f}–{max(vals):.1f} | {ratio} |')
    return lines


def table(root, cols):
    arms = sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, 'generator.pt')))
    rows = [arm_row(os.path.join(root, a)) for a in arms]
    return ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)] + [
        '| ' + ' | '.join(str(r[c]) for c in cols) + ' |' for r in rows]


def main(root='runs/pilot', screens='runs/screen', screens2='runs/screen2'):
    cols = ['arm', 'method', 'divergence', 'G lr', 'classifier lr', 'warm-up', 'cls steps', 'w(σ)', 'G σ range', 'seed',
            'BCE (2nd half)', 'acc fake / real (2nd half)', 'img/s', 'fid2k']
    teacher = os.path.join(root, 'teacher', 'fid2k.txt')
    lines = ['# Pilot: score-free vs Diff-Instruct on real images (CPU scale)', '',
             'Made by `python results/summarize_pilot.py` from the runs of `bash results/pilot_score_free.sh`; the arms',
             'and screens with options since removed ran at commit eb25876 (results/NOTES.md).',
             'JPEG CIFAR-10 (lossy: these FIDs compare only with each other), tiny teacher (120 kimg), every arm',
             '16 kimg at batch 64 from it; FID-2k against 200 training images per class, TF pipeline, real weights.',
             '']
    if os.path.isfile(teacher):
        lines += [f'Teacher, Heun 35 NFE: {open(teacher).read().strip()}', '']
    lines += table(root, cols + ['last grid: brightness / colour spread'])
    lines += seeds_table(root)
    ks = [(k, os.path.join(root, 'rkl_norm_glr3e-5', f'verifier_k{k}.txt')) for k in (1, 2, 4, 8)]
    ks = [(k, open(f).read().split()) for k, f in ks if os.path.isfile(f) and os.path.getsize(f)]
    if ks:
        lines += ['', '## The ratio as a verifier (arm rkl_norm_glr3e-5)', '',
                  '`bash results/pilot_score_free.sh verifier`: k one-step candidates per image, one kept with',
                  'probability ∝ e^(−c) (c at σ = 0.1, the run\'s own classifier); FID-1k, same seeds.', '',
                  '| k | FID |', '|---|---|'] + [f'| {k} | {v[0]} {v[1]} |' for k, v in ks]
    if os.path.isdir(screens):
        lines += ['', '## Screens: 4 kimg, does the classifier keep up? (no FID)', '',
                  'The same settings for 4 kimg (`bash results/pilot_score_free.sh screens`); the classifier\'s',
                  'BCE (chance: 2 ln 2 = 1.386; with a gradient penalty the logged loss includes it) and accuracy',
                  'over the second half of the run. Warm-up counts iterations of `cls steps` classifier steps.', '']
        lines += table(screens, [c for c in cols if c != 'fid2k'] + ['grad penalty'])
    if os.path.isdir(screens2):
        lines += ['', '## Screens with FID: 4 kimg, generator lr 1e-4 unless the G lr column says otherwise, one or two changes at a time', '',
                  '`bash results/pilot_score_free.sh screens2`: classifier lr 1e-3 (its encoder at that × the "encoder lr ×"',
                  'column), warm-up 100, 4 kimg, FID-1k of',
                  'the EMA generator against the same reference (1,000 samples: compare only within this table).', '']
        lines += ['Brightness / colour spread of the last sample grid (64 images, [0, 1] units; see grid_stats): real '
                  f'images {grid_stats(os.path.join(screens2, "di", "reals.png"))}; FID-1k of a generator collapsed to '
                  'one colour can still be lower than that of a working one, so read the two together.', '']
        lines += table(screens2, [c for c in cols if c not in ('fid2k', 'classifier lr', 'warm-up', 'method')] +
                       ['head / loss', 'classifier β1', 'encoder lr ×', 'head norm', 'global stats', 'grad penalty',
                        'fid1k', 'last grid: brightness / colour spread'])
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pilot_score_free.md')
    open(out, 'w').write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main(*sys.argv[1:])
