"""Exact FID (Heusel et al. 2017) with the TF / EDM pipeline, in plain PyTorch, without torchvision.

  reference stats:  python fid.py ref --dataset cifar10 --out refs/cifar10-train.npz
  a checkpoint:     python fid.py calc --ckpt runs/score_free/generator.pt --num 50000 --ref refs/cifar10-train.npz
  a folder / zip:   python fid.py calc --images samples/ --ref refs/cifar10-train.npz
  samples only:     python fid.py sample --ckpt runs/score_free/generator.pt --num 10000 --out samples.zip
                    (no Inception needed: the same seeds as calc, to be measured with calc --images elsewhere)
  faster sampling:  add --sample-precision bf16 (the generating network under bf16 autocast; the features stay exact)
                    and, for Heun on a GPU, --compile 1 (torch.compile of the generating network)
  a score-free generator with its ratio as a verifier: python score_free.py verify (same seeds, same statistics)
  offline:          add --inception PATH (pytorch-fid's pt_inception-2015-12-05-6726825d.pth, torch-fidelity's
                    weights file, or NVIDIA's TorchScript inception-2015-12-05.pt)

FID = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) over the 2048-d pool3 features of the 2015-12-05 Inception-v3.
At 32×32 the resize decides the number: images are resized like TF1's resize_bilinear (align_corners=False,
source index i·in/out) and scaled by (x − 128)/128, which is what TTUR, EDM and StyleGAN2-ADA report.
Statistics record this pipeline as mode 'tf'; a file that names another is refused.
"""
import argparse
import contextlib
import hashlib
import io
import os
import pickle
import sys
import time
import warnings
import zipfile

import numpy as np
import scipy
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import common

if tuple(int(v) for v in scipy.__version__.split('.')[:2]) < (1, 13):
    raise ImportError(f'fid.py needs scipy >= 1.13 (found {scipy.__version__}; 1.11.2-1.12 have a broken sqrtm)')

PYTORCH_FID_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
                   'pt_inception-2015-12-05-6726825d.pth')
PYTORCH_FID_SHA256_PREFIX = '6726825d'  # torch.hub's convention: the file name carries its sha256 prefix
CACHE_DIR = os.path.join(common.CACHE_ROOT, 'fid')

# ------------------------------------------------------------------------------------------------------
# Inception-v3, FID variant (pytorch-fid / torchvision parameter names)
# ------------------------------------------------------------------------------------------------------

class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3) -> ReLU."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)
        # set by fold_batchnorm(); not in the state_dict, so every weights file loads as before
        self.register_buffer('folded_weight', None, persistent=False)
        self.register_buffer('folded_bias', None, persistent=False)

    @torch.no_grad()
    def fold_batchnorm(self):
        """For inference: conv then batch norm (running statistics) is one conv with weight w·γ/√(var + ε) and
        bias β − mean·γ/√(var + ε), computed here in float64. One pass over the activations instead of three
        (conv, norm, ReLU): the same features to 1e-5 (tested), and faster on CPU where these passes are memory-bound."""
        scale = self.bn.weight.double() / torch.sqrt(self.bn.running_var.double() + self.bn.eps)
        self.folded_weight = (self.conv.weight.double() * scale.reshape(-1, 1, 1, 1)).float()
        self.folded_bias = (self.bn.bias.double() - self.bn.running_mean.double() * scale).float()

    def forward(self, x):
        if self.folded_weight is None or self.training:
            return F.relu(self.bn(self.conv(x)))
        return F.relu_(F.conv2d(x, self.folded_weight, self.folded_bias, self.conv.stride, self.conv.padding))


def avg_pool(x):
    """The FID graph's 3×3 average pool ignores the zero padding (count_include_pad=False)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(avg_pool(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f'branch7x7dbl_{i}')(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(avg_pool(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """pool='avg' in Mixed_7b (padding not counted), 'max' in Mixed_7c: a quirk of the TF graph FID uses."""

    def __init__(self, cin, pool):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = avg_pool(x) if self.pool == 'avg' else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd), self.branch_pool(pooled)], 1)


class InceptionV3FID(nn.Module):
    """Input: [N, 3, 299, 299] in [−1, 1] (already resized). Output: [N, 2048] pool3 features.
    `fc` (1008 logits) exists only so that pytorch-fid's file loads strictly; it is not used."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b, self.Mixed_6c = InceptionC(768, 128), InceptionC(768, 160)
        self.Mixed_6d, self.Mixed_6e = InceptionC(768, 160), InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b, self.Mixed_7c = InceptionE(1280, 'avg'), InceptionE(2048, 'max')
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ['5b', '5c', '5d', '6a', '6b', '6c', '6d', '6e', '7a', '7b', '7c']:
            x = getattr(self, f'Mixed_{name}')(x)
        return x.mean(dim=(2, 3))


