"""results/study.py: the pre-set verdict rules on known numbers, the report from a small fake set of records (seeds
aggregated, every number from the logs), the arms' command lines, the GPU tier's budget and round trip."""
import importlib.util
import json
import math
import os
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run_script

STUDY = os.path.join(ROOT, 'results', 'study.py')


def load_study():
    spec = importlib.util.spec_from_file_location('study', STUDY)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    return study


def fake_run(folder, curve, img_s=40.0, sec_per_kimg=30.0, done=True, seed=0, fid=None, method='score_free',
             machine='cpu X'):
    """A record as `study.py run` leaves it: log.jsonl with progress and FID lines, grids, derived FIDs, done.json."""
    os.makedirs(os.path.join(folder, 'fid'), exist_ok=True)
    with open(os.path.join(folder, 'log.jsonl'), 'w') as f:
        for kimg, value in curve:
            if kimg:
                f.write(json.dumps({'tick': 0, 'kimg': kimg, 'img/s': img_s, 'sec/kimg': sec_per_kimg}) + '\n')
            f.write(json.dumps({'kimg': kimg, 'fid1k': value}) + '\n')
    rng = np.random.default_rng(seed)
    for name in ('fakes_init.png', 'fakes_000016.000kimg.png'):
        Image.fromarray(rng.integers(0, 255, (34, 34, 3), dtype=np.uint8)).save(os.path.join(folder, name))
    for name, value in (fid or {}).items():
        with open(os.path.join(folder, 'fid', name + '.json'), 'w') as f:
            json.dump({'metric': 'fid1k', 'value': value, 'wall_s': 1.0}, f)
    if done:
        with open(os.path.join(folder, 'done.json'), 'w') as f:
            json.dump({'wall_s': 600.0, 'method': method, 'machine': machine}, f)


def render(tmp_path, tier='cpu'):
    out = tmp_path / 'results'
    r = run_script(STUDY, 'report', '--tier', tier, '--runs', str(tmp_path / 'runs'), '--records',
                   str(tmp_path / 'records'), '--out', str(out))
    assert r.returncode == 0, r.stderr
    return (out / ('README.md' if tier == 'cpu' else f'README_{tier}.md')).read_text(), out


def test_judge_applies_the_preset_rule():
    study = load_study()
    verdict, d, se = study.judge([200.0, 210.0, 205.0], [200.0, 195.0, 205.0], 1.10)  # 205 vs 220 ± 4.1
    assert verdict == 'holds' and d == pytest.approx(1.1 * 200 - 205) and se == pytest.approx(
        math.sqrt(25 / 3 + 1.21 * 25 / 3))
    assert study.judge([260.0, 250.0, 270.0], [200.0, 195.0, 205.0], 1.10)[0] == 'did not hold'
    assert study.judge([215.0, 250.0, 190.0], [200.0, 195.0, 205.0], 1.10)[0] == 'not decidable at this scale'
    assert study.judge([200.0], [300.0, 310.0], 1.0)[0] == 'not decidable at this scale'  # one seed: no spread


