"""The results study: the paper's four claims measured on real images, at a scale one machine can run.

  python results/study.py run                 run (or resume) the CPU tier: every step that is done is skipped
  python results/study.py run --tier gpu      the same study, one flag, at GPU scale (small preset, longer runs)
  python results/study.py report              turn runs/study/<tier> into results/README.md and its figures

One teacher is trained once; every arm starts from it with the same data, batch, generator learning rate, EMA,
budget and seeds, and is measured by FID (real Inception weights, TF pipeline) against reference statistics of
the training images, at several points of the run. The claims (../shared/spec/methods.md):
  1  distillation (Diff-Instruct) uses the teacher's score and weights   -> teacher forward passes per image
  2  the score-free family works without the score, competitive with DI -> di vs sf_rkl / sf_js (/ sf_fkl)
  3  teacher initialisation is indispensable                            -> sf_rkl (teacher init) vs init_random
  4  it is the features, not the mapping                                -> init_mapping, init_single_sigma
and the ratio as a verifier (v5): FID of the score-free generator with k = 1, 2, 4, 8 candidates per image.
Data: the JPEG copy of CIFAR-10 in ../shared/data is lossy, so its FIDs compare only with each other.
"""
import argparse
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get('SHARED', os.path.join(os.path.dirname(ROOT), 'shared'))

# Every tier: the teacher recipe, the arms' common settings, the FID protocol. The CPU tier fits ~3 hours of the
# project's 2-core machines (pilot: results/pilot_score_free.md); the GPU tier is the same study at `small` scale.
TIERS = {
    'cpu': dict(
        teacher=['--preset', 'tiny', '--batch', '64', '--lr', '1e-3', '--lr-rampup-kimg', '10',
                 '--ema-halflife-kimg', '10', '--total-kimg', '120', '--tick-kimg', '10', '--snapshot-ticks', '4'],
        arm=['--batch', '64', '--ema-halflife-kimg', '2', '--total-kimg', '16', '--tick-kimg', '4',
             '--snapshot-ticks', '2'],
        # each method at the generator lr the pilot found best for it (results/pilot_score_free.md): Diff-Instruct
        # 1e-4 (its fake score at the same lr), score-free 3e-5 (with its defaults: normalized weight, σ ≤ 2)
        lr=dict(diff_instruct='1e-4', score_free='3e-5'),
        init=['--init-kimg', '16', '--init-batch', '64', '--init-lr', '1e-3', '--mapping-pairs', '2000'],
        per_class=200, fid_num=1000, device='cpu'),
    'gpu': dict(
        teacher=['--preset', 'small', '--batch', '256', '--lr', '1e-3', '--lr-rampup-kimg', '200',
                 '--ema-halflife-kimg', '50', '--total-kimg', '2000', '--tick-kimg', '100', '--snapshot-ticks', '5'],
        arm=['--batch', '128', '--ema-halflife-kimg', '20', '--total-kimg', '400',
             '--tick-kimg', '50', '--snapshot-ticks', '2'],
        lr=dict(diff_instruct='2e-5', score_free='2e-5'),  # untested: between DI's official 1e-5 and the pilot's
        init=['--init-kimg', '400', '--init-batch', '128', '--init-lr', '1e-4', '--mapping-pairs', '20000'],
        per_class=1000, fid_num=10000, device='cuda'),
}
# name -> (claim, script, extra flags). Every arm also gets the tier's `arm` flags and the teacher.
ARMS = {
    'di': ('2', 'diff_instruct.py', []),
    'sf_rkl': ('2', 'score_free.py', ['--divergence', 'rkl', '--fid-at-start', '1']),
    'sf_js': ('2', 'score_free.py', ['--divergence', 'js']),
    'sf_fkl': ('2', 'score_free.py', ['--divergence', 'fkl']),
    'init_random': ('3', 'scratch_init.py', ['--arms', 'random']),
    'init_mapping': ('4', 'scratch_init.py', ['--arms', 'mapping']),
    'init_single_sigma': ('4', 'scratch_init.py', ['--arms', 'single_sigma']),
    'init_io_reinit': ('4', 'scratch_init.py', ['--arms', 'io_reinit']),
}
DEFAULT_ARMS = 'di,sf_rkl,sf_js,init_random,init_mapping,init_single_sigma'
VERIFIER_KS = (1, 2, 4, 8)


