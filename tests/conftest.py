"""Shared fixtures: paths to ../shared, tiny synthetic datasets, running scripts as a user would."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), 'shared')
sys.path.insert(0, ROOT)


def shared_file(*parts):
    """Path of a file in ../shared, or skip the test with the reason."""
    path = os.path.join(SHARED, *parts)
    if not os.path.isfile(path):
        pytest.skip(f'{path} is absent (shared reference material)')
    return path


def write_image_folder(root, n_per_class=6, classes=('cat', 'dog'), size=32, channels=3, seed=0, split=None):
    """PNG images under root/[split/]<class>/<i>.png; each class has its own mean colour."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        d = os.path.join(root, split, name) if split else os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        for i in range(n_per_class):
            arr = np.clip(rng.normal(80 + 90 * c, 40, (size, size, channels)), 0, 255).astype(np.uint8)
            Image.fromarray(arr[:, :, 0] if channels == 1 else arr).save(os.path.join(d, f'{i:04d}.png'))
    return root


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network: every connection fails as it does on a machine without DNS; nothing cached."""
    import socket
    import urllib.error
    import common
    import edm_import
    import fid

    def refuse(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, 'Name or service not known'))
    monkeypatch.setattr(common.urllib.request, 'urlopen', refuse)
    monkeypatch.setattr(fid, 'CACHE_DIR', str(tmp_path / 'cache' / 'fid'))
    monkeypatch.setattr(edm_import, 'CACHE_DIR', str(tmp_path / 'cache' / 'edm'))


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(str(tmp_path / 'images'))


@pytest.fixture(scope='session')
def tiny_teacher(tmp_path_factory):
    """(image folder, teacher checkpoint): a tiny teacher trained for two steps by teacher.py itself."""
    root = tmp_path_factory.mktemp('tiny_teacher')
    data = write_image_folder(str(root / 'data'), n_per_class=6)
    out = str(root / 'teacher')
    r = run_script('teacher.py', '--dataset', data, '--preset', 'tiny', '--batch', '8', '--total-kimg', '0.016',
                   '--tick-kimg', '0.016', '--grid', '4', '--steps', '2', '--device', 'cpu', '--fid-ref', 'none',
                   '--outdir', out)
    assert r.returncode == 0, r.stderr
    return data, os.path.join(out, 'checkpoint.pt')


@pytest.fixture
def tiny_detector(tmp_path):
    """A tiny random-weight TorchScript feature network standing in for Inception (fid.py accepts any)."""
    import torch
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten())
    path = str(tmp_path / 'tiny_detector.pt')
    torch.jit.save(torch.jit.script(net), path)
    return path


def run_script(*args, env=None, timeout=300):
    """Run a project script in a subprocess, as a user would; returns CompletedProcess (text)."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def refused(main, argv, capsys):
    """(exit code, stderr) of a script's main(argv) run in this process, as its command line calls it: for the
    refusals at parse time or in the pre-flight, which need no subprocess."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, capsys.readouterr().err


def gauss_hermite_2d(n=60):
    """Nodes and weights for E[g(z, ε)] with z, ε ~ N(0, 1) independent: exact for polynomials of degree
    < 2n in each variable, and accurate to ~1e-12 for the smooth Gaussian-tailed integrands used here."""
    import torch
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    z, e = np.meshgrid(x, x, indexing='ij')
    ww = np.outer(w, w)
    t = lambda a: torch.tensor(a.reshape(-1, 1, 1, 1), dtype=torch.float64)
    return t(z), t(e), torch.tensor(ww.reshape(-1), dtype=torch.float64)


class Gaussian1D:
    """Data N(μ, s²) and generator x₀ = a·z + b after noise σ: every quantity of the spec's appendix."""

    def __init__(self, mu, s, a, b, sigma):
        self.mu, self.s, self.a, self.b, self.sigma = mu, s, a, b, sigma
        self.P2, self.Q2 = s * s + sigma * sigma, a * a + sigma * sigma

    def D_p(self, x, sigma=None, labels=None):
        return self.mu + self.s ** 2 / self.P2 * (x - self.mu)

    def D_q(self, x, sigma=None, labels=None):
        return self.b + self.a ** 2 / self.Q2 * (x - self.b)

    def log_ratio(self, x, sigma=None, labels=None):
        """c*(x) = log q_σ(x) − log p_σ(x), the optimal classifier logit (generated = 1)."""
        return (0.5 * np.log(self.P2 / self.Q2) - (x - self.b) ** 2 / (2 * self.Q2)
                + (x - self.mu) ** 2 / (2 * self.P2)).flatten()

    def kl_grad(self):
        """∂/∂(a, b) of KL(q_σ ‖ p_σ) (closed form)."""
        return self.a * (1 / self.P2 - 1 / self.Q2), (self.b - self.mu) / self.P2
