"""The results study: the paper's four claims measured on real images, at a scale one machine can run.

  python results/study.py run                 run (or resume) the CPU tier: every step that is done is skipped
  python results/study.py run --tier gpu      the same study, one flag, at GPU scale (small preset, budgets sized
                                              in seconds on the device; see results/study_gpu.sh)
  python results/study.py report              turn runs/study/<tier> into results/README.md and its figures
  GPU tier, one device call (results/study_gpu.sh runs `run --tier gpu` and `pack` there; it saves samples, since
  the Inception weights do not travel), then here:
  python results/study.py unpack --tier gpu FILE.tar ...    the call's files into runs/study/gpu
  python results/study.py fid --tier gpu                    FID of every saved sample zip (real Inception weights)

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
import re
import shutil
import subprocess
import sys
import tarfile
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
    # The GPU tier is one device call of at most 10 minutes (a borrowed H100/H200: no network, no Inception weights,
    # 64 MiB in and out). A GPU's speed is not known until it runs, so the budgets are seconds: two results/bench.py runs
    # at the start measure the teacher's and Diff-Instruct's img/s, and size_budget turns the seconds into kimg
    # (budget.json; every arm gets the same kimg, sized by Diff-Instruct, the slowest). FID points save their
    # images (--fid-ref samples) and `study.py fid` measures them where the weights are.
    'gpu': dict(
        teacher=['--preset', 'small', '--batch', '256', '--lr', '1e-3', '--lr-rampup-kimg', '{teacher_rampup_kimg}',
                 '--ema-halflife-kimg', '{teacher_ema_kimg}', '--total-kimg', '{teacher_kimg}',
                 '--tick-kimg', '{teacher_tick_kimg}', '--snapshot-ticks', '100'],
        arm=['--batch', '128', '--ema-halflife-kimg', '{arm_ema_kimg}', '--total-kimg', '{arm_kimg}',
             '--tick-kimg', '{arm_tick_kimg}', '--snapshot-ticks', '2'],
        lr=dict(diff_instruct='2e-5', score_free='2e-5'),  # untested: between DI's official 1e-5 and the pilot's
        init=['--init-kimg', '{init_kimg}', '--init-batch', '128', '--init-lr', '1e-4', '--mapping-pairs', '20000'],
        # 4.5 min of training; ~14 process starts (imports, CUDA, decoding the JPEGs) estimated at ~3 min, not
        # measured (no device yet); study_gpu.sh stops the study at 500 s whatever happens, to pack in time
        seconds=dict(teacher=120, arm=20, init=10),
        bench=dict(preset='small', teacher_batch=256, arm_batch=128, steps=20),
        fid='samples', per_class=200, fid_num=1000, device='cuda'),
}


def set_flags(flag_list, **values):
    """A copy of a flag list with some flags' values replaced: set_flags(l, batch='32') sets --batch 32."""
    out = list(flag_list)
    for name, value in values.items():
        out[out.index('--' + name.replace('_', '-')) + 1] = value
    return out


# The GPU tier's plumbing on a CPU (bench, sizing, samples, pack): `run --tier gpu_dry`, then `pack`, `unpack`,
# `fid`, `report` as after a device call. Its numbers mean nothing. On the 2-core VM, sharing it with another job,
# study_gpu.sh's 500 s stop came during the second arm; unpack + fid + report took 4 min more.
TIERS['gpu_dry'] = dict(TIERS['gpu'], seconds=dict(teacher=20, arm=4, init=2), per_class=2, fid_num=16, device='cpu',
                        bench=dict(preset='tiny', teacher_batch=32, arm_batch=16, steps=3),
                        teacher=set_flags(TIERS['gpu']['teacher'], preset='tiny', batch='32'),
                        arm=set_flags(TIERS['gpu']['arm'], batch='16'),
                        init=set_flags(TIERS['gpu']['init'], init_batch='16', mapping_pairs='64'))
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