def test_report_aggregates_seeds_and_applies_the_rules(tmp_path):
    rec = tmp_path / 'records'
    di = {0: [(8, 250.0), (16, 200.0)], 1: [(8, 255.0), (16, 195.0)], 2: [(8, 245.0), (16, 205.0)]}
    sf = {0: [(0, 380.0), (8, 260.0), (16, 205.0)], 1: [(0, 380.0), (8, 265.0), (16, 210.0)],
          2: [(0, 380.0), (8, 255.0), (16, 200.0)]}
    for s in range(3):
        fake_run(rec / 'A' / 'di' / f'seed{s}', di[s], img_s=20.0, sec_per_kimg=50.0, seed=s, fid={'test': 210.0 + s},
                 method='diff_instruct')
        fake_run(rec / 'A' / 'sf_rkl' / f'seed{s}', sf[s], img_s=30.0, sec_per_kimg=30.0, seed=s, fid={'test': 212.0 + s})
        fake_run(rec / 'A' / 'init_random' / f'seed{s}', [(0, 450.0), (16, 400.0 + s)], seed=s)
        fake_run(rec / 'A' / 'init_mapping' / f'seed{s}', [(0, 300.0), (16, 280.0 + 5 * s)], seed=s)
        fake_run(rec / 'A' / 'init_single_sigma' / f'seed{s}', [(0, 380.0), (16, 290.0 + 5 * s)], seed=s)
    fake_run(rec / 'B' / 'di' / 'seed0', di[0], seed=9, method='diff_instruct')
    # seed 0 of sf_rkl: the longer pair's curve, the metric's noise, the verifier and the classifier's accuracy
    verifier = {f'verifier_{kimg}kimg_k{k}_{rule}_sigma0.1': 200.0 - k - (1 if rule == 'best' else 0) + kimg
                for kimg in (8, 16) for k in (2, 4) for rule in ('resample', 'best')}
    fake_run(rec / 'A' / 'sf_rkl' / 'seed0', sf[0] + [(32, 190.0), (48, 185.0)], sec_per_kimg=30.0,
             fid={'test': 212.0, 'noise_seeds1000': 207.0, 'noise_seeds2000': 203.0, **verifier})
    os.makedirs(rec / 'A' / 'sf_rkl' / 'seed0' / 'accuracy')
    json.dump({f'{s:g}': {'acc_fake': 0.9, 'acc_real': 0.6} for s in (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)},
              open(rec / 'A' / 'sf_rkl' / 'seed0' / 'accuracy' / '16kimg.json', 'w'))
    fake_run(rec / 'B' / 'sf_rkl' / 'seed0', sf[0] + [(32, 190.0), (48, 187.0)], seed=9)  # classifier beside A's
    os.makedirs(rec / 'B' / 'sf_rkl' / 'seed0' / 'accuracy')
    json.dump({f'{s:g}': {'acc_fake': 0.7, 'acc_real': 0.4} for s in (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)},
              open(rec / 'B' / 'sf_rkl' / 'seed0' / 'accuracy' / '16kimg.json', 'w'))
    fake_run(rec / 'A' / 'sf_js' / 'seed0', [(16, 230.0)], done=False)  # unfinished: left out
    os.makedirs(rec / 'A' / 'teacher' / 'fid')
    json.dump({'metric': 'fid1k', 'value': 150.25}, open(rec / 'A' / 'teacher' / 'fid' / 'train.json', 'w'))
    os.makedirs(tmp_path / 'results' / 'study_cpu')
    (tmp_path / 'results' / 'study_cpu' / 'classifier_sigma_B.md').write_text('# by hand\n')  # linked where it exists
    page, out = render(tmp_path)
    assert 'Teacher A, Heun (35 evaluations): fid1k 150.25.' in page
    assert "from each teacher's untrained generator: [teacher B](study_cpu/classifier_sigma_B.md)." in page
    # every cell: mean ± sd (values), from the fake logs
    assert '| di | 2 | 3 | – | 250.0 ± 5.0 (250.0, 255.0, 245.0) | 200.0 ± 5.0 (200.0, 195.0, 205.0) | ' \
           '211.0 ± 1.0 (210.0, 211.0, 212.0) | 20.0 | 10.0 |' in page
    # claim 2: 205 vs 1.1 × 200: difference 15 > 2 SE → holds; claim 3 holds; 4a holds, 4b (290 vs 285) did not
    assert '| 2 | teacher A | holds | sf_rkl 205.0 ± 5.0 (205.0, 210.0, 200.0) vs 1.1 × di' in page
    assert '| 2 | teacher B | not decidable at this scale |' in page  # one seed a side on B
    assert '| 3 | teacher A | holds |' in page and '| 4a | teacher A | holds |' in page
    assert '| 4b | teacher A | did not hold |' in page and '| 4c | teacher A | not decidable at this scale |' in page
    assert '| 4 | teacher A | did not hold |' in page
    # in words: A's sf_rkl 205, 210, 200 against 1.1 × 200 = 220; B's one seed 205 against 1.1 × 200
    assert 'teacher A: within the margin on all 3 seeds; teacher B: within the margin on its one seed' in page
    # equal wall time: sf_rkl reached 16 kimg in 480 s; di's FID at 480 s lies between (400 s, 250) and (800 s, 200)
    assert '| 2 | teacher A, equal wall time | holds | sf_rkl 205.0 ± 5.0 (205.0, 210.0, 200.0) vs 1.1 × di at the same ' \
           'seconds 240.0 ± 3.0 (240.0, 243.0, 237.0)' in page and 'test images | holds |' in page
    assert 'Not (yet) finished on teacher A: sf_js seed 0,' in page
    # the longer pair, the metric's noise (the run's own point and two more seed sets), the verifier's tables
    assert '- sf_rkl (A): 0 kimg 380.0 (0 min), 8 kimg 260.0 (4 min), 16 kimg 205.0 (8 min), 32 kimg 190.0 (16 min), ' \
           '48 kimg 185.0 (24 min) (last third -5.0; **not flattened**)' in page  # moved more than 2 × the sd 2.0
    assert '48 kimg 187.0 (24 min) (last third -3.0; flattened)' in page
    assert 'from 0, 1000, 2000): 205.00 ± 2.00 (205.00, 207.00, 203.00)' in page
    assert '| resample, σ 0.1 | 260.0 ± 5.0 (260.0, 265.0, 255.0) | 206.0 ± – (206.0) | 204.0 ± – (204.0) |' in page
    # paired: seed 0's k = 4 at 8 kimg is 200 − 4 + 8 = 204 against its plain 260
    assert '- resample, σ 0.1: -56.0 ± – (-56.0) (one seed)' in page
    assert 'beyond twice the SE of the paired difference: lower FID for none; higher for none;' in page  # one seed
    assert '| A | 16 | 1 | 0.90 / 0.60 |' in page and '| B | 16 | 1 | 0.70 / 0.40 |' in page
    for name in ('fid_curves_A.png', 'grid_di.png', 'grid_sf_rkl.png', 'grid_init.png'):
        assert (out / 'study_cpu' / name).is_file(), name
    plot = Image.open(out / 'study_cpu' / 'fid_curves_A.png')
    assert len(plot.getcolors(1 << 20)) > 5  # lines and bands were drawn


