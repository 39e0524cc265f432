"""edm_import.py: a pickle written in EDM's persistence format by this test imports to exactly our weights and
outputs; any other global is refused before it runs; bad shapes and missing keys name the key; short names
without network give a clear error."""
import collections
import os
import pickle
import sys
import types

import pytest
import torch

import common
import edm_import
from conftest import run_script

# -------- a writer for EDM's format (torch_utils/persistence.py): fake modules so pickle can name them

persistence = types.ModuleType('torch_utils.persistence')
dnnlib_util = types.ModuleType('dnnlib.util')


def _reconstruct_persistent_obj(meta):
    raise AssertionError('only the writer side exists in tests')


class EasyDict(dict):
    pass


_reconstruct_persistent_obj.__module__ = 'torch_utils.persistence'
EasyDict.__module__, EasyDict.__qualname__ = 'dnnlib.util', 'EasyDict'
persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
dnnlib_util.EasyDict = EasyDict


@pytest.fixture(autouse=True)
def fake_edm_modules(monkeypatch):
    for name, mod in [('torch_utils', types.ModuleType('torch_utils')), ('torch_utils.persistence', persistence),
                      ('dnnlib', types.ModuleType('dnnlib')), ('dnnlib.util', dnnlib_util)]:
        monkeypatch.setitem(sys.modules, name, mod)


SOURCE = 'raise RuntimeError("the embedded module source was executed")\n'


class Persistent:
    """Pickles as EDM's persistent objects do: _reconstruct_persistent_obj(meta) with the module source."""

    def __init__(self, class_name, state):
        self.class_name, self.state = class_name, state

    def __reduce__(self):
        meta = dict(type='class', version=6, module_src=SOURCE, class_name=self.class_name, state=self.state)
        return (_reconstruct_persistent_obj, (meta,))


def mirror(module):
    """EDM's pickled form of a module tree: persistent objects for layers, torch containers kept as they are."""
    state = dict(module.__dict__)
    children = collections.OrderedDict((n, mirror(c)) for n, c in module._modules.items())
    if isinstance(module, torch.nn.ModuleDict):
        container = torch.nn.ModuleDict()
        container.__dict__['_modules'] = children
        return container
    state['_modules'] = children
    return Persistent(type(module).__name__, state)


def write_edm_pickle(path, net, init_kwargs, edit=None):
    ema = mirror(net)
    ema.state['_init_args'] = ()
    ema.state['_init_kwargs'] = init_kwargs
    if edit:
        edit(ema)
    data = dict(ema=ema, loss_fn=Persistent('EDMLoss', {'P_mean': -1.2, 'P_std': 1.2, 'sigma_data': 0.5}),
                augment_pipe=None, dataset_kwargs=EasyDict(class_name='training.dataset.ImageFolderDataset',
                                                           path='cifar10-32x32.zip', use_labels=False))
    with open(path, 'wb') as f:
        pickle.dump(data, f)


def tiny_edm_kwargs(label_dim=0):
    return dict(img_resolution=32, img_channels=3, label_dim=label_dim, use_fp16=False, sigma_min=0,
                sigma_max=float('inf'), sigma_data=0.5, model_type='SongUNet', embedding_type='positional',
                encoder_type='standard', decoder_type='standard', channel_mult_noise=1, resample_filter=[1, 1],
                model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[16], dropout=0.13,
                augment_dim=9)


def tiny_reference(label_dim=0):
    torch.manual_seed(0)
    net = common.EDMPrecond(label_dim=label_dim, model_channels=16, channel_mult=[1, 2], num_blocks=1,
                            attn_resolutions=[16], dropout=0.13, augment_dim=9).eval()
    for p in net.parameters():
        p.data += 0.05 * torch.randn_like(p)
    return net