# NVIDIA's TorchScript file stores the TF graph's names; this maps them to ours (see ../shared/fid/README.md).
_TF_BLOCKS = {'conv': 'Conv2d_1a_3x3', 'conv_1': 'Conv2d_2a_3x3', 'conv_2': 'Conv2d_2b_3x3',
              'conv_3': 'Conv2d_3b_1x1', 'conv_4': 'Conv2d_4a_3x3', 'mixed': 'Mixed_5b', 'mixed_1': 'Mixed_5c',
              'mixed_2': 'Mixed_5d', 'mixed_3': 'Mixed_6a', 'mixed_4': 'Mixed_6b', 'mixed_5': 'Mixed_6c',
              'mixed_6': 'Mixed_6d', 'mixed_7': 'Mixed_6e', 'mixed_8': 'Mixed_7a', 'mixed_9': 'Mixed_7b',
              'mixed_10': 'Mixed_7c'}
_TF_UNITS = {  # per block type: TF tower name -> torchvision branch name
    'A': {'conv': 'branch1x1', 'tower.conv': 'branch5x5_1', 'tower.conv_1': 'branch5x5_2',
          'tower_1.conv': 'branch3x3dbl_1', 'tower_1.conv_1': 'branch3x3dbl_2', 'tower_1.conv_2': 'branch3x3dbl_3',
          'tower_2.conv': 'branch_pool'},
    'B': {'conv': 'branch3x3', 'tower.conv': 'branch3x3dbl_1', 'tower.conv_1': 'branch3x3dbl_2',
          'tower.conv_2': 'branch3x3dbl_3'},
    'C': {'conv': 'branch1x1', 'tower.conv': 'branch7x7_1', 'tower.conv_1': 'branch7x7_2',
          'tower.conv_2': 'branch7x7_3', 'tower_1.conv': 'branch7x7dbl_1', 'tower_1.conv_1': 'branch7x7dbl_2',
          'tower_1.conv_2': 'branch7x7dbl_3', 'tower_1.conv_3': 'branch7x7dbl_4',
          'tower_1.conv_4': 'branch7x7dbl_5', 'tower_2.conv': 'branch_pool'},
    'D': {'tower.conv': 'branch3x3_1', 'tower.conv_1': 'branch3x3_2', 'tower_1.conv': 'branch7x7x3_1',
          'tower_1.conv_1': 'branch7x7x3_2', 'tower_1.conv_2': 'branch7x7x3_3', 'tower_1.conv_3': 'branch7x7x3_4'},
    'E': {'conv': 'branch1x1', 'tower_conv': 'branch3x3_1', 'tower_mixed_conv': 'branch3x3_2a',
          'tower_mixed_conv_1': 'branch3x3_2b', 'tower_1_conv': 'branch3x3dbl_1', 'tower_1_conv_1': 'branch3x3dbl_2',
          'tower_1_mixed_conv': 'branch3x3dbl_3a', 'tower_1_mixed_conv_1': 'branch3x3dbl_3b',
          'tower_2_conv': 'branch_pool'},
}
_BLOCK_TYPE = {'Mixed_5b': 'A', 'Mixed_5c': 'A', 'Mixed_5d': 'A', 'Mixed_6a': 'B', 'Mixed_6b': 'C', 'Mixed_6c': 'C',
               'Mixed_6d': 'C', 'Mixed_6e': 'C', 'Mixed_7a': 'D', 'Mixed_7b': 'E', 'Mixed_7c': 'E'}
_TF_PARAMS = {'weight': 'conv.weight', 'beta': 'bn.bias', 'mean': 'bn.running_mean', 'var': 'bn.running_var'}


def tf_to_torchvision_names(tf_state):
    """Rename NVIDIA's `net.layers.<tf name>.{weight,beta,mean,var}` to torchvision names; gamma = 1."""
    out = {}
    for key, value in tf_state.items():
        path, param = key[len('net.layers.'):].rsplit('.', 1)
        block, _, unit = path.partition('.')
        name = _TF_BLOCKS[block]
        if unit:
            name = f'{name}.{_TF_UNITS[_BLOCK_TYPE[name]][unit]}'
        out[f'{name}.{_TF_PARAMS[param]}'] = value
        if param == 'beta':
            out[f'{name}.bn.weight'] = torch.ones_like(value)
    return out