def fid_calc(p, args, out_json, extra, wall_s=None, cmd=('fid.py', 'calc')):
    """fid.py calc (or score_free.py verify) once; the value, its metric name and wall time (or the given one: the sampling's, when the
    images were made elsewhere) go to out_json (skipped when it exists)."""
    if os.path.isfile(out_json):
        return
    log = out_json[:-5] + '.log'
    t0 = time.time()
    sh(list(cmd) + ['--ref', p['ref'], '--inception', p['inception'], '--device', args.device_flag] + extra, log)
    name, value = open(log).read().split('# wall')[-2].split()[-2:]
    write_json(out_json, {'metric': name, 'value': float(value),
                          'wall_s': round(time.time() - t0, 1) if wall_s is None else wall_s})


def sample_step(args, out_zip, extra, cmd=('fid.py', 'sample')):
    """fid.py sample (or score_free.py verify) once (the --fid-ref samples tiers): the zip, and the sampling's wall time in <zip>_wall.json
    (`study.py fid` reports that time, not its own)."""
    if os.path.isfile(out_zip):
        return
    wall = sh(list(cmd) + ['--out', out_zip, '--device', args.device_flag] + extra,
              out_zip[:-4] + '_sample.log')
    write_json(out_zip[:-4] + '_wall.json', {'wall_s': round(wall, 1)})