@pytest.mark.parametrize('label_dim', [0, 10])
def test_edm_pickle_imports_to_identical_weights_and_outputs(tmp_path, label_dim):
    net = tiny_reference(label_dim)
    path = str(tmp_path / 'edm.pkl')
    write_edm_pickle(path, net, tiny_edm_kwargs(label_dim))
    imported, info = edm_import.import_edm(path)
    assert imported.config == {'channel_mult_emb': 4, **net.config}
    for name, tensor in net.state_dict().items():
        assert torch.equal(imported.state_dict()[name], tensor), name
    x, sigma = torch.randn(2, 3, 32, 32), torch.tensor([0.4, 3.0])
    labels = torch.eye(10)[:2] if label_dim else None
    with torch.no_grad():
        torch.testing.assert_close(imported.eval()(x, sigma, labels), net(x, sigma, labels), atol=0, rtol=0)
    assert len(info['sha256']) == 64


def test_teacher_import_edm_writes_a_usable_checkpoint(tmp_path):
    net = tiny_reference()
    pkl = str(tmp_path / 'edm.pkl')
    write_edm_pickle(pkl, net, tiny_edm_kwargs())
    out = str(tmp_path / 'imported')
    r = run_script('teacher.py', '--import-edm', pkl, '--outdir', out)
    assert r.returncode == 0, r.stderr
    ck = common.load_checkpoint(os.path.join(out, 'checkpoint.pt'), 'teacher')
    assert ck['config']['imported_from']['sha256'] and torch.equal(ck['ema']['model.map_layer0.weight'],
                                                                    net.state_dict()['model.map_layer0.weight'])
    r = run_script('teacher.py', '--sample', '2', '--ckpt', os.path.join(out, 'checkpoint.pt'), '--steps', '2',
                   '--device', 'cpu', '--outdir', str(tmp_path / 's'))
    assert r.returncode == 0, r.stderr


def test_sample_precision_auto_is_edms_fp16_on_cuda_for_a_use_fp16_pickle(tmp_path):
    """EDM's generate.py runs a network pickled with use_fp16 in fp16 on CUDA (EDMPrecond.forward): the import
    records the flag and fid.py's --sample-precision auto follows it; our own teachers stay fp32."""
    import fid
    import teacher
    pkl = str(tmp_path / 'edm-fp16.pkl')
    write_edm_pickle(pkl, tiny_reference(), tiny_edm_kwargs(), edit=lambda ema: ema.state.update(use_fp16=True))
    ckpt = common.load_checkpoint(edm_import.import_to_checkpoint(pkl, str(tmp_path / 'imported.pt')), 'teacher')
    assert ckpt['config']['imported_from']['use_fp16'] is True
    cuda, cpu = torch.device('cuda'), torch.device('cpu')
    assert fid.resolve_precision('auto', ckpt, cuda) == 'fp16' and fid.resolve_precision('auto', ckpt, cpu) == 'fp32'
    assert fid.resolve_precision('bf16', ckpt, cuda) == 'bf16'  # a precision given stands
    ours = {'kind': 'teacher', 'config': vars(teacher.parse_args([]))}  # what teacher.py writes
    assert fid.resolve_precision('auto', ours, cuda) == 'fp32'


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_pickle_with_other_global_is_refused_before_running(tmp_path):
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'evil.pkl')
    with open(path, 'wb') as f:
        pickle.dump({'ema': Evil(marker)}, f)
    with pytest.raises(pickle.UnpicklingError, match='refusing global (os|posix).system'):
        edm_import.read_edm_pickle(path)
    assert not marker.exists()


def test_evil_global_nested_inside_network_state_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'evil.pkl')
    write_edm_pickle(path, tiny_reference(), tiny_edm_kwargs(), edit=lambda ema: ema.state.update(x=Evil(marker)))
    with pytest.raises(pickle.UnpicklingError, match='refusing global'):
        edm_import.read_edm_pickle(path)
    assert not marker.exists()


