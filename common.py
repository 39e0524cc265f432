"""The small shared core of the project; every script imports it.

  1. the networks: EDM's DDPM++ U-Net ("SongUNet", CIFAR-10) and ADM U-Net ("DhariwalUNet", ImageNet-64) and
     EDM's preconditioning, parameter-compatible with the official EDM checkpoints (module names, shapes, function);
  2. EDM's loss and samplers (Heun; stochastic), per-seed latents and the one-step generator G(z);
  3. runtime: devices and DDP, mixed precision, Adam, EMA, torch.compile;
  4. data: CIFAR-10 (official archive, md5-checked), folders and zips of images, Fashion-MNIST, downloads, the
     in-memory batch sampler and EDM's augmentation;
  5. checkpoints, grids, the progress log, the flags, the pre-flight and the entry point every trainer shares;
  6. what the two one-step trainers share.

References: Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models" (EDM), and
its code (NVlabs/edm). Written from the paper and ../shared/spec/edm-songunet.md, not copied.
"""
import argparse
import contextlib
import gc
import gzip
import hashlib
import io
import json
import math
import os
import pickle
import struct
import sys
import tarfile
import time
import urllib.request
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------------------------------------------
# 1. The network
# ------------------------------------------------------------------------------------------------------

def weight_init(shape, fan_in, fan_out, mode='xavier_uniform'):
    """EDM's initialisations: xavier_uniform (DDPM++), kaiming_uniform and kaiming_normal (ADM)."""
    if mode == 'xavier_uniform':
        return math.sqrt(6 / (fan_in + fan_out)) * (torch.rand(*shape) * 2 - 1)
    if mode == 'kaiming_uniform':
        return math.sqrt(3 / fan_in) * (torch.rand(*shape) * 2 - 1)
    return math.sqrt(1 / fan_in) * torch.randn(*shape)  # kaiming_normal


class Linear(nn.Module):
    def __init__(self, in_features, out_features, bias=True, init_weight=1.0, init_bias=0.0, init_mode='xavier_uniform'):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        init = dict(fan_in=in_features, fan_out=out_features, mode=init_mode)
        self.weight = nn.Parameter(weight_init([out_features, in_features], **init) * init_weight)
        self.bias = nn.Parameter(weight_init([out_features], **init) * init_bias if init_bias else
                                 torch.zeros(out_features)) if bias else None

    def forward(self, x):
        x = x @ self.weight.to(x.dtype).t()
        return x + self.bias.to(x.dtype) if self.bias is not None else x


class Conv2d(nn.Module):
    """k x k convolution with optional 2x up/down resampling by the [1,1] filter, applied before the conv.
    kernel=0 means 'resample only'. The filter is a buffer only when resampling (as in EDM's state_dicts)."""

    def __init__(self, in_channels, out_channels, kernel, bias=True, up=False, down=False, init_weight=1.0,
                 init_bias=0.0, init_mode='xavier_uniform'):
        super().__init__()
        assert not (up and down)
        self.in_channels, self.out_channels, self.up, self.down = in_channels, out_channels, up, down
        init = dict(fan_in=in_channels * kernel * kernel, fan_out=out_channels * kernel * kernel, mode=init_mode)
        self.weight = nn.Parameter(weight_init([out_channels, in_channels, kernel, kernel], **init)
                                   * init_weight) if kernel else None
        self.bias = nn.Parameter(weight_init([out_channels], **init) * init_bias if init_bias else
                                 torch.zeros(out_channels)) if kernel and bias else None
        f = torch.tensor([1.0, 1.0])
        self.register_buffer('resample_filter', (f.ger(f) / f.sum().square())[None, None] if up or down else None)

    def forward(self, x):
        # EDM resamples with a depthwise (transposed) conv by this filter; for the [1,1] box filter (the only one
        # DDPM++ and ADM use, checked when weights are loaded) that is exactly nearest-neighbour 2x upsampling and
        # 2x2 average pooling, which need no filter tensor per call
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode='nearest')
        if self.down:
            x = F.avg_pool2d(x, 2)
        if self.weight is not None:
            x = F.conv2d(x, self.weight.to(x.dtype), padding=self.weight.shape[-1] // 2)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        return x


class GroupNorm(nn.Module):
    def __init__(self, num_channels, num_groups=32, min_channels_per_group=4, eps=1e-6):
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x):
        # In the autocast dtype, as EDM's fp16 network normalises in fp16: CUDA's autocast would run it in float32
        # and keep float32 copies of its input and output for the backward (1.7x the activation memory)
        if torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)
            with torch.autocast(x.device.type, enabled=False):
                return F.group_norm(x.to(dtype), self.num_groups, self.weight.to(dtype), self.bias.to(dtype), self.eps)
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


