"""teacher.py end to end with the tiny preset: training writes a checkpoint and grids, resume continues the
same run, --sample works, bad input gives clear errors, torchrun with two CPU processes runs."""
import json
import os
import subprocess
import sys

import pytest
import torch

import common
import teacher
from conftest import ROOT, refused, run_script

TINY = ['--preset', 'tiny', '--batch', '8', '--tick-kimg', '0.008', '--grid', '4', '--steps', '3', '--device', 'cpu',
        '--fid-ref', 'none']


def test_teacher_trains_and_writes_checkpoint_and_grids(image_folder, tmp_path):
    out = str(tmp_path / 'run')
    r = run_script('teacher.py', '--dataset', image_folder, *TINY, '--total-kimg', '0.024',
                   '--snapshot-ticks', '3', '--outdir', out)
    assert r.returncode == 0, r.stderr
    assert {'checkpoint.pt', 'reals.png', 'log.jsonl'} <= set(os.listdir(out))
    assert any(f.startswith('fakes_') for f in os.listdir(out))
    lines = [json.loads(line) for line in open(os.path.join(out, 'log.jsonl'))]
    assert [l['tick'] for l in lines] == [0, 1, 2] and all('img/s' in l and 'mem_gb' in l for l in lines)
    assert 'img/s' in r.stdout and 'loss' in r.stdout
    ck = common.load_checkpoint(os.path.join(out, 'checkpoint.pt'), 'teacher')
    assert ck['cur_nimg'] == 24 and ck['config']['preset'] == 'tiny'


def test_teacher_ema_has_the_nets_memory_layout(image_folder, tmp_path, monkeypatch):
    """On CUDA the net trains in channels_last; its EMA copy must share that layout, or the one-kernel EMA update
    (torch._foreach_lerp_ needs equal strides) falls back to one kernel per tensor. Here the CPU stands in: the
    layout helper is made to convert on CPU too, and the checkpoint keeps each tensor's strides."""
    monkeypatch.setattr(common, 'to_device', lambda net, device: net.to(device).to(memory_format=torch.channels_last))
    out = str(tmp_path / 'run')
    teacher.main(['--dataset', image_folder, *TINY, '--total-kimg', '0.008', '--outdir', out])
    ck = common.load_checkpoint(os.path.join(out, 'checkpoint.pt'), 'teacher')
    convs = [k for k, v in ck['net'].items() if v.ndim == 4 and v.shape[-1] > 1]
    assert convs and all(ck['net'][k].is_contiguous(memory_format=torch.channels_last) for k in convs)
    assert all(ck['ema'][k].stride() == ck['net'][k].stride() for k in convs)


def test_teacher_resume_equals_uninterrupted_run(image_folder, tmp_path):
    full, part = str(tmp_path / 'full'), str(tmp_path / 'part')
    args = ['--dataset', image_folder, *TINY, '--snapshot-ticks', '2', '--lr', '1e-2', '--lr-rampup-kimg', '0']
    assert run_script('teacher.py', *args, '--total-kimg', '0.032', '--outdir', full).returncode == 0
    assert run_script('teacher.py', *args, '--total-kimg', '0.016', '--outdir', part).returncode == 0
    r = run_script('teacher.py', *args, '--total-kimg', '0.032', '--outdir', part, '--resume', 'auto')
    assert r.returncode == 0, r.stderr
    assert 'resumed' in r.stdout
    a = common.load_checkpoint(os.path.join(full, 'checkpoint.pt'))
    b = common.load_checkpoint(os.path.join(part, 'checkpoint.pt'))
    assert a['cur_nimg'] == b['cur_nimg'] == 32
    for key in ('net', 'ema'):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f'{key}.{name} differs after resume'
    # The loss logged at the last tick is the same too.
    last = lambda d: [json.loads(l) for l in open(os.path.join(d, 'log.jsonl'))][-1]['loss']
    assert last(full) == last(part)


def test_teacher_resume_with_other_config_is_refused(image_folder, tmp_path):
    out = str(tmp_path / 'run')
    args = ['--dataset', image_folder, *TINY, '--total-kimg', '0.008', '--outdir', out]
    assert run_script('teacher.py', *args).returncode == 0
    r = run_script('teacher.py', *args[:-2], '--outdir', out, '--resume', 'auto', '--dropout', '0.3')
    assert r.returncode == 2 and 'dropout' in r.stderr and 'another config' in r.stderr


def test_teacher_sample_writes_images(image_folder, tmp_path):
    out = str(tmp_path / 'run')
    assert run_script('teacher.py', '--dataset', image_folder, *TINY, '--total-kimg', '0.008',
                      '--outdir', out).returncode == 0
    r = run_script('teacher.py', '--sample', '5', '--ckpt', os.path.join(out, 'checkpoint.pt'), '--steps', '3',
                   '--device', 'cpu', '--outdir', str(tmp_path / 's'))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / 's')) == ['000000.png', '000001.png', '000002.png', '000003.png',
                                                  '000004.png', 'grid.png']