def test_shape_mismatch_and_missing_key_name_the_key(tmp_path):
    def wrong_shape(ema):
        conv = ema.state['_modules']['model'].state['_modules']['enc']._modules['32x32_conv']
        conv.state['_parameters']['weight'] = torch.nn.Parameter(torch.zeros(16, 3, 5, 5))

    def missing(ema):
        ema.state['_modules']['model'].state['_modules']['map_layer1'].state['_parameters'].pop('bias')
    for edit, key in [(wrong_shape, 'model.enc.32x32_conv.weight'), (missing, 'model.map_layer1.bias')]:
        path = str(tmp_path / f'{edit.__name__}.pkl')
        write_edm_pickle(path, tiny_reference(), tiny_edm_kwargs(), edit=edit)
        with pytest.raises(ValueError, match=key.replace('.', r'\.')):
            edm_import.import_edm(path)


@pytest.mark.parametrize('key,value', [('model_type', 'UNet2DModel'), ('embedding_type', 'fourier'),
                                       ('label_dropout', 0.1)])
def test_unsupported_architecture_is_refused(tmp_path, key, value):
    path = str(tmp_path / 'other.pkl')
    write_edm_pickle(path, tiny_reference(), {**tiny_edm_kwargs(), key: value})
    with pytest.raises(ValueError, match=f'{key}='):
        edm_import.import_edm(path)


def test_a_block_attribute_that_differs_from_ours_is_refused(tmp_path):
    """EDM stores each block's residual scale, heads and scale-and-shift switch; a pickle whose values differ from
    our network's computes another function, even with every tensor name and shape equal."""
    def skip_scale_one(ema):
        ema.state['_modules']['model'].state['_modules']['enc']._modules['32x32_block0'].state['skip_scale'] = 1.0
    path = str(tmp_path / 'variant.pkl')
    write_edm_pickle(path, tiny_reference(), tiny_edm_kwargs(), edit=skip_scale_one)
    with pytest.raises(ValueError, match=r'model\.enc\.32x32_block0\.skip_scale is 1\.0, ours 0\.707'):
        edm_import.import_edm(path)


def test_short_name_without_network_names_url_and_offline_flag(tmp_path, monkeypatch):
    monkeypatch.setattr(edm_import, 'CACHE_DIR', str(tmp_path))
    with pytest.raises(FileNotFoundError, match='edm-cifar10-32x32-uncond-vp.pkl.*downloads are disabled'):
        edm_import.resolve_source('edm-cifar10-uncond', allow_download=False)

    def offline(url, path):
        raise OSError('network is unreachable')
    monkeypatch.setattr(common, 'download', offline)
    with pytest.raises(FileNotFoundError, match=r'could not download .*nvlabs-fi-cdn.*network is unreachable.*offline: .*--teacher'):
        edm_import.resolve_source('edm-cifar10-cond')
    with pytest.raises(FileNotFoundError, match='known name'):
        edm_import.resolve_source('edm-imagenet')
    with pytest.raises(FileNotFoundError, match=r'nvlabs-fi-cdn\.nvidia\.com/edm/pretrained/edm-imagenet-64x64-cond-adm\.pkl'):
        edm_import.resolve_source('edm-imagenet64-cond')  # the official ImageNet-64 network by its short name


def test_ve_networks_are_refused_by_name_before_any_download(tmp_path, monkeypatch):
    """EDM's VE networks are NCSN++ (Fourier embedding), which the importer refuses: say so before a download."""
    def no_network(*args, **kwargs):
        raise AssertionError('a VE network was fetched before being refused')
    monkeypatch.setattr(common, 'download', no_network)
    monkeypatch.setattr(common, 'fetch', no_network)
    monkeypatch.setattr(edm_import, 'CACHE_DIR', str(tmp_path))
    assert not [name for name in edm_import.SHORT_NAMES if name.endswith('-ve')]
    url = edm_import.EDM_URL + 'edm-cifar10-32x32-cond-ve.pkl'
    for source in ['edm-cifar10-uncond-ve', 'edm-cifar10-cond-ve', url]:  # the short names it used to know, a URL
        for load in (edm_import.resolve_source, edm_import.teacher_checkpoint):  # teacher.py --import-edm, --teacher
            with pytest.raises(ValueError, match=r'NCSN\+\+.*VP network: edm-cifar10-uncond or edm-cifar10-cond'):
                load(source)