class PositionalEmbedding(nn.Module):
    """Transformer-style sinusoids of c_noise, returned as [cos, sin] (the U-Net swaps the halves)."""

    def __init__(self, num_channels, max_positions=10000, endpoint=True):
        super().__init__()
        self.num_channels, self.max_positions, self.endpoint = num_channels, max_positions, endpoint

    def forward(self, x):
        half = self.num_channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=x.device) / (half - (1 if self.endpoint else 0))
        freqs = (1 / self.max_positions) ** freqs
        x = x.ger(freqs.to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


class UNetBlock(nn.Module):
    """Pre-activation residual block with a σ-embedding shift (ADM: scale and shift), optional resampling and
    multi-head self-attention. The defaults are DDPM++'s; DhariwalUNet passes ADM's."""

    def __init__(self, in_channels, out_channels, emb_channels, up=False, down=False, attention=False, num_heads=1,
                 dropout=0.0, skip_scale=math.sqrt(0.5), eps=1e-6, adaptive_scale=False, resample_proj=True,
                 init=None, init_zero=None, init_attn=None):
        super().__init__()
        init, init_zero = init or {}, init_zero or dict(init_weight=1e-5)
        init_attn = init_attn or dict(init_weight=math.sqrt(0.2))
        self.in_channels, self.out_channels = in_channels, out_channels
        self.dropout, self.skip_scale, self.adaptive_scale = dropout, skip_scale, adaptive_scale
        self.num_heads = num_heads if attention else 0
        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, 3, up=up, down=down, **init)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1), **init)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, 3, **init_zero)
        self.skip = None
        if in_channels != out_channels or up or down:  # ADM resamples its skip without a projection
            kernel = 1 if resample_proj or in_channels != out_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel, up=up, down=down, **init)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, 1, **init_attn)
            self.proj = Conv2d(out_channels, out_channels, 1, **init_zero)

    def forward(self, x, emb):
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb)[:, :, None, None].to(x.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            x = F.silu(torch.addcmul(shift, self.norm1(x), scale + 1))
        else:
            x = F.silu(self.norm1(x + params))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = (x + (self.skip(orig) if self.skip is not None else orig)) * self.skip_scale
        if self.num_heads:
            n, c, h, w = x.shape
            q, k, v = self.qkv(self.norm2(x)).reshape(n * self.num_heads, c // self.num_heads, 3, h * w).unbind(2)
            x = (self.proj(attention(q, k, v).reshape(n, c, h, w)) + x) * self.skip_scale
        return x


def attention(q, k, v):
    """Self-attention over [N, C, L] queries (one head per row of N), keys and values, in float32 whatever the precision
    around it (EDM computes QKᵀ and the softmax in float32; under autocast einsum would otherwise run in bf16).
    Returns the input dtype."""
    with torch.autocast(q.device.type, enabled=False):
        attn = torch.einsum('ncq,nck->nqk', q.float(), k.float() / math.sqrt(q.shape[1])).softmax(dim=2)
        return torch.einsum('nqk,nck->ncq', attn, v.float()).to(q.dtype)


class UNet(nn.Module):
    """What EDM's two U-Nets share: F(x, c_noise) = decode(encode(x, emb), emb) with emb = embed(c_noise, labels),
    split so that the score-free classifier can reuse the teacher's embedding and encoder alone."""

    def encode(self, x, emb):
        skips = []  # every encoder output, for the decoder's skip connections
        for block in self.enc.values():
            x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
            skips.append(x)
        return skips

    def forward(self, x, noise_labels, class_labels=None, augment_labels=None):
        emb = self.embed(noise_labels, class_labels, augment_labels)
        return self.decode(self.encode(x, emb), emb)

    def augment(self, emb, augment_labels):
        """+ the augment labels' embedding. None = all-zero labels (as official Diff-Instruct passes them): the
        same output as skipping map_augment, but its weight gets a (zero) gradient, which DDP needs every step."""
        if augment_labels is None:
            augment_labels = torch.zeros([emb.shape[0], self.map_augment.in_features], device=emb.device)
        return emb + self.map_augment(augment_labels.to(emb.dtype))


class SongUNet(UNet):
    """EDM's DDPM++ U-Net (its CIFAR-10 network). Module names match EDM's, so official state_dicts load as they
    are."""

    def __init__(self,
                 img_resolution=32,         # input and output size in pixels
                 in_channels=3,             # colour channels in
                 out_channels=3,            # colour channels out
                 label_dim=0,               # classes; 0 = unconditional
                 augment_dim=0,             # augment labels (9 with EDM's AugmentPipe); 0 = none
                 model_channels=128,        # channels at the base level
                 channel_mult=(2, 2, 2),    # channels per level, × model_channels (EDM, CIFAR-10)
                 channel_mult_emb=4,        # embedding width, × model_channels
                 num_blocks=4,              # residual blocks per level
                 attn_resolutions=(16,),    # self-attention at these resolutions
                 dropout=0.10):             # in every residual block (EDM trains CIFAR-10 at 0.13)
        super().__init__()
        emb_channels, noise_channels = model_channels * channel_mult_emb, model_channels
        block = dict(emb_channels=emb_channels, dropout=dropout)
        # Mapping network: c_noise (+ labels, + augment labels) -> embedding.
        self.map_noise = PositionalEmbedding(noise_channels, endpoint=True)
        self.map_label = Linear(label_dim, noise_channels) if label_dim else None
        self.map_augment = Linear(augment_dim, noise_channels, bias=False) if augment_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)
        # Encoder: every output is pushed on the skip stack.
        self.enc = nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                self.enc[f'{res}x{res}_conv'] = Conv2d(cout, model_channels, 3)
                cout = model_channels
            else:
                self.enc[f'{res}x{res}_down'] = UNetBlock(cout, cout, down=True, **block)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f'{res}x{res}_block{idx}'] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        skips = [getattr(b, 'out_channels') for b in self.enc.values()]
        # Decoder: each block{idx} takes cat([x, skips.pop()]).
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f'{res}x{res}_in0'] = UNetBlock(cout, cout, attention=True, **block)
                self.dec[f'{res}x{res}_in1'] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f'{res}x{res}_up'] = UNetBlock(cout, cout, up=True, **block)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attn = idx == num_blocks and res in attn_resolutions
                self.dec[f'{res}x{res}_block{idx}'] = UNetBlock(cin, cout, attention=attn, **block)
        self.dec[f'{img_resolution}x{img_resolution}_aux_norm'] = GroupNorm(cout)
        self.dec[f'{img_resolution}x{img_resolution}_aux_conv'] = Conv2d(cout, out_channels, 3, init_weight=1e-5)

    def embed(self, noise_labels, class_labels=None, augment_labels=None):
        emb = self.map_noise(noise_labels)
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(*emb.shape)  # [cos, sin] -> [sin, cos]
        if self.map_label is not None:
            emb = emb + self.map_label(class_labels * math.sqrt(self.map_label.in_features))
        if self.map_augment is not None:
            emb = self.augment(emb, augment_labels)
        return F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))

    def decode(self, skips, emb):
        x = skips[-1]
        for name, block in self.dec.items():
            if name.endswith('aux_norm'):
                x = block(x)
            elif name.endswith('aux_conv'):
                x = block(F.silu(x))
            else:
                if x.shape[1] != block.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        return x

    def drop_decoder(self):
        del self.dec


class DhariwalUNet(UNet):
    """EDM's ADM U-Net (Dhariwal & Nichol 2021; EDM's ImageNet-64 network), by EDM's module names. Where it differs
    from DDPM++: Kaiming initialisation with non-zero biases, the embedding's sinusoids without an endpoint and
    unswapped, class labels added after the mapping layers, blocks that scale and shift by the embedding, skip
    scale 1, GroupNorm eps 1e-5, one attention head per 64 channels, un-projected resampling skips."""

    def __init__(self,
                 img_resolution=64,             # input and output size in pixels
                 in_channels=3,                 # colour channels in
                 out_channels=3,                # colour channels out
                 label_dim=0,                   # classes; 0 = unconditional (EDM's ImageNet-64: 1000)
                 augment_dim=0,                 # augment labels; 0 = none
                 model_channels=192,            # channels at the base level
                 channel_mult=(1, 2, 3, 4),     # channels per level, × model_channels
                 channel_mult_emb=4,            # embedding width, × model_channels
                 num_blocks=3,                  # residual blocks per level
                 attn_resolutions=(32, 16, 8),  # self-attention at these resolutions
                 dropout=0.10):                 # in every residual block
        super().__init__()
        emb_channels = model_channels * channel_mult_emb
        init = dict(init_mode='kaiming_uniform', init_weight=math.sqrt(1 / 3), init_bias=math.sqrt(1 / 3))
        init_zero = dict(init_mode='kaiming_uniform', init_weight=0.0)
        block = dict(emb_channels=emb_channels, dropout=dropout, skip_scale=1.0, eps=1e-5, adaptive_scale=True,
                     resample_proj=False, init=init, init_zero=init_zero, init_attn=init)
        heads = lambda channels: channels // 64  # noqa: E731
        self.map_noise = PositionalEmbedding(model_channels, endpoint=False)
        self.map_augment = Linear(augment_dim, model_channels, bias=False, **init_zero) if augment_dim else None
        self.map_layer0 = Linear(model_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)
        self.map_label = Linear(label_dim, emb_channels, bias=False, init_mode='kaiming_normal',
                                init_weight=math.sqrt(label_dim)) if label_dim else None
        self.enc = nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                self.enc[f'{res}x{res}_conv'] = Conv2d(cout, model_channels * mult, 3, **init)
                cout = model_channels * mult
            else:
                self.enc[f'{res}x{res}_down'] = UNetBlock(cout, cout, down=True, **block)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f'{res}x{res}_block{idx}'] = UNetBlock(cin, cout, attention=res in attn_resolutions,
                                                                num_heads=heads(cout), **block)
        skips = [b.out_channels for b in self.enc.values()]
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f'{res}x{res}_in0'] = UNetBlock(cout, cout, attention=True, num_heads=heads(cout), **block)
                self.dec[f'{res}x{res}_in1'] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f'{res}x{res}_up'] = UNetBlock(cout, cout, up=True, **block)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                self.dec[f'{res}x{res}_block{idx}'] = UNetBlock(cin, cout, attention=res in attn_resolutions,
                                                                num_heads=heads(cout), **block)
        self.out_norm = GroupNorm(cout, eps=1e-5)
        self.out_conv = Conv2d(cout, out_channels, 3, **init_zero)

    def embed(self, noise_labels, class_labels=None, augment_labels=None):
        emb = self.map_noise(noise_labels)
        if self.map_augment is not None:
            emb = self.augment(emb, augment_labels)
        emb = self.map_layer1(F.silu(self.map_layer0(emb)))
        if self.map_label is not None:
            emb = emb + self.map_label(class_labels)
        return F.silu(emb)

    def decode(self, skips, emb):
        x = skips[-1]
        for block in self.dec.values():
            if x.shape[1] != block.in_channels:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))

    def drop_decoder(self):
        del self.dec, self.out_norm, self.out_conv


ARCHS = {'ddpmpp': SongUNet, 'adm': DhariwalUNet}