def test_equal_wall_time_pairs_only_runs_made_on_one_machine(tmp_path):
    rec = tmp_path / 'records'
    for s, (m_di, m_sf) in enumerate((('cpu X', 'cpu X'), ('cpu X', 'cpu Y'), ('cpu Y', 'cpu Y'))):
        fake_run(rec / 'A' / 'di' / f'seed{s}', [(8, 250.0 + s), (16, 200.0)], sec_per_kimg=50.0, method='diff_instruct',
                 machine=m_di)
        fake_run(rec / 'A' / 'sf_rkl' / f'seed{s}', [(0, 380.0), (8, 260.0), (16, 205.0 + s)], machine=m_sf)
    page, _ = render(tmp_path)
    assert 'Made on: cpu X (3 runs); cpu Y (3 runs).' in page
    assert 'Teacher B: no run finished yet.' in page and 'fid_curves_B' not in page  # no empty table for B
    # seed 1's two runs were made on two machines, so only seeds 0 and 2 are paired; di at 480 s lies between
    # (400 s, 250 + s) and (800 s, 200): 240 + 0.8 s
    assert "| 2 | teacher A, equal wall time | holds | sf_rkl 206.0 ± 1.4 (205.0, 207.0) vs 1.1 × di at the same " \
           "seconds 240.8 ± 1.1 (240.0, 241.6)" in page


