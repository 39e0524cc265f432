"""Import NVIDIA's pretrained EDM networks (DDPM++ and ADM `.pkl`s) into our U-Nets, without running them.

  python teacher.py --import-edm edm-cifar10-uncond --outdir runs/edm-uncond     # fetch + import
  python teacher.py --import-edm edm-imagenet64-cond --outdir runs/edm-imagenet64
  python teacher.py --import-edm path/to/edm-cifar10-32x32-cond-vp.pkl --outdir runs/edm-cond

EDM's pickles are made by `torch_utils/persistence.py` (NVlabs/edm): every network object is pickled as a
call `_reconstruct_persistent_obj(meta)`, where meta holds the *source code of its Python module*, the
class name and the object's __dict__ (parameters, buffers, sub-modules, constructor arguments). Loading it
with `pickle` executes that source. This reader never does: its unpickler resolves only a short allow-list
of globals to inert stand-ins, so the pickle becomes plain data (dicts, tensors, `PersistentObject`s), from
which we take the `ema` network's tensors and constructor arguments. Any other global, e.g. `os.system`,
stops the load before anything is called.
"""
import collections
import io
import os
import pickle
import re
import struct
import sys

import torch

import common

EDM_URL = 'https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/'
SHORT_NAMES = {
    'edm-cifar10-uncond': 'edm-cifar10-32x32-uncond-vp.pkl',
    'edm-cifar10-cond': 'edm-cifar10-32x32-cond-vp.pkl',
    'edm-imagenet64-cond': 'edm-imagenet-64x64-cond-adm.pkl',
}
CACHE_DIR = os.path.join(common.CACHE_ROOT, 'edm')


# ------------------------------------------------------------------------------------------------------
# Inert stand-ins for the few globals an EDM pickle names
# ------------------------------------------------------------------------------------------------------

class PersistentObject:
    """What `_reconstruct_persistent_obj(meta)` becomes: the class name and its state, source never run."""

    def __init__(self, meta):
        self.class_name = meta.get('class_name')
        self.state = dict(meta.get('state') or {})
        self.version = meta.get('version')


class StateHolder:
    """Stand-in for torch.nn containers (ModuleDict, ModuleList, Sequential) and dnnlib.EasyDict."""

    def __setstate__(self, state):
        self.state = state


class EasyDict(dict):
    def __setstate__(self, state):
        self.update(state or {})


STORAGE_DTYPES = {'FloatStorage': torch.float32, 'DoubleStorage': torch.float64, 'HalfStorage': torch.float16,
                  'BFloat16Storage': torch.bfloat16, 'LongStorage': torch.int64, 'IntStorage': torch.int32,
                  'ShortStorage': torch.int16, 'CharStorage': torch.int8, 'ByteStorage': torch.uint8,
                  'BoolStorage': torch.bool, 'UntypedStorage': torch.uint8}