def test_teacher_option_imports_a_pkl_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(edm_import, 'CACHE_DIR', str(tmp_path / 'cache'))
    net = tiny_reference()
    pkl = str(tmp_path / 'edm.pkl')
    write_edm_pickle(pkl, net, tiny_edm_kwargs())
    first = edm_import.teacher_checkpoint(pkl)
    assert first.startswith(str(tmp_path / 'cache')) and first.endswith('-imported.pt')
    mtime = os.path.getmtime(first)
    assert edm_import.teacher_checkpoint(pkl) == first and os.path.getmtime(first) == mtime  # reused
    teacher, path = edm_import.load_teacher(pkl, torch.device('cpu'))
    assert path == first and torch.equal(teacher.state_dict()['model.map_layer0.weight'],
                                         net.state_dict()['model.map_layer0.weight'])


# -------- pickles written by EDM's own code (../shared/spec/edm_pickles): the format as it really is

REAL = ['edm-small-uncond-numpy1', 'edm-small-uncond-numpy2', 'edm-small-cond-numpy1', 'edm-small-cond-numpy2']
ADM = ['edm-adm-small-cond-numpy1', 'edm-adm-small-cond-numpy2', 'edm-adm-small-uncond-aug-numpy2']


def real_pickle(name):
    from conftest import shared_file
    path = shared_file('spec', 'edm_pickles', f'{name}.pkl')
    sums = dict(line.split()[::-1] for line in open(shared_file('spec', 'edm_pickles', 'SHA256SUMS')))
    assert common.file_digest(path, 'sha256') == sums[f'{name}.pkl'], 'the golden pickle changed'
    return path, torch.load(shared_file('spec', 'edm_pickles', f'{name}.outputs.pt'), weights_only=True)


@pytest.mark.parametrize('name', REAL)
def test_pickles_written_by_edm_import_and_reproduce_edms_outputs(name):
    path, ref = real_pickle(name)
    net, info = edm_import.import_edm(path, allow_download=False)
    assert net.config['augment_dim'] == 9 and net.label_dim == (10 if '-cond-' in name else 0)
    net.eval()
    with torch.no_grad():
        D = net(ref['x'], ref['sigma'], ref['class_labels'], ref['augment_labels'])
        D_no_augment = net(ref['x'], ref['sigma'], ref['class_labels'])
    torch.testing.assert_close(D, ref['D'], atol=1e-6, rtol=0)
    torch.testing.assert_close(D_no_augment, ref['D_no_augment'], atol=1e-6, rtol=0)
    assert not torch.allclose(D, D_no_augment, atol=1e-4)  # the augment labels really reach the network


@pytest.mark.parametrize('name', ADM)
def test_adm_pickles_written_by_edm_import_and_reproduce_edms_outputs(name):
    """EDM's ImageNet-64 architecture (DhariwalUNet) at a test's size: our ADM computes EDM's D to 1e-5 in float32,
    with and without augment labels, conditional and not."""
    path, ref = real_pickle(name)
    net, _ = edm_import.import_edm(path, allow_download=False)
    assert net.config['arch'] == 'adm' and net.label_dim == (10 if '-cond-' in name else 0)
    assert net.config['augment_dim'] == (9 if 'aug' in name else 0)
    net.eval()
    with torch.no_grad():
        D = net(ref['x'], ref['sigma'], ref['class_labels'], ref['augment_labels'])
        D_no_augment = net(ref['x'], ref['sigma'], ref['class_labels'])
    torch.testing.assert_close(D, ref['D'], atol=1e-5, rtol=0)
    torch.testing.assert_close(D_no_augment, ref['D_no_augment'], atol=1e-5, rtol=0)
    heads = {m.num_heads for m in net.modules() if isinstance(m, common.UNetBlock)}
    assert heads == {0, 2}  # 32 channels: no attention layers; 128 channels: two heads (EDM: one per 64)


