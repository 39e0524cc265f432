"""scratch_init.py: each initialisation does what it says, and the study runs end to end."""
import argparse
import json
import os

import torch

import common
import scratch_init
from conftest import refused, run_script


def perturbed_teacher(label_dim=0):
    torch.manual_seed(0)
    net = common.build_net('tiny', 32, 3, label_dim, 0.0).eval()
    for p in net.parameters():
        p.data += 0.05 * torch.randn_like(p)
    return net


def test_random_and_io_reinit():
    teacher = perturbed_teacher()
    G = common.EDMPrecond(**teacher.config)
    G.load_state_dict(teacher.state_dict())
    scratch_init.init_random(G, seed=1)
    assert all(not torch.equal(G.state_dict()[k], v) for k, v in teacher.state_dict().items()
               if k.endswith('weight') and 'norm' not in k)
    G.load_state_dict(teacher.state_dict())
    scratch_init.init_io_reinit(G, seed=1)
    for k, v in teacher.state_dict().items():
        io = k.startswith(('model.enc.32x32_conv.', 'model.dec.32x32_aux_'))
        if k.endswith('.weight') and 'norm' not in k:
            assert torch.equal(G.state_dict()[k], v) != io, k


def pretrain_args(**kw):
    return argparse.Namespace(**{'mapping_pairs': 16, 'mapping_steps': 3, 'init_batch': 8, 'init_kimg': 0.4,
                                 'init_lr': 2e-3, **kw})


def test_mapping_pretraining_regresses_onto_teacher_samples():
    teacher = perturbed_teacher()
    args = pretrain_args()
    z, x = scratch_init.teacher_samples(teacher, 16, 3, 8, 'cpu')
    G = common.EDMPrecond(**teacher.config)

    def error():
        with torch.no_grad():
            return ((common.generate_one_step(G.eval(), z, 1.0) - x) ** 2).mean().item()
    scratch_init.init_random(G, seed=0)
    before = error()
    scratch_init.init_mapping(G, teacher, 1.0, args, 'cpu', seed=0)
    assert error() < 0.5 * before


def test_single_sigma_pretraining_learns_to_denoise_at_sigma_init(image_folder):
    data = common.load_dataset(image_folder)
    teacher = perturbed_teacher()
    G = common.EDMPrecond(**teacher.config)
    x = data.images[:12].float() / 127.5 - 1
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))

    def error():
        with torch.no_grad():
            return ((G.eval()(x + 0.5 * noise, torch.full([12], 0.5)) - x) ** 2).mean().item()
    scratch_init.init_random(G, seed=0)
    before = error()
    scratch_init.init_single_sigma(G, data, 0.5, pretrain_args(), 'cpu', seed=0)
    # The test images are i.i.d. pixel noise (std 40/127.5) around a class colour: the best denoiser at σ
    # shrinks towards the class mean, with error s²σ²/(s² + σ²) per pixel. Pre-training must get close to it.
    s2 = (40 / 127.5) ** 2
    optimum = s2 * 0.25 / (s2 + 0.25)
    assert before > 1.5 * optimum and error() < 1.1 * optimum


def test_study_runs_every_arm_and_writes_summary(tiny_teacher, tiny_detector, tmp_path):
    data, teacher = tiny_teacher
    ref = str(tmp_path / 'ref.npz')
    assert run_script('fid.py', 'ref', '--dataset', data, '--out', ref, '--inception', tiny_detector).returncode == 0
    out = str(tmp_path / 'study')
    r = run_script('scratch_init.py', '--arms', ','.join(scratch_init.ARMS), '--outdir', out, '--init-kimg', '0.008',
                   '--init-batch', '4', '--mapping-pairs', '4', '--mapping-steps', '2',
                   '--dataset', data, '--teacher', teacher, '--batch', '4', '--total-kimg', '0.004',
                   '--tick-kimg', '0.004', '--grid', '4', '--device', 'cpu', '--fid-ref', ref, '--fid-num', '4',
                   '--inception', tiny_detector, '--divergence', 'js', '--cls-warmup', '2')
    assert r.returncode == 0, r.stderr
    summary = json.load(open(os.path.join(out, 'summary.json')))
    assert summary['method'] == 'score_free' and summary['config']['divergence'] == 'js'
    assert list(summary['arms']) == list(scratch_init.ARMS)
    for arm, rec in summary['arms'].items():
        assert os.path.isfile(os.path.join(out, arm, 'generator.pt'))
        assert rec['fid_curve'] and 'fid4' in rec['fid_curve'][-1][1]
    assert 'scratch_init summary' in r.stdout


def test_study_with_diff_instruct(tiny_teacher, tiny_detector, tmp_path):
    data, teacher = tiny_teacher
    ref = str(tmp_path / 'ref.npz')
    assert run_script('fid.py', 'ref', '--dataset', data, '--out', ref, '--inception', tiny_detector).returncode == 0
    out = str(tmp_path / 'di')
    r = run_script('scratch_init.py', '--method', 'diff_instruct', '--arms', 'teacher,random', '--outdir', out,
                   '--dataset', data, '--teacher', teacher, '--batch', '4', '--total-kimg', '0.004',
                   '--tick-kimg', '0.004', '--grid', '4', '--device', 'cpu', '--fid-ref', ref, '--fid-num', '4',
                   '--inception', tiny_detector, '--fid-at-start', '1')
    assert r.returncode == 0, r.stderr
    curves = {arm: scratch_init.read_curve(os.path.join(out, arm))[0] for arm in ('teacher', 'random')}
    for curve in curves.values():  # --fid-at-start: the initial generator, then the end of training
        assert [kimg for kimg, _ in curve] == [0.0, 0.004] and 'fid4' in curve[0][1]
    G_teacher = common.load_checkpoint(os.path.join(out, 'teacher', 'checkpoint.pt'))['G']
    G_random = common.load_checkpoint(os.path.join(out, 'random', 'checkpoint.pt'))['G']
    assert not torch.equal(G_teacher['model.enc.32x32_conv.weight'], G_random['model.enc.32x32_conv.weight'])


def test_bad_arms_and_flags_are_clear_errors(capsys):
    code, err = refused(scratch_init.main, ['--arms', 'teacher,lucky'], capsys)
    assert code == 2 and "unknown ['lucky']" in err, err
    code, err = refused(scratch_init.main, ['--resume', 'auto'], capsys)
    assert code == 2 and '--resume is not supported' in err, err