def rebuild_tensor(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return torch.as_strided(storage, size, stride, offset).clone()


def rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    return data


def load_storage_bytes(data):
    """A storage as torch pickles it: torch.save's legacy format (magic, version, sys info, a pickle with a
    persistent id per storage, the storage keys, then each storage's element count and raw bytes). Parsed
    here with the same allow-list instead of calling torch.load, which would unpickle without one."""
    f = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, sys info: plain data
        RestrictedUnpickler(f).load()
    records = {}

    class StorageUnpickler(RestrictedUnpickler):
        def persistent_load(self, pid):
            kind, storage_type, key, location, numel = pid[:5]
            if kind != 'storage' or storage_type not in STORAGE_DTYPES.values():
                raise pickle.UnpicklingError(f'unexpected persistent id {pid!r}')
            records.setdefault(key, storage_type)
            return key, storage_type
    key, dtype = StorageUnpickler(f).load()
    keys = RestrictedUnpickler(f).load()
    tensors = {}
    for k in keys:
        dt = records[k]
        n, = struct.unpack('<q', f.read(8))
        nbytes = n * torch.empty((), dtype=dt).element_size()
        buf = bytearray(f.read(nbytes))
        if len(buf) != nbytes:
            raise pickle.UnpicklingError('storage data is truncated')
        tensors[k] = torch.frombuffer(buf, dtype=dt) if nbytes else torch.empty(0, dtype=dt)
    return tensors[key]


def rebuild_from_type(func, new_type, args, state):
    """torch._tensor._rebuild_from_type_v2: allowed only for plain tensors and parameters."""
    if new_type not in (torch.Tensor, torch.nn.Parameter, 'tensor'):
        raise pickle.UnpicklingError(f'refusing tensor subclass {new_type!r}')
    return func(*args)


class NumpyDtype:
    """Stand-in for numpy.dtype(name, align, copy) as pickled: only plain numeric dtypes ('f8', '<i4', ...).
    EDM's pickles need it for one reason: `UNetBlock.skip_scale = np.sqrt(0.5)` is a numpy float64."""

    def __init__(self, name, align=False, copy=False):
        import numpy as np
        if not isinstance(name, str) or not re.fullmatch(r'[<>|=]?[biufc]\d{1,2}', name):
            raise pickle.UnpicklingError(f'refusing numpy dtype {name!r}: only numeric scalars are expected')
        self.dtype = np.dtype(name)

    def __setstate__(self, state):
        # (version, byte order, subarray, names, fields, elsize, alignment, flags): plain scalars only.
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in '<>|=' or any(
                s is not None for s in state[2:5]):
            raise pickle.UnpicklingError(f'refusing numpy dtype state {state!r}')
        if state[1] in '<>':
            self.dtype = self.dtype.newbyteorder(state[1])


def numpy_scalar(dtype, data):
    """Stand-in for numpy.core.multiarray.scalar(dtype, bytes): a numeric value from its raw bytes.
    (An object-dtype scalar carries a Python object instead of bytes; it never gets here.)"""
    import numpy as np
    if not isinstance(dtype, NumpyDtype) or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise pickle.UnpicklingError('refusing a numpy scalar that is not a plain number')
    return np.frombuffer(data, dtype=dtype.dtype)[0].item()


def reconstructor(cls, base, state=None):
    """copyreg._reconstructor, restricted to our stand-ins."""
    if cls not in (StateHolder, EasyDict) or base not in (object, dict):
        raise pickle.UnpicklingError(f'refusing to reconstruct {cls!r}')
    return cls.__new__(cls)


ALLOWED_GLOBALS = {
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): PersistentObject,
    ('torch._utils', '_rebuild_tensor_v2'): rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): rebuild_parameter,
    ('torch._tensor', '_rebuild_from_type_v2'): rebuild_from_type,
    ('torch', 'Tensor'): torch.Tensor,
    ('torch.nn.parameter', 'Parameter'): torch.nn.Parameter,
    ('torch.storage', '_load_from_bytes'): load_storage_bytes,
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('copyreg', '_reconstructor'): reconstructor,
    ('builtins', 'object'): object,
    ('builtins', 'dict'): dict,
    ('builtins', 'set'): set,
    ('torch.nn.modules.container', 'ModuleDict'): StateHolder,
    ('torch.nn.modules.container', 'ModuleList'): StateHolder,
    ('torch.nn.modules.container', 'Sequential'): StateHolder,
    ('dnnlib.util', 'EasyDict'): EasyDict,
    ('numpy', 'dtype'): NumpyDtype,                              # numpy scalars, e.g. skip_scale = np.sqrt(0.5):
    ('numpy.core.multiarray', 'scalar'): numpy_scalar,          # as pickled by numpy 1.x (the official files)
    ('numpy._core.multiarray', 'scalar'): numpy_scalar,         # and by numpy 2.x
    **{('torch', name): dtype for name, dtype in STORAGE_DTYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f'refusing global {module}.{name}: an EDM network pickle never needs it')

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f'unexpected persistent id {pid!r}')


# ------------------------------------------------------------------------------------------------------
# From the pickle's data to our network
# ------------------------------------------------------------------------------------------------------

def module_state(obj):
    """__dict__ of a pickled module: a PersistentObject's state or a container stand-in's."""
    if isinstance(obj, PersistentObject):
        return obj.state
    if isinstance(obj, StateHolder):
        return obj.state
    raise ValueError(f'unexpected object {type(obj).__name__} in the network tree')


def collect_tensors(obj, prefix=''):
    """state_dict of a pickled module tree: parameters and persistent buffers, recursively."""
    state = module_state(obj)
    out = {}
    skip = set(state.get('_non_persistent_buffers_set') or ())
    for name, p in (state.get('_parameters') or {}).items():
        if p is not None:
            out[prefix + name] = p
    for name, b in (state.get('_buffers') or {}).items():
        if b is not None and name not in skip:
            out[prefix + name] = b
    for name, child in (state.get('_modules') or {}).items():
        if child is not None:
            out.update(collect_tensors(child, f'{prefix}{name}.'))
    return out