def test_equal_wall_time_interpolates_the_slower_method():
    study = load_study()
    sf = {'seconds': [(0.0, 380.0), (240.0, 260.0), (480.0, 205.0)], 'curve': [(0, 380.0), (8, 260.0), (16, 205.0)],
          'machine': 'cpu X'}
    di = {'seconds': [(400.0, 250.0), (800.0, 200.0)], 'curve': [(8, 250.0), (16, 200.0)], 'machine': 'cpu X'}
    x, y = study.equal_time_fids({'A': {'sf_rkl': {0: sf}, 'di': {0: di}}}, 'A', 16.0)
    assert x == [205.0] and y == [pytest.approx(250.0 + (200.0 - 250.0) * 80 / 400)]
    # di finished sooner (at 400 s): both at 400 s, sf_rkl between (240 s, 260) and (480 s, 205); di's own end
    di_fast = {**di, 'seconds': [(200.0, 250.0), (400.0, 200.0)]}
    x, y = study.equal_time_fids({'A': {'sf_rkl': {0: sf}, 'di': {0: di_fast}}}, 'A', 16.0)
    assert x == [pytest.approx(260.0 + (205.0 - 260.0) * 160 / 240)] and y == [200.0]


def test_seed_by_seed_counts_the_seeds_within_the_margin():
    study = load_study()
    assert study.seed_by_seed([230.0, 300.0, 250.0], [200.0, 210.0]) == 'behind by more than the margin on all 3 seeds'
    assert study.seed_by_seed([220.0, 240.0], [200.0]) == 'within the margin on 1 of 2 seeds, behind on the other'
    assert study.seed_by_seed([], [200.0]) == 'no runs yet'


def test_paired_differences_judge_the_mean_against_twice_its_standard_error():
    study = load_study()
    assert study.paired([-4.0, -3.0, -5.0]) == '-4.0 ± 1.0 (-4.0, -3.0, -5.0), mean ± SE -4.0 ± 0.6 (beyond twice its SE)'
    assert study.paired([-4.0, 3.0, -5.0]).endswith('mean ± SE -2.0 ± 2.5 (within twice its SE)')


def test_study_run_without_shared_material_is_one_clear_line(tmp_path):
    r = run_script(STUDY, 'run', '--runs', str(tmp_path), env={'SHARED': str(tmp_path / 'nowhere')})
    assert r.returncode != 0 and 'not found: the study needs ../shared' in r.stderr
    r = run_script(STUDY, 'run', '--only', 'di,nope')
    assert r.returncode == 2 and "unknown ['nope']" in r.stderr
    r = run_script(STUDY, 'run', '--only', 'A/di', 'A/sf_rkl')  # a space-separated list would be dropped
    assert r.returncode == 2 and 'takes no file arguments (got A/sf_rkl)' in r.stderr


def test_jobs_run_claim_two_first_and_every_seed_of_every_arm():
    study = load_study()
    cfg = study.TIERS['cpu']
    jobs = study.jobs(cfg)
    assert jobs[:4] == [('A', 'di', 0), ('A', 'sf_rkl', 0), ('A', 'sf_js', 0), ('A', 'sf_fkl', 0)]
    assert len(jobs) == len(set(jobs)) == 3 * (14 + 3)  # teacher A: every arm (the recipe's too); B: claim 2's three
    assert ('B', 'sf_js', 2) in jobs and ('B', 'init_random', 0) not in jobs