class EDMPrecond(nn.Module):
    """D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise) with EDM's four coefficients (σ_data = 0.5).
    `self.config` holds the constructor arguments: it is saved in every checkpoint to rebuild the net."""

    def __init__(self,
                 img_resolution=32,  # input and output size in pixels
                 img_channels=3,     # colour channels
                 label_dim=0,        # classes; 0 = unconditional
                 sigma_data=0.5,     # the data's expected standard deviation (EDM)
                 arch='ddpmpp',      # ddpmpp (SongUNet, EDM's CIFAR-10) | adm (DhariwalUNet, EDM's ImageNet-64)
                 **unet_kwargs):     # the U-Net's own arguments
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f'unknown network architecture {arch!r}; choose one of {sorted(ARCHS)}')
        self.config = dict(img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim,
                           sigma_data=sigma_data, arch=arch, **unet_kwargs)
        self.img_resolution, self.img_channels, self.label_dim = img_resolution, img_channels, label_dim
        self.sigma_data = sigma_data
        self.model = ARCHS[arch](img_resolution=img_resolution, in_channels=img_channels, out_channels=img_channels,
                                 label_dim=label_dim, **unet_kwargs)

    def precond(self, sigma):
        sd = self.sigma_data
        c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
        c_out = sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
        c_in = 1 / (sd ** 2 + sigma ** 2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def labels(self, class_labels, batch, device):
        """One-hot float labels, zeros when the net is conditional but none are given, None if unconditional."""
        if self.label_dim == 0:
            return None
        if class_labels is None:
            return torch.zeros([batch, self.label_dim], device=device)
        return class_labels.to(torch.float32).reshape(-1, self.label_dim)

    def forward(self, x, sigma, class_labels=None, augment_labels=None):
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1, 1, 1)
        sigma = sigma.expand(x.shape[0], 1, 1, 1)
        c_skip, c_out, c_in, c_noise = self.precond(sigma)
        F_x = self.model(c_in * x, c_noise.flatten(), self.labels(class_labels, x.shape[0], x.device),
                         augment_labels)
        return c_skip * x + c_out * F_x.to(torch.float32)


# Presets. `edm` is EDM's CIFAR-10 DDPM++ (55.7 M parameters, augment_dim 9 as in the official checkpoints) and
# `adm` EDM's ImageNet-64 ADM (296 M); `small` trains a usable CIFAR-10 teacher on one GPU (ours); the tiny ones
# are for CPU tests.
PRESETS = {
    'edm': dict(model_channels=128, channel_mult=[2, 2, 2], num_blocks=4, attn_resolutions=[16], augment_dim=9),
    'small': dict(model_channels=64, channel_mult=[1, 2, 2], num_blocks=2, attn_resolutions=[16], augment_dim=0),
    'tiny': dict(model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[16], augment_dim=0),
    'adm': dict(arch='adm', model_channels=192, channel_mult=[1, 2, 3, 4], num_blocks=3, attn_resolutions=[32, 16, 8],
                augment_dim=0),
    'adm-tiny': dict(arch='adm', model_channels=32, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[32, 16],
                     augment_dim=0),
}


def build_net(preset, img_resolution, img_channels, label_dim, dropout, augment_dim=None):
    """A fresh EDMPrecond of a preset; augment_dim overrides the preset's (9 when training with AugmentPipe)."""
    if preset not in PRESETS:
        raise ValueError(f'unknown --preset {preset!r}; choose one of {sorted(PRESETS)}')
    config = dict(PRESETS[preset], **({} if augment_dim is None else {'augment_dim': augment_dim}))
    return EDMPrecond(img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim,
                      dropout=dropout, **config)


# ------------------------------------------------------------------------------------------------------
# 2. EDM loss, Heun sampler, latents, one-step generator
# ------------------------------------------------------------------------------------------------------

def edm_sigma(batch, device, P_mean=-1.2, P_std=1.2):
    """EDM's training noise levels: ln σ ~ N(P_mean, P_std²), shaped [batch, 1, 1, 1]."""
    return (torch.randn([batch, 1, 1, 1], device=device) * P_std + P_mean).exp()


def edm_weight(sigma, sigma_data=0.5):
    """λ(σ) = (σ² + σ_d²) / (σ·σ_d)², which makes the effective training target unit-variance."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


def edm_loss(net, images, class_labels=None, P_mean=-1.2, P_std=1.2, sigma_data=0.5, augment_labels=None, sigma=None):
    """EDM's denoising loss λ(σ)·‖D(x₀ + σε; σ) − x₀‖², summed over pixels: one value per image. σ: one per image
    ([batch, 1, 1, 1]), by default drawn from EDM's log-normal."""
    sigma = edm_sigma(images.shape[0], images.device, P_mean, P_std) if sigma is None else sigma
    noisy = images + torch.randn_like(images) * sigma
    D = net(noisy, sigma, class_labels, augment_labels)
    return (edm_weight(sigma, sigma_data) * (D - images) ** 2).flatten(1).sum(1)


def edm_sigma_steps(num_steps=18, sigma_min=0.002, sigma_max=80.0, rho=7.0, device='cpu'):
    """σ_0 > ... > σ_{N-1} by EDM's ρ-schedule, then σ_N = 0 (float64); num_steps ≥ 2."""
    i = torch.arange(num_steps, dtype=torch.float64, device=device)
    t = (sigma_max ** (1 / rho) + i / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([t, torch.zeros_like(t[:1])])


# EDM's stochastic sampling of ImageNet-64 (Algorithm 2, its Table 5), with --steps 256 as EDM evaluates it.
STOCHASTIC = dict(S_churn=40, S_min=0.05, S_max=50, S_noise=1.003)
SAMPLER_STEPS = {'heun': 18, 'stochastic': 256}  # EDM's evaluations: CIFAR-10 (Heun), ImageNet-64 (S_churn 40)


@torch.no_grad()
def edm_sampler(net, latents, class_labels=None, num_steps=18, sigma_min=0.002, sigma_max=80, rho=7,
                S_churn=0, S_min=0, S_max=float('inf'), S_noise=1, randn_like=torch.randn_like):
    """EDM's sampler in float64 with 2·num_steps − 1 calls of net(x, σ, class_labels) = D(x; σ): Heun's method on
    the probability-flow ODE (Algorithm 1) when S_churn = 0; otherwise each step with S_min ≤ σ ≤ S_max first
    raises σ by the factor 1 + γ, γ = min(S_churn/num_steps, √2 − 1), with fresh noise from randn_like (Algorithm
    2). latents ~ N(0, I) are scaled by σ_max."""
    t_steps = edm_sigma_steps(num_steps, sigma_min, sigma_max, rho, latents.device)
    x_next = latents.to(torch.float64) * t_steps[0]
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):  # 0, ..., N-1
        x_cur = x_next

        # Increase noise temporarily (no draw when γ = 0: Heun's method is deterministic).
        gamma = min(S_churn / num_steps, math.sqrt(2) - 1) if S_churn and S_min <= t_cur <= S_max else 0
        t_hat = t_cur + gamma * t_cur
        x_hat = x_cur + (t_hat ** 2 - t_cur ** 2).sqrt() * S_noise * randn_like(x_cur) if gamma else x_cur

        # Euler step.
        denoised = net(x_hat, t_hat, class_labels).to(torch.float64)
        d_cur = (x_hat - denoised) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur

        # Apply 2nd order correction.
        if i < num_steps - 1:
            denoised = net(x_next, t_next, class_labels).to(torch.float64)
            d_prime = (x_next - denoised) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


def diffusion_sampler(net, device, steps=18, stochastic=False):
    """sample(seeds, labels=None) -> uint8 images of a diffusion net by EDM's sampler from per-seed latents, labels
    and noise: Heun (18 steps, EDM's CIFAR-10 protocol) or with EDM's stochastic churn (ImageNet-64: 256 steps)."""
    shape = [net.img_channels, net.img_resolution, net.img_resolution]

    def sample(seeds, labels=None):
        z = seeded_latents(seeds, shape, device)
        labels = seeded_labels(seeds, net.label_dim, device) if labels is None else labels
        churn = dict(STOCHASTIC, randn_like=seeded_randn_like(seeds)) if stochastic else {}
        return to_uint8(edm_sampler(net, z, labels, num_steps=steps, **churn))
    return sample


