"""What a new user meets in the first hour: the README's CPU quick start as written, one pre-flight listing every
missing input, bad input named in one line, no flag without effect, and --help that shows every default."""
import argparse
import os
import zipfile

import numpy as np
import pytest
import torch

import common
import diff_instruct
import fid
import score_free
import scratch_init
import teacher
from conftest import ROOT, refused, run_script, shared_file, write_image_folder

README = open(os.path.join(ROOT, 'README.md')).read()


# ---------------------------------------------------------------- the README

def test_readme_fits_its_limits():
    lines = README.splitlines()
    assert len(lines) <= 200 and len(README) <= 15000 and max(len(line) for line in lines) <= 200


def quick_start_commands():
    """The commands of the README's CPU quick start, as written (continuation lines joined)."""
    section = README[README.index('## CPU quick start'):]
    block = section[section.index('```bash') + len('```bash'):section.index('```', section.index('```bash') + 7)]
    return [line.split() for line in block.replace('\\\n', ' ').strip().splitlines()]


# what makes the quick start fit the suite: every size flag smaller, nothing else changed
SMALL = {'--total-kimg': '0.016', '--tick-kimg': '0.016', '--batch': '16', '--cls-warmup': '2', '--fid-num': '8',
         '--per-class': '2'}


def test_readme_quick_start_runs_as_written_on_real_images(tmp_path):
    """The README's commands as written on the real Fashion-MNIST (Debian's package: no network here), the sizes made
    small; the Inception weights sit where the download would put them."""
    if not any(os.path.isdir(d) for d in common.FASHION_DIRS):
        pytest.skip('Debian\'s dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)')
    weights = shared_file('fid', 'inception-2015-12-05.pt')
    cache = tmp_path / 'cache'
    os.makedirs(cache / 'fid')
    os.symlink(weights, cache / 'fid' / os.path.basename(fid.PYTORCH_FID_URL))
    commands = quick_start_commands()
    assert [c[:2] for c in commands] == [['python', 'fid.py'], ['python', 'teacher.py'], ['python', 'score_free.py']]
    for cmd in commands:
        assert '--dataset' in cmd and cmd[cmd.index('--dataset') + 1] == 'fashion-mnist'
        cmd = [c.replace('runs/quick', str(tmp_path / 'quick')) for c in cmd]
        for flag, value in SMALL.items():
            if flag in cmd:
                cmd[cmd.index(flag) + 1] = value
        if cmd[1] != 'fid.py':
            cmd += ['--grid', '4']  # smaller sample grids, the one flag added
        r = run_script(*cmd[1:], env={'DIFFRATIO_CACHE': str(cache)})
        assert r.returncode == 0, (cmd, r.stderr[-2000:])
    run = tmp_path / 'quick' / 'score_free'
    assert {'generator.pt', 'reals.png', 'fakes_init.png', 'log.jsonl'} <= set(os.listdir(run))
    fids = [line for line in open(run / 'log.jsonl') if '"fid8"' in line]
    assert len(fids) == 2  # at the start and at the end, as the README says


# ---------------------------------------------------------------- one pre-flight

