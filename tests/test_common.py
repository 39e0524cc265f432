"""Tests of common.py: the network against EDM's golden outputs and key list, EDM's formulas, the Heun
sampler against closed forms, EMA, checkpoints, data loaders, DDP."""
import gzip
import hashlib
import io
import json
import math
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import common
from conftest import shared_file, write_image_folder

GOLDEN_DROP = ('embedding_type', 'encoder_type', 'decoder_type', 'channel_mult_noise', 'resample_filter')


# ---------------------------------------------------------------- network compatibility

@pytest.mark.parametrize('name', ['small_uncond', 'small_cond'])
def test_songunet_reproduces_edm_golden_outputs(name):
    golden = torch.load(shared_file('spec', 'edm_songunet_golden.pt'), weights_only=False)[name]
    cfg = {k: v for k, v in golden['config'].items() if k not in GOLDEN_DROP}
    assert golden['config']['resample_filter'] == [1, 1] and golden['config']['channel_mult_noise'] == 1
    net = common.EDMPrecond(**cfg).eval()
    common.load_net_state(net, golden['state_dict'], name)
    with torch.no_grad():
        D = net(golden['x'], golden['sigma'], golden['class_labels'], golden['augment_labels'])
    torch.testing.assert_close(D, golden['D'], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('name,label_dim', [('ddpmpp_uncond', 0), ('ddpmpp_cond', 10)])
def test_edm_preset_has_official_keys_and_shapes(name, label_dim):
    keys = json.load(open(shared_file('spec', 'edm_ddpmpp_cifar10_keys.json')))[name]
    net = common.build_net('edm', 32, 3, label_dim, 0.13)
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == keys
    # EDM's CIFAR-10 DDPM++ has 55.73 M parameters (uncond).
    assert abs(sum(p.numel() for p in net.parameters()) - 55.73e6) < 0.01e6


def test_load_net_state_names_the_bad_key():
    net = common.build_net('tiny', 32, 3, 0, 0.0)
    sd = net.state_dict()
    sd['model.enc.32x32_conv.weight'] = torch.zeros(1)
    with pytest.raises(ValueError, match='32x32_conv.weight'):
        common.load_net_state(net, sd, 'test')


def test_resampling_is_edms_depthwise_box_filter_conv_and_other_filters_are_refused():
    """Conv2d up/down = EDM's depthwise (transposed) conv by the [1,1] box filter, computed as nearest-neighbour
    upsampling / 2x2 average pooling; weights with any other filter do not load."""
    x = torch.randn(2, 5, 8, 8)
    box = torch.full([5, 1, 2, 2], 0.25)
    up, down = common.Conv2d(5, 5, 0, up=True), common.Conv2d(5, 5, 0, down=True)
    torch.testing.assert_close(up(x), F.conv_transpose2d(x, box * 4, groups=5, stride=2), atol=1e-6, rtol=0)
    torch.testing.assert_close(down(x), F.conv2d(x, box, groups=5, stride=2), atol=1e-6, rtol=0)
    net = common.build_net('tiny', 32, 3, 0, 0.0)
    sd = net.state_dict()
    key = next(k for k in sd if k.endswith('resample_filter'))
    sd[key] = torch.tensor([[[[1., 3.], [3., 9.]]]]) / 16
    with pytest.raises(ValueError, match='box filter'):
        common.load_net_state(net, sd, 'test')


def test_preconditioning_coefficients_match_edm_formulas():
    net = common.build_net('tiny', 32, 3, 0, 0.0)
    sigma = torch.tensor([0.002, 0.5, 1.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = net.precond(sigma)
    for i, s in enumerate(sigma.tolist()):
        assert c_skip[i].item() == pytest.approx(0.25 / (s * s + 0.25), rel=1e-12)
        assert c_out[i].item() == pytest.approx(s * 0.5 / math.sqrt(s * s + 0.25), rel=1e-12)
        assert c_in[i].item() == pytest.approx(1 / math.sqrt(s * s + 0.25), rel=1e-12)
        assert c_noise[i].item() == pytest.approx(math.log(s) / 4, rel=1e-12)


def test_denoiser_is_skip_plus_scaled_network_output():
    """D = c_skip·x + c_out·F(c_in·x, c_noise): checked by calling the inner U-Net by hand."""
    torch.manual_seed(0)
    net = common.build_net('tiny', 32, 3, 0, 0.0).eval()
    for p in net.parameters():  # make every layer matter (conv1 / aux_conv start near zero)
        p.data += 0.05 * torch.randn_like(p)
    x, sigma = torch.randn(2, 3, 32, 32), torch.tensor([0.3, 7.0])
    s = sigma.reshape(-1, 1, 1, 1)
    Fx = net.model(x / (s ** 2 + 0.25).sqrt(), sigma.log() / 4)
    expected = 0.25 / (s ** 2 + 0.25) * x + s * 0.5 / (s ** 2 + 0.25).sqrt() * Fx
    torch.testing.assert_close(net(x, sigma), expected)


def test_edm_loss_is_lambda_weighted_squared_error_summed_over_pixels():
    images = torch.randn(5, 3, 4, 4)
    shrink = lambda x, sigma, labels=None, aug=None: 0.5 * x  # a known 'denoiser'
    torch.manual_seed(1)
    loss = common.edm_loss(shrink, images, P_mean=-1.2, P_std=1.2)
    torch.manual_seed(1)
    sigma = (torch.randn(5, 1, 1, 1) * 1.2 - 1.2).exp()
    noise = torch.randn_like(images) * sigma
    lam = (sigma ** 2 + 0.25) / (sigma * 0.5) ** 2
    expected = (lam * (0.5 * (images + noise) - images) ** 2).sum(dim=(1, 2, 3))
    torch.testing.assert_close(loss, expected)
    assert common.edm_weight(torch.tensor(0.5)).item() == pytest.approx((0.25 + 0.25) / 0.0625)


# ---------------------------------------------------------------- Heun sampler on Gaussian data

def gaussian_denoiser(mu, s):
    """Exact denoiser of N(μ, s²I): D(x; σ) = μ + s²/(s² + σ²)·(x − μ)."""
    calls = []

    def D(x, sigma, labels=None):
        calls.append(1)
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        return mu + s ** 2 / (s ** 2 + sigma ** 2) * (x - mu)
    return D, calls


def heun_gain(num_steps, s, sigma_max=80.0, sigma_min=0.002, rho=7.0):
    """Heun on an affine denoiser is affine: x_N − μ = g·(x_0 − μ) with x_0 = σ_max·z. Python floats."""
    t = [(sigma_max ** (1 / rho) + i / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
         for i in range(num_steps)] + [0.0]
    g = 1.0
    slope = lambda sig: (1 - s * s / (s * s + sig * sig)) / sig  # d = (x − D)/σ = slope·(x − μ)
    for i in range(num_steps):
        d = slope(t[i]) * g
        g_next = g + (t[i + 1] - t[i]) * d
        if i < num_steps - 1:
            g_next = g + (t[i + 1] - t[i]) * 0.5 * (d + slope(t[i + 1]) * g_next)
        g = g_next
    return g


def test_heun_matches_gaussian_closed_form_discretisation():
    mu, s = 0.3, 0.5
    D, calls = gaussian_denoiser(mu, s)
    torch.manual_seed(0)
    latents = torch.randn(20000, 1, 1, 1)
    x = common.edm_sampler(D, latents, num_steps=18)
    assert len(calls) == 35 and x.dtype == torch.float64
    g = heun_gain(18, s)
    # Per sample the map is exact: x = μ + g·(σ_max·z − μ); its std over z is gain = 80·g.
    torch.testing.assert_close(x, mu + g * (80 * latents.double() - mu), atol=1e-9, rtol=1e-9)
    gain = 80 * g
    assert gain == pytest.approx(1.06 * s, rel=0.02)  # 18 steps overshoot s = 0.5 by ~6% (spec)
    assert x.mean().item() == pytest.approx(mu * (1 - g), abs=4 * gain / math.sqrt(20000))
    assert x.std().item() == pytest.approx(gain, rel=0.03)


def test_heun_converges_to_data_distribution_with_many_steps():
    mu, s = -0.2, 0.5
    D, _ = gaussian_denoiser(mu, s)
    latents = torch.randn(4000, 2, 2, 2, generator=torch.Generator().manual_seed(1))
    x = common.edm_sampler(D, latents, num_steps=400)
    g = s / math.sqrt(s * s + 80.0 ** 2)  # exact ODE flow from σ_max to 0: x − μ scales by s/√(s² + σ²)
    torch.testing.assert_close(x, mu + g * (80 * latents.double() - mu), atol=2e-3, rtol=0)
    assert x.std().item() == pytest.approx(s, rel=0.05)


def test_seeded_latents_do_not_depend_on_batch():
    a = common.seeded_latents([3, 4, 5], [3, 8, 8], 'cpu')
    b = common.seeded_latents([5], [3, 8, 8], 'cpu')
    torch.testing.assert_close(a[2], b[0])
    assert not torch.equal(a[0], a[1])
    la = common.seeded_labels([3, 4, 5], 10, 'cpu')
    assert la.shape == (3, 10) and torch.equal(la[2], common.seeded_labels([5], 10, 'cpu')[0])


def test_one_step_generator_is_denoiser_at_sigma_init():
    torch.manual_seed(0)
    net = common.build_net('tiny', 32, 3, 0, 0.0).eval()
    z = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(common.generate_one_step(net, z, 2.5), net(2.5 * z, torch.full([2], 2.5)))


# ---------------------------------------------------------------- EMA

def test_ema_beta_follows_edm_halflife_and_rampup():
    # After the ramp-up: half-life 500 kimg at batch 512 -> beta = 0.5 ** (512 / 500000).
    assert common.ema_beta(100_000_000, 512, 500, 0.05) == pytest.approx(0.5 ** (512 / 500_000))
    # Early on the half-life is capped at 5% of the images seen.
    assert common.ema_beta(10240, 512, 500, 0.05) == pytest.approx(0.5 ** (512 / 512))
    assert common.ema_beta(10240, 512, 500, None) == pytest.approx(0.5 ** (512 / 500_000))


@pytest.mark.parametrize('script', ['teacher', 'diff_instruct', 'score_free'])
def test_trainers_compute_the_ema_decay_before_counting_the_batch(script, tiny_teacher, tmp_path, monkeypatch):
    """EDM's (and Diff-Instruct's) loop: the decay of step k uses the images seen before it, so step 1 copies."""
    import importlib
    data, teacher = tiny_teacher
    seen = []
    ema_beta = common.ema_beta
    monkeypatch.setattr(common, 'ema_beta', lambda cur_nimg, *a: seen.append(cur_nimg) or ema_beta(cur_nimg, *a))
    argv = ['--dataset', data, '--batch', '4', '--total-kimg', '0.008', '--tick-kimg', '0.008', '--grid', '4',
            '--device', 'cpu', '--fid-ref', 'none', '--outdir', str(tmp_path)]
    argv += ['--preset', 'tiny', '--steps', '2'] if script == 'teacher' else ['--teacher', teacher]
    importlib.import_module(script).main(argv + (['--cls-warmup', '0'] if script == 'score_free' else []))
    assert seen == [0, 4]


def test_ema_update_is_lerp_towards_net():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    old = [p.detach().clone() for p in a.parameters()]
    common.ema_update(a, b, 0.9)
    for p_ema, p_old, p_net in zip(a.parameters(), old, b.parameters()):
        torch.testing.assert_close(p_ema, 0.9 * p_old + 0.1 * p_net)


def test_precision_step_replaces_nan_and_inf_gradients_as_edm():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([p], lr=1.0)
    p.grad = torch.tensor([float('nan'), float('inf'), -float('inf'), 2e5])
    common.Precision(torch.device('cpu'), 'fp32').step(opt)
    torch.testing.assert_close(p.data, torch.tensor([0.0, -1e5, 1e5, -2e5]))  # finite values untouched


# ---------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip_is_atomic_and_weights_only(tmp_path):
    net = common.build_net('tiny', 32, 3, 0, 0.0)
    path = str(tmp_path / 'ck.pt')
    common.save_checkpoint(path, {'kind': 'teacher', 'net': net.state_dict(), 'net_config': net.config,
                                  'rng': [common.rng_state()]})
    assert os.listdir(tmp_path) == ['ck.pt']  # no temporary left behind
    ck = common.load_checkpoint(path, 'teacher')
    net2 = common.EDMPrecond(**ck['net_config'])
    net2.load_state_dict(ck['net'])
    for (k, a), b in zip(net.state_dict().items(), net2.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="'generator'"):
        common.load_checkpoint(path, 'generator')
    with pytest.raises(FileNotFoundError):
        common.load_checkpoint(str(tmp_path / 'nope.pt'))
    (tmp_path / 'junk.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='not a readable checkpoint'):
        common.load_checkpoint(str(tmp_path / 'junk.pt'))


def test_resume_config_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="batch: checkpoint 512 vs now 256"):
        common.check_resume_config({'batch': 512, 'lr': 1}, {'batch': 256, 'lr': 1}, ['batch', 'lr'])


# ---------------------------------------------------------------- data

def make_cifar_archive(path, n_train=3, n_test=4):
    """An archive in the official format: cifar-10-batches-py/data_batch_{1..5}, test_batch (pickled dicts).
    Pixel value = 10·channel + image index, so channel order and image order can be checked."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, 'w:gz') as tar:
        names = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
        for b, name in enumerate(names):
            n = n_test if name == 'test_batch' else n_train
            data = np.zeros((n, 3, 32, 32), np.uint8)
            for i in range(n):
                for c in range(3):
                    data[i, c] = 10 * c + i + 20 * b
            labels = rng.integers(0, 10, n).tolist()
            blob = pickle.dumps({b'batch_label': name.encode(), b'labels': labels,
                                 b'data': data.reshape(n, 3072), b'filenames': [b'x.png'] * n}, protocol=2)
            info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return hashlib.md5(open(path, 'rb').read()).hexdigest()


def no_network(*args, **kwargs):
    raise AssertionError('a download was attempted')


def test_cifar10_loader_reads_official_format(tmp_path, monkeypatch):
    md5 = make_cifar_archive(str(tmp_path / 'cifar-10-python.tar.gz'))
    monkeypatch.setattr(common, 'CIFAR10_MD5', md5)
    monkeypatch.setattr(common, 'download', no_network)
    train = common.load_dataset('cifar10', str(tmp_path), 'train', allow_download=False)
    test = common.load_dataset('cifar10', str(tmp_path), 'test', allow_download=False)
    assert train.images.shape == (15, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.num_classes == 10
    # Channel planes R, G, B in order; images in batch order.
    assert train.images[0, :, 0, 0].tolist() == [0, 10, 20]
    assert train.images[4, :, 5, 5].tolist() == [21, 31, 41]  # batch 2, image 1
    assert test.images[3, :, 0, 0].tolist() == [103, 113, 123]
    assert train.checksum == f'md5:{md5}'


def test_cifar10_md5_mismatch_is_refused(tmp_path, monkeypatch):
    make_cifar_archive(str(tmp_path / 'cifar-10-python.tar.gz'))
    monkeypatch.setattr(common, 'download', no_network)
    with pytest.raises(ValueError, match='md5'):
        common.load_dataset('cifar10', str(tmp_path), 'train', allow_download=False)


def test_cifar10_missing_without_download_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(common, 'download', no_network)
    with pytest.raises(FileNotFoundError, match='cifar-10-python.tar.gz.*--no-download|--no-download'):
        common.load_dataset('cifar10', str(tmp_path), 'train', allow_download=False)


def test_cifar10_missing_downloads_from_official_url(tmp_path, monkeypatch):
    src = str(tmp_path / 'src.tar.gz')
    md5 = make_cifar_archive(src)
    monkeypatch.setattr(common, 'CIFAR10_MD5', md5)
    urls = []

    def fake_download(url, path):
        urls.append(url)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, 'wb').write(open(src, 'rb').read())
    monkeypatch.setattr(common, 'download', fake_download)
    data = common.load_dataset('cifar10', str(tmp_path / 'd'), 'test')
    assert urls == ['https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'] and len(data) == 4


def test_cifar_unpickler_refuses_code():
    class Evil:
        def __reduce__(self):
            return (os.system, ('echo pwned',))
    with pytest.raises(pickle.UnpicklingError, match='refusing'):
        common.NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()


@pytest.mark.parametrize('as_zip', [False, True])
def test_image_folder_and_zip_loaders(tmp_path, as_zip):
    root = write_image_folder(str(tmp_path / 'imgs'), n_per_class=3, classes=('b_dog', 'a_cat'), split='train')
    write_image_folder(root, n_per_class=2, classes=('b_dog', 'a_cat'), split='test', seed=1)
    path = root
    if as_zip:
        path = str(tmp_path / 'imgs.zip')
        with zipfile.ZipFile(path, 'w') as z:
            for r, _, files in os.walk(root):
                for f in files:
                    z.write(os.path.join(r, f), os.path.relpath(os.path.join(r, f), root))
    train = common.load_dataset(path, split='train')
    test = common.load_dataset(path, split='test')
    assert train.images.shape == (6, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert train.num_classes == 2 and train.labels.tolist() == [0, 0, 0, 1, 1, 1]  # sorted class names
    assert (train.checksum or '').startswith('sha256:') == as_zip
    from PIL import Image
    first = np.asarray(Image.open(os.path.join(root, 'train', 'a_cat', '0000.png')))
    assert np.array_equal(train.images[0].permute(1, 2, 0).numpy(), first)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='not a known name'):
        common.load_dataset(str(tmp_path / 'missing'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no images'):
        common.load_dataset(str(tmp_path / 'empty'))


def write_idx(path, arr):
    header = struct.pack('>HBB', 0, 8, arr.ndim) + struct.pack('>' + 'I' * arr.ndim, *arr.shape)
    with gzip.open(path, 'wb') as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_is_downloaded_once_and_checked_against_the_official_md5(tmp_path, monkeypatch):
    import shutil
    monkeypatch.setattr(common, 'FASHION_DIRS', [])  # not this machine's Debian copy
    server = tmp_path / 'server'
    server.mkdir()
    write_idx(str(server / 'train-images-idx3-ubyte.gz'), np.zeros((4, 28, 28)))
    write_idx(str(server / 'train-labels-idx1-ubyte.gz'), np.array([0, 1, 2, 3]))
    fetched = []

    def fake_download(url, path):
        fetched.append(os.path.basename(url))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copy(server / os.path.basename(url), path)
    monkeypatch.setattr(common, 'download', fake_download)
    data_dir = str(tmp_path / 'data')
    with pytest.raises(ValueError, match='expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d'):  # not the official bytes
        common.load_dataset('fashion-mnist', data_dir, 'train')
    assert not os.path.exists(os.path.join(data_dir, 'fashion-mnist', 'train-images-idx3-ubyte.gz'))
    for name in ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'):
        monkeypatch.setitem(common.FASHION_MD5, name, common.file_digest(str(server / name)))
    fetched.clear()
    data = common.load_dataset('fashion-mnist', data_dir, 'train')
    assert data.images.shape == (4, 1, 32, 32) and fetched == ['train-images-idx3-ubyte.gz',
                                                                'train-labels-idx1-ubyte.gz']
    fetched.clear()
    assert len(common.load_dataset('fashion-mnist', data_dir, 'train')) == 4 and fetched == []  # once
    with pytest.raises(FileNotFoundError, match='downloads are disabled.*apt-get install dataset-fashion-mnist'):
        common.load_dataset('fashion-mnist', str(tmp_path / 'empty'), 'test', allow_download=False)


def test_the_real_fashion_mnist_loads_as_ten_balanced_classes(tmp_path):
    if not any(os.path.isdir(d) for d in common.FASHION_DIRS):
        pytest.skip('Debian\'s dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)')
    train = common.load_dataset('fashion-mnist', str(tmp_path), 'train', allow_download=False)
    test = common.load_dataset('fashion-mnist', str(tmp_path), 'test', allow_download=False)
    assert train.images.shape == (60000, 1, 32, 32) and test.images.shape == (10000, 1, 32, 32)
    assert train.labels.bincount().tolist() == [6000] * 10 and test.labels.bincount().tolist() == [1000] * 10
    assert train.images[:, :, 2:30, 2:30].float().mean() > 50 and train.images[:, :, :2].sum() == 0


def test_fashion_mnist_idx_loader_pads_to_32(tmp_path):
    images = np.random.default_rng(0).integers(1, 255, (5, 28, 28)).astype(np.uint8)
    write_idx(str(tmp_path / 'train-images-idx3-ubyte.gz'), images)
    write_idx(str(tmp_path / 'train-labels-idx1-ubyte.gz'), np.array([3, 1, 4, 1, 5]))
    data = common.load_dataset('fashion-mnist', str(tmp_path), 'train')
    assert data.images.shape == (5, 1, 32, 32) and data.labels.tolist() == [3, 1, 4, 1, 5]
    assert np.array_equal(data.images[:, 0, 2:30, 2:30].numpy(), images)
    assert data.images[:, :, :2].sum() == 0 and data.images[:, :, :, 30:].sum() == 0
    write_idx(str(tmp_path / 'bad.gz'), images)
    raw = gzip.open(str(tmp_path / 'bad.gz')).read()[:-10]
    with gzip.open(str(tmp_path / 'bad.gz'), 'wb') as f:
        f.write(raw)
    with pytest.raises(ValueError, match='truncated'):
        common.read_idx(str(tmp_path / 'bad.gz'))


def test_batch_sampler_scales_flips_and_resumes(image_folder):
    data = common.load_dataset(image_folder)
    s = common.BatchSampler(data, 8, torch.device('cpu'), seed=0, xflip=False)
    x, labels = next(s)
    assert x.shape == (8, 3, 32, 32) and x.min() >= -1 and x.max() <= 1 and labels.shape == (8, 2)
    state = s.state_dict()
    a = next(s)[0]
    s.load_state_dict(state)
    assert torch.equal(next(s)[0], a)
    other_rank = common.BatchSampler(data, 8, torch.device('cpu'), seed=0, rank=1)
    assert not torch.equal(next(other_rank)[0], next(common.BatchSampler(data, 8, torch.device('cpu'), 0))[0])


def test_save_grid_writes_png(tmp_path):
    from PIL import Image
    common.save_grid(torch.rand(5, 3, 8, 8) * 2 - 1, str(tmp_path / 'g.png'))
    common.save_grid(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), str(tmp_path / 'g1.png'))
    assert Image.open(tmp_path / 'g.png').size == (24, 16)
    assert Image.open(tmp_path / 'g1.png').mode == 'L'


# ---------------------------------------------------------------- DDP

def _ddp_worker(rank, world, port, x, sigma, noise, init_state, out_path):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    r, w, device = common.init_distributed('cpu')
    net = common.build_net('tiny', 32, 3, 0, 0.0)
    net.load_state_dict(init_state)
    model = common.ddp_wrap(net, device, w)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    n = x.shape[0] // w
    sl = slice(r * n, (r + 1) * n)
    loss = ((model(x[sl] + noise[sl], sigma[sl]) - x[sl]) ** 2).flatten(1).sum(1).mean()
    loss.backward()
    opt.step()
    if r == 0:
        torch.save(net.state_dict(), out_path)
    torch.distributed.destroy_process_group()


def test_ddp_two_cpu_processes_agree_with_one(tmp_path):
    """Two gloo processes on half batches each take the same step as one process on the whole batch."""
    import socket
    import torch.multiprocessing as mp
    torch.manual_seed(0)
    net = common.build_net('tiny', 32, 3, 0, 0.0)
    for p in net.parameters():
        p.data += 0.02 * torch.randn_like(p)
    init = {k: v.clone() for k, v in net.state_dict().items()}
    x, noise, sigma = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32), torch.tensor([0.1, 0.5, 2.0, 10.0])
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    out = str(tmp_path / 'ddp.pt')
    mp.spawn(_ddp_worker, args=(2, port, x, sigma, noise, init, out), nprocs=2, join=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = ((net(x + noise, sigma) - x) ** 2).flatten(1).sum(1).mean()
    loss.backward()
    opt.step()
    ddp_state = torch.load(out)
    # Compare the updates: float32 reductions in another order differ by ~1e-6 of the update's size; a wrong
    # reduction over ranks (sum instead of mean, or no all-reduce) would differ by O(1) of it.
    for k, v in net.state_dict().items():
        step = (v - init[k]).abs().max()
        if step > 0:
            assert (ddp_state[k] - v).abs().max() <= 1e-4 * step, k


def test_augment_dim_net_without_augment_labels_is_unchanged_and_every_parameter_gets_a_gradient():
    """No augment labels = zero labels: the output is the network without map_augment, and map_augment's weight
    still gets a (zero) gradient, so DDP (find_unused_parameters=False) can reduce every parameter each step."""
    torch.manual_seed(0)
    net = common.EDMPrecond(img_resolution=16, model_channels=16, channel_mult=[1, 2], num_blocks=1,
                            attn_resolutions=[8], dropout=0.0, augment_dim=9)
    x, sigma = torch.randn(2, 3, 16, 16), torch.tensor([0.3, 4.0])
    out = net(x, sigma)
    with torch.no_grad():
        out_zero = net(x, sigma, augment_labels=torch.zeros(2, 9))
        net.model.map_augment.weight.normal_()  # a net whose map_augment matters, yet zero labels ignore it
        torch.testing.assert_close(net(x, sigma), out_zero, atol=0, rtol=0)
    out.square().sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert net.model.map_augment.weight.grad.abs().max() == 0


def test_attention_is_float32_under_bf16_autocast():
    """QKᵀ, the softmax and the weighted sum run in float32 under autocast too (as EDM's attention op): the result
    equals the float32 computation on the same (bf16) inputs, rounded once to bf16 at the end."""
    torch.manual_seed(0)
    q, k, v = (t.bfloat16() for t in torch.randn(3, 2, 16, 64).unbind(0))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = common.attention(q, k, v)
    reference = common.attention(q.float(), k.float(), v.float())
    assert out.dtype == torch.bfloat16 and torch.equal(out, reference.bfloat16())
    # and the block uses it: a UNetBlock with attention under autocast stays close to float32 throughout
    block = common.UNetBlock(32, 32, 64, attention=True).eval()
    for p in block.parameters():
        p.data.normal_(0, 0.2)
    x, emb = torch.randn(2, 32, 8, 8), torch.randn(2, 64)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = block(x, emb)
    torch.testing.assert_close(y.float(), block(x, emb), atol=0.05, rtol=0.05)


# ---------------------------------------------------------------- EDM's augmentation

def blob_images(n=4, size=32):
    """Smooth images (a Gaussian blob off-centre per channel) on which resampling is nearly exact."""
    i = torch.arange(size, dtype=torch.float32)
    y, x = i[:, None], i[None, :]
    chans = [torch.exp(-((x - 11 - 3 * c) ** 2 + (y - 9 - 2 * c) ** 2) / 40) for c in range(3)]
    return torch.stack(chans)[None].repeat(n, 1, 1, 1) * 2 - 1


def test_augment_p0_is_the_identity_with_zero_labels():
    x = torch.randn(5, 3, 32, 32)
    y, labels = common.AugmentPipe(0.0)(x)
    assert torch.equal(y, x) and labels.shape == (5, 9) and not labels.any()


def test_augment_label_layout_matches_edm():
    """[xflip, yflip, scale, cos θ − 1, sin θ, a·cos r, a·sin r, tx, ty]: every image decides x-flip (½), the rest
    happen with probability p each; θ's pair lies on the unit circle; an x-flip label 1 means a flipped image."""
    torch.manual_seed(0)
    n = 4000
    _, labels = common.AugmentPipe(0.3)(torch.zeros(n, 1, 8, 8))
    assert set(labels[:, 0].unique().tolist()) == {0.0, 1.0} and abs(labels[:, 0].mean() - 0.5) < 0.03
    assert abs((labels[:, 1] != 0).float().mean() - 0.15) < 0.02  # p · ½
    for col in (2, 4, 7):
        assert abs((labels[:, col] != 0).float().mean() - 0.3) < 0.03, col
    torch.testing.assert_close((labels[:, 3] + 1) ** 2 + labels[:, 4] ** 2, torch.ones(n))
    assert ((labels[:, 7] != 0) == (labels[:, 8] != 0)).all()  # x and y shifts together
    assert (labels[:, 5:7].abs().sum(1) > 0).float().mean() < 0.3  # aniso only with probability p
    torch.manual_seed(1)
    x = blob_images(16)
    y, labels = common.AugmentPipe(1e-9)(x)  # only the (certain) x-flip decision is active; the warp is ~identity
    flipped = labels[:, 0] == 1
    assert 0 < flipped.sum() < 16
    torch.testing.assert_close(y[flipped], x[flipped].flip(3), atol=0.02, rtol=0)
    torch.testing.assert_close(y[~flipped], x[~flipped], atol=0.02, rtol=0)


def test_augment_warp_moves_rotates_and_keeps_smooth_images():
    x = blob_images()
    one, zero = torch.ones(4), torch.zeros(4)
    same = common.AugmentPipe.warp(x, common.translation(zero, zero))
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)  # up- and downsampling filters cancel
    turned = common.AugmentPipe.warp(x, common.rotation(math.pi * one))
    # 180° = both flips; symlet-6 is only nearly symmetric, so the turn is exact to 0.035 here (a one-pixel
    # error would be 0.24)
    torch.testing.assert_close(turned, x.flip(2).flip(3), atol=0.05, rtol=0)
    moved = common.AugmentPipe.warp(x, common.translation(-3 * one, -2 * one))  # output(p) = input(p − (3, 2))
    torch.testing.assert_close(moved[:, :, 10:, 10:], x[:, :, 8:-2, 7:-3], atol=0.02, rtol=0)


def test_teacher_trains_with_augmentation(image_folder, tmp_path):
    from conftest import run_script
    out = str(tmp_path / 'aug')
    r = run_script('teacher.py', '--dataset', image_folder, '--preset', 'tiny', '--augment', '0.5', '--batch', '8',
                   '--total-kimg', '0.016', '--tick-kimg', '0.008', '--grid', '4', '--steps', '2', '--device', 'cpu',
                   '--fid-ref', 'none', '--outdir', out)
    assert r.returncode == 0, r.stderr
    ck = common.load_checkpoint(os.path.join(out, 'checkpoint.pt'), 'teacher')
    assert ck['net_config']['augment_dim'] == 9 and ck['config']['xflip'] == 0


def test_precision_turns_tf32_off_on_cuda_and_autocasts_only_there():
    """On CUDA: TF32 off (EDM's and Diff-Instruct's fp32), autocast in the asked dtype, a scaler only for fp16 (its
    CUDA branch only sets flags and objects, so it runs on a CPU machine; the flags are restored after). On CPU:
    fp32, no autocast, a pass-through scaler."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        for name, dtype in (('bf16', torch.bfloat16), ('fp16', torch.float16), ('fp32', None)):
            amp = common.Precision(torch.device('cuda'), name)
            assert amp.dtype == dtype and amp.name == (f'{name} autocast' if dtype else 'fp32')
            assert torch.backends.cuda.matmul.allow_tf32 is False and torch.backends.cudnn.allow_tf32 is False
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark) = saved
    cpu = common.Precision(torch.device('cpu'), 'bf16')
    assert cpu.dtype is None and cpu.name == 'fp32' and not cpu.scaler.is_enabled()
    with cpu.autocast():
        assert not torch.is_autocast_enabled('cpu')
    with pytest.raises(ValueError, match='--precision must be'):
        common.Precision(torch.device('cpu'), 'fp8')


def test_compile_keeps_eager_random_numbers():
    """--compile 1 must not change the dropout masks or where the RNG stream goes (Inductor's own generator would:
    a resume with the other --compile setting would then not continue the same run). Compiling costs a minute
    here, so this checks the switch; results/NOTES.md has its measured effect. Torch's own patch()
    restores the setting (pytest 9.2's monkeypatch would delete it: torch's config keys live outside __dict__)."""
    with torch._inductor.config.patch(fallback_random=False):
        net = common.build_net('tiny', 32, 3, 0, 0.13)
        assert common.maybe_compile(net, False) is net and not torch._inductor.config.fallback_random
        compiled = common.maybe_compile(net, True)  # lazy: nothing is compiled before the first call
        assert compiled is not net and compiled._orig_mod is net
        assert torch._inductor.config.fallback_random is True


def test_group_norm_runs_in_the_autocast_dtype():
    """CUDA's autocast runs group_norm in float32 and keeps float32 copies for the backward: the bf16 edm net then
    keeps 114.5 MiB per image against 65.7 with the norm in bf16 (results/NOTES.md, GroupNorm), which was
    the H200's 54 GB at batch 512. GroupNorm pins the autocast dtype whatever its input's (a float32 input stands
    in here for CUDA's upcast: CPU's autocast leaves it float32), with float32 statistics inside the kernel."""
    norm = common.GroupNorm(64)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5), norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 64, 8, 8) * 3 + 1
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = norm(x)
    assert y.dtype == torch.bfloat16
    expected = F.group_norm(x.bfloat16().float(), norm.num_groups, norm.weight.bfloat16().float(),
                            norm.bias.bfloat16().float(), norm.eps)
    torch.testing.assert_close(y.float(), expected, atol=0.02, rtol=0.01)  # bf16 keeps 8 bits of mantissa
    # outside autocast: float32, exactly F.group_norm
    assert torch.equal(norm(x), F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps))


# ---------------------------------------------------------------- EDM's ImageNet-64 network (ADM) and its data

def test_adm_preset_has_the_official_imagenet64_keys_and_shapes():
    keys = json.load(open(shared_file('spec', 'edm_adm_imagenet64_keys.json')))['adm_imagenet64_cond']
    net = common.build_net('adm', 64, 3, 1000, 0.10)
    state = net.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == keys and len(keys) == 553
    assert sum(v.numel() for v in state.values()) == 295899315  # the key file's count of values


def test_edm_dataset_zips_read_their_labels_from_dataset_json():
    """EDM's dataset_tool.py writes 00000/img00000000.png ... in chunks of 1000 with the labels in dataset.json:
    the chunk folders are not classes."""
    for name, res in (('edm-dataset-cifar10-32x32.zip', 32), ('edm-dataset-64x64.zip', 64)):
        path = shared_file('data', name)
        data = common.load_dataset(path)
        table = dict(json.loads(zipfile.ZipFile(path).read('dataset.json'))['labels'])
        assert data.images.shape == (200, 3, res, res) and data.num_classes == 10
        assert data.labels.tolist() == [table[f'00000/img{i:08d}.png'] for i in range(200)]
        assert torch.bincount(data.labels).tolist() == [20] * 10


def test_dataset_json_without_labels_or_with_a_missing_one(tmp_path):
    root = write_image_folder(str(tmp_path / 'd'), n_per_class=2)
    json.dump({'labels': None}, open(os.path.join(root, 'dataset.json'), 'w'))
    data = common.load_image_folder(root)
    assert data.labels is None and data.num_classes == 0  # EDM's unlabelled datasets
    json.dump({'labels': [['cat/0000.png', 3]]}, open(os.path.join(root, 'dataset.json'), 'w'))
    with pytest.raises(ValueError, match='dataset.json has no label for cat/0001.png'):
        common.load_image_folder(root)


def test_stochastic_sampler_reaches_the_gaussian_data_distribution():
    """EDM's Algorithm 2 with its ImageNet-64 churn, on Gaussian data with the exact denoiser: 256 steps land on
    N(μ, s²) (n = 20000: a standard error of 0.0025 on the std); with the churn band outside the schedule it is
    Heun's sampler exactly."""
    mu, s = 0.3, 0.5
    D, _ = gaussian_denoiser(mu, s)
    z = torch.randn(20000, 1, 1, 1, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    x = common.edm_sampler(D, z, num_steps=256, **common.STOCHASTIC)
    assert abs(x.mean().item() - mu) < 0.01 and abs(x.std().item() - s) < 0.01
    heun = common.edm_sampler(D, z[:100], num_steps=18)
    outside = common.edm_sampler(D, z[:100], num_steps=18, S_churn=40, S_min=100, S_max=200)
    assert torch.equal(outside, heun)
    churned = common.edm_sampler(D, z[:100], num_steps=18, **common.STOCHASTIC)
    assert not torch.allclose(churned, heun)


def test_stochastic_samples_depend_only_on_their_seed():
    torch.manual_seed(0)
    net = common.build_net('adm-tiny', 32, 3, 10, 0.0).eval()
    sample = common.diffusion_sampler(net, torch.device('cpu'), steps=4, stochastic=True)
    alone, together = sample([5]), sample([3, 5])
    assert torch.equal(alone[0], together[1]) and not torch.equal(together[0], together[1])


def test_grid_labels_give_one_class_per_row():
    labels = common.grid_labels(16, 10, 'cpu').argmax(1).reshape(4, 4)
    assert labels.tolist() == [[0] * 4, [1] * 4, [2] * 4, [3] * 4] and common.grid_labels(16, 0, 'cpu') is None