def test_every_arm_command_parses_with_the_pilots_learning_rate_per_method():
    """Each arm's command line, as `study.py run` builds it, is accepted by the script it runs (its own parser),
    trains at the generator lr the tier gives its method, and the score-free arms use score_free.py's defaults."""
    sys.path.insert(0, ROOT)
    import diff_instruct
    import score_free
    import scratch_init
    study = load_study()
    parsers = {'diff_instruct.py': diff_instruct.parse_args, 'score_free.py': score_free.parse_args,
               'scratch_init.py': lambda argv: scratch_init.parse_args(argv)[1]}
    for tier, cfg in study.TIERS.items():
        p = study.paths(type('Args', (), dict(runs='/nonexistent/runs', tier=tier, records=None)))
        budget = study.size_budget(cfg, {'teacher': 5000.0, 'diff_instruct': 2000.0}) if 'seconds' in cfg else None
        lrs = dict(diff_instruct='3e-5', score_free='1e-5') if cfg['lr'] == 'tune' else cfg['lr']
        for name in study.ARMS:
            cmd, method = study.arm_command(name, cfg, p, 'teacher.pt', '/nonexistent/out', 1, '1000', budget,
                                            lrs if cfg['lr'] == 'tune' else None)
            args = parsers[cmd[0]](cmd[1:])
            assert args.lr == float(lrs[method]) and args.seed == 1, (tier, name)
            assert args.fid_ref == ('samples' if budget else p['ref'])
            if method == 'diff_instruct':
                assert args.fake_lr == args.lr
                continue
            recipe = (args.weight, args.gen_sigma_max, args.cls_steps, args.cls_lr, args.cls_frozen_levels)
            assert recipe == {  # the default, or the spec, or one departure undone (the classifier at the generator's lr)
                'sf_spec': ('sigma2', math.inf, 1, args.lr, 0), 'sf_weight_sigma2': ('sigma2', 2.0, 2, 1e-3, -1),
                'sf_sigma_inf': ('normalized', math.inf, 2, 1e-3, -1), 'sf_cls_steps_1': ('normalized', 2.0, 1, 1e-3, -1),
                'sf_cls_lr_1x': ('normalized', 2.0, 2, args.lr, -1), 'sf_cls_frozen_0': ('normalized', 2.0, 2, 1e-3, 0),
            }.get(name, ('normalized', 2.0, 2, 1e-3, -1)), (tier, name)


