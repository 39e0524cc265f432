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
def image_folder(tmp_path):
    return write_image_folder(str(tmp_path / 'images'))


def run_script(*args, env=None, timeout=300):
    """Run a project script in a subprocess, as a user would; returns CompletedProcess (text)."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=full_env)