@pytest.mark.parametrize('args,message', [
    (['--preset', 'huge'], "argument --preset: invalid choice: 'huge'"),
    (['--batch', '0'], 'must be positive'),
    (['--sample', '4'], '--sample N (N at least 1) needs --ckpt'),
    (['--steps', '1'], '--steps at least 2'),
    (['--sample', '4', '--ckpt', 'c.pt', '--sampler', 'stochastic', '--steps', '1'], '--steps at least 2'),
])
def test_teacher_bad_flags_are_clear_errors(args, message, capsys):
    code, err = refused(teacher.main, args, capsys)
    assert code == 2 and message in err, err


def test_teacher_steps_default_to_edms_for_each_sampler():
    """18 Heun steps (EDM, CIFAR-10), 256 stochastic ones (EDM, ImageNet-64), unless --steps is given."""
    stochastic, sample = ['--sampler', 'stochastic'], ['--sample', '4', '--ckpt', 'c.pt']
    for argv, steps in (([], 18), (stochastic, 256), ([*stochastic, '--steps', '40'], 40),
                        ([*sample, *stochastic], 256), ([*sample, '--sampler', 'heun'], 18)):
        assert teacher.parse_args(argv).steps == steps, argv


def test_teacher_missing_dataset_is_a_clear_error(tmp_path):
    r = run_script('teacher.py', '--dataset', str(tmp_path / 'nothing'), *TINY, '--outdir', str(tmp_path / 'o'))
    assert r.returncode == 2 and 'not a known name' in r.stderr
    r = run_script('teacher.py', '--dataset', 'cifar10', '--data-dir', str(tmp_path), '--no-download', *TINY,
                   '--outdir', str(tmp_path / 'o'))
    assert r.returncode == 2 and '--no-download' in r.stderr


def test_teacher_runs_under_torchrun_with_two_cpu_processes(image_folder, tmp_path):
    out = str(tmp_path / 'ddp')
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        'teacher.py', '--dataset', image_folder, *TINY, '--total-kimg', '0.016', '--outdir', out],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'world 2' in r.stdout
    ck = common.load_checkpoint(os.path.join(out, 'checkpoint.pt'), 'teacher')
    assert len(ck['rng']) == 2 and len(ck['sampler']) == 2 and ck['cur_nimg'] == 16


def test_teacher_edm_preset_runs_under_torchrun(image_folder, tmp_path):
    """The paper's network (55.7 M parameters, augment_dim 9) with DDP: map_augment must receive a gradient at
    every step, or DDP fails at the second one."""
    out = str(tmp_path / 'ddp_edm')
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        'teacher.py', '--dataset', image_folder, '--preset', 'edm', '--batch', '2',
                        '--total-kimg', '0.004', '--tick-kimg', '0.002', '--grid', '1', '--steps', '2',
                        '--device', 'cpu', '--fid-ref', 'none', '--outdir', out],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'edm  55.73M params' in r.stdout and 'world 2' in r.stdout
    ck = common.load_checkpoint(os.path.join(out, 'checkpoint.pt'), 'teacher')
    assert ck['cur_nimg'] == 4 and ck['net_config']['augment_dim'] == 9


def test_adm_preset_takes_edms_imagenet64_recipe_where_no_flag_is_given():
    import teacher
    args = teacher.parse_args(['--preset', 'adm', '--cond', '1'])
    assert (args.batch, args.lr, args.dropout, args.ema_halflife_kimg, args.total_kimg, args.augment, args.xflip) == (
        4096, 1e-4, 0.10, 50000, 2500000, 0.0, 0)
    args = teacher.parse_args(['--preset', 'adm', '--batch', '256', '--xflip', '1'])
    assert args.batch == 256 and args.xflip == 1 and args.lr == 1e-4
    assert teacher.parse_args([]).lr == 1e-3  # the CIFAR-10 recipe stays the default


def test_conditional_adm_teacher_on_edms_64x64_dataset_trains_and_samples_stochastically(tmp_path):
    from conftest import shared_file
    data = shared_file('data', 'edm-dataset-64x64.zip')
    out = str(tmp_path / 'adm')
    r = run_script('teacher.py', '--dataset', data, '--preset', 'adm-tiny', '--cond', '1', '--batch', '4',
                   '--total-kimg', '0.008', '--tick-kimg', '0.004', '--grid', '4', '--steps', '2', '--device', 'cpu',
                   '--fid-ref', 'none', '--outdir', out)
    assert r.returncode == 0, r.stderr
    assert 'classes 10' in r.stdout and 'label_dim 10' in r.stdout
    ck = common.load_checkpoint(os.path.join(out, 'checkpoint.pt'), 'teacher')
    assert ck['net_config']['arch'] == 'adm' and ck['net_config']['img_resolution'] == 64
    r = run_script('teacher.py', '--sample', '3', '--ckpt', os.path.join(out, 'checkpoint.pt'), '--steps', '3',
                   '--sampler', 'stochastic', '--device', 'cpu', '--outdir', str(tmp_path / 's'))
    assert r.returncode == 0 and 'stochastic samples' in r.stderr, r.stderr
