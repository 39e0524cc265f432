"""diff_instruct.py: the generator loss's gradient against the closed-form KL gradient on Gaussians, convergence
with exact scores, the fake-score step, the initialisation, and the script end to end."""
import json
import os

import numpy as np
import pytest
import torch

import common
import diff_instruct
from conftest import Gaussian1D, gauss_hermite_2d, run_script, write_image_folder

MU, S = 0.3, 0.8


@pytest.mark.parametrize('a0,b0,sigma', [(0.7, -0.2, 0.5), (1.3, 1.0, 2.0), (0.2, 0.3, 0.05)])
def test_generator_loss_gradient_is_sigma2_times_kl_gradient(a0, b0, sigma):
    """E over z, ε (Gauss-Hermite: exact here, the integrand is a polynomial) of ∇_(a,b) of the per-image
    surrogate equals σ²·∂KL(q_σ ‖ p_σ)/∂(a, b) from the closed form."""
    g = Gaussian1D(MU, S, a0, b0, sigma)
    a = torch.tensor(a0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
    z, eps, w = gauss_hermite_2d(20)
    x0 = a * z + b
    sig = torch.full_like(x0, sigma)
    loss = (w * diff_instruct.generator_loss(g.D_p, g.D_q, x0, sig, eps)).sum()
    grad_a, grad_b = torch.autograd.grad(loss, [a, b])
    ka, kb = g.kl_grad()
    assert grad_a.item() == pytest.approx(sigma ** 2 * ka, rel=1e-10, abs=1e-14)
    assert grad_b.item() == pytest.approx(sigma ** 2 * kb, rel=1e-10, abs=1e-14)


def test_generator_loss_gradient_monte_carlo_within_error():
    """The same with plain random samples, as training sees them: agreement within 4 standard errors."""
    g = Gaussian1D(MU, S, 0.7, -0.2, 1.0)
    torch.manual_seed(0)
    n = 200_000
    a = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-0.2, dtype=torch.float64, requires_grad=True)
    z, eps = torch.randn(n, 1, 1, 1, dtype=torch.float64), torch.randn(n, 1, 1, 1, dtype=torch.float64)
    x0 = a * z + b
    per = diff_instruct.generator_loss(g.D_p, g.D_q, x0, torch.ones_like(x0), eps)
    # per-sample gradients are (D_q − D_p)·(z, 1): their spread gives the Monte Carlo error
    d = (g.D_q(x0 + eps) - g.D_p(x0 + eps)).detach().flatten()
    grads = torch.autograd.grad(per.mean(), [a, b])
    for grad, dx, exact in zip(grads, (z.flatten(), torch.ones(n, dtype=torch.float64)), g.kl_grad()):
        se = (d * dx).std().item() / np.sqrt(n)
        assert abs(grad.item() - exact) < 4 * se