def read_edm_pickle(path):
    """(constructor kwargs, state_dict, the pickled module tree) of the `ema` network in an EDM network pickle."""
    with open(path, 'rb') as f:
        try:
            data = RestrictedUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, struct.error) as e:
            hint = '; a partial download? fetch it again' if 'truncated' in str(e) or not isinstance(
                e, pickle.UnpicklingError) else ''
            raise pickle.UnpicklingError(f'{path!r} is not a readable EDM network pickle ({e}){hint}') from None
    if not isinstance(data, dict) or not isinstance(data.get('ema'), PersistentObject):
        raise ValueError(f'{path!r} is not an EDM network pickle (no persistent "ema" network)')
    ema = data['ema']
    if ema.class_name != 'EDMPrecond':
        raise ValueError(f'{path!r}: the ema network is {ema.class_name!r}; only EDMPrecond can be imported (EDM\'s '
                         f'VPPrecond / VEPrecond baselines are other wrappers)')
    kwargs = dict(ema.state.get('_init_kwargs') or {})
    args = ema.state.get('_init_args') or ()
    for name, value in zip(['img_resolution', 'img_channels', 'label_dim'], args):
        kwargs[name] = value
    return kwargs, collect_tensors(ema), ema


# What fixes each layer's function beyond its tensors: EDM stores these attributes in the pickle, ours must agree.
ATTRIBUTES = {'UNetBlock': ('skip_scale', 'num_heads', 'adaptive_scale'), 'GroupNorm': ('eps', 'num_groups')}


def check_attributes(obj, net, prefix=''):
    """Walk the pickled network and ours side by side; refuse any block whose residual scale, attention heads,
    embedding scale-and-shift or normalisation differ (a variant of the architecture we do not implement)."""
    state = module_state(obj)
    if isinstance(obj, PersistentObject) and obj.class_name in ATTRIBUTES:
        ours = net.get_submodule(prefix[:-1])
        for attr in ATTRIBUTES[obj.class_name]:
            theirs, mine = state.get(attr), getattr(ours, attr)
            if theirs is None or abs(float(theirs) - float(mine)) > 1e-9:
                raise ValueError(f'EDM network: {prefix}{attr} is {theirs!r}, ours {mine!r}: an architecture variant '
                                 f'this project does not implement')
    for name, child in (state.get('_modules') or {}).items():
        if child is not None:
            check_attributes(child, net, f'{prefix}{name}.')


def edm_config(kwargs):
    """Our EDMPrecond config from EDM's constructor arguments; refuse what our U-Nets do not implement."""
    arch = {'SongUNet': 'ddpmpp', 'DhariwalUNet': 'adm'}.get(kwargs.get('model_type', 'DhariwalUNet'))
    if arch is None:
        raise ValueError(f'EDM network has model_type={kwargs["model_type"]!r}; only SongUNet (DDPM++) and '
                         f'DhariwalUNet (ADM) are supported')
    expected = {'embedding_type': 'positional', 'encoder_type': 'standard', 'decoder_type': 'standard',
                'channel_mult_noise': 1, 'resample_filter': [1, 1], 'label_dropout': 0}
    for key, want in expected.items():
        got = kwargs.get(key, want)
        if (list(got) if isinstance(got, (list, tuple)) else got) != want:
            raise ValueError(f'EDM network has {key}={got!r}; only {key}={want!r} is supported')
    if kwargs.get('sigma_min', 0) not in (0, None) or kwargs.get('sigma_max', float('inf')) != float('inf'):
        print('edm_import: note: sigma_min/sigma_max clipping of the original wrapper is not reproduced',
              file=sys.stderr)
    defaults = (dict(model_channels=128, channel_mult=[1, 2, 2, 2], num_blocks=4, attn_resolutions=[16]) if arch == 'ddpmpp'
                else dict(model_channels=192, channel_mult=[1, 2, 3, 4], num_blocks=3, attn_resolutions=[32, 16, 8]))
    get = lambda key: kwargs.get(key, defaults.get(key))  # noqa: E731  (EDM's own defaults per architecture)
    return dict(img_resolution=int(kwargs['img_resolution']), img_channels=int(kwargs['img_channels']),
                label_dim=int(kwargs.get('label_dim', 0)), sigma_data=float(kwargs.get('sigma_data', 0.5)), arch=arch,
                model_channels=int(get('model_channels')), channel_mult=[int(m) for m in get('channel_mult')],
                channel_mult_emb=int(kwargs.get('channel_mult_emb', 4)), num_blocks=int(get('num_blocks')),
                attn_resolutions=[int(r) for r in get('attn_resolutions')],
                dropout=float(kwargs.get('dropout', 0.10)), augment_dim=int(kwargs.get('augment_dim', 0)))


