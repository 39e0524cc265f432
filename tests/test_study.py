"""The results study's report renders from runs (here: a small fake set, no training), with every number taken
from the logs, a PNG plot, grids and a verdict per claim."""
import json
import os
import shutil

import numpy as np
from PIL import Image

from conftest import ROOT, run_script


def fake_arm(folder, curve, img_s=40.0, done=True, seed=0, method='score_free'):
    """An arm folder as the trainers leave it: log.jsonl with progress and FID lines, grids, generator.pt."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'log.jsonl'), 'w') as f:
        for kimg, value in curve:
            if kimg:
                f.write(json.dumps({'tick': 0, 'kimg': kimg, 'img/s': img_s, 'loss_G': 0.1}) + '\n')
            f.write(json.dumps({'kimg': kimg, 'fid1k': value}) + '\n')
    rng = np.random.default_rng(seed)
    for name in ('fakes_init.png', 'fakes_000016.png'):
        Image.fromarray(rng.integers(0, 255, (34, 34, 3), dtype=np.uint8)).save(os.path.join(folder, name))
    if done:  # `study.py run` writes wall.json once the arm's command succeeded
        open(os.path.join(folder, 'generator.pt'), 'w').close()
        with open(os.path.join(folder, 'wall.json'), 'w') as f:
            json.dump({'wall_s': 600.0, 'method': method}, f)


def render_report(tmp_path):
    """results/study.py report on tmp_path/runs, written to tmp_path/results: (the page's text, its folder)."""
    out = tmp_path / 'results'
    r = run_script(os.path.join(ROOT, 'results', 'study.py'), 'report', '--runs', str(tmp_path / 'runs'),
                   '--out', str(out))
    assert r.returncode == 0, r.stderr
    return (out / 'README.md').read_text(), out


def test_report_renders_from_a_fake_set_of_runs(tmp_path):
    base = tmp_path / 'runs' / 'cpu'
    arms = base / 'arms'
    fake_arm(arms / 'di', [(8, 250.0), (16, 200.0)], img_s=20.5)
    fake_arm(arms / 'sf_rkl', [(0, 320.0), (8, 260.0), (16, 211.0)], img_s=44.0, seed=1)
    fake_arm(arms / 'sf_js', [(8, 270.0), (16, 230.0)], seed=2)
    fake_arm(arms / 'init_random' / 'random', [(0, 450.0), (8, 420.0), (16, 400.0)], seed=3)
    fake_arm(arms / 'init_mapping' / 'mapping', [(0, 300.0), (8, 290.0), (16, 280.0)], seed=4)
    fake_arm(arms / 'init_single_sigma' / 'single_sigma', [(0, 380.0), (8, 300.0)], done=False, seed=5)
    with open(base / 'teacher_fid.json', 'w') as f:
        json.dump({'metric': 'fid1k', 'value': 150.25, 'wall_s': 400.0}, f)
    for k, v in ((1, 211.0), (2, 205.5), (4, 201.0), (8, 199.75)):
        with open(base / f'verifier_k{k}.json', 'w') as f:
            json.dump({'metric': 'fid1k', 'value': v, 'wall_s': 100.0 * k}, f)
    page, out = render_report(tmp_path)
    # numbers come from the fake logs: final FIDs, the teacher, the verifier, img/s
    assert 'fid1k 150.25' in page and '| sf_rkl | 2 | 320.0 | 260.0 | 211.0 | 44.0 | 10.0 |' in page
    assert '| di | 2 | 320.0 | 250.0 | 200.0 | 20.5 |' in page  # DI starts from the same generator as sf_rkl
    assert '| 8 | fid1k 199.75 | 800.0 |' in page
    # verdicts follow the numbers: 211/200 = 1.055 is within 10%; random (400) fails; teacher (211) beats mapping
    assert '| 2 | held | best score-free arm sf_rkl: FID 211.0 vs Diff-Instruct 200.0 (ratio 1.05' in page
    assert '| 3 | held | score_free: teacher init FID 211.0 (sf_rkl) vs random init 400.0; random ends no better than' in page
    assert '| 4 | held | score_free: teacher init 211.0; init_mapping 280.0' in page  # single_sigma unfinished: left out
    plot = Image.open(out / 'study_cpu' / 'fid_curves.png')
    assert plot.size == (720, 440) and len(plot.getcolors(1 << 20)) > 5  # lines were drawn
    for name in ('grid_di.png', 'grid_sf_rkl.png', 'grid_init.png', 'grid_init_single_sigma.png'):
        assert (out / 'study_cpu' / name).is_file()
        assert f'study_cpu/{name}' in page


def test_report_says_what_is_missing(tmp_path):
    fake_arm(tmp_path / 'runs' / 'cpu' / 'arms' / 'di', [(16, 200.0)])
    fake_arm(tmp_path / 'runs' / 'cpu' / 'arms' / 'sf_rkl', [(0, 320.0), (16, 260.0)])
    page, out = render_report(tmp_path)
    assert '| 2 | did not hold at this scale | best score-free arm sf_rkl: FID 260.0 vs Diff-Instruct 200.0' in page
    assert '| 3 | not decidable yet |' in page and '| 4 | not decidable yet |' in page
    assert 'Not (yet) finished: sf_js, sf_fkl, init_random, init_mapping, init_single_sigma, init_io_reinit.' in page


def test_study_run_without_shared_material_is_one_clear_line(tmp_path):
    r = run_script(os.path.join(ROOT, 'results', 'study.py'), 'run', '--runs', str(tmp_path),
                   env={'SHARED': str(tmp_path / 'nowhere')})
    assert r.returncode != 0 and 'not found: the study needs ../shared' in r.stderr
    r = run_script(os.path.join(ROOT, 'results', 'study.py'), 'run', '--arms', 'di,nope')
    assert r.returncode == 2 and "unknown ['nope']" in r.stderr


def test_initialisation_verdicts_compare_with_the_method_the_init_arms_trained(tmp_path):
    arms = tmp_path / 'runs' / 'cpu' / 'arms'
    fake_arm(arms / 'di', [(16, 200.0)], method='diff_instruct')
    fake_arm(arms / 'sf_rkl', [(0, 320.0), (16, 300.0)])
    fake_arm(arms / 'init_random' / 'random', [(0, 450.0), (16, 210.0)], method='diff_instruct')
    page, out = render_report(tmp_path)
    assert '| 3 | did not hold at this scale | diff_instruct: teacher init FID 200.0 (di) vs random init 210.0' in page


def test_every_arm_command_parses_with_the_pilots_learning_rate_per_method():
    """Each arm's command line, as `study.py run` builds it, is accepted by the script it runs (its own parser),
    and trains at the generator lr the tier gives its method (Diff-Instruct's fake score at the same lr); the
    score-free arms use score_free.py's defaults (normalized weight, σ ≤ 2, two classifier steps)."""
    import importlib.util
    import sys
    sys.path.insert(0, ROOT)
    import diff_instruct
    import score_free
    import scratch_init
    spec = importlib.util.spec_from_file_location('study', os.path.join(ROOT, 'results', 'study.py'))
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    parsers = {'diff_instruct.py': diff_instruct.parse_args, 'score_free.py': score_free.parse_args,
               'scratch_init.py': lambda argv: scratch_init.parse_args(argv)[1]}
    for tier, cfg in study.TIERS.items():
        p = study.paths('/nonexistent/runs', tier)
        budget = study.size_budget(cfg, {'teacher': 5000.0, 'diff_instruct': 2000.0}) if 'seconds' in cfg else None
        for init_method in ('score_free', 'diff_instruct'):
            for name in study.ARMS:
                cmd, method = study.arm_command(name, cfg, p, init_method, '1000', budget)
                args = parsers[cmd[0]](cmd[1:])
                assert args.lr == float(cfg['lr'][method]), (tier, name)
                assert args.fid_ref == ('samples' if budget else p['ref'])
                if budget and cmd[0] != 'scratch_init.py':
                    assert args.total_kimg == budget['arm_kimg'] and args.tick_kimg == budget['arm_tick_kimg']
                if method == 'diff_instruct':
                    assert args.fake_lr == args.lr
                else:
                    assert args.weight == 'normalized' and args.gen_sigma_max == 2.0 and args.cls_steps == 2


def test_gpu_budget_is_whole_ticks_of_whole_batches_from_the_measured_rates():
    study = load_study()
    cfg = study.TIERS['gpu']
    b = study.size_budget(cfg, {'teacher': 5000.0, 'diff_instruct': 2000.0})
    # 2000 img/s x 20 s = 40000 images -> 78 ticks' worth of 4 x 128: 39.936 kimg; teacher 5000 x 120 / 2560 -> 234
    assert b['arm_kimg'] == 78 * 4 * 128 / 1000 and b['arm_tick_kimg'] == 78 * 128 / 1000
    assert b['teacher_kimg'] == 234 * 10 * 256 / 1000 and b['teacher_tick_kimg'] == 234 * 256 / 1000
    assert study.size_budget(cfg, {'teacher': 1.0, 'diff_instruct': 1.0})['arm_kimg'] == 4 * 128 / 1000  # >= 1 tick
    teacher = study.flags(cfg, 'teacher', b)
    assert teacher[teacher.index('--total-kimg') + 1] == '599.04'


def load_study():
    import importlib.util
    spec = importlib.util.spec_from_file_location('study', os.path.join(ROOT, 'results', 'study.py'))
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    return study


def test_gpu_tier_round_trip_pack_unpack_fid_report(tmp_path, tiny_detector):
    """What a device call brings back (logs, grids, sample zips; no checkpoints) packs into at most 8 tars, unpacks
    here, is measured by `study.py fid` with the weights found here, and the report reads the measured points."""
    import sys
    import torch
    sys.path.insert(0, ROOT)
    import fid
    from conftest import write_image_folder
    study = os.path.join(ROOT, 'results', 'study.py')
    device_runs, here_runs = tmp_path / 'device', tmp_path / 'here'
    arm = device_runs / 'gpu_dry' / 'arms' / 'sf_rkl'
    fake_arm(arm, [(0, 1.0)])  # then replace its FID lines by saved points, as --fid-ref samples writes them
    with open(arm / 'log.jsonl', 'w') as f:
        f.write(json.dumps({'tick': 0, 'kimg': 8.0, 'img/s': 900.0}) + '\n')
        f.write(json.dumps({'kimg': 8.0, 'samples': 'fid_samples/fid6-00008.000kimg.zip'}) + '\n')

    def make(seeds):  # the same images for the same seeds, as a sampler makes them
        return torch.stack([torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8,
                                          generator=torch.Generator().manual_seed(s)) for s in seeds])
    fid.save_samples(make, 6, str(arm / 'fid_samples' / 'fid6-00008.000kimg.zip'))
    fid.save_samples(make, 6, str(device_runs / 'gpu_dry' / 'teacher_fid.zip'))
    (arm / 'generator.pt').write_bytes(b'x' * 4096)  # checkpoints stay on the device
    with open(device_runs / 'gpu_dry' / 'teacher_fid_wall.json', 'w') as f:
        json.dump({'wall_s': 3.5}, f)
    r = run_script(study, 'pack', '--tier', 'gpu_dry', '--runs', str(device_runs), '--to', str(tmp_path / 'out'))
    assert r.returncode == 0, r.stderr
    tars = sorted(os.listdir(tmp_path / 'out'))
    assert tars == ['study_gpu_dry_1.tar']
    r = run_script(study, 'unpack', '--tier', 'gpu_dry', '--runs', str(here_runs), str(tmp_path / 'out' / tars[0]))
    assert r.returncode == 0, r.stderr
    assert not (here_runs / 'gpu_dry' / 'arms' / 'sf_rkl' / 'generator.pt').exists()
    shared = tmp_path / 'shared'  # ../shared as `fid` needs it: the data (for the reference) and the weights
    os.makedirs(shared / 'fid')
    os.replace(tiny_detector, shared / 'fid' / 'inception-2015-12-05.pt')
    data = write_image_folder(str(tmp_path / 'img'), n_per_class=3)
    os.makedirs(shared / 'data')
    shutil.make_archive(str(shared / 'data' / 'cifar10-jpeg-train'), 'zip', data)
    r = run_script(study, 'fid', '--tier', 'gpu_dry', '--runs', str(here_runs), env={'SHARED': str(shared)})
    assert r.returncode == 0, r.stderr
    point = json.load(open(here_runs / 'gpu_dry' / 'arms' / 'sf_rkl' / 'fid_samples' / 'fid6-00008.000kimg.json'))
    teacher = json.load(open(here_runs / 'gpu_dry' / 'teacher_fid.json'))
    assert point['metric'] == 'fid6' and teacher['wall_s'] == 3.5  # the sampling's wall time, not this machine's
    assert teacher['value'] == point['value']  # the same seeds of the same images
    out = tmp_path / 'results'
    r = run_script(study, 'report', '--tier', 'gpu_dry', '--runs', str(here_runs), '--out', str(out))
    assert r.returncode == 0, r.stderr
    page = (out / 'README_gpu_dry.md').read_text()
    assert f'| sf_rkl | 2 | {point["value"]:.1f} | 900.0 |' in page