def test_fashion_mnist_tier_tunes_each_method_on_the_same_grid_and_reports_teachers_pr_and_recipe(tmp_path):
    """The tuned lr is the grid's lowest FID at the budget per method (none while a run is missing); the page has
    the teachers' FID against minutes, precision and recall beside FID, and the recipe arms judged against sf_rkl."""
    study = load_study()
    rec = tmp_path / 'records'
    args = type('Args', (), dict(runs=str(tmp_path / 'runs'), tier='fmnist', records=str(rec)))
    p, cfg = study.paths(args), study.TIERS['fmnist']
    assert p['data'] == p['test_data'] == 'fashion-mnist'
    assert study.TUNE['lrs'] == ('1e-5', '3e-5', '1e-4', '3e-4')
    fids = {('di', '1e-5'): 150.0, ('di', '3e-5'): 110.0, ('di', '1e-4'): 180.0, ('di', '3e-4'): 190.0,
            ('sf_rkl', '1e-5'): 140.0, ('sf_rkl', '3e-5'): 145.0, ('sf_rkl', '3e-4'): 150.0}
    for (arm, lr), value in fids.items():
        fake_run(study.tune_record(p, arm, lr), [(0, 220.0), (8, value + 10), (16, value)])
    assert study.chosen_lrs(cfg, p) == (None, {
        'diff_instruct': {'1e-5': 150.0, '3e-5': 110.0, '1e-4': 180.0, '3e-4': 190.0},
        'score_free': {'1e-5': 140.0, '3e-5': 145.0, '1e-4': None, '3e-4': 150.0}})
    fake_run(study.tune_record(p, 'sf_rkl', '1e-4'), [(0, 220.0), (16, 160.0)])
    assert study.chosen_lrs(cfg, p)[0] == {'diff_instruct': '3e-5', 'score_free': '1e-5'}
    teacher = rec / 'A' / 'teacher'
    os.makedirs(teacher / 'fid')
    with open(teacher / 'log.jsonl', 'w') as f:  # a tick of 50 kimg at 6 s/kimg, then its FID: 5 min per point
        for kimg, value in ((50, 90.0), (100, 70.0)):
            f.write(json.dumps({'tick': 0, 'kimg': kimg, 'img/s': 160.0, 'sec/kimg': 6.0}) + '\n')
            f.write(json.dumps({'kimg': kimg, 'fid1k': value}) + '\n')
    json.dump({'metric': 'fid1k', 'value': 70.0, 'precision': 0.71, 'recall': 0.42}, open(teacher / 'fid' / 'train.json', 'w'))
    for s in range(3):
        fake_run(rec / 'A' / 'sf_rkl' / f'seed{s}', [(0, 220.0), (16, 100.0 + s)], seed=s)
        json.dump({'metric': 'fid1k', 'value': 100.0 + s, 'precision': 0.5 + s / 10, 'recall': 0.2},
                  open(rec / 'A' / 'sf_rkl' / f'seed{s}' / 'fid' / 'pr.json', 'w'))
        fake_run(rec / 'A' / 'sf_spec' / f'seed{s}', [(0, 220.0), (16, 90.0 - s)], seed=s)  # better beyond 2 SE
        fake_run(rec / 'A' / 'sf_cls_steps_1' / f'seed{s}', [(0, 220.0), (16, 100.0 + 2 * s)], seed=s)  # level
    json.dump({'wall_s': 1.0, 'command': ['score_free.py', '--lr', '3e-5']},  # made before the tuning changed its mind
              open(rec / 'A' / 'sf_cls_steps_1' / 'seed2' / 'done.json', 'w'))
    fake_run(rec / 'A' / 'sf_sigma_inf' / 'seed0', [(0, 220.0), (16, 99.0)])  # one seed: not decidable, not "no difference"
    page, out = render(tmp_path, 'fmnist')
    assert 'Fashion-MNIST' in page and 'three equal channels' in page and 'JPEG' not in page
    assert 'diff_instruct 3e-5, score_free 1e-5' in page
    assert 'diff_instruct lr 1e-5: 150.0, lr 3e-5: 110.0, lr 1e-4: 180.0' in page
    assert 'At the edge of the grid: score_free (a wider grid' in page
    assert '**Runs made at another lr than the one above**: sf_cls_steps_1 at lr 3e-5.' in page
    assert '| A | 100 | 10 | 70.0 | 0.710 | 0.420 | – | – | – |' in page
    assert '- teacher A: 50 kimg 90.0 (5 min), 100 kimg 70.0 (10 min)' in page
    assert (out / 'study_fmnist' / 'teacher_minutes.png').is_file()
    assert '| 0.600 ± 0.100 (0.500, 0.600, 0.700) | 0.200 ± 0.000 (0.200, 0.200, 0.200) |' in page  # precision, recall
    assert '| sf_spec | `--divergence rkl --weight sigma2 --gen-sigma-max inf --cls-steps 1 --cls-lr 1e-5 ' \
           '--cls-frozen-levels 0` | ' \
           '89.0 ± 1.0 (90.0, 89.0, 88.0) | better (difference 12.0 ± SE 0.8) |' in page
    assert '| 99.0 ± – (99.0) | not decidable (fewer than two seeds a side) (difference' in page
    assert '| sf_cls_steps_1 |' in page and 'no difference beyond 2 SE (difference -1.0 ± SE 1.3) |' in page


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


