"""Tests of results/exact2d.py: the closed forms it measures against, the exact ratio's equivalence with
Diff-Instruct on the mixture through the project's own losses, and that each estimator learns."""
import math
import os
import sys

import pytest
import torch

import common
import diff_instruct
import score_free

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'results'))
import exact2d  # noqa: E402


def unequal_mixture():
    g = torch.Generator().manual_seed(0)
    return exact2d.Mixture(torch.randn(7, 2, generator=g, dtype=torch.float64),
                           torch.rand(7, generator=g, dtype=torch.float64) + 0.2)


def test_mixture_log_density_is_normalised_and_its_score_and_denoiser_are_its_gradient():
    mix = unequal_mixture()
    sigma = 0.7
    t = torch.linspace(-8, 8, 641, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(t, t, indexing='ij'), -1).reshape(-1, 2)
    mass = mix.log_prob(grid, sigma).exp().sum() * (t[1] - t[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=1e-6)
    x = torch.randn(64, 2, dtype=torch.float64, requires_grad=True)
    sigmas = torch.exp(torch.linspace(-3, 1, 64, dtype=torch.float64))
    grad, = torch.autograd.grad(mix.log_prob(x, sigmas).sum(), x)
    torch.testing.assert_close(mix.score(x.detach(), sigmas), grad, rtol=1e-9, atol=1e-9)
    # Tweedie: D = x + σ²∇ log p_σ, and D is the posterior mean of the points (a convex combination)
    torch.testing.assert_close(mix.denoise(x.detach(), sigmas), x.detach() + sigmas[:, None] ** 2 * grad,
                               rtol=1e-9, atol=1e-9)


class ExactRatio(torch.nn.Module):
    """c(x, σ) = log q_σ(x) − log p_σ(x) from the closed forms, as a classifier the image losses can call."""

    def __init__(self, q, p):
        super().__init__()
        self.q, self.p, self.label_dim = q, p, 0

    def forward(self, x, sigma, class_labels=None):
        x, sigma = x.reshape(len(x), 2), torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).expand(len(x))
        return self.q.log_prob(x, sigma) - self.p.log_prob(x, sigma)


def test_exact_ratio_has_zero_error_and_its_spec_loss_gives_diff_instructs_gradient_on_the_mixture():
    p, q = exact2d.p_mixture(), exact2d.q_mixtures()['far']
    ev = exact2d.eval_set(q, n=2048)
    m = exact2d.metrics(ev['truth'].clone(), ev)
    assert m['raw'] == 0 and m['sigma2'] == 0 and m['grad_sigma2'] == 0 and m['grad_normalized'] == 0
    assert m['cos'] == pytest.approx(1.0)
    x = ev['x'][:256].clone().requires_grad_(True)
    c = ExactRatio(q, p)(x, ev['sigma'][:256])
    torch.testing.assert_close(torch.autograd.grad(c.sum(), x)[0], ev['truth'][:256])
    # A generator x₀ = A z + b: the score-free loss (--weight sigma2, reverse KL) through the exact ratio and
    # Diff-Instruct's loss through the exact denoisers give the same parameter gradient, sample by sample.
    torch.manual_seed(0)
    A = (0.5 * torch.eye(2, dtype=torch.float64)).requires_grad_(True)
    b = torch.tensor([0.1, -0.2], dtype=torch.float64, requires_grad=True)
    z = torch.randn(512, 2, dtype=torch.float64)
    sigma = score_free.generator_sigma(512, 'cpu', float('inf')).double()
    noise = torch.randn(512, 2, 1, 1, dtype=torch.float64)
    grads = []
    for loss_fn in (lambda x0: score_free.generator_loss(ExactRatio(q, p), x0, sigma, noise, 'rkl', 'sigma2'),
                    lambda x0: diff_instruct.generator_loss(
                        lambda x, s, l: p.denoise(x.reshape(-1, 2), s.reshape(-1)).reshape(x.shape),
                        lambda x, s, l: q.denoise(x.reshape(-1, 2), s.reshape(-1)).reshape(x.shape), x0, sigma, noise)):
        x0 = (z @ A.T + b).reshape(512, 2, 1, 1)
        grads.append(torch.autograd.grad(loss_fn(x0).sum(), [A, b]))
    for g_sf, g_di in zip(*grads):
        assert g_di.abs().max() > 1e-3
        torch.testing.assert_close(g_sf, g_di, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize('kind', ['ratio', 'edm', 'plain'])
def test_a_short_run_of_each_estimator_lowers_its_error(kind, tmp_path, monkeypatch):
    monkeypatch.setitem(exact2d.SIZES, 'test', dict(batch=256, steps=600, evals=[1, 600]))
    rec = exact2d.train_static(kind, exact2d.q_mixtures()['far'], 'test', 0, str(tmp_path))
    assert rec[600]['sigma2'] < 0.95 * rec[1]['sigma2'] and rec[600]['cos'] > rec[1]['cos'] + 0.15
    if kind != 'ratio':  # the teacher on p is kept for the other q, at each measured step
        assert os.path.exists(tmp_path / f'static_teacher_{kind}_test_0.pt')


def test_noised_kl_estimate_is_near_zero_for_p_and_matches_the_exact_density_for_q():
    p, q = exact2d.p_mixture(), exact2d.q_mixtures()['far']
    g = torch.Generator().manual_seed(0)
    sigma = 0.3 / exact2d.SCALE
    assert abs(exact2d.kl_noised(p.sample(4096, g)[0], p.sample(4096, g)[0], sigma)) < 0.05
    x_eval = q.sample(4096, g)[0]
    estimate = exact2d.kl_noised(q.sample(4096, g)[0], x_eval, sigma)
    x = x_eval + sigma * torch.randn(x_eval.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    exact = float((q.log_prob(x, sigma) - p.log_prob(x, sigma)).mean())
    assert exact > 1 and estimate == pytest.approx(exact, rel=0.05)


@pytest.mark.parametrize('arm', ['di', 'sf_rkl', 'sf_spec'])
def test_each_arm_runs_the_image_scripts_iteration_and_moves_the_generator(arm, tmp_path):
    cfg = dict(exact2d.E2E_DRY, steps=5, evals=[0, 5], kl_samples=128)
    teacher = exact2d.train_teacher(cfg, 0, str(tmp_path))
    out, state = exact2d.train_arm(arm, 1e-3, 0, cfg, str(tmp_path), teacher=teacher)
    assert [pt['step'] for pt in out['curve']] == [0, 5]
    assert all(math.isfinite(v) for pt in out['curve'] for v in pt.values())
    moved = max((state['G'][k] - teacher.state_dict()[k]).abs().max() for k in state['G'])
    assert moved > 0 and (state['cls'] is None) == (arm == 'di')
    assert isinstance(teacher, common.EDMPrecond) and len(out['points']) == 2 * cfg['kl_samples']