def inception_file(path=None, allow_download=True):
    """The weights file: a given one, or pytorch-fid's in the cache (downloaded and sha256-checked on first use)."""
    if path is None:
        def check(path):
            digest = common.file_digest(path, 'sha256')
            if not digest.startswith(PYTORCH_FID_SHA256_PREFIX):
                os.remove(path)
                raise ValueError(f'downloaded Inception weights have sha256 {digest}, expected '
                                 f'{PYTORCH_FID_SHA256_PREFIX}...; the download is corrupt, try again')
        name = os.path.basename(PYTORCH_FID_URL)
        path = common.fetch(PYTORCH_FID_URL, os.path.join(CACHE_DIR, name), 'the FID Inception weights',
                            'pass --inception PATH (this file, torch-fidelity\'s copy or NVIDIA\'s '
                            'inception-2015-12-05.pt), or put it at that path; trainers also take --fid-ref none',
                            allow_download, check)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Inception weights {path!r} not found')
    return path


def load_inception(path=None, allow_download=True):
    """The FID feature network from inception_file(path). Files accepted: a state_dict with torchvision names
    (pytorch-fid, torch-fidelity), or NVIDIA's TorchScript detector. Any other TorchScript module is used as
    a custom detector as it is (input: resized images in [−1, 1]); this is how tests plug in a tiny network."""
    path = inception_file(path, allow_download)
    try:  # TorchScript archive? (NVIDIA's detector is one; torch marks jit as deprecated, hence the filter)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            scripted = torch.jit.load(path, map_location='cpu')
    except Exception:
        scripted = None
    if scripted is not None:
        state = scripted.state_dict()
        if not any(k.startswith('net.layers.') for k in state):
            print(f'fid: using {path} as a custom TorchScript feature detector', file=sys.stderr)
            return scripted.eval()
        state = tf_to_torchvision_names(state)
    else:
        try:
            state = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as e:
            raise ValueError(f'{path!r} is neither a TorchScript module nor a state_dict ({e})') from None
        state = {k.removeprefix('module.'): v for k, v in state.items() if not k.endswith('num_batches_tracked')}
    with torch.random.fork_rng(devices=[]):  # its random init is overwritten: leave the training's RNG alone
        net = InceptionV3FID()
    own = net.state_dict()
    own = {k: v for k, v in own.items() if not k.endswith('num_batches_tracked')}
    missing = sorted(set(own) - set(state) - {'fc.weight', 'fc.bias'})
    unexpected = sorted(set(state) - set(own))
    bad = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or bad:
        raise ValueError(f'{path!r} is not an Inception-v3 FID weights file: missing {missing[:4]}, unexpected '
                         f'{unexpected[:4]}, wrong shapes {bad[:4]}')
    net.load_state_dict(state, strict=False)
    for m in net.modules():
        if isinstance(m, BasicConv2d):
            m.fold_batchnorm()
    # channels_last: oneDNN's CPU convolutions (and cuDNN's) run NHWC without a layout change per layer
    return net.eval().requires_grad_(False).to(memory_format=torch.channels_last)


# ------------------------------------------------------------------------------------------------------
# Preprocessing
# ------------------------------------------------------------------------------------------------------

