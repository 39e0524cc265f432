"""fid.py: the real Inception weights against golden features; the architecture, pooling and TF resize by
hand; streamed statistics; the Fréchet distance against closed forms; the CLI end to end; clear errors."""
import os

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn
from PIL import Image

import common
import fid
from conftest import refused, run_script, shared_file, write_image_folder


# ---------------------------------------------------------------- the real network

def golden_inputs():
    i = torch.arange(299, dtype=torch.float32)
    r, k = i[:, None], i[None, :]
    x0 = torch.stack([torch.sin(0.05 * r + 0.11 * k + c) for c in range(3)])
    x1 = torch.stack([torch.cos(0.031 * r * (c + 1)) * torch.sin(0.017 * k) for c in range(3)])
    return torch.stack([x0, x1])


def test_real_weights_reproduce_golden_features():
    net = fid.load_inception(shared_file('fid', 'inception-2015-12-05.pt'))
    assert isinstance(net, fid.InceptionV3FID)
    with torch.no_grad():
        f = net(golden_inputs())
    golden = [([0.011310, 0.287435, 0.0, 0.231381, 0.313526], 631.571167, 25.827152, 4.039130, 793),
              ([0.369719, 0.005412, 0.001041, 0.0, 0.257429], 612.173950, 22.331863, 2.845486, 860)]
    # ... and NVIDIA's TorchScript module itself, run on the same inputs, agrees with our re-implementation.
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        scripted = torch.jit.load(shared_file('fid', 'inception-2015-12-05.pt'), map_location='cpu')
    with torch.no_grad():
        torch.testing.assert_close(scripted(golden_inputs()).reshape(2, -1), f, atol=1e-5, rtol=0)
    for feats, (first, total, norm, peak, argmax) in zip(f, golden):
        np.testing.assert_allclose(feats[:5].numpy(), first, atol=1e-4)
        assert feats.sum().item() == pytest.approx(total, abs=5e-3)
        assert feats.norm().item() == pytest.approx(norm, abs=1e-4)
        assert feats.max().item() == pytest.approx(peak, abs=1e-4) and feats.argmax().item() == argmax


# ---------------------------------------------------------------- architecture without weights

def test_architecture_has_pytorch_fid_keys_and_tap_shapes():
    net = fid.InceptionV3FID().eval()
    keys = [k for k in net.state_dict() if not k.endswith('num_batches_tracked')]
    assert len(keys) == 472  # pytorch-fid's pt_inception file: 472 tensors including the 1008-way fc
    assert 'Mixed_7c.branch3x3dbl_3b.bn.running_var' in keys and 'fc.weight' in keys
    shapes = {}
    for name in ['Conv2d_4a_3x3', 'Mixed_5d', 'Mixed_6e', 'Mixed_7c']:
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 299, 299))
    assert out.shape == (1, 2048)
    assert shapes == {'Conv2d_4a_3x3': (1, 192, 71, 71), 'Mixed_5d': (1, 288, 35, 35),
                      'Mixed_6e': (1, 768, 17, 17), 'Mixed_7c': (1, 2048, 8, 8)}


def test_folded_batchnorm_gives_the_same_features_as_conv_then_norm():
    """load_inception folds each batch norm into its conv (fid.BasicConv2d.fold_batchnorm): same features."""
    torch.manual_seed(0)
    net = fid.InceptionV3FID().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, so a wrong fold cannot pass
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    x = torch.rand(2, 3, 299, 299) * 2 - 1
    with torch.no_grad():
        ref = net(x)
        for m in net.modules():
            if isinstance(m, fid.BasicConv2d):
                m.fold_batchnorm()
        folded = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(folded, ref, atol=1e-5, rtol=1e-5)
    assert 'Conv2d_1a_3x3.folded_weight' not in net.state_dict()  # weights files load and save as before


def identity_bn(unit):
    unit.bn.running_mean.zero_()
    unit.bn.running_var.fill_(1 - unit.bn.eps)  # so that x / sqrt(var + eps) = x
    unit.bn.weight.data.fill_(1)
    unit.bn.bias.data.zero_()