def seeded_latents(seeds, shape, device):
    """One generator per seed, so image i depends only on seed i, not on the batch it was drawn in."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]).to(device)


def seeded_labels(seeds, label_dim, device):
    """Random one-hot class labels drawn from the same per-seed streams (offset so they differ from z)."""
    if not label_dim:
        return None
    idx = [int(torch.randint(label_dim, (1,), generator=torch.Generator().manual_seed(int(s) + (1 << 40))))
           for s in seeds]
    return F.one_hot(torch.tensor(idx), label_dim).float().to(device)


def seeded_randn_like(seeds, offset=3 << 40):
    """randn_like(x) for the stochastic sampler: image i's noise from seed i's own stream (batch-independent)."""
    gens = [torch.Generator().manual_seed(int(s) + offset) for s in seeds]
    return lambda x: torch.stack([torch.randn(x.shape[1:], generator=g, dtype=x.dtype) for g in gens]).to(x.device)


def grid_labels(n, label_dim, device):
    """The labels of a sample grid of a conditional net: one class per row (None for an unconditional one)."""
    if not label_dim:
        return None
    cols = int(math.ceil(math.sqrt(n)))
    return F.one_hot(torch.arange(n) // cols % label_dim, label_dim).float().to(device)


def generate_one_step(G, z, sigma_init, class_labels=None):
    """The one-step generator of Diff-Instruct and the score-free family: G(z) = D_θ(σ_init·z; σ_init)."""
    sigma = torch.full([z.shape[0]], float(sigma_init), device=z.device)
    return G(sigma_init * z, sigma, class_labels)


def one_step_sampler(G, sigma_init, device):
    """sample(seeds) -> uint8 images of the one-step generator, per-seed latents and labels (FID, grids)."""
    shape = [G.img_channels, G.img_resolution, G.img_resolution]

    @torch.no_grad()
    def sample(seeds, labels=None):  # labels: the grids' one class per row; default random per seed
        z = seeded_latents(seeds, shape, device)
        labels = seeded_labels(seeds, G.label_dim, device) if labels is None else labels
        return to_uint8(generate_one_step(G, z, sigma_init, labels))
    return sample


# ------------------------------------------------------------------------------------------------------
# 3. Runtime: devices, DDP, precision, optimizer, EMA, compile
# ------------------------------------------------------------------------------------------------------

def init_distributed(device_flag='auto'):
    """Single process, or one process per GPU under torchrun (NCCL on CUDA, gloo on CPU).
    Returns (rank, world_size, device)."""
    if device_flag == 'auto':
        device_flag = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device_flag == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('error: --device cuda was asked for but no CUDA GPU is visible; use --device cpu')
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    if world_size > 1:
        local_rank = int(os.environ.get('LOCAL_RANK', '0'))
        if device_flag == 'cuda':
            torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group(backend='nccl' if device_flag == 'cuda' else 'gloo')
        device = torch.device('cuda', local_rank) if device_flag == 'cuda' else torch.device('cpu')
    else:
        device = torch.device('cuda', torch.cuda.current_device()) if device_flag == 'cuda' else torch.device('cpu')
    return rank, world_size, device


def ddp_wrap(net, device, world_size):
    if world_size == 1:
        return net
    return nn.parallel.DistributedDataParallel(net, device_ids=[device] if device.type == 'cuda' else None)


def all_reduce_mean(x, world_size):
    """Average a tensor over ranks (for logging losses)."""
    if world_size > 1:
        x = x.clone()
        torch.distributed.all_reduce(x)
        x /= world_size
    return x


class Precision:
    """What the training passes run in: `with amp.autocast():` (bf16 or fp16 autocast on CUDA, nothing on CPU, where
    autocast is slow and not what we test) and a GradScaler that is a pass-through unless fp16. TF32 stays off, as
    in EDM's and Diff-Instruct's fp32 code."""

    def __init__(self, device, precision):
        if precision not in ('bf16', 'fp16', 'fp32'):
            raise ValueError(f'--precision must be bf16, fp16 or fp32, not {precision!r}')
        cuda = device.type == 'cuda'
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            torch.backends.cudnn.benchmark = True
        self.device_type = device.type
        self.dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(precision) if cuda else None
        self.name = f'{precision} autocast' if self.dtype else 'fp32'
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()

    def backward(self, loss):
        self.scaler.scale(loss).backward()

    def step(self, optimizer):
        """EDM's safety net, after the fp16 scaler has unscaled the gradients (the scaler is a no-op otherwise)."""
        self.scaler.unscale_(optimizer)
        nan_to_num_grads(p for group in optimizer.param_groups for p in group['params'])
        self.scaler.step(optimizer)
        self.scaler.update()


@contextlib.contextmanager
def full_precision(device_type):
    """float32 inside (no autocast, no TF32), whatever the surrounding code runs in."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def make_adam(params, lr, betas, eps=1e-8, device=None):
    """Adam, fused on CUDA (one kernel for all parameters)."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, fused=device is not None and device.type == 'cuda')


@torch.no_grad()
def nan_to_num_grads(params):
    """EDM's safety net before every optimizer step: NaN gradients become 0 and ±Inf ±1e5, in place."""
    for param in params:
        if param.grad is not None:
            torch.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)


def ema_beta(cur_nimg, batch_size, halflife_kimg=500, rampup_ratio=0.05):
    """EDM's EMA decay per step: half-life in images, capped to rampup_ratio × the images seen before this batch
    (EDM counts the batch after the update, so the first step copies the net: beta = 0)."""
    halflife_nimg = halflife_kimg * 1000
    if rampup_ratio:
        halflife_nimg = min(halflife_nimg, cur_nimg * rampup_ratio)
    return 0.5 ** (batch_size / max(halflife_nimg, 1e-8))


@torch.no_grad()
def ema_update(ema, net, beta):
    """ema ← beta·ema + (1 − beta)·net in one multi-tensor lerp (ema must share net's memory layout: copy it after
    to_device); buffers are copied."""
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in net.parameters()], 1 - beta)
    for b_ema, b_net in zip(ema.buffers(), net.buffers()):
        b_ema.copy_(b_net)


def maybe_compile(net, enabled):
    """torch.compile(net) when enabled (one graph per network: σ is a tensor input). Dropout masks come from
    PyTorch's generator, as in eager mode, so a compiled run is the eager run up to float rounding and resumes
    with either setting."""
    if not enabled:
        return net
    torch._inductor.config.fallback_random = True
    return torch.compile(net)


def to_device(net, device):
    """Move a network; on CUDA in channels_last layout, which convolutions prefer under bf16 autocast."""
    net = net.to(device)
    return net.to(memory_format=torch.channels_last) if device.type == 'cuda' else net


def peak_memory_gb(device):
    """Peak memory in GiB: on CUDA what the caching allocator handed out, on CPU the process's peak RSS."""
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------------
# 4. Data: images as one uint8 tensor [N, C, H, W] in memory, labels as int64 [N] (or None)
# ------------------------------------------------------------------------------------------------------

CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
CIFAR10_MD5 = 'c58f30108f718f92721af3b95e74349a'
FASHION_FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
                 'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
FASHION_DIRS = ['/usr/share/datasets/fashion-mnist']  # Debian's dataset-fashion-mnist package (re-compressed)
FASHION_URL = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'
FASHION_MD5 = {'train-images-idx3-ubyte.gz': '8d4fb7e6c68d591d4c3dfef9ec88bf0d',  # the official files (Zalando)
               'train-labels-idx1-ubyte.gz': '25c81989df183df01b3e8a0aad5dffbe',
               't10k-images-idx3-ubyte.gz': 'bef4ecab320f06d8554ea6380940ec79',
               't10k-labels-idx1-ubyte.gz': 'bb300cfdad3c16e7a12a480ee83cd310'}
# Downloads and derived files (data, EDM imports, FID weights and reference statistics) live under one root.
CACHE_ROOT = os.environ.get('DIFFRATIO_CACHE', os.path.join(os.path.expanduser('~'), '.cache', 'diffratio'))
DEFAULT_DATA_DIR = os.path.join(CACHE_ROOT, 'data')


class Dataset:
    """The whole dataset in memory: images uint8 [N, C, H, W], labels int64 [N] or None."""

    def __init__(self, images, labels, num_classes, name, checksum=None):
        self.images, self.labels, self.num_classes, self.name, self.checksum = images, labels, num_classes, name, checksum

    def __len__(self):
        return self.images.shape[0]

    @property
    def resolution(self):
        return self.images.shape[-1]

    @property
    def channels(self):
        return self.images.shape[1]

    def one_hot(self, idx):
        return None if self.labels is None else F.one_hot(self.labels[idx], self.num_classes).float()