def tf_resize_matrix(n_in, n_out):
    """TF1 resize_bilinear (align_corners=False, no half-pixel): output i samples input at s = i·n_in/n_out,
    between floor(s) and min(floor(s) + 1, n_in − 1). Returned as an [n_out, n_in] matrix."""
    s = np.arange(n_out, dtype=np.float64) * (n_in / n_out)
    lo = np.floor(s).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (s - lo).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    np.add.at(m, (np.arange(n_out), lo), 1 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return torch.from_numpy(m)


def preprocess(images, size=299):
    """uint8 [N, C, H, W] (C = 1 or 3) -> float32 [N, 3, size, size] in [−1, 1], as the TF pipeline does."""
    if images.dtype != torch.uint8:
        raise TypeError(f'FID takes uint8 images (quantise samples first), got {images.dtype}')
    x = images.to(torch.float32)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if x.shape[2:] != (size, size):
        mh = tf_resize_matrix(x.shape[2], size).to(x.device)
        mw = tf_resize_matrix(x.shape[3], size).to(x.device)
        x = torch.einsum('ih,nchw,jw->ncij', mh, x, mw)
    return (x - 128) / 128


# ------------------------------------------------------------------------------------------------------
# Statistics and the Fréchet distance
# ------------------------------------------------------------------------------------------------------

class FeatureStats:
    """Streaming mean and unbiased covariance in float64: holds Σf and Σffᵀ, never the features. The sums stay on
    the features' device, so a GPU run neither waits for the host after every batch nor leaves it the products."""

    def __init__(self, dim, device='cpu', keep=False):
        self.n, self.kept = 0, [] if keep else None  # kept: the features themselves (precision and recall)
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def update(self, feats):
        f = torch.as_tensor(feats).to(self.sum.device, torch.float64)
        self.n += f.shape[0]
        self.sum += f.sum(0)
        if self.kept is not None:
            self.kept.append(f.float().cpu())
        self.outer += f.T @ f

    def all_reduce(self):
        """Sum the accumulators over DDP ranks."""
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            torch.distributed.all_reduce(self.sum)
            torch.distributed.all_reduce(self.outer)
            n = torch.tensor([self.n], dtype=torch.float64, device=self.sum.device)
            torch.distributed.all_reduce(n)
            self.n = int(n.item())

    def mean_cov(self):
        """μ and Σ as float64 numpy arrays (the one copy to the host)."""
        if self.n < 2:
            raise ValueError(f'FID statistics need at least 2 images, got {self.n}')
        mu = self.sum / self.n
        return mu.cpu().numpy(), ((self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)).cpu().numpy()


def save_stats(path, mu, sigma, count, features=None):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp.npz'
    extra = {} if features is None else {'features': features}
    np.savez(tmp, mu=mu, sigma=sigma, mode=np.array('tf'), count=np.array(count), **extra)  # mode: for other readers
    os.replace(tmp, path)


def load_stats(path):
    """mu, sigma, count from our .npz, or from EDM / pytorch-fid .npz files (mu and sigma only: TF statistics, as
    EDM's and TTUR's are); a file whose mode names another pipeline is refused."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'FID reference statistics {path!r} not found; make them with: python fid.py ref '
                                f'--dataset cifar10 --out {path}')
    try:
        with np.load(path) as d:
            if 'mu' not in d or 'sigma' not in d:
                raise ValueError('no "mu" and "sigma" arrays')
            mode = str(d['mode']) if 'mode' in d else 'tf'
            count = int(d['count']) if 'count' in d else -1
            mu, sigma = d['mu'].astype(np.float64), d['sigma'].astype(np.float64)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, AttributeError, pickle.UnpicklingError) as e:
        raise ValueError(f'{path!r} is not FID statistics (expected an .npz with "mu" and "sigma", as fid.py ref '
                         f'writes; {e})') from None
    if mode != 'tf':
        raise ValueError(f'{path!r} holds statistics of another FID pipeline (mode {mode!r}); fid.py computes the '
                         f'TF / EDM one only: remake them with python fid.py ref')
    return mu, sigma, count


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """‖μ₁−μ₂‖² + tr Σ₁ + tr Σ₂ − 2·tr (Σ₁Σ₂)^½, with tr (Σ₁Σ₂)^½ = Σᵢ √λᵢ(Σ₁Σ₂): the eigenvalues of a product
    of two PSD matrices are real and ≥ 0, so one eigenvalue solve (~3 s at 2048²) replaces sqrtm (~20 s).
    As pytorch-fid: if the product is singular enough to break the solve, retry with eps·I added; refuse a
    result with a significant imaginary part."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f'FID statistics have different shapes: {mu1.shape} vs {mu2.shape}')
    diff = mu1 - mu2
    eig = scipy.linalg.eigvals(sigma1 @ sigma2)
    if not np.isfinite(eig).all():
        offset = np.eye(sigma1.shape[0]) * eps
        eig = scipy.linalg.eigvals((sigma1 + offset) @ (sigma2 + offset))
    scale = max(1.0, float(np.abs(eig.real).max()))
    if np.abs(eig.imag).max() > 1e-3 * scale:
        raise ValueError(f'imaginary component {np.abs(eig.imag).max():.3g} in tr sqrt(Σ1 Σ2): the statistics '
                         f'are not valid covariances')
    tr_covmean = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def precision_recall(real, fake, k=3, chunk=1024):
    """Improved precision and recall (Kynkäänniemi et al. 2019; k = 3 as StyleGAN2-ADA's pr50k3) of two feature sets
    [N, D]: each set's manifold is the union of balls around its points, of radius the distance to the point's k-th
    nearest neighbour in its own set. precision = the fraction of fake points inside the real manifold (quality),
    recall = the fraction of real points inside the fake one (coverage: a collapsed generator has recall near 0)."""
    real, fake = torch.as_tensor(real, dtype=torch.float32), torch.as_tensor(fake, dtype=torch.float32)

    def radii(x):  # the k-th smallest distance to the others: index k, since the point itself is at 0
        return torch.cat([torch.cdist(part, x).kthvalue(k + 1, dim=1).values for part in x.split(chunk)])

    def inside(x, ref, r):
        return torch.cat([(torch.cdist(part, ref) <= r).any(1) for part in x.split(chunk)]).float().mean().item()
    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


def metric_name(num):
    """fid50k, fid10k, fid2500, ...: every FID carries its sample count."""
    return f'fid{num // 1000}k' if num % 1000 == 0 else f'fid{num}'


# ------------------------------------------------------------------------------------------------------
# Feature extraction and the function API used by the training scripts
# ------------------------------------------------------------------------------------------------------

_DETECTORS = {}


def get_detector(path, device, allow_download=True):
    """Load once per (path, device) and keep: training loops call FID many times."""
    key = (path, str(device))
    if key not in _DETECTORS:
        _DETECTORS[key] = load_inception(path, allow_download).to(device)
    return _DETECTORS[key]


# On CPU the detector sees at most this many images at a time, whatever the caller's batch: the early activations
# (64 x 147² floats per image) stay closer to the cache and the temporaries stay small (results/NOTES.md, FID speed).
CPU_CHUNK = 16


@torch.no_grad()
def features(detector, images, device='cpu'):
    """uint8 images -> float32 features on `device`: no autocast and no TF32 whatever the caller runs in, so the
    features are the same in the training loop as in `fid.py calc`."""
    chunk = CPU_CHUNK if torch.device(device).type == 'cpu' else len(images)
    with common.full_precision(torch.device(device).type):
        out = [detector(preprocess(part.to(device)).contiguous(memory_format=torch.channels_last))
               for part in images.split(max(chunk, 1))]
        return torch.cat(out).float()


def stats_from_batches(batches, detector, device, rank=0, total=None, what='fid', keep=False):
    """Stream an iterable of uint8 batches through the detector into FeatureStats (summed over ranks; keep: the
    features too, one process). With total (this process's images), a progress line at least every 10 s."""
    stats, t0 = None, time.time()
    progress = common.Progress(what, total, rank=rank) if total else None
    for images in batches:
        f = features(detector, images, device)
        stats = stats or FeatureStats(f.shape[1], f.device, keep)
        stats.update(f)
        if progress:
            progress.update(len(images))
    if stats is None:
        raise ValueError('FID statistics need at least 2 images, got 0')
    stats.all_reduce()
    if rank == 0:
        common.sync(torch.device(device))  # the batches were only queued
        dt = time.time() - t0
        print(f'{what}: {stats.n} images in {dt:.1f}s ({stats.n / max(dt, 1e-9):.1f} img/s per process)',
              file=sys.stderr)
    return stats


def load_features(path):
    """The reference features kept by fid.py ref --features 1 (precision and recall need them, not only μ, Σ)."""
    load_stats(path)
    with np.load(path) as d:
        if 'features' not in d:
            raise ValueError(f'{path!r} has no features for precision and recall; remake it with fid.py ref ... '
                             f'--features 1')
        return torch.from_numpy(d['features'])


def load_ref(ref_path):
    """mu, sigma of reference statistics; checked before any sampling, too."""
    mu_r, sigma_r, _ = load_stats(ref_path)
    return mu_r, sigma_r


def fid_from_stats(stats, ref_path):
    mu_r, sigma_r = load_ref(ref_path)
    mu, sigma = stats.mean_cov()
    return frechet_distance(mu, sigma, mu_r, sigma_r)


# --fid-ref samples: a machine without the Inception weights (a borrowed GPU, say) saves the in-loop samples instead,
# and `fid.py calc --images` measures them where the weights are.
SAVE_SAMPLES = 'samples'


def preflight(args, allow_download=True):
    """The trainers' pre-flight checks of FID in the loop: the Inception weights, and --fid-ref's file."""
    if args.fid_ref in ('none', SAVE_SAMPLES):
        return []
    checks = [lambda: inception_file(args.inception, allow_download)]
    return checks + ([lambda: load_ref(args.fid_ref)] if args.fid_ref != 'auto' else [])


def reference_stats(spec, data, device, inception=None, rank=0, batch=250):
    """--fid-ref for the training scripts: 'none' -> None (no FID in the loop); 'samples' -> save the samples of
    every FID point instead (fid_point); a path -> that file; 'auto' ->
    statistics of the whole training set `data`, computed once (split over DDP ranks) and cached under a hash
    of the images themselves (so two folders with the same name never share statistics)."""
    if spec in (None, '', 'none'):
        return None
    if spec == SAVE_SAMPLES:
        return spec
    if spec != 'auto':
        load_ref(spec)  # fail now, not after hours of training
        return spec
    tag = hashlib.sha256(data.images.numpy().tobytes()).hexdigest()[:12]
    path = os.path.join(CACHE_DIR, f'ref-{data.name}-{tag}-tf.npz')
    if not os.path.isfile(path):
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        common.print0(f'fid: reference statistics of the {len(data)} images of {data.name}, once (cached in '
                      f'{CACHE_DIR}); --fid-ref none runs without FID', rank=rank)
        images = data.images[rank::world]
        stats = stats_from_batches(image_batches(images, batch), get_detector(inception, device), device, rank,
                                   len(images), 'fid reference')
        if rank == 0:
            mu, sigma = stats.mean_cov()
            save_stats(path, mu, sigma, stats.n)
            print(f'fid: wrote reference statistics of {data.name} ({stats.n} images) to {path}', file=sys.stderr)
        if world > 1:
            torch.distributed.barrier()
    return path


def save_samples(sample_fn, num, path, rank=0, world=1, batch=250, first_seed=0):
    """The images of seeds first_seed.. (num of them) as a zip of lossless PNGs named by seed, written atomically by
    rank 0 (each rank makes every world-th seed). `fid.py calc --images` of the zip gives the same seeds' FID."""
    seeds = list(range(first_seed + rank, first_seed + num, world))
    progress, images = common.Progress(f'samples for {os.path.basename(path)}', len(seeds), rank=rank), []
    for i in range(0, len(seeds), batch):
        images.append(sample_fn(seeds[i:i + batch]).cpu())
        progress.update(len(images[-1]))
    images = torch.cat(images)
    parts = [(seeds, images)]
    if world > 1:
        parts = [None] * world
        torch.distributed.all_gather_object(parts, (seeds, images))
    if rank != 0:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp'
    with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_STORED) as zf:  # PNG is compressed already
        for part_seeds, part_images in parts:
            for seed, image in zip(part_seeds, part_images.numpy()):
                buf = io.BytesIO()
                Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).save(buf, 'PNG', optimize=True)
                zf.writestr(f'{seed:06d}.png', buf.getvalue())
    os.replace(tmp, path)


