"""Convolutional encoder and mirrored decoder for small images (MNIST 28x28x1, CIFAR 32x32x3).

The encoder is a backbone like the ResNets (`get_backbone('conv_ae_small', in_channels=1,
image_size=28, ...)`): a 3x3 stem, then per stage one stride-2 3x3 convolution and
`blocks_per_stage` pre-activation residual blocks, then the final feature map flattened into a
linear layer to `latent_dim` values. That output is the code (the DAE) or the posterior mean
(the VAE, which adds its log-variance head on `trunk`); its `feature_dim` is `latent_dim`, so
kNN, probes and fine-tuning use it as any backbone's features.

The decoder mirrors the encoder: a linear layer back to the final feature map, then per stage
(deepest first) the residual blocks and a nearest-neighbour 2x upsampling followed by a 3x3
convolution (resize + conv rather than a transposed convolution: no checkerboard artifacts,
Odena et al. 2016), then a 3x3 convolution to the image channels. Each stride-2 convolution
maps a side n to ceil(n / 2), so the decoder reaches exactly the image size only if the
encoder never rounded up (28 -> 14 -> 7 -> 14 -> 28 works, 28 -> 14 -> 7 -> 4 does not);
otherwise building it raises a `ValueError` naming the sizes.

Normalization is GroupNorm or none, never BatchNorm: BatchNorm makes an example's output, and
so a VAE's per-example likelihood, depend on the rest of the batch. Parameters carry logical
axis names as in `jssl.models.resnet` (`conv_in`/`conv_out` for convolutions and norms, `embed`
on the latent side of the linear layers), so the config's sharding rules place them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jssl.models.partitioning import logical
from jssl.models.resnet import Conv

NORMS = ("group", "none")
# The same logical axes as `jssl.models.resnet`'s convolutions and BatchNorms.
_CONV_AXES = (None, None, "conv_in", "conv_out")
_CHANNEL_AXES = ("conv_out",)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = (int(s) for s in size)
    return (h, w)


def downsampled_size(size: int, num_stages: int) -> int:
    """Side after `num_stages` stride-2 3x3 convolutions with padding 1: ceil-halving each time."""
    for _ in range(num_stages):
        size = (size - 1) // 2 + 1
    return size


def _conv(in_features: int, out_features: int, *, stride: int = 1, bias: bool, zero: bool = False, dtype, rngs):
    # He-normal (fan_out) as the ResNets; a zero kernel makes a residual branch start as the identity.
    init = nnx.initializers.zeros_init() if zero else nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
    return Conv(
        in_features,
        out_features,
        kernel_size=(3, 3),
        strides=(stride, stride),
        padding=[(1, 1), (1, 1)],
        use_bias=bias,
        dtype=dtype,
        kernel_init=logical(init, _CONV_AXES),
        bias_init=logical(nnx.initializers.zeros_init(), _CHANNEL_AXES),
        rngs=rngs,
    )


def _linear(in_features: int, out_features: int, axes: tuple[str | None, str | None], *, dtype, rngs) -> nnx.Linear:
    return nnx.Linear(
        in_features,
        out_features,
        dtype=dtype,
        kernel_init=logical(nnx.initializers.lecun_normal(), axes),
        bias_init=logical(nnx.initializers.zeros_init(), (axes[1],)),
        rngs=rngs,
    )


class _Norm(nnx.Module):
    """GroupNorm (per example, so likelihoods do not depend on the batch) or the identity."""

    def __init__(self, features: int, *, kind: str, groups: int, dtype, rngs: nnx.Rngs):
        self.norm = (
            nnx.GroupNorm(
                features,
                num_groups=groups,
                epsilon=1e-5,
                dtype=dtype,
                scale_init=logical(nnx.initializers.ones_init(), _CHANNEL_AXES),
                bias_init=logical(nnx.initializers.zeros_init(), _CHANNEL_AXES),
                rngs=rngs,
            )
            if kind == "group"
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return x if self.norm is None else self.norm(x)


class ResBlock(nnx.Module):
    """Pre-activation residual block: norm -> SiLU -> conv3x3 -> norm -> SiLU -> conv3x3, plus the input.

    The ResNets' `BasicBlock` hard-wires BatchNorm (post-activation), which a VAE must avoid;
    this is its GroupNorm form, as in the DDPM U-Net's blocks. The second convolution starts at
    zero (the ResNets zero their last BN scale for the same reason: each block starts as the
    identity).
    """

    def __init__(self, features: int, *, norm: str, groups: int, dtype, rngs: nnx.Rngs):
        bias = norm == "none"  # a norm's shift follows every convolution otherwise
        self.norm1 = _Norm(features, kind=norm, groups=groups, dtype=dtype, rngs=rngs)
        self.conv1 = _conv(features, features, bias=bias, dtype=dtype, rngs=rngs)
        self.norm2 = _Norm(features, kind=norm, groups=groups, dtype=dtype, rngs=rngs)
        self.conv2 = _conv(features, features, bias=True, zero=True, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv1(nnx.silu(self.norm1(x)))
        return x + self.conv2(nnx.silu(self.norm2(y)))


def _check_architecture(widths: Sequence[int], blocks_per_stage: int, latent_dim: int, norm: str, groups: int) -> None:
    if not widths or any(int(w) < 1 for w in widths):
        raise ValueError(f"autoencoder widths must be a non-empty sequence of positive ints; got {tuple(widths)}")
    if blocks_per_stage < 0:
        raise ValueError(f"autoencoder blocks_per_stage must be >= 0; got {blocks_per_stage}")
    if latent_dim < 1:
        raise ValueError(f"autoencoder latent_dim must be >= 1; got {latent_dim}")
    if norm not in NORMS:
        raise ValueError(f"unknown autoencoder norm {norm!r}; known: {list(NORMS)}")
    if norm == "group" and (groups < 1 or any(int(w) % groups for w in widths)):
        raise ValueError(f"GroupNorm groups {groups} must divide every width {tuple(widths)}")


class ConvEncoder(nnx.Module):
    """Images `[b, h, w, c]` -> latent features `[b, latent_dim]` (the code, or a VAE's posterior mean).

    Args:
      in_channels: image channels.
      image_size: side (or `(h, w)`) the encoder is built for: the final linear layer reads
        the flattened final feature map, whose size depends on it.
      widths: channels of each stage; each stage halves the resolution (rounding up).
      blocks_per_stage: residual blocks after each stage's stride-2 convolution.
      latent_dim: output features.
      norm: 'group' (GroupNorm) or 'none'.
      groups: GroupNorm groups (must divide every width).
      dtype: compute dtype; parameters stay float32.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int | Sequence[int] = 28,
        widths: Sequence[int] = (16, 32),
        blocks_per_stage: int = 1,
        latent_dim: int = 32,
        norm: str = "group",
        groups: int = 8,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        widths = tuple(int(w) for w in widths)
        _check_architecture(widths, int(blocks_per_stage), int(latent_dim), norm, int(groups))
        self.image_size = _pair(image_size)
        self.in_channels = in_channels
        self.widths = widths
        self.blocks_per_stage = int(blocks_per_stage)
        self.latent_dim = int(latent_dim)
        self.norm_kind = norm
        self.groups = int(groups)
        self.grid = tuple(downsampled_size(s, len(widths)) for s in self.image_size)
        bias = norm == "none"
        self.stem = _conv(in_channels, widths[0], bias=bias, dtype=dtype, rngs=rngs)
        downs, blocks = [], []
        previous = widths[0]
        for width in widths:
            downs.append(_conv(previous, width, stride=2, bias=bias, dtype=dtype, rngs=rngs))
            for _ in range(self.blocks_per_stage):
                blocks.append(ResBlock(width, norm=norm, groups=self.groups, dtype=dtype, rngs=rngs))
            previous = width
        self.downs = nnx.List(downs)
        self.blocks = nnx.List(blocks)
        self.out_norm = _Norm(widths[-1], kind=norm, groups=self.groups, dtype=dtype, rngs=rngs)
        self.hidden_dim = self.grid[0] * self.grid[1] * widths[-1]
        self.head = _linear(self.hidden_dim, self.latent_dim, (None, "embed"), dtype=dtype, rngs=rngs)

    @property
    def feature_dim(self) -> int:
        return self.latent_dim

    def check_images(self, images: jax.Array) -> None:
        if tuple(images.shape[1:3]) != self.image_size or images.shape[-1] != self.in_channels:
            raise ValueError(
                f"the autoencoder was built for {self.image_size[0]}x{self.image_size[1]}x{self.in_channels} "
                f"images; got {images.shape[1]}x{images.shape[2]}x{images.shape[3]} (set model.kwargs.image_size)"
            )

    def trunk(self, images: jax.Array) -> jax.Array:
        """`[b, h, w, c]` -> the flattened final feature map `[b, hidden_dim]` (after norm and SiLU)."""
        self.check_images(images)
        x = self.stem(images)
        per_stage = self.blocks_per_stage
        for i, down in enumerate(self.downs):
            x = down(nnx.silu(x) if i else x)
            for block in self.blocks[i * per_stage : (i + 1) * per_stage]:
                x = block(x)
        x = nnx.silu(self.out_norm(x))
        return x.reshape(x.shape[0], -1)

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.head(self.trunk(images)).astype(jnp.float32)


class ConvDecoder(nnx.Module):
    """Latents `[b, latent_dim]` -> images `[b, h, w, out_channels]` (float32; logits or means).

    Raises `ValueError` when `grid * 2**len(widths)` is not the image size (see the module
    docstring), naming both.
    """

    def __init__(
        self,
        *,
        out_channels: int,
        image_size: int | Sequence[int],
        grid: Sequence[int],
        widths: Sequence[int],
        blocks_per_stage: int,
        latent_dim: int,
        norm: str = "group",
        groups: int = 8,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        widths = tuple(int(w) for w in widths)
        _check_architecture(widths, int(blocks_per_stage), int(latent_dim), norm, int(groups))
        image_size, grid = _pair(image_size), _pair(grid)
        reached = tuple(g * 2 ** len(widths) for g in grid)
        if reached != image_size:
            raise ValueError(
                f"the decoder cannot produce {image_size[0]}x{image_size[1]} images: its {grid[0]}x{grid[1]} latent "
                f"grid upsampled {len(widths)} times by 2 gives {reached[0]}x{reached[1]} (the encoder rounded odd "
                f"sides up); use fewer stages or a side divisible by {2 ** len(widths)}"
            )
        self.image_size = image_size
        self.grid = grid
        self.widths = widths
        self.blocks_per_stage = int(blocks_per_stage)
        bias = norm == "none"
        self.head = _linear(int(latent_dim), grid[0] * grid[1] * widths[-1], ("embed", None), dtype=dtype, rngs=rngs)
        blocks, ups = [], []
        # Deepest stage first; each upsampling conv lands on the previous stage's width, as the
        # encoder's stride-2 conv left it.
        for i in reversed(range(len(widths))):
            for _ in range(self.blocks_per_stage):
                blocks.append(ResBlock(widths[i], norm=norm, groups=int(groups), dtype=dtype, rngs=rngs))
            ups.append(_conv(widths[i], widths[max(i - 1, 0)], bias=bias, dtype=dtype, rngs=rngs))
        self.blocks = nnx.List(blocks)
        self.ups = nnx.List(ups)
        self.out_norm = _Norm(widths[0], kind=norm, groups=int(groups), dtype=dtype, rngs=rngs)
        self.out = _conv(widths[0], out_channels, bias=True, dtype=dtype, rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        x = self.head(z).reshape(z.shape[0], *self.grid, self.widths[-1])
        per_stage = self.blocks_per_stage
        for i, up in enumerate(self.ups):
            for block in self.blocks[i * per_stage : (i + 1) * per_stage]:
                x = block(x)
            # Nearest-neighbour 2x as two repeats: exact, and cheaper than a general resize.
            x = jnp.repeat(jnp.repeat(nnx.silu(x), 2, axis=1), 2, axis=2)
            x = up(x)
        return self.out(nnx.silu(self.out_norm(x))).astype(jnp.float32)


def mirror_decoder(encoder: ConvEncoder, *, out_channels: int | None = None, dtype: Any = jnp.float32, rngs: nnx.Rngs):
    """The decoder mirroring `encoder` (same widths, blocks, norm), back to its image size."""
    return ConvDecoder(
        out_channels=encoder.in_channels if out_channels is None else out_channels,
        image_size=encoder.image_size,
        grid=encoder.grid,
        widths=encoder.widths,
        blocks_per_stage=encoder.blocks_per_stage,
        latent_dim=encoder.latent_dim,
        norm=encoder.norm_kind,
        groups=encoder.groups,
        dtype=dtype,
        rngs=rngs,
    )


def _variant(**defaults: Any) -> Callable[..., ConvEncoder]:
    def build(**kwargs: Any) -> ConvEncoder:
        return ConvEncoder(**{**defaults, **kwargs})

    return build


# Variant name -> encoder constructor (defaults; `model.kwargs` override any field). The decoder
# is always `mirror_decoder(encoder)`, so one name fixes both halves.
AUTOENCODERS: dict[str, Callable[..., ConvEncoder]] = {
    "conv_ae_small": _variant(widths=(16, 32), blocks_per_stage=1, latent_dim=32),
    "conv_ae_tiny": _variant(widths=(8, 16), blocks_per_stage=1, latent_dim=16),
}