def file_digest(path, algo='md5'):
    h = hashlib.new(algo)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def download(url, path):
    """Download to path atomically: a partial download never looks complete, and its temporary name is unique per
    process (machines sharing a file system never write into the same partial file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.part{os.getpid()}'
    print(f'downloading {url} -> {path}', file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, 'wb') as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def on_local_rank0(fn):
    """Run fn() on one process per machine (LOCAL_RANK 0: downloads, imports into the cache) while the others wait.
    An error there is raised on every process as one line, so none waits for a file that will not come."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return fn()
    error = None
    if int(os.environ.get('LOCAL_RANK', '0')) == 0:
        try:
            fn()
        except (OSError, ValueError, pickle.UnpicklingError) as e:
            error = (isinstance(e, FileNotFoundError), str(e))
    errors = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(errors, error)  # also the barrier
    error = next((e for e in errors if e is not None), None)
    if error is not None:
        raise (FileNotFoundError if error[0] else ValueError)(error[1])


def fetch(url, path, what, offline, allow_download=True, check=None):
    """Make sure `path` exists, downloading `url` once per machine if needed; check(path) may refuse the download
    (corrupt file). Every failure is one line: what was missing, from where, and the offline route."""
    def get():
        if os.path.isfile(path):
            return
        if not allow_download:
            raise FileNotFoundError(f'{what} is not at {path} and downloads are disabled (it comes from {url}); '
                                    f'offline: {offline}')
        try:
            download(url, path)
        except (OSError, ValueError) as e:  # no network (URLError), HTTP error, time-out, disk full, bad URL
            raise FileNotFoundError(f'could not download {what} from {url} ({getattr(e, "reason", e)}); '
                                    f'offline: {offline}') from None
        if check is not None:
            check(path)
    on_local_rank0(get)
    return path


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickle numpy arrays and builtins only: CIFAR-10's batches are pickles, and a pickle can run code."""
    ALLOWED = {('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
               ('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode')}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'refusing to unpickle global {module}.{name}')


def cifar10_archive(data_dir, allow_download=True):
    return fetch(CIFAR10_URL, os.path.join(data_dir, 'cifar-10-python.tar.gz'), 'CIFAR-10',
                 f'put the archive in {data_dir} (or pass --data-dir) and add --no-download, or pass a folder or '
                 f'zip of images as --dataset PATH', allow_download)


def load_cifar10(data_dir, split='train', allow_download=True):
    """The official python archive: 5 training batches (50 000) and one test batch (10 000), each a pickle of
    {'data': uint8 [N, 3072] in R-plane, G-plane, B-plane order, 'labels': [N]}."""
    path = cifar10_archive(data_dir, allow_download)
    md5 = file_digest(path, 'md5')
    if md5 != CIFAR10_MD5:
        raise ValueError(f'{path} has md5 {md5}, expected {CIFAR10_MD5}: the file is corrupt or not the '
                         f'official archive; delete it and download again')
    names = [f'data_batch_{i}' for i in range(1, 6)] if split == 'train' else ['test_batch']
    images, labels = [], []
    with tarfile.open(path, 'r:gz') as tar:
        for name in names:
            d = NumpyOnlyUnpickler(tar.extractfile(f'cifar-10-batches-py/{name}'), encoding='bytes').load()
            images.append(np.asarray(d[b'data'], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(d[b'labels'], dtype=np.int64))
    return Dataset(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)), 10,
                   f'cifar10-{split}', checksum=f'md5:{md5}')


IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp')


def decode_image(data):
    from PIL import Image
    img = Image.open(io.BytesIO(data))
    img = img.convert('L' if img.mode in ('L', 'I;16', '1') else 'RGB')
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def load_image_folder(path, split=None):
    """A folder or .zip of images. With a dataset.json (EDM's dataset_tool.py: 00000/img00000000.png, ... and
    {"labels": [[name, label], ...]}) its labels are the classes; otherwise the layout [<split>/]<class>/<name>.png
    names them (sorted folder names), and a flat folder has none. A zip's sha256 is recorded."""
    if zipfile.is_zipfile(path):
        zf = zipfile.ZipFile(path)
        names = zf.namelist()
        read = zf.read
        checksum = 'sha256:' + file_digest(path, 'sha256')
    elif os.path.isdir(path):
        names = [os.path.relpath(os.path.join(r, f), path).replace(os.sep, '/') for r, _, fs in os.walk(path) for f in fs]
        read = lambda n: open(os.path.join(path, n), 'rb').read()  # noqa: E731
        checksum = None
    else:
        raise FileNotFoundError(f'dataset path {path!r} is neither a folder nor a zip file')
    files = sorted(n for n in names if n.lower().endswith(IMAGE_EXTS))
    prefix = ''
    if split is not None and any(f.startswith(split + '/') for f in files):
        files = [f[len(split) + 1:] for f in files if f.startswith(split + '/')]
        prefix = split + '/'
    if not files:
        raise ValueError(f'no images ({", ".join(IMAGE_EXTS)}) found in {path!r}')
    images = decode_images(path, [prefix + f for f in files], read)
    if 'dataset.json' in names:  # EDM's format: the labels are in the file, not in the folder names
        labels = edm_labels(path, [prefix + f for f in files], read)
        num_classes = int(labels.max()) + 1 if labels is not None else 0
    else:
        classes = sorted({f.split('/')[-2] for f in files if '/' in f})
        labelled = classes and all('/' in f for f in files)
        labels = torch.tensor([classes.index(f.split('/')[-2]) for f in files]) if labelled else None
        num_classes = len(classes) if labelled else 0
    return Dataset(images, labels, num_classes, os.path.basename(path.rstrip('/')), checksum)


def decode_images(path, files, read):
    """uint8 [N, C, H, W] of every file, each read by read(name); a file that does not decode is named."""
    images = []
    for f in files:
        try:
            images.append(decode_image(read(f)))
        except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
            raise ValueError(f'{path}: {f} is not a readable image ({e}); remove or replace it') from None
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f'images in {path!r} have different shapes {sorted(shapes)[:4]}; resize them first')
    return torch.from_numpy(np.stack(images))


def edm_labels(path, files, read):
    """The labels of EDM's dataset.json ({"labels": [[name, label], ...]} or null: unlabelled), in files' order."""
    try:
        table = json.loads(read('dataset.json')).get('labels')
        table = dict(table) if table is not None else None
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f'{path}: dataset.json is not EDM\'s dataset metadata ({e})') from None
    if table is None:
        return None
    missing = [f for f in files if f not in table]
    if missing:
        raise ValueError(f'{path}: dataset.json has no label for {missing[0]} ({len(missing)} images without one)')
    return torch.tensor([int(table[f]) for f in files])


def read_idx(path):
    """An MNIST-style idx file (optionally .gz): magic, dims as big-endian int32, then uint8 data."""
    with (gzip.open if path.endswith('.gz') else open)(path, 'rb') as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack('>HBB', data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f'{path} is not a uint8 idx file')
    dims = struct.unpack('>' + 'I' * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != math.prod(dims):
        raise ValueError(f'{path} is truncated: expected {math.prod(dims)} values, found {arr.size}')
    return arr.reshape(dims)


def fashion_mnist_files(data_dir, split='train', allow_download=True):
    """The (images, labels) idx files of a split: in data_dir, data_dir/fashion-mnist or Debian's package (plain or
    .gz), else downloaded once into data_dir/fashion-mnist and checked against the official md5."""
    names = FASHION_FILES[split]
    for d in [data_dir, os.path.join(data_dir, 'fashion-mnist')] + FASHION_DIRS:
        for ext in ('', '.gz'):
            paths = [os.path.join(d, name + ext) for name in names]
            if all(os.path.isfile(p) for p in paths):
                return paths
    paths = []
    for name in names:
        path, want = os.path.join(data_dir, 'fashion-mnist', name + '.gz'), FASHION_MD5[name + '.gz']

        def check(path, want=want):
            got = file_digest(path)
            if got != want:
                os.remove(path)  # never used: the next run downloads it afresh
                raise ValueError(f'the download {path} has md5 {got}, expected {want}: corrupt or not the official '
                                 f'file; run again to download it afresh')
        paths.append(fetch(FASHION_URL + name + '.gz', path, f'Fashion-MNIST ({name})', 'apt-get install '
                           f'dataset-fashion-mnist (Debian), or put the official .gz files in {data_dir}',
                           allow_download, check))
    return paths


def load_fashion_mnist(data_dir, split='train', allow_download=True):
    """Fashion-MNIST idx files, 28×28 zero-padded to 32×32, one channel, 10 classes."""
    image_path, label_path = fashion_mnist_files(data_dir, split, allow_download)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1] or labels.max() > 9:
        raise ValueError(f'{image_path} and {label_path} are not a Fashion-MNIST split: images {images.shape}, '
                         f'labels {labels.shape}')
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]  # the data, whatever compression
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))[:, None]
    return Dataset(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)), 10,
                   f'fashion-mnist-{split}', checksum=f'sha256(idx data):{digest}')