@pytest.mark.parametrize('block,pool', [('A', 'avg'), ('C', 'avg'), ('E1', 'avg'), ('E2', 'max')])
def test_pool_branch_semantics_with_hand_set_weights(block, pool):
    """branch_pool = relu(conv1x1(pool(x))): with a conv selecting channel 0 and an identity BN, the branch's
    first channel is pool(x)[0]; the FID graph's average pool ignores padding and Mixed_7c uses max."""
    cin = 8
    mod = {'A': lambda: fid.InceptionA(cin, 4), 'C': lambda: fid.InceptionC(cin, 4),
           'E1': lambda: fid.InceptionE(cin, 'avg'), 'E2': lambda: fid.InceptionE(cin, 'max')}[block]().eval()
    unit = mod.branch_pool
    unit.conv.weight.data.zero_()
    unit.conv.weight.data[0, 0] = 1
    identity_bn(unit)
    x = torch.arange(1, 1 + cin * 16, dtype=torch.float32).reshape(1, cin, 4, 4)
    with torch.no_grad():
        out = mod(x)
    got = out[0, out.shape[1] - unit.conv.out_channels]  # the first channel of the last branch
    x0 = x[0, 0]
    if pool == 'avg':  # corner: mean of the 2x2 inside the image (padding not counted)
        assert got[0, 0].item() == pytest.approx(x0[:2, :2].mean().item())
        assert got[1, 1].item() == pytest.approx(x0[:3, :3].mean().item())
    else:
        assert got[0, 0].item() == pytest.approx(x0[:2, :2].max().item())
        assert got[3, 3].item() == pytest.approx(x0.max().item())


# ---------------------------------------------------------------- preprocessing

def test_tf_resize_matches_hand_computed_values():
    # 2 -> 4: sources 0, 0.5, 1, 1.5 (the last clamps to the edge): [a, (a+b)/2, b, b]
    np.testing.assert_allclose(fid.tf_resize_matrix(2, 4).numpy(), [[1, 0], [.5, .5], [0, 1], [0, 1]])
    # 3 -> 2: sources 0, 1.5
    np.testing.assert_allclose(fid.tf_resize_matrix(3, 2).numpy(), [[1, 0, 0], [0, .5, .5]])
    img = torch.tensor([[[[0, 100], [200, 255]]]], dtype=torch.uint8).repeat(1, 3, 1, 1)
    x = fid.preprocess(img, size=4)
    expected_row0 = (torch.tensor([0, 50, 100, 100.]) - 128) / 128
    expected_row1 = (torch.tensor([100, 138.75, 177.5, 177.5]) - 128) / 128
    torch.testing.assert_close(x[0, 0, 0], expected_row0)
    torch.testing.assert_close(x[0, 1, 1], expected_row1)
    torch.testing.assert_close(x[0, 2, 3], (torch.tensor([200, 227.5, 255, 255.]) - 128) / 128)


def test_preprocess_makes_rgb_299_and_rejects_floats():
    img = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert fid.preprocess(img).shape == (2, 3, 299, 299)
    assert fid.preprocess(img[:, :1]).shape[1] == 3
    with pytest.raises(TypeError, match='uint8'):
        fid.preprocess(img.float())


# ---------------------------------------------------------------- statistics and the distance

def test_streamed_statistics_equal_numpy_cov():
    feats = np.random.default_rng(0).normal(size=(103, 7)) * 3 + 1
    stats = fid.FeatureStats(7)
    for i in range(0, 103, 10):
        stats.update(feats[i:i + 10])
    mu, sigma = stats.mean_cov()
    np.testing.assert_allclose(mu, feats.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(feats, rowvar=False), rtol=1e-10, atol=1e-12)
    one = fid.FeatureStats(7)
    one.update(feats[:1])
    with pytest.raises(ValueError, match='at least 2'):
        one.mean_cov()


def test_statistics_stay_on_the_device_until_the_end(tiny_detector):
    """No host read (.cpu(), .numpy(), .item(), …) per batch: on a GPU each one waits for the queued batches and
    leaves the GPU idle while the host works. Counted with a TorchFunctionMode, which sees every tensor method."""
    from torch.overrides import TorchFunctionMode
    host_reads = {'cpu', 'numpy', 'item', 'tolist', '__array__', '__bool__', '__float__', '__int__', '__index__'}

    class Reads(TorchFunctionMode):
        seen = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, '__name__', '') in host_reads:
                self.seen.append(func.__name__)
            return func(*args, **(kwargs or {}))
    detector = fid.get_detector(tiny_detector, torch.device('cpu'))
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)
    with Reads():
        stats = fid.stats_from_batches(fid.image_batches(images, 5), detector, 'cpu')
    assert Reads.seen == [] and stats.n == 12 and stats.sum.dtype == torch.float64
    # and the statistics are the float64 mean and covariance of the features
    f = fid.features(detector, images).double().numpy()
    mu, sigma = stats.mean_cov()
    np.testing.assert_allclose(mu, f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(f, rowvar=False), rtol=1e-10, atol=1e-12)