def size_budget(cfg, rates):
    """The kimg of a tier sized in seconds, from measured img/s ({'teacher': .., 'diff_instruct': ..}): every
    budget is a whole number of ticks of whole batches (10 ticks for the teacher, 4 for an arm)."""
    def kimg(rate, seconds, batch, ticks):
        return max(1, int(rate * seconds) // (ticks * batch)) * ticks * batch / 1000
    b, sec = cfg['bench'], cfg['seconds']
    t = kimg(rates['teacher'], sec['teacher'], b['teacher_batch'], 10)
    a = kimg(rates['diff_instruct'], sec['arm'], b['arm_batch'], 4)
    r = lambda x: round(x, 6)  # noqa: E731  (flags print as 30.72, not 30.720000000000002)
    return dict(teacher_kimg=r(t), teacher_tick_kimg=r(t / 10), teacher_rampup_kimg=r(t / 10),
                teacher_ema_kimg=r(t / 12), arm_kimg=r(a), arm_tick_kimg=r(a / 4), arm_ema_kimg=r(a / 8),
                init_kimg=kimg(rates['teacher'], sec['init'], b['arm_batch'], 1), rates=rates)


def measure_budget(cfg, p):
    """budget.json of a tier sized in seconds: the teacher's and Diff-Instruct's img/s (results/bench.py) on this device,
    measured once (a resumed study keeps its budget)."""
    path = os.path.join(p['base'], 'budget.json')
    if not os.path.isfile(path):
        b, rates = cfg['bench'], {}
        for name, batch in (('teacher', b['teacher_batch']), ('diff_instruct', b['arm_batch'])):
            log = os.path.join(p['base'], f'bench_{name}.log')
            sh(['results/bench.py', name, '--preset', b['preset'], '--batch', str(batch), '--steps', str(b['steps']),
                '--device', cfg['device']], log)
            rates[name] = float(re.findall(r'bench \w+: ([\d.]+) img/s', open(log).read())[-1])
        write_json(path, size_budget(cfg, rates))
    return json.load(open(path))


def flags(cfg, key, budget):
    """A tier's flag list with its {placeholders} filled from the budget."""
    return [f.format(**budget) if budget else f for f in cfg[key]]


def arm_command(name, cfg, p, init_method, fid_num, budget=None):
    """(the command line of one arm, the one-step method it trains): the arm's flags, then the tier's."""
    claim, script, extra = ARMS[name]
    out = arm_dir(p, name)
    if script == 'scratch_init.py':
        cmd = [script, '--method', init_method, '--outdir', os.path.dirname(out), '--fid-at-start', '1'] + extra
        init = flags(cfg, 'init', budget)  # each arm gets the pre-training flags it uses (scratch_init refuses others)
        for flag, value in zip(init[::2], init[1::2]):
            if extra[1] == 'mapping' or (extra[1] == 'single_sigma' and not flag.startswith('--mapping')):
                cmd += [flag, value]
    else:
        resume = ['--resume', 'auto'] if os.path.isfile(os.path.join(out, 'checkpoint.pt')) else []
        cmd = [script, '--outdir', out] + extra + resume
    method = init_method if script == 'scratch_init.py' else script[:-3]
    lr = cfg['lr'][method]
    fid = ['--fid-ref', 'samples'] if cfg.get('fid') == 'samples' else ['--fid-ref', p['ref'], '--inception',
                                                                         p['inception']]
    cmd += ['--dataset', p['data'], '--teacher', os.path.join(p['teacher'], 'checkpoint.pt'), '--device',
            cfg['device'], '--fid-num', fid_num, '--lr', lr] + fid
    cmd += flags(cfg, 'arm', budget)
    if method == 'diff_instruct':
        cmd += ['--fake-lr', lr]  # the fake score at the generator's lr, as in the pilot
    return cmd, method


def run(args):
    cfg, p = TIERS[args.tier], paths(args.runs, args.tier)
    samples = cfg.get('fid') == 'samples'  # FID points save their images; `study.py fid` measures them later
    for f in [p['data']] + ([] if samples else [p['inception']]):
        if not os.path.isfile(f):
            raise SystemExit(f'error: {f} not found: the study needs ../shared (set SHARED=... to its location)')
    os.makedirs(p['arms'], exist_ok=True)
    args.device_flag = cfg['device']
    fid_num = str(args.fid_num or cfg['fid_num'])
    budget = measure_budget(cfg, p) if 'seconds' in cfg else None
    # 1. The teacher, trained once (resumable), and the reference statistics of the training images.
    teacher_ckpt = os.path.join(p['teacher'], 'checkpoint.pt')
    if not os.path.isfile(os.path.join(p['teacher'], 'done')):
        resume = ['--resume', 'auto'] if os.path.isfile(teacher_ckpt) else []
        sh(['teacher.py', '--dataset', p['data'], '--fid-ref', 'none', '--device', cfg['device'],
            '--outdir', p['teacher']] + flags(cfg, 'teacher', budget) + resume, os.path.join(p['base'], 'teacher.log'))
        open(os.path.join(p['teacher'], 'done'), 'w').close()
    if samples:
        sample_step(args, os.path.join(p['base'], 'teacher_fid.zip'), ['--ckpt', teacher_ckpt, '--num', fid_num])
    else:
        make_ref(cfg, p, cfg['device'])
        fid_calc(p, args, os.path.join(p['base'], 'teacher_fid.json'), ['--ckpt', teacher_ckpt, '--num', fid_num])
    # 2. The arms, one at a time, each skipped once its generator.pt exists.
    for name in args.arms:
        claim, script, extra = ARMS[name]
        out = arm_dir(p, name)
        if os.path.isfile(os.path.join(out, 'generator.pt')):
            continue
        if script == 'scratch_init.py':
            shutil.rmtree(out, ignore_errors=True)  # scratch_init.py does not resume: start the arm again
        cmd, method = arm_command(name, cfg, p, args.init_method, fid_num, budget)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        wall = sh(cmd, os.path.join(p['arms'], name + '.log'))
        write_json(os.path.join(out, 'wall.json'), {'wall_s': round(wall, 1), 'method': method})
    # 3. The ratio as a verifier: the reverse-KL score-free generator with k candidates per image.
    gen = os.path.join(arm_dir(p, 'sf_rkl'), 'generator.pt')
    if os.path.isfile(gen):
        for k in VERIFIER_KS[1:] if samples else VERIFIER_KS:  # (samples: k = 1 is the arm's own last point)
            extra = ['--ckpt', gen, '--num', fid_num, '--k', str(k), '--sigma', str(args.verifier_sigma),
                     '--rule', args.verifier_rule]
            verify = ('score_free.py', 'verify')
            if samples:
                sample_step(args, os.path.join(p['base'], f'verifier_k{k}.zip'), extra, verify)
            else:
                fid_calc(p, args, os.path.join(p['base'], f'verifier_k{k}.json'), extra, cmd=verify)
    print(f'study ({args.tier}) complete: python results/study.py ' +
          (f'pack --tier {args.tier} --to DIR, then here: unpack, fid and report' if samples else
           f'report --tier {args.tier}'))


def make_ref(cfg, p, device):
    if not os.path.isfile(p['ref']):
        sh(['fid.py', 'ref', '--dataset', p['data'], '--per-class', str(cfg['per_class']), '--inception',
            p['inception'], '--out', p['ref'], '--device', device], os.path.join(p['base'], 'ref.log'))


def fid_of_samples(args):
    """Here, after a --fid-ref samples tier came back: the reference statistics, then the FID of every saved zip
    (the arms' points next to their zips, teacher_fid.json, verifier_k*.json), each skipped once measured."""
    cfg, p = TIERS[args.tier], paths(args.runs, args.tier)
    for f in (p['data'], p['inception']):
        if not os.path.isfile(f):
            raise SystemExit(f'error: {f} not found: FID needs ../shared (set SHARED=... to its location)')
    args.device_flag = 'auto'
    make_ref(cfg, p, 'auto')
    zips = sorted(glob.glob(os.path.join(p['arms'], '**', 'fid_samples', '*.zip'), recursive=True))
    zips += sorted(glob.glob(os.path.join(p['base'], '*.zip')))
    if not zips:
        raise SystemExit(f'error: no sample zips under {p["base"]}: run `study.py unpack --tier {args.tier}` first')
    for z in zips:
        wall = z[:-4] + '_wall.json'
        fid_calc(p, args, z[:-4] + '.json', ['--images', z],
                 json.load(open(wall))['wall_s'] if os.path.isfile(wall) else None)
    print(f'{len(zips)} sample sets measured: python results/study.py report --tier {args.tier}')


# What comes back from a device call: at most 8 files of at most 16 MiB, 64 MiB in all (the device tool's README).
PACK_FILES, PACK_BYTES = 8, 15 << 19


def pack(args):
    """Every file of the tier's runs but the checkpoints (logs, grids, sample zips) into at most PACK_FILES tars
    of at most PACK_BYTES each, for a device call's $OUT: the small files first, then the zips; what does not fit
    is named and the exit status is 1."""
    base = paths(args.runs, args.tier)['base']
    files = [f for f in glob.glob(os.path.join(base, '**', '*'), recursive=True)
             if os.path.isfile(f) and not f.endswith(('.pt', '.tmp'))]
    bins, left = [[] for _ in range(PACK_FILES)], []
    for f in sorted(files, key=lambda f: (f.endswith('.zip'), f)):  # first fit
        size = os.path.getsize(f) + 1024  # + the tar header, rounded up
        fit = next((b for b in bins if sum(s for _, s in b) + size <= PACK_BYTES), None)
        (fit.append((f, size)) if fit is not None else left.append(f))
    os.makedirs(args.to, exist_ok=True)
    for i, b in enumerate(x for x in bins if x):
        with tarfile.open(os.path.join(args.to, f'study_{args.tier}_{i + 1}.tar'), 'w') as tar:
            for f, _ in b:
                tar.add(f, arcname=os.path.relpath(f, args.runs))
    print(f'packed {len(files) - len(left)} files of {base} into {args.to}')
    if left:
        raise SystemExit(f'error: {len(left)} files did not fit in {PACK_FILES} x {PACK_BYTES >> 20} MiB, e.g. '
                         f'{left[0]}: lower the tier\'s fid_num')


def unpack(args):
    for t in args.files:
        with tarfile.open(t) as tar:
            tar.extractall(args.runs, filter='data')
    print(f'unpacked {len(args.files)} files into {args.runs}: python results/study.py fid --tier {args.tier}')


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
        if 'samples' in rec:  # a point saved as images (--fid-ref samples): its FID, once `study.py fid` ran
            measured = os.path.join(out, rec['samples'][:-4] + '.json')
            if os.path.isfile(measured):
                m = json.load(open(measured))
                rec = {m['metric']: m['value'], **rec}
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
            'done': os.path.isfile(wall)}  # written by `study.py run` once the arm's command succeeded


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
    budget = load(os.path.join(p['base'], 'budget.json')) if 'seconds' in cfg else None
    if 'seconds' in cfg and not budget:
        budget = {k: '?' for k in size_budget(cfg, {'teacher': 1.0, 'diff_instruct': 1.0})}
    L = [f'# Results: the paper\'s claims on real images ({args.tier} tier)', '',
         f'Made by `python results/study.py report --tier {args.tier}` from the runs of '
         f'`python results/study.py run --tier {args.tier}`; no number here is typed by hand.', '',
         '**Data**: the JPEG copy of CIFAR-10 (lossy, so these FIDs compare only with each other, never with '
         'published CIFAR-10 numbers). **FID**: real Inception weights, TF pipeline, '
         f'{metric} of fixed seeds against {cfg["per_class"]} training images per class. '
         f'**Teacher**: `teacher.py {" ".join(flags(cfg, "teacher", budget))}`. **Every arm**: '
         f'`{" ".join(flags(cfg, "arm", budget))}` from that teacher, the generator lr per method ('
         + ', '.join(f'{m} {lr}' for m, lr in cfg['lr'].items()) + '; Diff-Instruct\'s fake score at its lr) '
         f'(scratch_init arms: `{" ".join(flags(cfg, "init", budget))}` of pre-training first).', '']
    if budget and isinstance(budget['rates'], dict):
        device = load(os.path.join(p['base'], 'device.json')) or {}
        L += [f'**Sized on the device** ({device.get("name", "unrecorded")}): `results/bench.py` measured the teacher at '
              f'{budget["rates"]["teacher"]} img/s and Diff-Instruct at {budget["rates"]["diff_instruct"]} img/s '
              f'({cfg["bench"]["preset"]} preset), which turned ' + ', '.join(f'{k} {v} s' for k, v in cfg['seconds'].items())
              + ' of training into the kimg above '
              '(`size_budget`). The samples of every FID point were saved there and measured here.', '']
    if teacher:
        L.append(f'Teacher, Heun (35 evaluations): {teacher["metric"]} {teacher["value"]:.2f}. '
                 f'Untrained teacher-initialised one-step generator: {metric} {fmt(init_fid, 2)}.')
        L.append('')
    L += ['## Verdicts', '', '| claim | verdict | measured |', '|---|---|---|']
    L += [f'| {c} | {v} | {r} |' for c, v, r in verdicts(arms, init_fid)]
    L += ['', 'Each arm is one training seed, each FID one set of sample seeds, and the verdicts apply fixed margins '
          'to them. At this scale a seed moves FID by as much as those margins: the pilot trained Diff-Instruct and '
          'both score-free members with these settings on three seeds each (the seed table of '
          '[pilot_score_free.md](pilot_score_free.md)). Read a verdict whose ratio is near its margin as undecided.']
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
    if ks[0][1] is None and final_fid(arms.get('sf_rkl')) is not None:  # k = 1 is sf_rkl's own last point
        ks[0] = (1, {'metric': metric, 'value': final_fid(arms['sf_rkl']), 'wall_s': '– (the arm\'s last point)'})
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
    p.add_argument('cmd', choices=['run', 'report', 'fid', 'pack', 'unpack'])
    p.add_argument('files', nargs='*', help='unpack: the tars a device call brought back')
    p.add_argument('--to', default=os.environ.get('OUT', ''), help='pack: where the tars go (default: $OUT)')
    p.add_argument('--tier', default='cpu', choices=sorted(TIERS))
    p.add_argument('--arms', default=DEFAULT_ARMS, help=f'comma-separated, of {", ".join(ARMS)}')
    p.add_argument('--fid-num', type=int, default=0, help='samples per FID (0: the tier\'s)')
    p.add_argument('--init-method', default='score_free', choices=['score_free', 'diff_instruct'],
                   help='the one-step method of the initialisation arms (the paper: its own, score-free)')
    p.add_argument('--verifier-sigma', type=float, default=0.1, help='σ at which the classifier scores candidates')
    p.add_argument('--verifier-rule', default='resample', choices=['resample', 'best'])
    p.add_argument('--runs', default=os.path.join(ROOT, 'runs', 'study'), help='where the runs live (per tier)')
    p.add_argument('--out', default=os.path.join(ROOT, 'results'), help='report: where README.md and figures go')
    args = p.parse_intermixed_args(argv)  # unpack's files may come after the options
    args.arms = [a for a in args.arms.split(',') if a]
    bad = [a for a in args.arms if a not in ARMS]
    if bad:
        p.error(f'--arms: unknown {bad}; choose from {", ".join(ARMS)}')
    if args.cmd == 'pack' and not args.to:
        p.error('pack needs --to DIR (or $OUT)')
    if args.cmd == 'unpack' and not args.files:
        p.error('unpack needs the .tar files')
    dict(run=run, report=report, fid=fid_of_samples, pack=pack, unpack=unpack)[args.cmd](args)


if __name__ == '__main__':
    main()
