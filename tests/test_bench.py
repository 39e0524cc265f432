"""results/bench.py and results/precision.py: each runs the trainers' own iteration functions and prints its
figures (speed is measured by these scripts, never asserted by a test)."""
import os
import re
import sys

import pytest

from conftest import ROOT, run_script

sys.path.insert(0, os.path.join(ROOT, 'results'))

TINY = ['--preset', 'tiny', '--batch', '4', '--steps', '1', '--warmup', '1', '--device', 'cpu']


def test_bench_times_each_trainers_iteration_and_the_fid_features(tiny_detector):
    r = run_script('results/bench.py', *TINY, '--inception', tiny_detector, '--num', '4')
    assert r.returncode == 0, r.stderr
    for part in ('teacher', 'diff_instruct', 'score_free'):
        # on a CPU the MFU is against the measured fp32 matmul rate (no datasheet figure): a share, not 'n/a'
        ips, gflop, share = re.search(rf'bench {part}: ([\d.]+) img/s  [\d.]+ ms/step  peak mem [\d.]+ GiB  ([\d.]+) '
                                      r'GFLOP/img  MFU (\d+)% of the measured fp32 matmul rate', r.stdout).groups()
        assert float(ips) > 0 and float(gflop) > 0 and 0 <= int(share) <= 100, part
    assert 'score_free takes' in r.stdout and '2 classifier steps' in r.stdout
    # the tiny detector: one 5x5 stride-4 conv, 3 -> 6 channels, on 299x299 -> 74x74 outputs, 2 FLOP per multiply-add
    assert f'{2 * 74 * 74 * 6 * 3 * 25 / 1e9:.3g} GFLOP/img' in r.stdout and 'Frechet distance' in r.stdout


def test_bench_gives_other_flags_to_the_one_trainer_named(capsys):
    import bench  # results/ is on the path below
    bench.main(['score_free', *TINY, '--cls-steps', '1'])
    assert '1 classifier steps' in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        bench.main(['diff_instruct', 'score_free', *TINY, '--cls-steps', '1'])
    assert e.value.code == 2 and 'name diff_instruct or score_free alone' in capsys.readouterr().err


def cosines(stdout, part):
    return [(int(m.group(1)), float(m.group(2)))
            for m in re.finditer(rf'precision {part}: step +(\d+)  cosine\(bf16, fp32\) (\S+)', stdout)]


def test_precision_reports_the_cosine_along_each_trainers_run(tiny_teacher):
    """Along a short fp32 run: bf16 keeps the update's direction. At step 0 Diff-Instruct's fake score equals the
    teacher, so its exact gradient is zero (nan cosine)."""
    data, teacher = tiny_teacher
    r = run_script('results/precision.py', 'teacher', 'diff_instruct', '--teacher', teacher, '--dataset', data,
                   '--batch', '4', '--steps', '0,1,3')
    assert r.returncode == 0, r.stderr
    assert [s for s, _ in cosines(r.stdout, 'teacher')] == [0, 1, 3]
    assert all(c >= 0.99 for _, c in cosines(r.stdout, 'teacher'))
    di = cosines(r.stdout, 'diff_instruct')
    assert [s for s, _ in di] == [0, 1, 3] and di[0][1] != di[0][1] and all(c >= 0.99 for _, c in di[1:])
    r = run_script('results/precision.py', 'score_free', '--teacher', teacher, '--dataset', data, '--batch', '4',
                   '--steps', '0,2', '--cls-warmup', '3')
    assert r.returncode == 0, r.stderr
    sf = cosines(r.stdout, 'score_free')
    assert [s for s, _ in sf] == [0, 2] and all(c >= 0.99 for _, c in sf)
