"""The DDPM U-Net (Ho et al. 2020, Appendix B) in Flax NNX, with logical axis names on every parameter.

A PixelCNN++ / Wide-ResNet-style U-Net, as the reference code `diffusion_tf/models/unet.py`:

* a sinusoidal embedding of the timestep (Transformer positions, dimension `ch`) through
  Dense(4 ch) - SiLU - Dense(4 ch), added (after SiLU and a per-block Dense) inside every
  residual block;
* residual blocks GroupNorm - SiLU - conv3x3 (+ timestep) - GroupNorm - SiLU - dropout - conv3x3,
  with a 1x1 shortcut where the width changes; 32 groups (gcd(32, width) where 32 does not divide it);
* `len(ch_mult)` resolution levels, `num_res_blocks` blocks each on the way down and
  `num_res_blocks + 1` on the way up (each up block concatenates one skip activation), a
  stride-2 conv to go down and nearest-neighbour x2 + conv3x3 to go up;
* single-head self-attention (GroupNorm, q/k/v 1x1 projections, residual) after the blocks of
  every level whose feature map is `attn_resolutions` pixels wide, and in the middle block
  (ResBlock - attention - ResBlock) at the lowest resolution;
* layers that end a residual branch (each block's second conv, attention's output projection)
  and the final conv start at zero, so the network starts as the identity on its skips and
  predicts zero, as the reference code's `init_scale=0`; every other weight is
  Xavier-uniform (the reference's `variance_scaling(1, 'fan_avg', 'uniform')`).

The levels' resolutions are fixed by `image_size`, which must halve `len(ch_mult) - 1` times
(28 px MNIST with `ch_mult=(1, 2, 2)`: 28, 14, 7). CIFAR-10's model (`ch=128`,
`ch_mult=(1, 2, 2, 2)`, 2 blocks, attention at 16 px, dropout 0.1) has 35.7M parameters.

`__call__(x, t)` returns the prediction (epsilon or v, as many channels as the input);
`return_features=True` also returns the middle block's activations averaged over space (the
representation diffusion-representation papers probe, `feature_dim` wide).

Sharding: convolution kernels carry `(None, None, 'conv_in', 'conv_out')`, biases and
GroupNorm parameters `('conv_out',)`, attention `embed`/`heads`/`kv` (jssl's Transformer
attention, reused), so the config's rules table places them as it places ResNets and ViTs.

References:
  Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020,
  https://arxiv.org/abs/2006.11239 (Appendix B); reference code
  https://github.com/hojonathanho/diffusion (diffusion_tf/models/unet.py);
  Salimans et al., "PixelCNN++", ICLR 2017; Zagoruyko & Komodakis, "Wide Residual Networks", 2016.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jssl.models.partitioning import constrain, logical
from jssl.models.transformer import MultiHeadSelfAttention

_CONV_AXES = (None, None, "conv_in", "conv_out")
_CHANNEL_AXES = ("conv_out",)
_DENSE_AXES = ("conv_in", "conv_out")
_XAVIER = nnx.initializers.xavier_uniform()
_ZEROS = nnx.initializers.zeros_init()
_ACT_AXES = ("batch", None, None, "conv_out")


def _conv(cin: int, cout: int, *, kernel: int = 3, stride: int = 1, zero: bool = False, dtype, rngs) -> nnx.Conv:
    return nnx.Conv(
        cin,
        cout,
        kernel_size=(kernel, kernel),
        strides=(stride, stride),
        padding="SAME",
        dtype=dtype,
        kernel_init=logical(_ZEROS if zero else _XAVIER, _CONV_AXES),
        bias_init=logical(_ZEROS, _CHANNEL_AXES),
        rngs=rngs,
    )


def _dense(cin: int, cout: int, *, dtype, rngs) -> nnx.Linear:
    return nnx.Linear(
        cin,
        cout,
        dtype=dtype,
        kernel_init=logical(_XAVIER, _DENSE_AXES),
        bias_init=logical(_ZEROS, _CHANNEL_AXES),
        rngs=rngs,
    )


def _group_norm(channels: int, num_groups: int, *, rngs) -> nnx.GroupNorm:
    # The reference's 32 groups where they divide the width; narrow models (and the up path's
    # concatenations, e.g. 32 + 16 = 48 channels) get the largest common divisor instead.
    groups = math.gcd(num_groups, channels)
    # float32 statistics whatever the compute dtype: the reference normalizes in float32.
    return nnx.GroupNorm(
        channels,
        num_groups=groups,
        epsilon=1e-6,
        dtype=jnp.float32,
        scale_init=logical(nnx.initializers.ones_init(), _CHANNEL_AXES),
        bias_init=logical(_ZEROS, _CHANNEL_AXES),
        rngs=rngs,
    )


def timestep_embedding(t: jax.Array, dim: int) -> jax.Array:
    """Sinusoidal embedding of integer timesteps `t [b]` -> `[b, dim]` (the reference's `get_timestep_embedding`).

    `[sin(t w_0), ..., sin(t w_{h-1}), cos(t w_0), ...]` with `w_i = 10000^(-i / (h - 1))`, `h = dim // 2`.
    """
    if dim < 4 or dim % 2:
        raise ValueError(f"unet: the timestep embedding needs an even dimension >= 4; got {dim}")
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) / (half - 1) * jnp.arange(half, dtype=jnp.float32))
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=1)


def _dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


class ResBlock(nnx.Module):
    """GroupNorm-SiLU-conv, + Dense(SiLU(temb)), GroupNorm-SiLU-dropout-conv(zero init), + shortcut."""

    def __init__(self, cin: int, cout: int, *, temb_dim: int, dropout: float, num_groups: int, dtype, rngs):
        self.norm1 = _group_norm(cin, num_groups, rngs=rngs)
        self.conv1 = _conv(cin, cout, dtype=dtype, rngs=rngs)
        self.temb_proj = _dense(temb_dim, cout, dtype=dtype, rngs=rngs)
        self.norm2 = _group_norm(cout, num_groups, rngs=rngs)
        self.conv2 = _conv(cout, cout, zero=True, dtype=dtype, rngs=rngs)
        self.shortcut = _conv(cin, cout, kernel=1, dtype=dtype, rngs=rngs) if cin != cout else None
        self.dropout = float(dropout)
        # Flipped by `set_attributes(deterministic=True)` (EMA copies, evaluation, `model.eval()`).
        self.deterministic = False
        self.dtype = dtype

    def __call__(self, x: jax.Array, temb: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
        h = self.conv1(nnx.silu(self.norm1(x)).astype(self.dtype))
        h = h + self.temb_proj(nnx.silu(temb).astype(self.dtype))[:, None, None, :]
        h = nnx.silu(self.norm2(h))
        if self.dropout > 0 and not self.deterministic:
            if rngs is None:
                raise ValueError("unet: dropout in training mode needs `rngs`")
            h = _dropout(h, self.dropout, rngs.dropout())
        h = self.conv2(h.astype(self.dtype))
        skip = x if self.shortcut is None else self.shortcut(x.astype(self.dtype))
        return constrain((skip + h).astype(jnp.float32), _ACT_AXES)


class AttnBlock(nnx.Module):
    """Self-attention over the pixels of a feature map: x + proj(attention(GroupNorm(x))), proj zero init."""

    def __init__(self, channels: int, *, num_heads: int, num_groups: int, dtype, rngs):
        if channels % num_heads:
            raise ValueError(f"unet: {channels} channels are not divisible by attn_num_heads={num_heads}")
        self.norm = _group_norm(channels, num_groups, rngs=rngs)
        self.attn = MultiHeadSelfAttention(
            embed_dim=channels, num_heads=num_heads, qkv_bias=True, dtype=dtype, rngs=rngs
        )
        # The reference's proj_out has init_scale=0: the block starts as the identity.
        self.attn.out_kernel.set_value(jnp.zeros_like(self.attn.out_kernel.get_value()))

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        y = self.attn(self.norm(x).reshape(b, h * w, c))
        return x + y.reshape(b, h, w, c)


class Downsample(nnx.Module):
    def __init__(self, channels: int, *, dtype, rngs):
        self.conv = _conv(channels, channels, stride=2, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x).astype(jnp.float32)


class Upsample(nnx.Module):
    def __init__(self, channels: int, *, dtype, rngs):
        self.conv = _conv(channels, channels, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return self.conv(x).astype(jnp.float32)


def level_resolutions(image_size: int, num_levels: int) -> list[int]:
    """Feature-map sides of the U-Net's levels, checked: `image_size` halved `num_levels - 1` times."""
    if image_size < 1:
        raise ValueError(f"unet: image_size must be >= 1; got {image_size}")
    factor = 2 ** (num_levels - 1)
    if image_size % factor:
        raise ValueError(
            f"unet: a {image_size} px image cannot be halved {num_levels - 1} times (len(ch_mult)={num_levels} "
            f"levels need a size divisible by {factor}); use fewer ch_mult entries or another image size"
        )
    return [image_size // 2**i for i in range(num_levels)]


class UNet(nnx.Module):
    """The DDPM U-Net; see the module docstring. Float32 parameters, compute in `dtype`.

    Args:
      in_channels: image channels.
      image_size: side of the images; it must halve `len(ch_mult) - 1` times.
      out_channels: predicted channels; default: `in_channels`.
      ch: channels of the first level (and of the timestep embedding).
      ch_mult: one multiplier of `ch` per resolution level.
      num_res_blocks: residual blocks per level on the way down (one more on the way up).
      attn_resolutions: feature-map widths (in pixels) whose levels get self-attention.
      dropout: in every residual block.
      num_groups: GroupNorm groups (gcd with the width where it does not divide it).
      attn_num_heads: heads of the self-attention layers.
      dtype: compute dtype; parameters stay float32.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        out_channels: int | None = None,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        num_groups: int = 32,
        attn_num_heads: int = 1,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        ch_mult = tuple(int(m) for m in ch_mult)
        attn_resolutions = tuple(int(r) for r in attn_resolutions)
        if ch < 1 or not ch_mult or min(ch_mult) < 1 or num_res_blocks < 1:
            raise ValueError(
                f"unet: ch, every ch_mult entry and num_res_blocks must be >= 1 (and ch_mult non-empty); "
                f"got ch={ch}, ch_mult={ch_mult}, num_res_blocks={num_res_blocks}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"unet: dropout must be in [0, 1); got {dropout}")
        resolutions = level_resolutions(int(image_size), len(ch_mult))
        unused = sorted(set(attn_resolutions) - set(resolutions))
        if unused:
            raise ValueError(
                f"unet: attn_resolutions {unused} match no level of a {image_size} px image (levels: {resolutions})"
            )
        self.image_size = int(image_size)
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.ch = ch
        self.ch_mult = ch_mult
        self.num_res_blocks = num_res_blocks
        self.resolutions = tuple(resolutions)
        self.attn_resolutions = attn_resolutions
        self.dtype = dtype
        temb_dim = 4 * ch
        block = {"temb_dim": temb_dim, "dropout": dropout, "num_groups": num_groups, "dtype": dtype, "rngs": rngs}
        attn = {"num_heads": attn_num_heads, "num_groups": num_groups, "dtype": dtype, "rngs": rngs}

        self.temb_dense0 = _dense(ch, temb_dim, dtype=dtype, rngs=rngs)
        self.temb_dense1 = _dense(temb_dim, temb_dim, dtype=dtype, rngs=rngs)
        self.conv_in = _conv(in_channels, ch, dtype=dtype, rngs=rngs)

        # Down: the widths of every activation kept for a skip connection, in order.
        skips = [ch]
        width = ch
        down_blocks, down_attn, downsample = [], [], []
        for level, mult in enumerate(ch_mult):
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(width, ch * mult, **block))
                width = ch * mult
                attns.append(AttnBlock(width, **attn) if resolutions[level] in attn_resolutions else None)
                skips.append(width)
            down_blocks.append(nnx.List(blocks))
            down_attn.append(nnx.List(attns))
            if level != len(ch_mult) - 1:
                downsample.append(Downsample(width, dtype=dtype, rngs=rngs))
                skips.append(width)
            else:
                downsample.append(None)
        self.down_blocks = nnx.List(down_blocks)
        self.down_attn = nnx.List(down_attn)
        self.downsample = nnx.List(downsample)

        self.mid_block1 = ResBlock(width, width, **block)
        self.mid_attn = AttnBlock(width, **attn)
        self.mid_block2 = ResBlock(width, width, **block)
        self.feature_dim = width

        up_blocks, up_attn, upsample = [], [], []
        for level in reversed(range(len(ch_mult))):
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResBlock(width + skips.pop(), ch * ch_mult[level], **block))
                width = ch * ch_mult[level]
                attns.append(AttnBlock(width, **attn) if resolutions[level] in attn_resolutions else None)
            up_blocks.append(nnx.List(blocks))
            up_attn.append(nnx.List(attns))
            upsample.append(Upsample(width, dtype=dtype, rngs=rngs) if level != 0 else None)
        self.up_blocks = nnx.List(up_blocks)
        self.up_attn = nnx.List(up_attn)
        self.upsample = nnx.List(upsample)

        self.norm_out = _group_norm(width, num_groups, rngs=rngs)
        self.conv_out = _conv(width, self.out_channels, zero=True, dtype=dtype, rngs=rngs)

    def check_images(self, x: jax.Array) -> None:
        if x.ndim != 4 or x.shape[1:] != (self.image_size, self.image_size, self.in_channels):
            raise ValueError(
                f"unet was built for {self.image_size}x{self.image_size}x{self.in_channels} images "
                f"(model.kwargs.image_size); got shape {tuple(x.shape)}"
            )

    def __call__(
        self, x: jax.Array, t: jax.Array, *, rngs: nnx.Rngs | None = None, return_features: bool = False
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """`x [b, s, s, c]` at integer timesteps `t [b]` -> prediction `[b, s, s, out_channels]` float32
        (and the middle block's spatial mean `[b, feature_dim]` with `return_features`)."""
        self.check_images(x)
        temb = timestep_embedding(t, self.ch).astype(self.dtype)
        temb = self.temb_dense1(nnx.silu(self.temb_dense0(temb))).astype(jnp.float32)

        h = self.conv_in(x.astype(self.dtype)).astype(jnp.float32)
        hs = [h]
        for blocks, attns, down in zip(self.down_blocks, self.down_attn, self.downsample):
            for block, attn in zip(blocks, attns):
                h = block(h, temb, rngs)
                if attn is not None:
                    h = attn(h)
                hs.append(h)
            if down is not None:
                h = down(h)
                hs.append(h)

        h = self.mid_block2(self.mid_attn(self.mid_block1(h, temb, rngs)), temb, rngs)
        features = jnp.mean(h, axis=(1, 2))

        for blocks, attns, up in zip(self.up_blocks, self.up_attn, self.upsample):
            for block, attn in zip(blocks, attns):
                h = block(jnp.concatenate([h, hs.pop()], axis=-1), temb, rngs)
                if attn is not None:
                    h = attn(h)
            if up is not None:
                h = up(h)

        out = self.conv_out(nnx.silu(self.norm_out(h)).astype(self.dtype)).astype(jnp.float32)
        return (out, features) if return_features else out


UNETS = {"unet": UNet}


def get_unet(name: str, *, rngs: nnx.Rngs, **kwargs: Any) -> UNet:
    """Builds the denoising network called `name` (`config.model.name`) with `config.model.kwargs`."""
    if name not in UNETS:
        raise ValueError(f"unknown denoising network {name!r}; known: {sorted(UNETS)}")
    return UNETS[name](rngs=rngs, **kwargs)