def resolve_source(source, allow_download=True):
    """A short name, URL or path -> a local .pkl path (downloads go to a cache, once per machine)."""
    if os.path.isfile(source):
        return source
    if os.path.basename(source).removesuffix('.pkl').endswith('-ve'):  # by name: before a download it would refuse
        raise ValueError(f'{source!r}: EDM\'s VE networks are NCSN++ (Fourier embedding), which this project does not '
                         f'implement; use a VP network: edm-cifar10-uncond or edm-cifar10-cond')
    if source in SHORT_NAMES:
        url = EDM_URL + SHORT_NAMES[source]
    elif source.startswith(('http://', 'https://')):
        url = source
    else:
        raise FileNotFoundError(f'{source!r}: no such file, not a URL and not a known name ({", ".join(SHORT_NAMES)})')
    path = os.path.join(CACHE_DIR, os.path.basename(url))
    return common.fetch(url, path, f'the EDM network {source!r}', f'pass the downloaded .pkl itself (--teacher '
                        f'path/to/{os.path.basename(url)}), or put it at {path}', allow_download)


def import_edm(source, allow_download=True):
    """Read and check an EDM pickle; returns (our EDMPrecond with its weights, provenance dict)."""
    path = resolve_source(source, allow_download)
    kwargs, state, tree = read_edm_pickle(path)
    with torch.random.fork_rng(devices=[]):  # its random init is overwritten: leave the caller's RNG alone
        net = common.EDMPrecond(**edm_config(kwargs))
    common.load_net_state(net, state, path)  # every name and shape must match; nothing may be left over
    check_attributes(tree, net)
    return net, {'source': source, 'path': os.path.abspath(path), 'sha256': common.file_digest(path, 'sha256'),
                 'use_fp16': bool(tree.state.get('use_fp16'))}  # EDM samples it in fp16 on CUDA (fid.resolve_precision)


def import_to_checkpoint(source, out, allow_download=True):
    """Write a normal teacher checkpoint (EMA weights as both net and ema) from an EDM pickle."""
    net, info = import_edm(source, allow_download)
    sd = net.state_dict()
    common.save_checkpoint(out, {'kind': 'teacher', 'config': {'imported_from': info}, 'net_config': net.config,
                                 'net': sd, 'ema': sd, 'cur_nimg': 0})
    print(f'imported {info["source"]} (sha256 {info["sha256"]}) -> {out}  '
          f'[{sum(p.numel() for p in net.parameters()) / 1e6:.2f}M params, label_dim {net.label_dim}]')
    return out


def teacher_checkpoint(spec, allow_download=True):
    """What the one-step trainers accept as --teacher: our checkpoint, an EDM .pkl, a URL or a short name.
    EDM pickles are imported once into the cache (named by their sha256; one process per machine) and reused."""
    if os.path.isfile(spec) and not spec.endswith('.pkl'):
        return spec
    path = resolve_source(spec, allow_download)
    digest = common.file_digest(path, 'sha256')
    out = os.path.join(CACHE_DIR, f'{os.path.splitext(os.path.basename(path))[0]}-{digest[:12]}-imported.pt')
    common.on_local_rank0(lambda: os.path.isfile(out) or import_to_checkpoint(path, out))
    return out


def load_teacher(spec, device, allow_download=True):
    """The teacher's EMA network, frozen, from our checkpoint, an EDM .pkl, a URL or a short name such as
    edm-cifar10-uncond (imported once). Returns (net, checkpoint path)."""
    if not spec:
        raise FileNotFoundError('--teacher is required: a teacher.py checkpoint, an EDM .pkl or a short name '
                                f'({", ".join(SHORT_NAMES)})')
    path = teacher_checkpoint(spec, allow_download)
    ckpt = common.load_checkpoint(path, 'teacher')
    net = common.EDMPrecond(**ckpt['net_config'])
    common.load_net_state(net, ckpt['ema'], path)
    return common.to_device(net, device).eval().requires_grad_(False), path