def test_gpu_tier_round_trip_pack_unpack_fid_report(tmp_path, tiny_detector):
    """What a device call brings back (records: logs, grids, sample zips) packs into tars, unpacks here, is
    measured by `study.py fid` with the weights found here, and the report reads the measured points."""
    import torch
    sys.path.insert(0, ROOT)
    import fid
    from conftest import write_image_folder
    device_records, here = tmp_path / 'device_records', tmp_path / 'records'
    run = device_records / 'A' / 'sf_rkl' / 'seed0'
    fake_run(run, [(0, 1.0)])
    with open(run / 'log.jsonl', 'w') as f:  # FID lines as --fid-ref samples writes them
        f.write(json.dumps({'tick': 0, 'kimg': 8.0, 'img/s': 900.0, 'sec/kimg': 1.0}) + '\n')
        f.write(json.dumps({'kimg': 8.0, 'samples': 'fid_samples/fid6-00008.000kimg.zip'}) + '\n')

    def make(seeds):  # the same images for the same seeds, as a sampler makes them
        return torch.stack([torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8,
                                          generator=torch.Generator().manual_seed(s)) for s in seeds])
    fid.save_samples(make, 6, str(run / 'fid' / 'fid6-00008.000kimg.zip'))
    fid.save_samples(make, 6, str(device_records / 'A' / 'teacher' / 'fid' / 'train.zip'))
    r = run_script(STUDY, 'pack', '--tier', 'gpu_dry', '--records', str(device_records), '--to', str(tmp_path / 'out'))
    assert r.returncode == 0, r.stderr
    tars = sorted(os.listdir(tmp_path / 'out'))
    assert tars == ['study_gpu_dry_1.tar']
    r = run_script(STUDY, 'unpack', '--tier', 'gpu_dry', '--records', str(here), str(tmp_path / 'out' / tars[0]))
    assert r.returncode == 0, r.stderr
    shared = tmp_path / 'shared'  # ../shared as `fid` needs it: the data (for the reference) and the weights
    os.makedirs(shared / 'fid')
    os.replace(tiny_detector, shared / 'fid' / 'inception-2015-12-05.pt')
    data = write_image_folder(str(tmp_path / 'img'), n_per_class=3)
    os.makedirs(shared / 'data')
    shutil.make_archive(str(shared / 'data' / 'cifar10-jpeg-train'), 'zip', data)
    r = run_script(STUDY, 'fid', '--tier', 'gpu_dry', '--runs', str(tmp_path / 'runs'), '--records', str(here),
                   env={'SHARED': str(shared)})
    assert r.returncode == 0, r.stderr
    point = json.load(open(here / 'A' / 'sf_rkl' / 'seed0' / 'fid' / 'fid6-00008.000kimg.json'))
    teacher = json.load(open(here / 'A' / 'teacher' / 'fid' / 'train.json'))
    assert point['metric'] == 'fid6' and teacher['value'] == point['value']  # the same seeds of the same images
    page, _ = render(tmp_path, 'gpu_dry')
    assert f'| sf_rkl | 2 | 1 | {point["value"]:.1f} ± – ({point["value"]:.1f}) |' in page


def test_verifier_in_words_names_each_paired_difference_beyond_twice_its_se():
    study = load_study()
    # k = 8 minus the plain sampler, per seed: resample at 8 kimg −3, −4, −5 (lower), best at 8 kimg +5, +6, +7
    # (higher); at 16 kimg −5, +5, 0 for both (within)
    shift = {(8, 'resample'): (-3, -4, -5), (8, 'best'): (5, 6, 7), (16, 'resample'): (-5, 5, 0), (16, 'best'): (-5, 5, 0)}
    seeds = {s: dict(curve=[(8, 260.0 + s), (16, 200.0 + s)],
                     fid={f'verifier_{kimg}kimg_k8_{rule}_sigma0.1': (260.0 if kimg == 8 else 200.0) + s + d[s]
                          for (kimg, rule), d in shift.items()}) for s in range(3)}
    page = '\n'.join(study.verifier_section({'A': {'sf_rkl': seeds}}, study.TIERS['cpu'], 16, 'fid1k'))
    assert '- resample, σ 0.1: -4.0 ± 1.0 (-3.0, -4.0, -5.0), mean ± SE -4.0 ± 0.6 (beyond twice its SE)' in page
    assert 'lower FID for resample, σ 0.1 at 8 kimg; higher for best, σ 0.1 at 8 kimg; every other' in page