@pytest.mark.parametrize('script', [score_free, diff_instruct])
def test_the_main_command_offline_lists_every_missing_input_once_and_leaves_nothing(offline, capsys, tmp_path, script):
    out = tmp_path / 'run'
    with pytest.raises(SystemExit) as e:
        script.main(['--dataset', 'cifar10', '--data-dir', str(tmp_path / 'data'), '--outdir', str(out),
                     '--device', 'cpu'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and 'Traceback' not in err
    err = err[err.index('error:'):]  # after the 'downloading ...' lines of the three attempts
    assert err.startswith('error: 3 inputs are missing:')
    items = err.strip().splitlines()[1:]
    assert len(items) == 3 and all(i.startswith('  - could not download') and 'offline:' in i for i in items)
    assert 'CIFAR-10' in items[0] and '--dataset PATH' in items[0]
    assert 'edm-cifar10-uncond' in items[1] and '--teacher' in items[1]
    assert 'Inception' in items[2] and '--inception PATH' in items[2] and '--fid-ref none' in items[2]
    assert not out.exists() and not any(files for _, _, files in os.walk(tmp_path / 'data'))


# ---------------------------------------------------------------- bad input, named

def one_line(r):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    return lines[-1]


def test_a_corrupt_image_in_a_zip_is_named(tmp_path, tiny_detector):
    folder = write_image_folder(str(tmp_path / 'imgs'), n_per_class=2)
    data = str(tmp_path / 'data.zip')
    with zipfile.ZipFile(data, 'w') as zf:
        for root, _, files in os.walk(folder):
            for f in files:
                zf.write(os.path.join(root, f), os.path.relpath(os.path.join(root, f), folder))
        zf.writestr('dog/9999.jpg', b'\xff\xd8\xff\xe0 not really a jpeg')
    line = one_line(run_script('fid.py', 'ref', '--dataset', data, '--out', str(tmp_path / 'r.npz'), '--inception',
                               tiny_detector))
    assert data in line and 'dog/9999.jpg is not a readable image' in line


def test_a_file_that_is_not_fid_statistics_is_named(tmp_path, tiny_detector, image_folder):
    pickled = str(tmp_path / 'stats.npy')
    np.save(pickled, np.array([{'mu': 1}], dtype=object), allow_pickle=True)
    text = str(tmp_path / 'stats.npz')
    open(text, 'w').write('mu sigma')
    for path in (pickled, text):
        line = one_line(run_script('fid.py', 'calc', '--images', image_folder, '--ref', path,
                                   '--inception', tiny_detector))
        assert path in line and 'is not FID statistics (expected an .npz with "mu" and "sigma"' in line


def test_a_checkpoint_of_the_wrong_kind_or_truncated_is_named(tiny_teacher, tmp_path):
    data, ckpt = tiny_teacher
    args = ['--dataset', data, '--batch', '4', '--device', 'cpu', '--fid-ref', 'none', '--outdir', str(tmp_path / 'o')]
    line = one_line(run_script('score_free.py', *args, '--teacher', ckpt, '--resume', ckpt))
    assert ckpt in line and "holds a 'teacher' checkpoint, but a 'generator' one is needed" in line
    truncated = str(tmp_path / 'truncated.pt')
    open(truncated, 'wb').write(open(ckpt, 'rb').read()[:2000])
    line = one_line(run_script('diff_instruct.py', *args, '--teacher', truncated))
    assert truncated in line and 'is not a readable checkpoint' in line
    pkl = open(shared_file('spec', 'edm_pickles', 'edm-small-uncond-numpy1.pkl'), 'rb').read()
    half = str(tmp_path / 'half.pkl')
    open(half, 'wb').write(pkl[:len(pkl) // 2])
    line = one_line(run_script('diff_instruct.py', *args, '--teacher', half,
                               env={'DIFFRATIO_CACHE': str(tmp_path / 'cache')}))
    assert half in line and 'not a readable EDM network pickle' in line and 'partial download' in line
    assert not (tmp_path / 'o').exists()  # refused before any work


MAINS = {'teacher.py': teacher.main, 'diff_instruct.py': diff_instruct.main, 'score_free.py': score_free.main,
         'scratch_init.py': scratch_init.main, 'fid.py': fid.main}


@pytest.mark.parametrize('script,args,message', [
    ('score_free.py', ['--lr', '-1'], '--lr and --cls-warmup at least 0'),
    ('diff_instruct.py', ['--fake-lr', '-1'], '--lr and --fake-lr at least 0'),
    ('teacher.py', ['--lr', '0'], '--lr, --ema-halflife-kimg must be positive, --steps at least 2'),
    ('score_free.py', ['--tick-kimg', '0'], '--tick-kimg must be positive'),
    ('score_free.py', ['--fid-num', '1'], '--fid-num at least 2'),
])
def test_bad_values_are_refused_before_any_work(script, args, message, offline, capsys):
    code, err = refused(MAINS[script], ['--dataset', 'cifar10', *args], capsys)
    assert code == 2 and message in err and 'downloading' not in err, err


# ---------------------------------------------------------------- no flag without effect

@pytest.mark.parametrize('script,args,message', [
    ('score_free.py', ['--fid-ref', 'none', '--inception', 'x.pt'], '--inception: no effect with --fid-ref none'),
    ('score_free.py', ['--fid-ref', 'none', '--fid-num', '100', '--fid-at-start', '1'],
     '--fid-num, --fid-at-start: no effect with --fid-ref none'),
    ('diff_instruct.py', ['--fid-ref', 'samples', '--inception', 'x.pt'], '--inception: no effect with --fid-ref samples'),
    ('score_free.py', ['--dataset', 'some/folder', '--data-dir', 'd'], '--data-dir: no effect with --dataset PATH'),
    ('teacher.py', ['--sample', '4', '--ckpt', 'c.pt', '--batch', '8'], '--batch: no effect with --sample'),
    ('teacher.py', ['--ckpt', 'c.pt'], '--ckpt: no effect without --sample'),
    ('teacher.py', ['--import-edm', 'edm-cifar10-uncond', '--preset', 'tiny'], '--preset: no effect with --import-edm'),
    ('scratch_init.py', ['--arms', 'random', '--mapping-pairs', '10'], '--mapping-pairs: no effect without the mapping arm'),
    ('scratch_init.py', ['--arms', 'teacher,io_reinit', '--init-kimg', '1'], '--init-kimg: no effect without a pre-trained'),
    ('fid.py', ['calc', '--images', 'x', '--ref', 'r.npz', '--steps', '4'], '--steps: no effect with --images'),
    ('score_free.py', ['verify', '--ckpt', 'g.pt', '--out', 'o.zip', '--inception', 'x'], '--inception: no effect with --out'),
    ('score_free.py', ['verify', '--ckpt', 'g.pt', '--out', 'o.zip', '--k', '1', '--sigma', '0.05', '--rule', 'best'],
     '--sigma, --rule: no effect with --k 1'),
    ('scratch_init.py', ['--cond', '1'], '--cond 1: the mapping arm is for unconditional teachers only'),
    ('score_free.py', ['--cls-head', 'multi'], 'unrecognized arguments: --cls-head multi'),
    ('score_free.py', ['--cls'], 'unrecognized arguments: --cls'),  # no abbreviations: a typo is not a guess
])
def test_a_flag_without_effect_is_refused(script, args, message, offline, capsys):
    code, err = refused(MAINS[script], args, capsys)
    assert code == 2 and message in err, err


def parsers(monkeypatch):
    """Every command-line parser of the project, captured as its script builds it."""
    found = []

    def grab(self, *args, **kwargs):
        found.append(self)
        raise SystemExit(0)
    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', grab)
    monkeypatch.setattr(argparse.ArgumentParser, 'parse_known_args', grab)
    for fn, argv in ((teacher.parse_args, []), (diff_instruct.parse_args, []), (score_free.parse_args, []),
                     (score_free.verify_main, []), (scratch_init.parse_args, []), (fid.main, [])):
        with pytest.raises(SystemExit):
            fn(argv)
    subs = [a for a in found[-1]._actions if isinstance(a, argparse._SubParsersAction)][0].choices.values()
    return found + list(subs)


def test_every_flag_has_a_help_line_that_shows_its_default(monkeypatch):
    for p in parsers(monkeypatch):
        formatter = p._get_formatter()
        assert isinstance(formatter, argparse.ArgumentDefaultsHelpFormatter), p.prog
        for a in p._actions:
            if a.option_strings and a.dest != 'help':
                assert a.help and len(a.help) > 8, (p.prog, a.dest)
                assert '%(default)' in formatter._get_help_string(a), (p.prog, a.dest)
        assert not p.allow_abbrev, p.prog


def test_reals_grid_is_a_fixed_random_draw_and_snapshot_names_never_collide(tmp_path):
    data = common.load_image_folder(write_image_folder(str(tmp_path / 'd'), n_per_class=30))  # class-sorted
    grid = common.reals_grid(data, 16)
    assert torch.equal(grid, common.reals_grid(data, 16)) and len({tuple(g.flatten()[:8].tolist()) for g in grid}) == 16
    labels = data.labels[torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:16]]
    assert len(labels.unique()) == 2  # both classes, where the first 16 images are all one class
    names = {common.grid_name('o', n) for n in (0, 4, 8, 256, 1000, 1004, 16384)}
    assert len(names) == 7 and common.grid_name('o', 16384) == os.path.join('o', 'fakes_000016.384kimg.png')