def load_dataset(dataset, data_dir=DEFAULT_DATA_DIR, split='train', allow_download=True):
    """--dataset cifar10 | fashion-mnist | PATH (a folder or zip of images)."""
    if split not in ('train', 'test'):
        raise ValueError(f'--split must be train or test, not {split!r}')
    if dataset == 'cifar10':
        return load_cifar10(data_dir, split, allow_download)
    if dataset == 'fashion-mnist':
        return load_fashion_mnist(data_dir, split, allow_download)
    if os.path.exists(dataset):
        return load_image_folder(dataset, split)
    raise FileNotFoundError(f'--dataset {dataset!r}: not a known name (cifar10, fashion-mnist) and no such '
                            f'folder or zip file')


class BatchSampler:
    """Random minibatches from an in-memory Dataset ('poor man's data loader'): indices from a seeded Generator (its
    state goes in the checkpoint, so resume continues the same stream), optional x-flip, scaled to [−1, 1]. Each DDP
    rank draws from its own stream; on CUDA the images live on the GPU and indices travel without a host sync."""

    def __init__(self, data, batch, device, seed=0, rank=0, xflip=False):
        self.data, self.batch, self.device, self.xflip = data, batch, torch.device(device), xflip
        self.gen = torch.Generator().manual_seed(seed * 1000003 + rank)
        self.images = data.images.to(device) if self.device.type == 'cuda' else data.images

    def __next__(self):
        idx = torch.randint(len(self.data), (self.batch,), generator=self.gen)
        flip = torch.rand(self.batch, generator=self.gen) < 0.5 if self.xflip else None
        x = self.images[self.to_device(idx)].to(self.device).to(torch.float32) / 127.5 - 1
        if flip is not None:
            x = torch.where(self.to_device(flip)[:, None, None, None], x.flip(3), x)
        labels = self.data.one_hot(idx)
        return x, (self.to_device(labels) if labels is not None else None)

    def to_device(self, t):
        return t if self.images.device.type != 'cuda' else t.pin_memory().to(self.images.device, non_blocking=True)

    def state_dict(self):
        return {'gen': self.gen.get_state()}

    def load_state_dict(self, state):
        self.gen.set_state(state['gen'])

# Low-pass filter of the symlet-6 wavelet: the resampling filter of EDM's (and StyleGAN2-ADA's) augmentation.
SYM6 = [0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633, 0.4910559419267466,
        0.787641141030194, 0.3379294217276218, -0.07263752278646252, -0.021060292512300564, 0.04472490177066578,
        0.0017677118642428036, -0.007800708325034148]


def affine(rows):
    """[N, 3, 3] matrices from nine [N] tensors (row-major)."""
    return torch.stack(rows, dim=-1).reshape(-1, 3, 3)


def translation(tx, ty):
    one, zero = torch.ones_like(tx), torch.zeros_like(tx)
    return affine([one, zero, tx, zero, one, ty, zero, zero, one])


def scaling(sx, sy):
    one, zero = torch.ones_like(sx), torch.zeros_like(sx)
    return affine([sx, zero, zero, zero, sy, zero, zero, zero, one])


def rotation(theta):
    one, zero, c, s = torch.ones_like(theta), torch.zeros_like(theta), theta.cos(), theta.sin()
    return affine([c, -s, zero, s, c, zero, zero, zero, one])


