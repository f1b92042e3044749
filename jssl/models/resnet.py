"""ResNet backbones (v1.5) in Flax NNX, with logical axis names on every parameter.

Parameters are annotated with logical axes (`conv_in`, `conv_out`) rather than mesh axes, so
that the same model shards differently by changing the config's rules table only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jssl.models.partitioning import logical

_CONV_AXES = (None, None, "conv_in", "conv_out")
_CHANNEL_AXES = ("conv_out",)


class Conv(nnx.Conv):
    """`nnx.Conv` (square kernel, symmetric zero padding, NHWC) that computes output maps smaller
    than its kernel as one matrix product per output pixel over the taps that touch the image.

    Why: on CPU, XLA's algebraic simplifier rewrites a convolution whose kernel is larger than its
    input (a 3x3 conv on the 2x2 and 1x1 maps of a ResNet's last stages at 32 px) by swapping its
    operands, and that form ran at ~1 GFLOP/s: 3-4x the whole ResNet-18 step at 32 px
    (benchmarks/RESULTS.md). The strided 3x3 conv from a 4x4 to a 2x2 map is as bad the other
    way: the input gradient, a dilated convolution on XLA's generic path, took 30 ms of that
    step's backward. One small matrix product per output pixel over the pixels it reads is the
    same arithmetic without the padding, and leaves every other convolution to XLA as is.
    Parameters and their names are `nnx.Conv`'s, so checkpoints and sharding rules are unchanged.
    """

    def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
        kh, kw = self.kernel_size
        if inputs.ndim != 4 or min(_out_size(inputs.shape[1], kh, self), _out_size(inputs.shape[2], kw, self)) >= kh:
            return super().__call__(inputs, out_sharding=out_sharding)
        return small_map_conv(inputs, self.kernel.get_value(), stride=self.strides[0], padding=self.padding[0][0],
                              dtype=self.dtype, precision=self.precision)


def _out_size(size: int, kernel: int, conv: nnx.Conv) -> int:
    return (size + 2 * conv.padding[0][0] - kernel) // conv.strides[0] + 1


def small_map_conv(x: jax.Array, kernel: jax.Array, *, stride: int, padding: int, dtype=None,
                   precision=None) -> jax.Array:
    """`x [B, H, W, C] * kernel [k, k, C, O]` (stride, symmetric zero `padding`) for output maps smaller
    than the kernel, as one matrix product per kernel tap over the output pixels whose input pixel
    for that tap lies inside the image (no multiplications by padding, so the FLOPs are the
    padding-aware count); equals `lax.conv_general_dilated`.

    Per tap rather than per output pixel: each tap's weights are a [C, O] slice the product reads
    in place, where gathering each pixel's taps copied the kernel once per output pixel (forward
    and backward: half of a ResNet-18 32 px step on CPU). The kernel enters through one split, whose
    gradient is one concatenate rather than a zero-padded full kernel per tap to add up.
    """
    k = kernel.shape[0]
    if dtype is not None:
        x, kernel = x.astype(dtype), kernel.astype(dtype)
    _, h, w, channels = x.shape
    out_h = (h + 2 * padding - k) // stride + 1
    out_w = (w + 2 * padding - k) // stride + 1
    taps = jnp.split(kernel.reshape(k * k, channels, kernel.shape[3]), k * k)

    def inside(out_size: int, size: int, offset: int) -> list[int]:
        # Output positions whose input position (o * stride + offset - padding) is in the image:
        # an interval, so the pixels a tap reads form one strided rectangle.
        return [o for o in range(out_size) if 0 <= o * stride + offset - padding < size]

    out = None
    for i in range(k):
        rows = inside(out_h, h, i)
        for j in range(k):
            cols = inside(out_w, w, j)
            if not rows or not cols:
                continue
            top, left = rows[0] * stride + i - padding, cols[0] * stride + j - padding
            patch = x[:, top : top + (len(rows) - 1) * stride + 1 : stride, left : left + (len(cols) - 1) * stride + 1 : stride]
            y = jnp.einsum("bhwc,co->bhwo", patch, taps[i * k + j][0], precision=precision)
            y = jnp.pad(y, ((0, 0), (rows[0], out_h - 1 - rows[-1]), (cols[0], out_w - 1 - cols[-1]), (0, 0)))
            out = y if out is None else out + y
    return out  # [B, out_h, out_w, O]


def _max3_stride2(x: jax.Array, axis: int) -> jax.Array:
    """Max over windows of 3 with stride 2 and one -inf pad each side, along `axis`."""
    n = x.shape[axis]
    out = (n - 1) // 2 + 1
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 1)
    padded = jnp.pad(x, pad, constant_values=-jnp.inf)
    taps = [jax.lax.slice_in_dim(padded, i, i + 2 * (out - 1) + 1, 2, axis) for i in range(3)]
    return jnp.maximum(jnp.maximum(taps[0], taps[1]), taps[2])


def max_pool_3x3_stride2(x: jax.Array) -> jax.Array:
    """The stem's 3x3 / 2 max pool (padding 1) of `x [B, H, W, C]`, as a max over rows then columns.

    Equals `nnx.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))`. Why not that: its gradient is a
    select-and-scatter, which XLA CPU runs as a variadic reduce-window over index arrays: 40 ms of
    a 64-image 16 px map, against 5 ms for the gradient of these elementwise maxima (ties, which
    the ReLU before the pool makes common at zero, get no gradient through the ReLU either way).
    """
    return _max3_stride2(_max3_stride2(x, 1), 2)


def conv(in_features: int, out_features: int, kernel: int, stride: int = 1, *, dtype, rngs: nnx.Rngs) -> nnx.Conv:
    """A bias-free convolution (a BatchNorm always follows) with He-normal init."""
    init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
    return Conv(
        in_features,
        out_features,
        kernel_size=(kernel, kernel),
        strides=(stride, stride),
        padding=[(kernel // 2, kernel // 2)] * 2,
        use_bias=False,
        dtype=dtype,
        kernel_init=logical(init, _CONV_AXES),
        rngs=rngs,
    )


def batch_norm(features: int, *, zero_init: bool = False, dtype, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """BatchNorm whose statistics are reduced over the whole (global, sharded) batch.

    Under `jax.jit` with a batch sharded over the mesh, the mean over axis 0 is a global mean,
    so this is synchronized BN without an explicit `axis_name`.
    """
    scale_init = nnx.initializers.zeros_init() if zero_init else nnx.initializers.ones_init()
    return nnx.BatchNorm(
        features,
        momentum=0.9,
        epsilon=1e-5,
        dtype=dtype,
        scale_init=logical(scale_init, _CHANNEL_AXES),
        bias_init=logical(nnx.initializers.zeros_init(), _CHANNEL_AXES),
        rngs=rngs,
    )


class BasicBlock(nnx.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_features: int, features: int, stride: int, *, dtype, rngs: nnx.Rngs):
        self.conv1 = conv(in_features, features, 3, stride, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(features, dtype=dtype, rngs=rngs)
        self.conv2 = conv(features, features, 3, dtype=dtype, rngs=rngs)
        # Zero-init of the last BN scale makes each block start as the identity (Goyal et al.).
        self.bn2 = batch_norm(features, zero_init=True, dtype=dtype, rngs=rngs)
        self.shortcut = _shortcut(in_features, features, stride, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return nnx.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


class BottleneckBlock(nnx.Module):
    """1x1 -> 3x3 (strided, as in v1.5) -> 1x1 convolutions (ResNet-50 and deeper)."""

    expansion = 4

    def __init__(self, in_features: int, features: int, stride: int, *, dtype, rngs: nnx.Rngs):
        out = features * self.expansion
        self.conv1 = conv(in_features, features, 1, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(features, dtype=dtype, rngs=rngs)
        self.conv2 = conv(features, features, 3, stride, dtype=dtype, rngs=rngs)
        self.bn2 = batch_norm(features, dtype=dtype, rngs=rngs)
        self.conv3 = conv(features, out, 1, dtype=dtype, rngs=rngs)
        self.bn3 = batch_norm(out, zero_init=True, dtype=dtype, rngs=rngs)
        self.shortcut = _shortcut(in_features, out, stride, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = nnx.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return nnx.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


class _Projection(nnx.Module):
    def __init__(self, in_features: int, out_features: int, stride: int, *, dtype, rngs: nnx.Rngs):
        self.conv = conv(in_features, out_features, 1, stride, dtype=dtype, rngs=rngs)
        self.bn = batch_norm(out_features, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.bn(self.conv(x))


def _shortcut(in_features: int, out_features: int, stride: int, *, dtype, rngs: nnx.Rngs):
    if stride == 1 and in_features == out_features:
        return None
    return _Projection(in_features, out_features, stride, dtype=dtype, rngs=rngs)


class ResNet(nnx.Module):
    """A ResNet trunk returning globally average-pooled features `[batch, feature_dim]`.

    Args:
      stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
      block: `BasicBlock` or `BottleneckBlock`.
      in_channels: image channels (1 for MNIST, 3 for RGB).
      width: channels of the first stage before the width multiplier (64 in the paper).
      width_multiplier: scales every stage's width (SimCLR's ResNet-50 (2x), (4x)).
      small_image_stem: a 3x3 stem without max-pool (CIFAR/MNIST-sized images) instead of
        the 7x7 stride-2 stem + max-pool meant for 224 px.
      stem_stride: stride of the small-image stem (1 as in the CIFAR ResNets; 2 halves the
        cost of every later layer, which the CPU default run needs).
      dtype: compute dtype (bfloat16 for mixed precision); parameters stay float32.
    """

    def __init__(
        self,
        stage_sizes: Sequence[int],
        block: type[BasicBlock] | type[BottleneckBlock],
        *,
        in_channels: int = 3,
        width: int = 64,
        width_multiplier: float = 1.0,
        small_image_stem: bool = False,
        stem_stride: int = 1,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        base = max(1, int(round(width * width_multiplier)))
        self.small_image_stem = small_image_stem
        stem_kernel, stem_stride = (3, stem_stride) if small_image_stem else (7, 2)
        self.stem_conv = conv(in_channels, base, stem_kernel, stem_stride, dtype=dtype, rngs=rngs)
        self.stem_bn = batch_norm(base, dtype=dtype, rngs=rngs)
        blocks = []
        stages = []
        in_features = base
        for stage, num_blocks in enumerate(stage_sizes):
            features = base * 2**stage
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(block(in_features, features, stride, dtype=dtype, rngs=rngs))
                stages.append(stage)
                in_features = features * block.expansion
        self.blocks = nnx.List(blocks)
        self.block_stages = tuple(stages)  # stage of each block, for `layer_index`
        self.num_layers = len(stage_sizes)
        self.feature_dim = in_features

    def __call__(self, images: jax.Array) -> jax.Array:
        x = nnx.relu(self.stem_bn(self.stem_conv(images)))
        if not self.small_image_stem:
            x = max_pool_3x3_stride2(x)
        for block in self.blocks:
            x = block(x)
        # Pool in float32: a bf16 mean over many positions loses precision.
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))

    def layer_index(self, path: Sequence[str | int]) -> int:
        """Depth of the parameter at `path` (relative to this module) for layer-wise lr decay.

        0 for the stem, s + 1 for stage s (1..4 in a ResNet-50), `num_layers + 1` for anything
        after the stages (none today; a classifier added by fine-tuning).
        """
        head = str(path[0]) if path else ""
        if head in ("stem_conv", "stem_bn"):
            return 0
        if head == "blocks" and len(path) > 1:
            return self.block_stages[int(path[1])] + 1
        return self.num_layers + 1


def _resnet(stage_sizes: Sequence[int], block, width: int = 64) -> Callable[..., ResNet]:
    def build(**kwargs) -> ResNet:
        kwargs.setdefault("width", width)
        return ResNet(stage_sizes, block, **kwargs)

    return build


# Variant name -> constructor. `resnet_mini` is the narrow, shallow net the default CPU run
# uses: a full ResNet-18 step takes tens of seconds on a 2-core CPU.
RESNETS: dict[str, Callable[..., ResNet]] = {
    "resnet_mini": _resnet((1, 1, 1), BasicBlock, width=16),
    "resnet10": _resnet((1, 1, 1, 1), BasicBlock),
    "resnet18": _resnet((2, 2, 2, 2), BasicBlock),
    "resnet34": _resnet((3, 4, 6, 3), BasicBlock),
    "resnet50": _resnet((3, 4, 6, 3), BottleneckBlock),
    "resnet101": _resnet((3, 4, 23, 3), BottleneckBlock),
}