def random_cov(d, seed, rank=None):
    a = np.random.default_rng(seed).normal(size=(d, rank or d))
    return a @ a.T / d


def test_frechet_identical_is_zero_and_equal_covariances_give_mean_distance():
    s = random_cov(20, 0)
    mu = np.arange(20.0)
    assert fid.frechet_distance(mu, s, mu, s) == pytest.approx(0, abs=1e-8)
    shift = np.linspace(-1, 1, 20)
    assert fid.frechet_distance(mu, s, mu + shift, s) == pytest.approx(shift @ shift, abs=1e-8)


def test_frechet_diagonal_and_one_dimensional_closed_forms():
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.zeros(3), np.array([1.0, 0, 2])
    expected = 5.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # 1-D: (μ1 − μ2)² + (s1 − s2)²
    assert fid.frechet_distance(np.array([0.5]), np.array([[4.0]]), np.array([-1.0]), np.array([[0.25]])) \
        == pytest.approx(1.5 ** 2 + 1.5 ** 2)


def test_frechet_is_symmetric_and_matches_sqrtm():
    s1, s2 = random_cov(64, 1), random_cov(64, 2)
    mu1, mu2 = np.random.default_rng(3).normal(size=(2, 64))
    d12, d21 = fid.frechet_distance(mu1, s1, mu2, s2), fid.frechet_distance(mu2, s2, mu1, s1)
    assert d12 == pytest.approx(d21, rel=1e-9)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    reference = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1 + s2 - 2 * covmean)
    assert d12 == pytest.approx(reference, rel=1e-8)


def test_frechet_rank_deficient_covariances():
    assert fid.frechet_distance(np.zeros(2), np.diag([4.0, 0]), np.zeros(2), np.diag([1.0, 0])) \
        == pytest.approx(1.0, abs=1e-9)
    s1, s2 = random_cov(30, 4, rank=5), random_cov(30, 5, rank=3)  # far fewer samples than dimensions
    mu = np.zeros(30)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    assert fid.frechet_distance(mu, s1, mu, s2) == pytest.approx(np.trace(s1 + s2 - 2 * covmean), rel=1e-6, abs=1e-6)


def test_frechet_rejects_invalid_covariances():
    bad = np.array([[0.0, 1.0], [-1.0, 0.0]])  # eigenvalues of the product are ±i
    with pytest.raises(ValueError, match='imaginary'):
        fid.frechet_distance(np.zeros(2), bad, np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match='different shapes'):
        fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_metric_names_carry_the_sample_count():
    assert fid.metric_name(50000) == 'fid50k' and fid.metric_name(10000) == 'fid10k'
    assert fid.metric_name(2500) == 'fid2500'


# ---------------------------------------------------------------- CLI and errors

def test_cli_ref_and_calc_end_to_end(tmp_path, tiny_detector):
    a = write_image_folder(str(tmp_path / 'a'), n_per_class=8, seed=0)
    b = write_image_folder(str(tmp_path / 'b'), n_per_class=8, seed=1, classes=('x', 'y', 'z'))
    ref = str(tmp_path / 'a.npz')
    r = run_script('fid.py', 'ref', '--dataset', a, '--out', ref, '--inception', tiny_detector, '--batch', '5')
    assert r.returncode == 0, r.stderr
    with np.load(ref) as d:
        assert d['mu'].shape == (6,) and d['sigma'].shape == (6, 6) and str(d['mode']) == 'tf' and int(d['count']) == 16
    r = run_script('fid.py', 'calc', '--images', a, '--ref', ref, '--inception', tiny_detector)
    assert r.returncode == 0 and r.stdout.split()[0] == 'fid16'
    assert float(r.stdout.split()[1]) == pytest.approx(0, abs=1e-6)
    r = run_script('fid.py', 'calc', '--images', b, '--ref', ref, '--inception', tiny_detector)
    assert r.returncode == 0 and r.stdout.split()[0] == 'fid24' and float(r.stdout.split()[1]) > 0
    assert 'img/s' in r.stderr