class AugmentPipe:
    """EDM's geometric augmentation of CIFAR-10 (`--augment 0.12`), written from its description. Non-leaking: the
    network is told what was done through 9 augment labels (map_augment) and is sampled with all-zero labels.
    Per image: x-flip with probability ½ (EDM's multiplier 1e8 makes the decision certain), and with probability p
    each: y-flip (½), isotropic scale 2^(0.2·N(0,1)), rotation U(−π, π), anisotropic scale 2^(±0.2·N(0,1)) along
    a random axis (half of the time a rotated one), translation N(0, 0.125²)·size. The geometric part is one
    resampling: reflect-pad, 2x upsampling with the symlet-6 filter, bilinear warp, filtered 2x downsampling.
    Labels: [xflip, yflip, scale, cos θ − 1, sin θ, a·cos r, a·sin r, tx, ty]."""

    def __init__(self, p=0.12, scale_std=0.2, aniso_std=0.2, aniso_rotate_prob=0.5, translate_std=0.125):
        self.p, self.scale_std, self.aniso_std = p, scale_std, aniso_std
        self.aniso_rotate_prob, self.translate_std = aniso_rotate_prob, translate_std

    def __call__(self, images):
        N, C, H, W = images.shape
        dev = images.device
        rand, randn = lambda: torch.rand(N, device=dev), lambda: torch.randn(N, device=dev)
        maybe = lambda w, prob: torch.where(rand() < prob, w, torch.zeros_like(w))  # w with probability prob, else 0
        xflip = maybe(torch.randint(2, [N], device=dev).float(), 1.0 if self.p > 0 else 0.0)
        yflip = maybe(torch.randint(2, [N], device=dev).float(), self.p)
        images = torch.where(xflip[:, None, None, None] > 0, images.flip(3), images)
        images = torch.where(yflip[:, None, None, None] > 0, images.flip(2), images)
        s = maybe(randn(), self.p)
        theta = maybe((rand() * 2 - 1) * math.pi, self.p)
        a = maybe(randn(), self.p)
        r = maybe((rand() * 2 - 1) * math.pi, self.aniso_rotate_prob)
        shift = rand() < self.p  # x and y translation are decided together
        t = [torch.where(shift, randn(), torch.zeros(N, device=dev)) for _ in range(2)]
        labels = torch.stack([xflip, yflip, s, theta.cos() - 1, theta.sin(), a * r.cos(), a * r.sin(), t[0], t[1]], 1)
        if self.p == 0:
            return images, labels
        # Output pixel -> input pixel, in pixels about the image centre: the inverse of scale, rotate, aniso, shift.
        sa = (a * self.aniso_std).exp2()
        G_inv = (scaling(1 / (s * self.scale_std).exp2(), 1 / (s * self.scale_std).exp2()) @ rotation(theta)
                 @ rotation(-r) @ scaling(1 / sa, sa) @ rotation(r)
                 @ translation(-t[0] * W * self.translate_std, -t[1] * H * self.translate_std))
        return self.warp(images, G_inv), labels

    @staticmethod
    def warp(images, G_inv):
        """Resample images[n] at G_inv[n] @ (x, y, 1) for every output pixel, alias-free (see the class doc)."""
        N, C, H, W = images.shape
        dev, dtype = images.device, images.dtype
        f = torch.tensor(SYM6, dtype=dtype, device=dev)
        pad = len(SYM6) // 4
        # Reflect-pad by as much as the warped corners reach outside the image (plus the filter's support).
        cx, cy = (W - 1) / 2, (H - 1) / 2
        corners = torch.tensor([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1.0] * 4], device=dev)
        reach = (G_inv @ corners)[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, N·4]
        margin = torch.cat([-reach, reach]).max(dim=1).values + torch.tensor([2 * pad - cx, 2 * pad - cy] * 2,
                                                                              device=dev)
        limit = torch.tensor([W - 1, H - 1] * 2, device=dev, dtype=margin.dtype)
        mx0, my0, mx1, my1 = (int(m) for m in margin.clamp(min=0).minimum(limit).ceil())
        images = F.pad(images, [mx0, mx1, my0, my1], mode='reflect')
        one = torch.ones(N, device=dev)
        G_inv = translation(one * (mx0 - mx1) / 2, one * (my0 - my1) / 2) @ G_inv
        # 2x upsampling: zeros between samples, then the (flipped) filter, along x and then y.
        fw = f.flip(0).reshape(1, 1, 1, -1).repeat(C, 1, 1, 1)
        images = torch.stack([images, torch.zeros_like(images)], dim=4).flatten(3)[..., :-1]
        images = F.conv2d(images, fw, groups=C, padding=[0, (len(SYM6) + 1) // 2])
        images = torch.stack([images, torch.zeros_like(images)], dim=3).flatten(2, 3)[:, :, :-1, :]
        images = F.conv2d(images, fw.transpose(2, 3), groups=C, padding=[(len(SYM6) + 1) // 2, 0])
        G_inv = scaling(2 * one, 2 * one) @ G_inv @ scaling(one / 2, one / 2)
        G_inv = translation(-one / 2, -one / 2) @ G_inv @ translation(one / 2, one / 2)
        # Bilinear warp into a grid twice the padded output size, in grid_sample's [−1, 1] coordinates.
        out_h, out_w = (H + 2 * pad) * 2, (W + 2 * pad) * 2
        G_inv = (scaling(2 / images.shape[3] * one, 2 / images.shape[2] * one) @ G_inv
                 @ scaling(out_w / 2 * one, out_h / 2 * one))
        grid = F.affine_grid(G_inv[:, :2, :].to(dtype), [N, C, out_h, out_w], align_corners=False)
        images = F.grid_sample(images, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
        # Filtered 2x downsampling, then crop the filter's margin.
        fd = f.reshape(1, 1, 1, -1).repeat(C, 1, 1, 1)
        images = F.conv2d(images, fd, groups=C, stride=[1, 2], padding=[0, (len(SYM6) - 1) // 2])[..., pad:-pad]
        images = F.conv2d(images, fd.transpose(2, 3), groups=C, stride=[2, 1],
                          padding=[(len(SYM6) - 1) // 2, 0])[:, :, pad:-pad, :]
        return images


# ------------------------------------------------------------------------------------------------------
# 5. Checkpoints, grids, logging, the flags and the entry point every trainer shares
# ------------------------------------------------------------------------------------------------------

def save_checkpoint(path, state):
    """Write atomically: to a temporary file in the same folder, then rename (a crash never leaves half a file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, kind=None):
    """Load a checkpoint written by save_checkpoint (weights_only: no code is unpickled).
    kind: the 'kind' field the caller expects ('teacher', 'generator', ...) or a tuple of them."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} not found')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise ValueError(f'{path!r} is not a readable checkpoint of this project ({type(e).__name__}: {e}); '
                         f'an official EDM .pkl must be imported first with teacher.py --import-edm') from None
    if not isinstance(ckpt, dict) or 'kind' not in ckpt:
        raise ValueError(f'{path!r} is not a checkpoint of this project (no "kind" field)')
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds and ckpt['kind'] not in kinds:
        raise ValueError(f'{path!r} holds a {ckpt["kind"]!r} checkpoint, but a {" or ".join(kinds)!r} one is needed')
    return ckpt


# One-step training checkpoints carry their layout; those written before it resume at the commit that wrote them.
FORMAT = 2


def check_format(ckpt, path):
    if ckpt.get('format') != FORMAT:
        raise ValueError(f'{path!r} was written by an older layout of this code (checkpoint format {ckpt.get("format", 1)}, '
                         f'this one reads {FORMAT}); resume it with that code: git checkout eb25876')


def check_resume_config(saved, current, keys):
    """Refuse to resume a run whose settings differ in what makes it the same run."""
    diff = {k: (saved.get(k), current.get(k)) for k in keys if saved.get(k) != current.get(k)}
    if diff:
        lines = ', '.join(f'{k}: checkpoint {a!r} vs now {b!r}' for k, (a, b) in diff.items())
        raise ValueError(f'cannot resume: the checkpoint was made with another config ({lines}); '
                         f'use the same flags or start a new --outdir')


def load_net_state(net, state_dict, source):
    """Strict load with a message that names the offending keys."""
    own = net.state_dict()
    missing = [k for k in own if k not in state_dict]
    extra = [k for k in state_dict if k not in own]
    shape = [f'{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}' for k in own
             if k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or extra or shape:
        raise ValueError(f'{source}: weights do not fit the network: missing {missing[:5]}, unexpected '
                         f'{extra[:5]}, shape mismatches {shape[:5]}')
    box = [k for k in own if k.endswith('resample_filter')
           and not torch.equal(state_dict[k].float().cpu(), own[k].float().cpu())]
    if box:  # Conv2d resamples by nearest / average pooling, which is what the [1,1] box filter computes
        raise ValueError(f'{source}: {box[0]} is not the [1,1] box filter; only DDPM++\'s and ADM\'s resampling is '
                         f'supported')
    net.load_state_dict(state_dict)


def rng_state():
    state = {'cpu': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state):
    torch.set_rng_state(state['cpu'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])


def gather_states(state, world):
    """Every rank's copy of a small picklable state (RNG, data stream), collected for the checkpoint."""
    if world == 1:
        return [state]
    out = [None] * world
    torch.distributed.all_gather_object(out, state)
    return out


def pick_rank_state(states, rank):
    """This rank's state from a checkpoint (rank 0's when the run had fewer processes)."""
    return states[rank] if rank < len(states) else states[0]


def to_uint8(images):
    """[-1, 1] floats -> uint8, rounded (the quantisation every FID protocol applies to samples)."""
    return (images.to(torch.float32) * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def save_grid(images, path, cols=None):
    """Save [N, C, H, W] images ([-1, 1] floats or uint8) as one PNG grid."""
    from PIL import Image
    images = images.detach().cpu()
    if images.dtype != torch.uint8:
        images = to_uint8(images)
    n, c, h, w = images.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = torch.zeros([rows * cols, c, h, w], dtype=torch.uint8)
    grid[:n] = images
    grid = grid.reshape(rows, cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c).numpy()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(grid[:, :, 0] if c == 1 else grid, 'L' if c == 1 else 'RGB').save(path)


class Logger:
    """One progress line per interval on stdout (rank 0), mirrored as JSON lines in <outdir>/log.jsonl."""

    def __init__(self, outdir, rank=0):
        self.rank = rank
        self.path = os.path.join(outdir, 'log.jsonl') if outdir else None

    def __call__(self, fields):
        if self.rank != 0:
            return
        print('  '.join(f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in fields.items()),
              flush=True)
        if self.path:
            with open(self.path, 'a') as f:
                f.write(json.dumps({'time': time.time(), **fields}) + '\n')


def tick_speed(cur_nimg, tick_nimg, tick_time, device):
    """The speed fields of a progress line: img/s and sec/kimg over the tick, peak memory so far."""
    dt = time.time() - tick_time
    return {'img/s': (cur_nimg - tick_nimg) / dt, 'sec/kimg': dt * 1000 / (cur_nimg - tick_nimg),
            'mem_gb': round(peak_memory_gb(device), 2)}


def check_finite(values, cur_nimg):
    if not all(math.isfinite(v) for v in values.values()):
        raise SystemExit(f'error: non-finite loss {values} at {cur_nimg / 1000:.1f} kimg; lower the learning rate '
                         f'or use --precision fp32, and resume from the last checkpoint')


def print0(*args, rank=0, **kwargs):
    if rank == 0:
        print(*args, **kwargs, flush=True)


def duration(seconds):
    return f'{seconds / 3600:.1f} h' if seconds >= 5400 else f'{seconds / 60:.0f} min' if seconds >= 90 else f'{seconds:.0f} s'


class Progress:
    """A line on stderr at least every `every` seconds for long work (and at the end): how far, how fast, how long
    still. update(n) after each piece of n items."""

    def __init__(self, what, total, unit='images', rank=0, every=10.0):
        self.what, self.total, self.unit, self.rank, self.every = what, total, unit, rank, every
        self.done, self.t0 = 0, time.time()
        self.last = self.t0

    def update(self, n):
        self.done += n
        now = time.time()
        if self.rank == 0 and (now - self.last >= self.every or self.done >= self.total):
            rate = self.done / max(now - self.t0, 1e-9)
            left = f'  {duration((self.total - self.done) / rate)} left' if self.done < self.total else ''
            print(f'{self.what}: {self.done}/{self.total} {self.unit}  {rate:.1f} {self.unit}/s  '
                  f'{duration(now - self.t0)} so far{left}', file=sys.stderr, flush=True)
            self.last = now


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help keeps the module docstring as written and shows every flag's default."""


def given_flags(parser, argv):
    """The dests of the flags written on this command line (parse_args fills in the others' defaults)."""
    dests = {s: a.dest for a in parser._actions for s in a.option_strings}
    return {dests[x.split('=')[0]] for x in argv if x.split('=')[0] in dests}


def refuse_flags(parser, argv, dests, why):
    """No flag without effect: stop with one line when any of `dests` was given; `why` says in which mode."""
    given = sorted(given_flags(parser, argv) & set(dests), key=list(dests).index)
    if given:
        parser.error(f'{", ".join("--" + d.replace("_", "-") for d in given)}: no effect {why}')


def check_runtime_args(parser, argv, args):
    """The shared flags' values, and the FID flags that do nothing when FID is off, before any work starts."""
    if args.tick_kimg <= 0 or args.snapshot_ticks < 1 or args.grid < 1 or args.fid_num < 2:
        parser.error('--tick-kimg must be positive, --snapshot-ticks and --grid at least 1, --fid-num at least 2')
    if args.fid_ref == 'none':
        refuse_flags(parser, argv, ['fid_num', 'fid_at_start', 'inception'], 'with --fid-ref none')
    elif args.fid_ref == 'samples':
        refuse_flags(parser, argv, ['inception'], 'with --fid-ref samples (the samples are measured elsewhere)')
    if args.dataset not in ('cifar10', 'fashion-mnist'):
        refuse_flags(parser, argv, ['data_dir'], 'with --dataset PATH (it is where cifar10 and fashion-mnist are read)')


def add_runtime_args(p, outdir, tick_kimg, snapshot_ticks, one_step=True):
    """Flags every trainer shares: where to write, how to run, how often to report, FID in the loop."""
    p.add_argument('--outdir', default=outdir, help='checkpoint.pt, grids and log.jsonl go here')
    p.add_argument('--resume', default=None, help='checkpoint to continue, or "auto" = <outdir>/checkpoint.pt')
    p.add_argument('--seed', type=int, default=0, help='training seed (data order, noise, dropout)')
    p.add_argument('--device', default='auto', help='auto | cuda | cpu')
    p.add_argument('--precision', default='bf16', choices=['bf16', 'fp16', 'fp32'],
                   help='training passes on CUDA (ours; EDM and DI: fp32; results/NOTES.md, precision); CPU: fp32')
    p.add_argument('--compile', type=int, default=0, help='torch.compile the networks (ours)')
    source = 'ours' if one_step else 'EDM'  # EDM's train.py: 50 and 50
    p.add_argument('--tick-kimg', type=float, default=tick_kimg, help=f'progress line every this many kimg ({source})')
    p.add_argument('--snapshot-ticks', type=int, default=snapshot_ticks,
                   help=f'checkpoint + grid + FID every this many ticks ({source})')
    p.add_argument('--grid', type=int, default=64, help='images in the sample grids (fixed seeds)')
    p.add_argument('--fid-ref', default='auto', help='FID in the loop: auto (statistics of the training set, '
                   'cached) | none | a .npz from fid.py ref | samples (save each point\'s images to '
                   '<outdir>/fid_samples/*.zip, for fid.py calc --images where the Inception weights are)')
    p.add_argument('--fid-num', type=int, default=10000, help='samples per in-loop FID (ours; final: fid.py calc 50k)')
    if one_step:
        p.add_argument('--fid-at-start', type=int, default=0, help='also FID the initial generator (ours)')
    p.add_argument('--inception', default=None, help='local Inception weights for FID (offline); default: download')


def run_main(args, body):
    """Set up devices / DDP, run body(rank, world, device), turn expected errors into one clear line (exit 2)."""
    rank, world, device = init_distributed(args.device)
    try:
        body(rank, world, device)
    except (FileNotFoundError, ValueError, pickle.UnpicklingError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    finally:
        if world > 1:
            # a stepped DDP wrapper can be held by cyclic garbage, and one freed at interpreter shutdown occasionally
            # aborted a rank ('terminate called without an active exception'): collect while Python is fully alive
            gc.collect()
            torch.distributed.destroy_process_group()


def preflight(checks):
    """Before any work: every input the run needs, downloaded where it can be, and all that is missing in one
    message, each with its offline route. checks: functions that fetch an input or raise FileNotFoundError."""
    errors = []
    for check in checks:
        try:
            check()
        except (FileNotFoundError, ValueError) as e:
            errors.append(str(e))
    if len(errors) > 1:
        raise FileNotFoundError(f'{len(errors)} inputs are missing:\n  - ' + '\n  - '.join(errors))
    if errors:
        raise FileNotFoundError(errors[0])


def load_resume(args, kind, method, same_run):
    """--resume (auto = <outdir>/checkpoint.pt): the checkpoint, checked to continue this very run (its kind, its
    method, its layout and the flags in same_run), or None; before any expensive work."""
    if not args.resume:
        return None
    path = os.path.join(args.outdir, 'checkpoint.pt') if args.resume == 'auto' else args.resume
    ckpt = load_checkpoint(path, kind)
    if ckpt.get('method') != method:
        raise ValueError(f'{path!r} is a {ckpt.get("method") or ckpt["kind"]} checkpoint, not a {method} one')
    if kind == 'generator':
        check_format(ckpt, path)
    check_resume_config(ckpt['config'], vars(args), same_run)
    return dict(ckpt, path=path)


def dataset_source(dataset, data_dir, allow_download=True):
    """The pre-flight of --dataset: the CIFAR-10 archive fetched (not decoded), or the folder / zip present."""
    if dataset == 'cifar10':
        return cifar10_archive(data_dir, allow_download)
    if dataset == 'fashion-mnist':
        return fashion_mnist_files(data_dir, 'train', allow_download)
    if not os.path.exists(dataset):
        raise FileNotFoundError(f'--dataset {dataset!r}: not a known name (cifar10, fashion-mnist) and no such '
                                f'folder or zip file')


def reals_grid(data, n, seed=0):
    """A fixed random draw of n training images (a class-sorted dataset's first n would all be one class)."""
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return data.images[idx]


def grid_name(outdir, cur_nimg):
    """fakes_000016.384kimg.png: named by the images seen, so that no two snapshots of a run share a name."""
    return os.path.join(outdir, f'fakes_{cur_nimg / 1000:010.3f}kimg.png')


# ------------------------------------------------------------------------------------------------------
# 6. What the two one-step trainers share
# ------------------------------------------------------------------------------------------------------

def check_teacher_fits_data(teacher, data, cond):
    if (teacher.img_resolution, teacher.img_channels) != (data.resolution, data.channels):
        raise ValueError(f'the teacher makes {teacher.img_channels}x{teacher.img_resolution}² images but '
                         f'{data.name} has {data.channels}x{data.resolution}²')
    if cond and teacher.label_dim != data.num_classes:
        raise ValueError(f'--cond 1 needs a teacher with label_dim {data.num_classes}, this one has '
                         f'{teacher.label_dim}')
    if not cond and teacher.label_dim:
        raise ValueError('the teacher is class-conditional: pass --cond 1')


def save_one_step_snapshot(outdir, state, sample, grid_seeds, done):
    """The training checkpoint (everything needed to resume), a grid from fixed seeds, and at the end the light
    generator.pt that fid.py calc reads (kind 'generator': EMA weights, config and σ_init; a score-free run also
    keeps its classifier there, for its verifier)."""
    save_checkpoint(os.path.join(outdir, 'checkpoint.pt'), state)
    save_grid(sample(grid_seeds), grid_name(outdir, state['cur_nimg']))
    if done:
        keys = ('kind', 'method', 'config', 'net_config', 'sigma_init', 'ema', 'classifier')
        save_checkpoint(os.path.join(outdir, 'generator.pt'), {k: state[k] for k in keys if k in state})