def test_training_with_the_exact_denoisers_converges_to_data():
    """Diff-Instruct with the exact teacher and the exact fake denoiser moves (a, b) to (s, μ)."""
    torch.manual_seed(0)
    a = torch.tensor(1.6, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([a, b], lr=0.01, betas=(0.0, 0.999))
    for _ in range(1500):
        z = torch.randn(2048, 1, 1, 1, dtype=torch.float64)
        sigma = common.edm_sigma(2048, 'cpu').double()
        x0 = a * z + b
        P2, Q2 = S ** 2 + sigma ** 2, a.detach() ** 2 + sigma ** 2
        D_p = lambda x, s, l: MU + S ** 2 / P2 * (x - MU)
        D_q = lambda x, s, l: b.detach() + a.detach() ** 2 / Q2 * (x - b.detach())
        loss = diff_instruct.generator_loss(D_p, D_q, x0, sigma, torch.randn_like(x0)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(a.item()) == pytest.approx(S, abs=0.03) and b.item() == pytest.approx(MU, abs=0.03)


def test_fake_score_step_decreases_its_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    fake = common.build_net('tiny', 32, 3, 0, 0.0)
    x0 = torch.rand(8, 3, 32, 32) * 2 - 1

    def loss():
        torch.manual_seed(1)  # same σ and noise every time
        return diff_instruct.fake_score_loss(fake, x0).mean()
    opt = torch.optim.Adam(fake.parameters(), lr=1e-3)
    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss()
    assert after.item() < before.item()


def test_fake_score_loss_augments_in_float32_under_bf16_autocast():
    """EDM augments in float32: under a bf16 autocast (the trainer's default on CUDA) the fake score must see the
    same augmented, noised images as without it."""
    seen = []

    def fake(x, sigma, labels, augment_labels):  # records what EDM's loss hands the network
        seen.append((x, augment_labels))
        return x.float()
    x0 = torch.rand(4, 3, 16, 16) * 2 - 1
    for autocast in (False, True):
        torch.manual_seed(0)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            diff_instruct.fake_score_loss(fake, x0, augment_pipe=common.AugmentPipe(1.0))
    (x32, labels32), (x16, labels16) = seen
    assert x16.dtype == torch.float32 and torch.equal(x16, x32) and torch.equal(labels16, labels32)


def test_same_randomness_gives_teacher_and_fake_identical_dropout():
    torch.manual_seed(0)
    net = common.build_net('tiny', 32, 3, 0, 0.5).train()
    for p in net.parameters():
        p.data += 0.05 * torch.randn_like(p)
    x, sigma = torch.randn(2, 3, 32, 32), torch.ones(2)
    with torch.no_grad():
        a, b = diff_instruct.same_randomness(torch.device('cpu'), lambda: net(x, sigma), lambda: net(x, sigma))
        c = net(x, sigma)
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- end to end

DI = ['--batch', '4', '--tick-kimg', '0.004', '--grid', '4', '--device', 'cpu', '--fid-ref', 'none']


def test_generator_starts_as_exact_copy_of_teacher(tiny_teacher, tmp_path):
    data, teacher = tiny_teacher
    out = str(tmp_path / 'run')
    r = run_script('diff_instruct.py', '--dataset', data, '--teacher', teacher, *DI, '--total-kimg', '0.004',
                   '--lr', '0', '--fake-lr', '0', '--outdir', out)
    assert r.returncode == 0, r.stderr
    ck = common.load_checkpoint(os.path.join(out, 'checkpoint.pt'), 'generator')
    t = common.load_checkpoint(teacher, 'teacher')
    for key in t['ema']:
        assert torch.equal(ck['G'][key], t['ema'][key]) and torch.equal(ck['fake'][key], t['ema'][key]), key
    G = common.EDMPrecond(**ck['net_config']).eval()
    G.load_state_dict(ck['ema'])
    tnet = common.EDMPrecond(**t['net_config']).eval()
    tnet.load_state_dict(t['ema'])
    z = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(common.generate_one_step(G, z, 1.0), tnet(z, torch.ones(2)), atol=0, rtol=0)


def test_diff_instruct_trains_resumes_and_writes_outputs(tiny_teacher, tmp_path):
    data, teacher = tiny_teacher
    full, part = str(tmp_path / 'full'), str(tmp_path / 'part')
    args = ['--dataset', data, '--teacher', teacher, *DI, '--snapshot-ticks', '2', '--lr', '1e-3', '--fake-lr', '1e-3']
    r = run_script('diff_instruct.py', *args, '--total-kimg', '0.016', '--outdir', full)
    assert r.returncode == 0, r.stderr
    assert {'checkpoint.pt', 'generator.pt', 'reals.png', 'fakes_init.png', 'log.jsonl'} <= set(os.listdir(full))
    line = json.loads(open(os.path.join(full, 'log.jsonl')).readline())
    assert {'loss_fake', 'loss_G', 'img/s', 'mem_gb'} <= set(line)
    assert run_script('diff_instruct.py', *args, '--total-kimg', '0.008', '--outdir', part).returncode == 0
    r = run_script('diff_instruct.py', *args, '--total-kimg', '0.016', '--outdir', part, '--resume', 'auto')
    assert r.returncode == 0 and 'resumed' in r.stdout, r.stderr
    a = common.load_checkpoint(os.path.join(full, 'checkpoint.pt'))
    b = common.load_checkpoint(os.path.join(part, 'checkpoint.pt'))
    for key in ('G', 'fake', 'ema'):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f'{key}.{name} differs after resume'
    gen = common.load_checkpoint(os.path.join(full, 'generator.pt'), 'generator')
    assert set(gen) == {'kind', 'method', 'config', 'net_config', 'sigma_init', 'ema'}


def test_missing_or_mismatched_teacher_is_a_clear_error(tiny_teacher, tmp_path):
    data, teacher = tiny_teacher
    r = run_script('diff_instruct.py', '--dataset', data, '--teacher', str(tmp_path / 'nope.pt'), *DI,
                   '--outdir', str(tmp_path / 'o'))
    assert r.returncode == 2 and 'no such file' in r.stderr
    r = run_script('diff_instruct.py', '--dataset', data, '--teacher', teacher, '--cond', '1', *DI,
                   '--outdir', str(tmp_path / 'o'))
    assert r.returncode == 2 and 'label_dim' in r.stderr
    gray = os.path.join(str(tmp_path), 'gray')
    write_image_folder(gray, n_per_class=2, channels=1)
    r = run_script('diff_instruct.py', '--dataset', gray, '--teacher', teacher, *DI, '--outdir', str(tmp_path / 'o'))
    assert r.returncode == 2 and 'teacher makes 3x32' in r.stderr


def test_conditional_diff_instruct_from_edms_adm_pickle(tmp_path):
    from conftest import shared_file
    pkl = shared_file('spec', 'edm_pickles', 'edm-adm-small-cond-numpy2.pkl')  # EDM's ImageNet architecture, 16x16
    data = write_image_folder(str(tmp_path / 'data16'), n_per_class=1, size=16, classes=[f'c{i}' for i in range(10)])
    out = str(tmp_path / 'run')
    r = run_script('diff_instruct.py', '--dataset', data, '--teacher', pkl, '--cond', '1', *DI, '--total-kimg', '0.008',
                   '--outdir', out, env={'DIFFRATIO_CACHE': str(tmp_path / 'cache')})
    assert r.returncode == 0, r.stderr
    ck = common.load_checkpoint(os.path.join(out, 'checkpoint.pt'), 'generator')
    assert ck['net_config']['arch'] == 'adm' and ck['cur_nimg'] == 8 and 'fake-score augmentation 0.0' in r.stdout