def test_cli_precision_and_recall_against_a_reference_with_features(tmp_path, tiny_detector, capsys):
    a = write_image_folder(str(tmp_path / 'a'), n_per_class=8, seed=0)
    ref, plain = str(tmp_path / 'a.npz'), str(tmp_path / 'plain.npz')
    fid.main(['ref', '--dataset', a, '--out', ref, '--inception', tiny_detector, '--features', '1'])
    fid.main(['ref', '--dataset', a, '--out', plain, '--inception', tiny_detector])
    with np.load(ref) as d, np.load(plain) as e:
        assert d['features'].shape == (16, 6) and 'features' not in e
        np.testing.assert_array_equal(d['mu'], e['mu'])
    capsys.readouterr()
    fid.main(['calc', '--images', a, '--ref', ref, '--inception', tiny_detector, '--pr', '1'])
    assert capsys.readouterr().out.splitlines()[-1] == 'precision 1.0000  recall 1.0000'  # the same images
    code, err = refused(fid.main, ['calc', '--images', a, '--ref', plain, '--inception', tiny_detector, '--pr', '1'],
                        capsys)
    assert code == 2 and 'no features' in err and '--features 1' in err


def test_cli_calc_from_teacher_checkpoint(tmp_path, tiny_detector, image_folder, monkeypatch):
    out = str(tmp_path / 'teacher')
    assert run_script('teacher.py', '--dataset', image_folder, '--preset', 'tiny', '--batch', '4', '--total-kimg',
                      '0.004', '--tick-kimg', '0.004', '--grid', '4', '--steps', '2', '--device', 'cpu', '--fid-ref', 'none',
                      '--outdir', out).returncode == 0
    ref = str(tmp_path / 'ref.npz')
    assert run_script('fid.py', 'ref', '--dataset', image_folder, '--out', ref,
                      '--inception', tiny_detector).returncode == 0
    r = run_script('fid.py', 'calc', '--ckpt', os.path.join(out, 'checkpoint.pt'), '--num', '6', '--steps', '2',
                   '--ref', ref, '--inception', tiny_detector, '--batch', '4')
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('fid6 ')
    # --sample-precision bf16 really runs the network in bf16 (the images change), and only by rounding
    ckpt = os.path.join(out, 'checkpoint.pt')
    seeds = list(range(6))
    full = fid.checkpoint_sampler(ckpt, torch.device('cpu'), steps=2)(seeds).int()
    half = fid.checkpoint_sampler(ckpt, torch.device('cpu'), steps=2, precision='bf16')(seeds).int()
    diff = (full - half).abs().float()
    assert diff.max() > 0 and diff.mean() < 3
    # --compile hands the generating network to torch.compile (stood in for here: compiling costs ~45 s on this
    # CPU; results/NOTES.md has the real check, images equal to the eager ones) and samples through it
    compiled = []
    def fake_compile(net, enabled):
        compiled.append(enabled)
        return net
    monkeypatch.setattr(common, 'maybe_compile', fake_compile)
    assert torch.equal(fid.checkpoint_sampler(ckpt, torch.device('cpu'), steps=2, compile=True)(seeds).int(), full)
    assert compiled == [True]


class Sampled(Exception):
    pass


@pytest.mark.parametrize('cmd', [['sample', '--out', 'x.zip'], ['calc', '--ref', 'ref.npz']])
def test_steps_default_to_edms_for_each_sampler(cmd, monkeypatch, capsys):
    """18 Heun steps (EDM, CIFAR-10), 256 stochastic ones (EDM, ImageNet-64), unless --steps is given: the steps
    reaching the sampler, with calc's Inception and reference stood in for."""
    seen = []

    def sampler(path, device, steps, *args):
        seen.append(steps)
        raise Sampled
    monkeypatch.setattr(fid, 'checkpoint_sampler', sampler)
    monkeypatch.setattr(common, 'preflight', lambda checks: None)
    monkeypatch.setattr(fid, 'get_detector', lambda *args: None)
    stochastic = ['--sampler', 'stochastic']
    for flags in ([], stochastic, [*stochastic, '--steps', '40'], ['--sampler', 'heun']):
        with pytest.raises(Sampled):
            fid.main([*cmd, '--ckpt', 'teacher.pt', *flags])
    assert seen == [18, 256, 40, 18]
    code, err = refused(fid.main, [*cmd, '--ckpt', 'teacher.pt', *stochastic, '--steps', '1'], capsys)
    assert code == 2 and '--steps at least 2' in err


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    path = str(tmp_path / 'wrong.pth')
    torch.save({'conv.weight': torch.zeros(3)}, path)
    with pytest.raises(ValueError, match='not an Inception-v3 FID weights file'):
        fid.load_inception(path)
    (tmp_path / 'garbage.pth').write_bytes(b'12345')
    with pytest.raises(ValueError, match='neither'):
        fid.load_inception(str(tmp_path / 'garbage.pth'))
    with pytest.raises(FileNotFoundError):
        fid.load_inception(str(tmp_path / 'missing.pth'))