def fid_point(sample_fn, args, ref, device, rank, world, kimg):
    """One point of a trainer's FID curve, as its log record: {'kimg', 'fid10k': value}; with --fid-ref samples,
    {'kimg', 'samples': the zip under <outdir>/fid_samples} (measure it later with fid.py calc --images)."""
    if ref == SAVE_SAMPLES:
        name = f'{metric_name(args.fid_num)}-{kimg:09.3f}kimg.zip'
        save_samples(sample_fn, args.fid_num, os.path.join(args.outdir, 'fid_samples', name), rank, world)
        return {'kimg': kimg, 'samples': 'fid_samples/' + name}
    return {'kimg': kimg, metric_name(args.fid_num): fid_in_loop(sample_fn, args.fid_num, ref, device,
                                                                 args.inception, rank, world)}


def fid_in_loop(sample_fn, num, ref_path, device, inception=None, rank=0, world=1, batch=250):
    """FID of num images made by sample_fn(seeds) -> uint8 [B, C, H, W]; each rank makes seeds rank::world.
    Returns the FID on every rank (the statistics are all-reduced)."""
    detector = get_detector(inception, device)
    seeds = list(range(rank, num, world))
    batches = (sample_fn(seeds[i:i + batch]) for i in range(0, len(seeds), batch))
    stats = stats_from_batches(batches, detector, device, rank, len(seeds), f'fid ({metric_name(num)})')
    return fid_from_stats(stats, ref_path)