def test_real_pickle_through_teacher_option_and_import_edm(tmp_path, monkeypatch):
    path, ref = real_pickle('edm-small-cond-numpy1')
    monkeypatch.setattr(edm_import, 'CACHE_DIR', str(tmp_path / 'cache'))
    teacher, _ = edm_import.load_teacher(path, torch.device('cpu'))
    with torch.no_grad():
        D = teacher(ref['x'], ref['sigma'], ref['class_labels'])
    torch.testing.assert_close(D, ref['D_no_augment'], atol=1e-6, rtol=0)
    r = run_script('teacher.py', '--import-edm', path, '--outdir', str(tmp_path / 'imported'))
    assert r.returncode == 0, r.stderr


def test_import_records_the_pickles_use_fp16(tmp_path):
    """EDM's ImageNet-64 pickle says use_fp16=True (EDM samples it in fp16 on CUDA); the shipped ones say False."""
    path, _ = real_pickle('edm-adm-small-cond-numpy1')
    assert edm_import.import_edm(path, allow_download=False)[1]['use_fp16'] is False
    out = edm_import.import_to_checkpoint(path, str(tmp_path / 'imported.pt'), allow_download=False)
    assert common.load_checkpoint(out, 'teacher')['config']['imported_from']['use_fp16'] is False


def swap_string(data, old, new):
    """Replace one SHORT_BINUNICODE string in a protocol-4 pickle, fixing the length of the frame around it."""
    import pickletools
    enc = lambda s: b'\x8c' + bytes([len(s)]) + s.encode()
    pos = data.index(enc(old))
    frame = max((p, arg) for op, arg, p in pickletools.genops(data) if op.name == 'FRAME' and p < pos)
    delta = len(new) - len(old)
    header = frame[0] + 1
    data = data[:header] + (frame[1] + delta).to_bytes(8, 'little') + data[header + 8:]
    return data[:pos] + enc(new) + data[pos + len(enc(old)):]


@pytest.mark.parametrize('pkl', ['edm-small-uncond-numpy1', 'edm-small-uncond-numpy2', 'edm-adm-small-cond-numpy1',
                                 'edm-adm-small-uncond-aug-numpy2'])
@pytest.mark.parametrize('module,name', [('os', 'system'), ('posix', 'system'), ('builtins', 'eval')])
def test_real_pickle_with_one_global_swapped_is_refused(tmp_path, pkl, module, name):
    path, _ = real_pickle(pkl)
    data = open(path, 'rb').read()
    numpy_core = 'numpy.core.multiarray' if pkl.endswith('numpy1') else 'numpy._core.multiarray'
    evil = swap_string(swap_string(data, numpy_core, module), 'scalar', name)
    (tmp_path / 'evil.pkl').write_bytes(evil)
    with pytest.raises(pickle.UnpicklingError, match=f'refusing global {module}.{name}'):
        edm_import.read_edm_pickle(str(tmp_path / 'evil.pkl'))
    # the edit itself is sound: the unrestricted unpickler would reach the swapped global
    assert f'{module}\n{name}' in '\n'.join(str(a) for _, a, _ in __import__('pickletools').genops(evil) if a)


def test_real_pickle_with_object_dtype_scalar_is_refused(tmp_path):
    path, _ = real_pickle('edm-small-uncond-numpy1')
    evil = swap_string(open(path, 'rb').read(), 'f8', '|O')
    (tmp_path / 'evil.pkl').write_bytes(evil)
    with pytest.raises(pickle.UnpicklingError, match="numpy dtype '\\|O'"):
        edm_import.read_edm_pickle(str(tmp_path / 'evil.pkl'))