def test_statistics_of_another_pipeline_are_refused(tmp_path, capsys):
    """fid.py computes the TF / EDM pipeline only: a file whose mode names another is refused in one line, and the
    flag that made such files is gone; EDM / pytorch-fid reference files (mu, sigma only) are TF statistics."""
    path = str(tmp_path / 'ref.npz')
    np.savez(path, mu=np.zeros(3), sigma=np.eye(3), mode=np.array('pytorch-fid'), count=np.array(10))
    stats = fid.FeatureStats(3)
    stats.update(np.random.default_rng(0).normal(size=(5, 3)))
    for load in (fid.load_stats, fid.load_ref, lambda p: fid.fid_from_stats(stats, p)):
        with pytest.raises(ValueError, match=r"another FID pipeline \(mode 'pytorch-fid'\).*fid\.py ref"):
            load(path)
    code, err = refused(fid.main, ['ref', '--dataset', 'cifar10', '--out', path, '--mode', 'tf'], capsys)
    assert code == 2 and 'unrecognized arguments: --mode' in err
    np.savez(str(tmp_path / 'edm.npz'), mu=np.zeros(3), sigma=np.eye(3))
    assert fid.load_stats(str(tmp_path / 'edm.npz'))[2] == -1
    assert fid.fid_from_stats(stats, str(tmp_path / 'edm.npz')) > 0


def test_too_few_images_is_a_clear_error(tmp_path, tiny_detector):
    one = write_image_folder(str(tmp_path / 'one'), n_per_class=1, classes=('a',))
    r = run_script('fid.py', 'ref', '--dataset', one, '--out', str(tmp_path / 'x.npz'), '--inception', tiny_detector)
    assert r.returncode == 2 and 'at least 2 images' in r.stderr