def paths(runs, tier):
    base = os.path.join(runs, tier)
    return dict(base=base, teacher=os.path.join(base, 'teacher'), ref=os.path.join(base, 'ref.npz'),
                arms=os.path.join(base, 'arms'), data=os.path.join(SHARED, 'data', 'cifar10-jpeg-train.zip'),
                inception=os.path.join(SHARED, 'fid', 'inception-2015-12-05.pt'))


def arm_dir(p, name):
    """scratch_init.py writes <outdir>/<init arm>; the others write <outdir> itself."""
    claim, script, extra = ARMS[name]
    return os.path.join(p['arms'], name, extra[1]) if script == 'scratch_init.py' else os.path.join(p['arms'], name)


def sh(cmd, log):
    """Run one step, its output appended to a log; stop the study with the log's tail if it fails."""
    print('$ ' + ' '.join(cmd), flush=True)
    with open(log, 'a') as f:
        t0 = time.time()
        r = subprocess.run([sys.executable] + cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        f.write(f'# wall {time.time() - t0:.1f} s, exit {r.returncode}\n')
    if r.returncode:
        tail = open(log).read().splitlines()[-5:]
        raise SystemExit(f'error: step failed (exit {r.returncode}); the end of {log}:\n' + '\n'.join(tail))
    return time.time() - t0


def write_json(path, obj):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def fid_calc(p, args, out_json, extra):
    """fid.py calc once; the value, its metric name and wall time go to out_json (skipped when it exists)."""
    if os.path.isfile(out_json):
        return
    log = out_json[:-5] + '.log'
    t0 = time.time()
    sh(['fid.py', 'calc', '--ref', p['ref'], '--inception', p['inception'], '--device', args.device_flag] + extra, log)
    name, value = open(log).read().split('# wall')[-2].split()[-2:]
    write_json(out_json, {'metric': name, 'value': float(value), 'wall_s': round(time.time() - t0, 1)})


def arm_command(name, cfg, p, init_method, fid_num):
    """(the command line of one arm, the one-step method it trains): the arm's flags, then the tier's."""
    claim, script, extra = ARMS[name]
    out = arm_dir(p, name)
    if script == 'scratch_init.py':
        cmd = [script, '--method', init_method, '--outdir', os.path.dirname(out), '--fid-at-start', '1']
        cmd += extra + cfg['init']
    else:
        resume = ['--resume', 'auto'] if os.path.isfile(os.path.join(out, 'checkpoint.pt')) else []
        cmd = [script, '--outdir', out] + extra + resume
    method = init_method if script == 'scratch_init.py' else script[:-3]
    lr = cfg['lr'][method]
    cmd += ['--dataset', p['data'], '--teacher', os.path.join(p['teacher'], 'checkpoint.pt'), '--device',
            cfg['device'], '--fid-ref', p['ref'], '--fid-num', fid_num, '--inception', p['inception'], '--lr', lr]
    cmd += cfg['arm']
    if method == 'diff_instruct':
        cmd += ['--fake-lr', lr]  # the fake score at the generator's lr, as in the pilot
    return cmd, method


def run(args):
    cfg, p = TIERS[args.tier], paths(args.runs, args.tier)
    for f in (p['data'], p['inception']):
        if not os.path.isfile(f):
            raise SystemExit(f'error: {f} not found: the study needs ../shared (set SHARED=... to its location)')
    os.makedirs(p['arms'], exist_ok=True)
    args.device_flag = cfg['device']
    fid_num = str(args.fid_num or cfg['fid_num'])
    # 1. The teacher, trained once (resumable), and the reference statistics of the training images.
    teacher_ckpt = os.path.join(p['teacher'], 'checkpoint.pt')
    if not os.path.isfile(os.path.join(p['teacher'], 'done')):
        resume = ['--resume', 'auto'] if os.path.isfile(teacher_ckpt) else []
        sh(['teacher.py', '--dataset', p['data'], '--fid-ref', 'none', '--device', cfg['device'],
            '--outdir', p['teacher']] + cfg['teacher'] + resume, os.path.join(p['base'], 'teacher.log'))
        open(os.path.join(p['teacher'], 'done'), 'w').close()
    if not os.path.isfile(p['ref']):
        sh(['fid.py', 'ref', '--dataset', p['data'], '--per-class', str(cfg['per_class']), '--inception',
            p['inception'], '--out', p['ref'], '--device', cfg['device']], os.path.join(p['base'], 'ref.log'))
    fid_calc(p, args, os.path.join(p['base'], 'teacher_fid.json'), ['--ckpt', teacher_ckpt, '--num', fid_num])
    # 2. The arms, one at a time, each skipped once its generator.pt exists.
    for name in args.arms:
        claim, script, extra = ARMS[name]
        out = arm_dir(p, name)
        if os.path.isfile(os.path.join(out, 'generator.pt')):
            continue
        if script == 'scratch_init.py':
            shutil.rmtree(out, ignore_errors=True)  # scratch_init.py does not resume: start the arm again
        cmd, method = arm_command(name, cfg, p, args.init_method, fid_num)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        wall = sh(cmd, os.path.join(p['arms'], name + '.log'))
        write_json(os.path.join(out, 'wall.json'), {'wall_s': round(wall, 1), 'method': method})
    # 3. The ratio as a verifier: the reverse-KL score-free generator with k candidates per image.
    gen = os.path.join(arm_dir(p, 'sf_rkl'), 'generator.pt')
    if os.path.isfile(gen):
        for k in VERIFIER_KS:
            fid_calc(p, args, os.path.join(p['base'], f'verifier_k{k}.json'),
                     ['--ckpt', gen, '--num', fid_num, '--verifier-k', str(k), '--verifier-sigma',
                      str(args.verifier_sigma), '--verifier-rule', args.verifier_rule])
    print(f'study ({args.tier}) complete: python results/study.py report --tier {args.tier}')


# ------------------------------------------------------------------------------------------------------
# The report: every number read from the runs, none typed by hand
# ------------------------------------------------------------------------------------------------------

def read_arm(out):
    """{'curve': [(kimg, fid)], 'metric', 'img_s', 'wall_s', 'grid', 'last'} of one arm's folder, or None."""
    log = os.path.join(out, 'log.jsonl')
    if not os.path.isfile(log):
        return None
    curve, ticks, metric = [], [], None
    for line in open(log):
        rec = json.loads(line)
        fids = [k for k in rec if k.startswith('fid')]
        if fids:
            metric = fids[0]
            curve.append((rec['kimg'], rec[metric]))
        elif 'tick' in rec:
            ticks.append(rec)
    grids = sorted(glob.glob(os.path.join(out, 'fakes_[0-9]*.png')))
    wall = os.path.join(out, 'wall.json')
    meta = json.load(open(wall)) if os.path.isfile(wall) else {}
    return {'method': meta.get('method', 'score_free'), 'curve': sorted(curve), 'metric': metric, 'last': ticks[-1] if ticks else {},
            'img_s': sum(t['img/s'] for t in ticks) / len(ticks) if ticks else float('nan'),
            'wall_s': meta.get('wall_s', float('nan')),
            'grid': grids[-1] if grids else None, 'init_grid': os.path.join(out, 'fakes_init.png'),
            'done': os.path.isfile(os.path.join(out, 'generator.pt'))}


def final_fid(arm):
    return arm['curve'][-1][1] if arm and arm['done'] and arm['curve'] else None


def fmt(x, digits=1):
    return '–' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{x:.{digits}f}'


def verdicts(arms, init_fid):
    """(claim, verdict, reason) from the measured numbers. Margins: 10% (the issue's 'competitive'), and an arm
    'fails' when it ends no better than the untrained teacher-initialised generator."""
    out = []
    di, best_sf = final_fid(arms.get('di')), None
    sf = {n: final_fid(arms.get(n)) for n in ('sf_rkl', 'sf_js', 'sf_fkl') if final_fid(arms.get(n)) is not None}
    out.append(('1', 'held (by construction)', 'Diff-Instruct evaluates the teacher at every generator step and '
                'starts from its weights; the score-free arms call it only once, to initialise'))
    if di is None or not sf:
        out.append(('2', 'not decidable yet', 'Diff-Instruct or every score-free arm is missing'))
    else:
        best_name = min(sf, key=sf.get)
        best_sf = sf[best_name]
        ratio = best_sf / di
        verdict = 'held' if ratio <= 1.10 else 'did not hold at this scale'
        out.append(('2', verdict, f'best score-free arm {best_name}: FID {best_sf:.1f} vs Diff-Instruct {di:.1f} '
                    f'(ratio {ratio:.2f}; competitive = within 10%)'))
    # the initialisation arms train one method; their teacher-initialised counterpart is that method's main arm
    init_method = next((arms[n]['method'] for n in arms if n.startswith('init_')), 'score_free')
    ref = 'di' if init_method == 'diff_instruct' else 'sf_rkl'
    teacher, random = final_fid(arms.get(ref)), final_fid(arms.get('init_random'))
    if teacher is None or random is None:
        out.append(('3', 'not decidable yet', 'the teacher-initialised or the random arm is missing'))
    else:
        fails = init_fid is not None and random >= init_fid
        verdict = 'held' if teacher < random / 1.10 else 'did not hold at this scale'
        out.append(('3', verdict, f'{init_method}: teacher init FID {teacher:.1f} ({ref}) vs random init {random:.1f}'
                    + (f'; random ends no better than the untrained teacher-initialised generator ({init_fid:.1f})'
                       if fails else '')))
    others = {n: final_fid(arms.get(n)) for n in ('init_mapping', 'init_single_sigma', 'init_io_reinit')}
    others = {n: v for n, v in others.items() if v is not None}
    if teacher is None or 'init_mapping' not in others:
        out.append(('4', 'not decidable yet', 'the teacher-initialised or the mapping arm is missing'))
    else:
        beats_mapping = teacher < others['init_mapping'] / 1.10
        feature_arms = [n for n in ('init_single_sigma', 'init_io_reinit') if n in others]
        features_help = all(others[n] < others['init_mapping'] for n in feature_arms) if feature_arms else None
        verdict = 'held' if beats_mapping and features_help is not False else 'did not hold at this scale'
        detail = ', '.join(f'{n} {v:.1f}' for n, v in others.items())
        out.append(('4', verdict, f'{init_method}: teacher init {teacher:.1f}; {detail} (held = teacher beats mapping by 10% and '
                    'every feature-carrying arm beats mapping)'))
    return out


def plot_curves(arms, path, metric, size=(720, 440)):
    """FID against images seen, one line per arm: a small Pillow line plot (no matplotlib in this project)."""
    from PIL import Image, ImageDraw
    colours = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (140, 86, 75),
               (227, 119, 194), (127, 127, 127)]
    W, H = size
    left, right, top, bottom = 60, 170, 20, 45
    img = Image.new('RGB', size, 'white')
    d = ImageDraw.Draw(img)
    pts = [(k, v) for a in arms.values() for k, v in a['curve']]
    if not pts:
        d.text((W // 3, H // 2), 'no FID measured yet', fill='black')
        img.save(path)
        return
    xmax = max(k for k, _ in pts) or 1
    ymin, ymax = min(v for _, v in pts), max(v for _, v in pts)
    pad = (ymax - ymin) * 0.05 or 1
    ymin, ymax = ymin - pad, ymax + pad
    X = lambda k: left + (W - left - right) * k / xmax  # noqa: E731
    Y = lambda v: top + (H - top - bottom) * (ymax - v) / (ymax - ymin)  # noqa: E731
    d.rectangle([left, top, W - right, H - bottom], outline='black')
    for i in range(5):
        v, k = ymin + (ymax - ymin) * i / 4, xmax * i / 4
        d.line([left - 4, Y(v), left, Y(v)], fill='black')
        d.text((4, Y(v) - 6), f'{v:.0f}', fill='black')
        d.line([X(k), H - bottom, X(k), H - bottom + 4], fill='black')
        d.text((X(k) - 10, H - bottom + 8), f'{k:g}', fill='black')
    d.text((left + (W - left - right) // 2 - 60, H - 18), 'generator kimg', fill='black')
    d.text((left + 4, top + 4), metric or 'fid', fill='black')
    for i, (name, arm) in enumerate(arms.items()):
        c = colours[i % len(colours)]
        xy = [(X(k), Y(v)) for k, v in arm['curve']]
        if len(xy) > 1:
            d.line(xy, fill=c, width=2)
        for x, y in xy:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
        d.line([W - right + 10, top + 10 + 16 * i, W - right + 30, top + 10 + 16 * i], fill=c, width=3)
        d.text((W - right + 36, top + 4 + 16 * i), name, fill='black')
    img.save(path)


def report(args):
    p = paths(args.runs, args.tier)
    outdir = args.out
    figs = os.path.join(outdir, 'study_' + args.tier)
    os.makedirs(figs, exist_ok=True)
    arms = {n: a for n in ARMS if (a := read_arm(arm_dir(p, n)))}
    load = lambda f: json.load(open(f)) if os.path.isfile(f) else None  # noqa: E731
    teacher = load(os.path.join(p['base'], 'teacher_fid.json'))
    start = arms.get('sf_rkl', {}).get('curve', [(None, None)])[0] if 'sf_rkl' in arms else (None, None)
    init_fid = start[1] if start[0] == 0 else None
    metric = next((a['metric'] for a in arms.values() if a['metric']), teacher['metric'] if teacher else 'fid')
    # Diff-Instruct and the other teacher-initialised arms start from the same generator and seeds as sf_rkl.
    curves = {}
    for n, a in arms.items():
        c = a['curve']
        if init_fid is not None and n in ('di', 'sf_js', 'sf_fkl') and (not c or c[0][0] != 0):
            c = [(0.0, init_fid)] + c
        curves[n] = dict(a, curve=c)
    plot_curves(curves, os.path.join(figs, 'fid_curves.png'), metric)
    for n, a in arms.items():
        if a['grid']:
            shutil.copyfile(a['grid'], os.path.join(figs, f'grid_{n}.png'))
    if 'sf_rkl' in arms and os.path.isfile(arms['sf_rkl']['init_grid']):
        shutil.copyfile(arms['sf_rkl']['init_grid'], os.path.join(figs, 'grid_init.png'))
    rel = os.path.relpath(figs, outdir)
    cfg = TIERS[args.tier]
    L = [f'# Results: the paper\'s claims on real images ({args.tier} tier)', '',
         f'Made by `python results/study.py report --tier {args.tier}` from the runs of '
         f'`python results/study.py run --tier {args.tier}`; no number here is typed by hand.', '',
         '**Data**: the JPEG copy of CIFAR-10 (lossy, so these FIDs compare only with each other, never with '
         'published CIFAR-10 numbers). **FID**: real Inception weights, TF pipeline, '
         f'{metric} of fixed seeds against {cfg["per_class"]} training images per class. '
         f'**Teacher**: `teacher.py {" ".join(cfg["teacher"])}`. **Every arm**: `{" ".join(cfg["arm"])}` '
         f'from that teacher, the generator lr per method as the pilot chose it ('
         + ', '.join(f'{m} {lr}' for m, lr in cfg['lr'].items()) + '; Diff-Instruct\'s fake score at its lr) '
         f'(scratch_init arms: `{" ".join(cfg["init"])}` of pre-training first).', '']
    if teacher:
        L.append(f'Teacher, Heun (35 evaluations): {teacher["metric"]} {teacher["value"]:.2f}. '
                 f'Untrained teacher-initialised one-step generator: {metric} {fmt(init_fid, 2)}.')
        L.append('')
    L += ['## Verdicts', '', '| claim | verdict | measured |', '|---|---|---|']
    L += [f'| {c} | {v} | {r} |' for c, v, r in verdicts(arms, init_fid)]
    missing = [n for n in ARMS if n not in arms or not arms[n]['done']]
    L += ['', '## FID against images seen', '', f'![FID curves]({rel}/fid_curves.png)', '',
          f'Not (yet) finished: {", ".join(missing) or "none"}.', '']
    kimgs = sorted({k for a in curves.values() for k, _ in a['curve']})
    if curves:
        L.append('| arm | claim | ' + ' | '.join(f'{metric} @ {k:g} kimg' for k in kimgs) + ' | img/s | wall (min) |')
        L.append('|---|---|' + '---|' * len(kimgs) + '---|---|')
    for n, a in curves.items():
        d = dict(a['curve'])
        L.append(f'| {n} | {ARMS[n][0]} | ' + ' | '.join(fmt(d.get(k)) for k in kimgs)
                 + f' | {fmt(a["img_s"])} | {fmt(a["wall_s"] / 60)} |')
    ks = [(k, load(os.path.join(p['base'], f'verifier_k{k}.json'))) for k in VERIFIER_KS]
    if any(v for _, v in ks):
        L += ['', '## The ratio as a verifier (sf_rkl)', '',
              f'k one-step candidates per image, one kept with probability ∝ e^(−c) (rule `{args.verifier_rule}`, '
              f'c scored at σ = {args.verifier_sigma}).', '', '| k | FID | wall (s) |', '|---|---|---|']
        L += [f'| {k} | {v["metric"]} {v["value"]:.2f} | {v["wall_s"]} |' for k, v in ks if v]
    L += ['', '## Samples (the same seeds for every arm)', '']
    if 'sf_rkl' in arms:
        L.append(f'untrained teacher-initialised generator: ![init]({rel}/grid_init.png)')
        L.append('')
    for n, a in arms.items():
        if a['grid']:
            L += [f'{n}: ![{n}]({rel}/grid_{n}.png)', '']
    with open(os.path.join(outdir, 'README.md' if args.tier == 'cpu' else f'README_{args.tier}.md'), 'w') as f:
        f.write('\n'.join(L) + '\n')
    print(f'wrote {outdir}: {len(arms)} arms')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('cmd', choices=['run', 'report'])
    p.add_argument('--tier', default='cpu', choices=sorted(TIERS))
    p.add_argument('--arms', default=DEFAULT_ARMS, help=f'comma-separated, of {", ".join(ARMS)}')
    p.add_argument('--fid-num', type=int, default=0, help='samples per FID (0: the tier\'s)')
    p.add_argument('--init-method', default='score_free', choices=['score_free', 'diff_instruct'],
                   help='the one-step method of the initialisation arms (the paper: its own, score-free)')
    p.add_argument('--verifier-sigma', type=float, default=0.1, help='σ at which the classifier scores candidates')
    p.add_argument('--verifier-rule', default='resample', choices=['resample', 'best'])
    p.add_argument('--runs', default=os.path.join(ROOT, 'runs', 'study'), help='where the runs live (per tier)')
    p.add_argument('--out', default=os.path.join(ROOT, 'results'), help='report: where README.md and figures go')
    args = p.parse_args(argv)
    args.arms = [a for a in args.arms.split(',') if a]
    bad = [a for a in args.arms if a not in ARMS]
    if bad:
        p.error(f'--arms: unknown {bad}; choose from {", ".join(ARMS)}')
    run(args) if args.cmd == 'run' else report(args)


if __name__ == '__main__':
    main()