# ------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------

def image_batches(images, batch):
    for i in range(0, len(images), batch):
        yield images[i:i + batch]


def resolve_precision(precision, ckpt, device):
    """--sample-precision auto: what EDM's generate.py runs (EDMPrecond.forward): fp16 for a network pickled with
    use_fp16 (its ImageNet-64 ADM) on CUDA, else fp32 (its CIFAR-10 networks, every CPU run, our own checkpoints)."""
    if precision != 'auto':
        return precision
    use_fp16 = ckpt['config'].get('imported_from', {}).get('use_fp16', False)
    return 'fp16' if use_fp16 and device.type == 'cuda' else 'fp32'


def checkpoint_sampler(path, device, steps=18, precision='auto', compile=False, stochastic=False, sampler_flags=()):
    """sample_fn(seeds) for a checkpoint: a teacher (EDM's sampler: Heun, or stochastic; EMA weights) or a one-step
    generator (EMA). precision: auto (resolve_precision), fp32 (PyTorch's defaults: on a GPU convolutions may use
    TF32) or bf16 / fp16 autocast around the network (the sampler's own arithmetic stays float64 / float32); the
    features never change. compile: torch.compile the generating network (σ is a tensor input: one graph for
    every step). sampler_flags: the teacher-sampler flags the user gave, refused for a one-step generator (it has
    no steps)."""
    ckpt = common.load_checkpoint(path, ('teacher', 'generator'))
    if ckpt['kind'] == 'generator' and sampler_flags:
        raise ValueError(f'{", ".join(sampler_flags)}: no effect with a one-step generator checkpoint ({path})')
    net = common.EDMPrecond(**ckpt['net_config']).eval().requires_grad_(False)
    net.load_state_dict(ckpt['ema'])
    net = common.maybe_compile(common.to_device(net, device), compile)
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(resolve_precision(precision, ckpt, device))
    mixed = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext  # noqa: E731
    if ckpt['kind'] == 'generator':
        inner = common.one_step_sampler(net, ckpt['sigma_init'], device)
    else:
        inner = common.diffusion_sampler(net, device, steps, stochastic)

    def sample(seeds):
        with mixed():
            return inner(seeds)
    return sample


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter, allow_abbrev=False)
    sub = p.add_subparsers(dest='cmd', required=True)
    sub_args = dict(formatter_class=common.HelpFormatter, allow_abbrev=False)
    ref = sub.add_parser('ref', help='reference statistics of a dataset', **sub_args)
    ref.add_argument('--dataset', required=True, help='cifar10 | fashion-mnist | folder or zip of images')
    ref.add_argument('--split', default='train', choices=['train', 'test'], help='train: the standard reference')
    ref.add_argument('--data-dir', default=common.DEFAULT_DATA_DIR, help='where cifar-10-python.tar.gz is downloaded')
    ref.add_argument('--no-download', action='store_true', help='never download data or weights')
    ref.add_argument('--out', required=True, help='output .npz (mu, sigma, mode, count)')
    ref.add_argument('--per-class', type=int, default=0, help='only the first N images of each class (a cheaper, '
                     'class-balanced reference for small studies; 0 = all, the standard)')
    ref.add_argument('--features', type=int, default=0, help='also keep the features, for calc --pr (8 KB an image)')
    calc = sub.add_parser('calc', help='FID of a checkpoint or of a folder / zip of images', **sub_args)
    src = calc.add_mutually_exclusive_group(required=True)
    src.add_argument('--ckpt', help='teacher (Heun, EMA) or one-step generator checkpoint')
    src.add_argument('--images', help='folder or zip of images')
    calc.add_argument('--ref', required=True, help='reference statistics .npz (fid.py ref)')
    calc.add_argument('--save-stats', default=None, help='also write the samples\' statistics here')
    calc.add_argument('--pr', type=int, default=0, help='also precision and recall (Kynkäänniemi et al. 2019, k = 3, '
                      'on the same Inception features) against a reference made with --features 1')
    sample = sub.add_parser('sample', help='write a checkpoint\'s images (one per seed) to a zip of PNGs', **sub_args)
    sample.add_argument('--ckpt', required=True, help='teacher (Heun, EMA) or one-step generator checkpoint')
    sample.add_argument('--out', required=True, help='the .zip to write')
    for q in (calc, sample):
        q.add_argument('--num', type=int, default=50000, help='images to generate (the standard: 50000)')
        q.add_argument('--first-seed', type=int, default=0, help='their seeds: first-seed .. first-seed + num - 1 '
                       '(another set of samples of the same generator: the metric\'s own noise)')
        q.add_argument('--steps', type=int, default=None, help='sampler steps for teacher checkpoints; default: 18 '
                       'for heun (EDM, CIFAR-10), 256 for stochastic (EDM, ImageNet-64)')
        q.add_argument('--sampler', default='heun', choices=['heun', 'stochastic'], help='teacher checkpoints: EDM\'s '
                       'Heun sampler, or its stochastic one with the ImageNet-64 settings (common.STOCHASTIC)')
        q.add_argument('--sample-precision', default='auto', choices=['auto', 'fp32', 'bf16', 'fp16'],
                       help='the generating network\'s precision; auto: what EDM\'s generate.py runs (EDM): fp16 '
                       'autocast for an imported pickle with use_fp16 (its ImageNet-64 ADM) on CUDA, else fp32; bf16 '
                       'is meant for GPUs (results/NOTES.md, precision); the features are always exact fp32')
        q.add_argument('--compile', type=int, default=0, help='torch.compile the generating network (pays off for '
                       'Heun\'s 35 evaluations per image on a GPU)')
    for q in (ref, calc, sample):
        q.add_argument('--batch', type=int, default=250, help='images per forward pass')
        q.add_argument('--device', default='auto', help='auto | cuda | cpu')
    for q in (ref, calc):
        q.add_argument('--inception', default=None, help='local weights file (offline); default: download')
    args = p.parse_args(argv)
    parser = {'ref': ref, 'calc': calc, 'sample': sample}[args.cmd]
    if args.cmd != 'ref' and args.steps is None:
        args.steps = common.SAMPLER_STEPS[args.sampler]
    if args.batch < 1 or getattr(args, 'num', 2) < 2 or getattr(args, 'steps', 2) < 2 or min(
            getattr(args, 'per_class', 0), getattr(args, 'first_seed', 0)) < 0:
        parser.error('--batch must be at least 1, --num and --steps at least 2, --per-class and --first-seed at least 0')
    if getattr(args, 'images', None):
        common.refuse_flags(parser, argv, ['num', 'first_seed', 'steps', 'sampler', 'sample_precision', 'compile'],
                            'with --images')
    if args.cmd == 'ref' and args.dataset not in ('cifar10', 'fashion-mnist'):
        common.refuse_flags(parser, argv, ['data_dir'], 'with --dataset PATH')
    sampler_flags = ['--' + d for d in ('steps', 'sampler') if d in common.given_flags(parser, argv)]
    device = torch.device(('cuda' if torch.cuda.is_available() else 'cpu') if args.device == 'auto' else args.device)
    try:
        if args.cmd == 'sample':
            sample = checkpoint_sampler(args.ckpt, device, args.steps, args.sample_precision, bool(args.compile),
                                        args.sampler == 'stochastic', sampler_flags)
            save_samples(sample, args.num, args.out, batch=args.batch, first_seed=args.first_seed)
            print(f'wrote {args.out}: {args.num} images of {args.ckpt} (seeds {args.first_seed}..'
                  f'{args.first_seed + args.num - 1})')
            return
        allow = not getattr(args, 'no_download', False)
        common.preflight([lambda: inception_file(args.inception, allow)] +  # before any sampling or decoding
                         ([lambda: (load_features if args.pr else load_ref)(args.ref)] if args.cmd == 'calc' else
                          [lambda: common.dataset_source(args.dataset, args.data_dir, allow)]))
        detector = get_detector(args.inception, device, allow)
        if args.cmd == 'ref':
            data = common.load_dataset(args.dataset, args.data_dir, args.split, not args.no_download)
            images = data.images
            if args.per_class:
                if data.labels is None:
                    raise ValueError(f'--per-class needs class labels, and {data.name} has none')
                keep = torch.cat([torch.nonzero(data.labels == c)[:args.per_class, 0] for c in range(data.num_classes)])
                images = images[keep.sort().values]
            stats = stats_from_batches(image_batches(images, args.batch), detector, device, total=len(images),
                                       what='fid reference', keep=bool(args.features))
            save_stats(args.out, *stats.mean_cov(), stats.n, torch.cat(stats.kept).numpy() if args.features else None)
            print(f'wrote {args.out}: {stats.n} images of {data.name}')
            return
        if args.images:
            images = common.load_image_folder(args.images).images
            batches, num = image_batches(images, args.batch), len(images)
        else:
            sample = checkpoint_sampler(args.ckpt, device, args.steps, args.sample_precision, bool(args.compile),
                                        args.sampler == 'stochastic', sampler_flags)
            seeds, num = list(range(args.first_seed, args.first_seed + args.num)), args.num
            batches = (sample(seeds[i:i + args.batch]) for i in range(0, num, args.batch))
        stats = stats_from_batches(batches, detector, device, total=num, what=f'fid ({metric_name(num)})',
                                   keep=bool(args.pr))
        if args.save_stats:
            save_stats(args.save_stats, *stats.mean_cov(), stats.n)
        value = fid_from_stats(stats, args.ref)
        print(f'{metric_name(num)} {value:.4f}')
        if args.pr:
            precision, recall = precision_recall(load_features(args.ref), torch.cat(stats.kept))
            print(f'precision {precision:.4f}  recall {recall:.4f}')
        return value
    except (FileNotFoundError, ValueError, pickle.UnpicklingError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