def test_features_are_exact_float32_in_the_loop_and_in_the_cli(tmp_path, tiny_detector):
    """Trainers allow TF32 for training; FID features must not see it. The in-loop path and `fid.py calc` give
    identical statistics for the same images."""
    import torch
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)
    folder = tmp_path / 'imgs'
    folder.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(folder / f'{i:03d}.png')
    seen = []
    detector = fid.get_detector(tiny_detector, torch.device('cpu'))

    def spy(x):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, x.dtype))
        return detector(x)
    # Set and restore by hand: these are __setattr__ hooks on torch's modules, which pytest>=9.2's monkeypatch
    # mistakes for plain instance attributes (its undo then fails with AttributeError).
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        fid.features(spy, images[:2])
        assert seen == [(False, False, torch.float32)]
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32  # restored afterwards
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    others = torch.randint(0, 200, (12, 3, 32, 32), dtype=torch.uint8)
    ref_stats = fid.stats_from_batches(fid.image_batches(others, 5), detector, 'cpu')
    ref = str(tmp_path / 'ref.npz')
    fid.save_stats(ref, *ref_stats.mean_cov(), ref_stats.n)
    in_loop = fid.fid_in_loop(lambda seeds: images[seeds], 12, ref, torch.device('cpu'), tiny_detector, batch=5)
    cli_stats = str(tmp_path / 'cli.npz')
    r = run_script('fid.py', 'calc', '--images', str(folder), '--ref', ref, '--inception', tiny_detector,
                   '--batch', '7', '--save-stats', cli_stats, '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ['fid12', f'{in_loop:.4f}'] and in_loop > 0
    loop_stats = fid.stats_from_batches((images[i:i + 5] for i in range(0, 12, 5)), detector, 'cpu')
    mu, sigma, n = fid.load_stats(cli_stats)
    assert n == 12
    np.testing.assert_allclose(mu, loop_stats.mean_cov()[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sigma, loop_stats.mean_cov()[1], rtol=1e-10, atol=1e-12)


def test_cpu_chunking_keeps_every_feature_in_order(tiny_detector, monkeypatch):
    det = fid.load_inception(tiny_detector)
    images = torch.randint(0, 256, (37, 3, 32, 32), dtype=torch.uint8)  # not a multiple of the chunk
    chunked = fid.features(det, images, device='cpu')
    monkeypatch.setattr(fid, 'CPU_CHUNK', 1000)
    whole = fid.features(det, images, device='cpu')
    assert fid.CPU_CHUNK != 16 and chunked.shape == whole.shape == (37, 6)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)


def _fid_worker(rank, world, port, detector_path, images, ref, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    common.init_distributed('cpu')
    value = fid.fid_in_loop(lambda seeds: images[seeds], len(images), ref, torch.device('cpu'), detector_path,
                            rank, world, batch=3)
    torch.save(value, f'{out}.{rank}')
    torch.distributed.destroy_process_group()


def test_in_loop_fid_over_two_processes_equals_one(tmp_path, tiny_detector):
    """Under torchrun each rank measures seeds rank::world and the float64 sums are all-reduced: every rank gets the
    FID of all the images, as one process would (a missing reduction gives each rank its half's FID)."""
    import socket
    import torch.multiprocessing as mp
    images = torch.randint(0, 256, (11, 3, 32, 32), dtype=torch.uint8)
    detector = fid.get_detector(tiny_detector, torch.device('cpu'))
    ref_stats = fid.stats_from_batches(fid.image_batches(torch.randint(0, 200, (9, 3, 32, 32), dtype=torch.uint8), 4),
                                       detector, 'cpu')
    ref = str(tmp_path / 'ref.npz')
    fid.save_stats(ref, *ref_stats.mean_cov(), ref_stats.n)
    one = fid.fid_in_loop(lambda seeds: images[seeds], 11, ref, torch.device('cpu'), tiny_detector, batch=3)
    half = fid.fid_in_loop(lambda seeds: images[seeds], 11, ref, torch.device('cpu'), tiny_detector, 0, 2, batch=3)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    out = str(tmp_path / 'fid')
    mp.spawn(_fid_worker, args=(2, port, tiny_detector, images, ref, out), nprocs=2, join=True)
    values = [torch.load(f'{out}.{r}') for r in range(2)]
    assert abs(half - one) > 1e-3 * one  # the check below can tell a missing reduction
    assert values == pytest.approx([one, one], rel=1e-9)


def test_loading_the_inception_weights_leaves_the_callers_random_numbers_alone():
    """The network is built (randomly initialised, then overwritten) inside the trainers' loop at their first FID
    point: it must not move their RNG stream, or a run with FID in the loop would train differently from one
    without, and a resumed run differently from an uninterrupted one."""
    path = shared_file('fid', 'inception-2015-12-05.pt')
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    fid.load_inception(path)
    assert torch.equal(torch.rand(4), expected)


def test_reference_statistics_of_edms_64x64_dataset(tmp_path, tiny_detector):
    data = shared_file('data', 'edm-dataset-64x64.zip')
    out = str(tmp_path / 'ref64.npz')
    r = run_script('fid.py', 'ref', '--dataset', data, '--out', out, '--inception', tiny_detector, '--per-class', '5')
    assert r.returncode == 0, r.stderr
    assert fid.load_stats(out)[2] == 50  # five of each of the ten classes of dataset.json


def test_precision_recall_known_answers():
    """Kynkäänniemi et al.'s k-NN estimate: the same set is all precision and recall; a collapsed generator (one
    repeated point from the data) keeps precision and loses recall; a set far from the data has neither."""
    torch.manual_seed(0)
    real = torch.randn(1000, 8)
    assert fid.precision_recall(real, real) == (1.0, 1.0)
    p, r = fid.precision_recall(real, torch.randn(1000, 8))  # another draw of the same distribution
    assert p > 0.8 and r > 0.8
    p, r = fid.precision_recall(real, real[:1].repeat(1000, 1))  # collapsed onto one real image
    assert p == 1.0 and r < 0.002  # only the copied image itself
    p, r = fid.precision_recall(real, 0.3 * torch.randn(1000, 8))  # the typical images only: sharp, not diverse
    assert p > 0.95 and r < 0.05
    assert fid.precision_recall(real, torch.randn(1000, 8) + 20) == (0.0, 0.0)


def test_grey_images_enter_inception_as_three_equal_channels():
    """One-channel images (Fashion-MNIST) are repeated to RGB before the resize, as the usual FIDs of grey data
    are: the network sees exactly what it would see for the RGB image with three equal channels."""
    grey = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8)
    x = fid.preprocess(grey)
    assert x.shape == (2, 3, 299, 299)
    torch.testing.assert_close(x, fid.preprocess(grey.repeat(1, 3, 1, 1)), rtol=0, atol=0)
