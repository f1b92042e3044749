"""Raw-waveform networks: wav2vec 2.0 (feature encoder, context Transformer, quantizer) and CPC.

wav2vec 2.0 (Baevski et al. 2020):
  * `FeatureEncoder`: 1-D convolutions (base: 7 layers of 512 channels, kernels 10,3,3,3,3,2,2,
    strides 5,2,2,2,2,2,2, i.e. 320x downsampling, 20 ms frames at 16 kHz, no bias), GELU, with
    fairseq's two normalizations: `'group_norm'` (fairseq's "default": a GroupNorm with one group
    per channel, i.e. each channel normalized over time, after the first conv only) or
    `'layer_norm'` (LayerNorm over channels after every conv);
  * `Wav2Vec2Encoder`: LayerNorm of the features, a linear projection to the Transformer width,
    a learned mask embedding that replaces masked frames, a convolutional relative position
    embedding (`ConvPositionalEmbedding`: grouped conv, kernel 128, 16 groups in base, weight
    norm over the kernel axis) added to the input, and the Transformer of
    `jssl.models.transformer.Encoder` (the ViT's pre-norm blocks plus a final LayerNorm: the
    arrangement of wav2vec 2.0 large, `layer_norm_first=True`; base is post-norm in fairseq,
    with the same parameter count);
  * `span_mask`: the frames to mask (mask_prob 0.65, spans of 10 in base), per example;
  * `GumbelQuantizer`: the product quantizer (G codebooks of V entries) on the unmasked
    features, through `jssl.losses.gumbel_product_quantizer`.

CPC (van den Oord et al. 2018): `CPCEncoder` (5 strided convs, strides 5,4,2,2,2 = 160x
downsampling, 10 ms frames, kernels 10,8,4,4,4, 512 channels, ReLU) and a GRU context network
(`CPCModel`).

Padding: every model takes `waveform: [batch, samples]` and `mask: [batch, samples]` whose real
samples are a prefix; frame masks follow from the conv length formula (`real_frames`), so a
frame is real when its whole receptive field lies in the real samples (fairseq's rule).

Sharding: conv kernels `[kernel, conv_in, conv_out]`, dense kernels `[in, out]` with `embed` on
the Transformer side; activations are constrained to the batch axes at module boundaries.
Models are found by name in `AUDIO_MODELS` (`get_audio_model`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jssl import losses
from jssl.models.partitioning import constrain, logical
from jssl.models.transformer import Encoder, LayerNorm

# (channels, kernel, stride) per conv layer.
ConvSpec = Sequence[tuple[int, int, int]]
WAV2VEC2_CONV: tuple[tuple[int, int, int], ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
# CPC's paddings (3, 2, 1, 1, 1) make the output exactly samples / 160 (the reference code's).
CPC_CONV: tuple[tuple[int, int, int], ...] = ((512, 10, 5), (512, 8, 4), (512, 4, 2), (512, 4, 2), (512, 4, 2))
FEATURE_NORMS = ("group_norm", "layer_norm")


def conv_output_length(length: Any, *, layers: ConvSpec, paddings: Sequence[int] | None = None) -> Any:
    """Frames after the convs: `L <- floor((L + 2 p - k) / s) + 1` per layer, clipped at 0 (ints or int arrays)."""
    paddings = paddings or (0,) * len(layers)
    for (_, k, s), p in zip(layers, paddings):
        length = (length + 2 * p - k) // s + 1
        length = jnp.maximum(length, 0) if isinstance(length, jax.Array) else max(length, 0)
    return length


def real_frames(samples: Any, *, layers: ConvSpec, paddings: Sequence[int] | None = None) -> Any:
    """Frames whose receptive field ends inside the first `samples` samples (ints or int arrays).

    As `conv_output_length` with each layer's padding on the left only: a frame that reads the
    right-hand zero padding (or, in a padded batch, the padding samples) is not real, so a clip's
    real frames are the same whether it is padded or not.
    """
    length = samples
    for (_, k, s), p in zip(layers, paddings or (0,) * len(layers)):
        length = (length + p - k) // s + 1
        length = jnp.maximum(length, 0) if isinstance(length, jax.Array) else max(length, 0)
    return length


def _frame_mask(mask: jax.Array, *, layers: ConvSpec, paddings: Sequence[int] | None, frames: int) -> jax.Array:
    """bool `[batch, frames]`: the frames whose receptive field lies in the real samples of `mask [b, T]`."""
    lengths = real_frames(jnp.sum(mask.astype(jnp.int32), axis=1), layers=layers, paddings=paddings)
    return jnp.arange(frames)[None, :] < lengths[:, None]


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """`x [b, t, d]` averaged over the frames where `mask [b, t]`: `[b, d]` float32."""
    m = mask.astype(jnp.float32)[..., None]
    return jnp.sum(x.astype(jnp.float32) * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)


def dense(in_dim: int, out_dim: int, axes: tuple[str | None, str | None], *, use_bias: bool = True,
          dtype: Any = jnp.float32, rngs: nnx.Rngs) -> nnx.Linear:  # fmt: skip
    """A float32-parameter `nnx.Linear` whose kernel carries logical axes `axes`."""
    return nnx.Linear(
        in_dim, out_dim, use_bias=use_bias, dtype=dtype,
        kernel_init=logical(nnx.initializers.lecun_normal(), axes),
        bias_init=logical(nnx.initializers.zeros_init(), (axes[1],)), rngs=rngs,
    )  # fmt: skip


def conv1d(x: jax.Array, kernel: jax.Array, *, stride: int = 1, padding: int = 0, groups: int = 1) -> jax.Array:
    """`x: [batch, time, in]` * `kernel: [k, in / groups, out]` -> `[batch, time', out]`, zero `padding` both sides.

    Groups run as one plain convolution each, concatenated, not through `feature_group_count`:
    XLA's SPMD partitioner (jax 0.10, CPU) doubles the kernel gradient of a grouped convolution
    when the batch is sharded over one mesh axis and replicated over another (data=4 x
    tensor=2), which the tensor-parallel test caught. Same arithmetic, G smaller convolutions.
    """
    conv = functools.partial(
        jax.lax.conv_general_dilated, window_strides=(stride,), padding=((padding, padding),),
        dimension_numbers=("NWC", "WIO", "NWC"),
    )  # fmt: skip
    if groups == 1:
        return conv(x, kernel)
    cin, cout = x.shape[-1] // groups, kernel.shape[-1] // groups
    outs = [conv(x[..., g * cin : (g + 1) * cin], kernel[..., g * cout : (g + 1) * cout]) for g in range(groups)]
    return jnp.concatenate(outs, axis=-1)


class Conv1d(nnx.Module):
    """1-D convolution over `[batch, time, channels]`, kernel `[kernel, in / groups, out]` (He init)."""

    def __init__(self, in_dim: int, out_dim: int, *, kernel: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, use_bias: bool = False, dtype: Any = jnp.float32, rngs: nnx.Rngs):  # fmt: skip
        if in_dim % groups or out_dim % groups:
            raise ValueError(f"conv channels {in_dim} -> {out_dim} are not divisible by groups={groups}")
        init = nnx.initializers.variance_scaling(2.0, "fan_in", "normal", in_axis=(0, 1), out_axis=2)
        self.kernel = nnx.Param(logical(init, (None, "conv_in", "conv_out"))(rngs.params(), (kernel, in_dim // groups, out_dim)))
        zeros = logical(nnx.initializers.zeros_init(), ("conv_out",))
        self.bias = nnx.Param(zeros(None, (out_dim,), jnp.float32)) if use_bias else nnx.data(None)
        self.stride, self.padding, self.groups, self.dtype = stride, padding, groups, dtype

    def weight(self) -> jax.Array:
        return self.kernel.get_value()

    def __call__(self, x: jax.Array) -> jax.Array:
        y = conv1d(x.astype(self.dtype), self.weight().astype(self.dtype), stride=self.stride, padding=self.padding,
                   groups=self.groups)  # fmt: skip
        if self.bias is not None:
            y = y + self.bias.get_value().astype(y.dtype)
        return y


class FeatureEncoder(nnx.Module):
    """wav2vec 2.0's conv feature encoder: `waveform [b, T]` -> `(features [b, L, C] float32, frame mask [b, L])`.

    Args:
      layers: `(channels, kernel, stride)` per conv (`WAV2VEC2_CONV` in the paper).
      norm: `'group_norm'` (first layer only; fairseq's default, the base model) or
        `'layer_norm'` (every layer; the large model).
      conv_bias: biases on the convs (base: none).
    """

    def __init__(self, *, layers: ConvSpec = WAV2VEC2_CONV, norm: str = "group_norm", conv_bias: bool = False,
                 dtype: Any = jnp.float32, rngs: nnx.Rngs):  # fmt: skip
        if norm not in FEATURE_NORMS:
            raise ValueError(f"feature encoder norm must be one of {FEATURE_NORMS}; got {norm!r}")
        if not layers:
            raise ValueError("the feature encoder needs at least one conv layer")
        self.layers = tuple(tuple(int(v) for v in spec) for spec in layers)
        self.norm = norm
        dims = [1] + [c for c, _, _ in self.layers]
        self.convs = nnx.List([
            Conv1d(dims[i], c, kernel=k, stride=s, use_bias=conv_bias, dtype=dtype, rngs=rngs)
            for i, (c, k, s) in enumerate(self.layers)
        ])  # fmt: skip
        count = len(self.layers) if norm == "layer_norm" else 1
        self.norms = nnx.List([_ChannelAffine(dims[i + 1], rngs=rngs) for i in range(count)])
        self.dim = dims[-1]

    def output_length(self, samples: Any) -> Any:
        return conv_output_length(samples, layers=self.layers)

    def __call__(self, waveform: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        if waveform.ndim != 2:
            raise ValueError(f"the feature encoder takes waveform [batch, samples]; got shape {waveform.shape}")
        x = waveform.astype(jnp.float32)[..., None]
        for i, conv in enumerate(self.convs):
            x = conv(x).astype(jnp.float32)
            if self.norm == "layer_norm":
                x = self.norms[i](_normalize(x, axis=(2,)))
            elif i == 0:
                # GroupNorm with one group per channel: each channel over time, real frames only,
                # so the padding of shorter clips does not move the statistics.
                frames = _frame_mask(mask, layers=self.layers[:1], paddings=None, frames=x.shape[1])
                x = self.norms[0](_normalize(x, axis=(1,), mask=frames))
            x = nnx.gelu(x, approximate=False)
            x = constrain(x, ("batch", None, None))
        return x, _frame_mask(mask, layers=self.layers, paddings=None, frames=x.shape[1])


def _normalize(x: jax.Array, *, axis: tuple[int, ...], mask: jax.Array | None = None, eps: float = 1e-5) -> jax.Array:
    """`(x - mean) / std` over `axis` (float32), the mean over the frames where `mask [b, t]`."""
    w = jnp.ones_like(x) if mask is None else jnp.broadcast_to(mask[..., None].astype(x.dtype), x.shape)
    n = jnp.maximum(jnp.sum(w, axis=axis, keepdims=True), 1.0)
    mean = jnp.sum(x * w, axis=axis, keepdims=True) / n
    var = jnp.sum(jnp.square(x - mean) * w, axis=axis, keepdims=True) / n
    return (x - mean) * jax.lax.rsqrt(var + eps)


class _ChannelAffine(nnx.Module):
    """Per-channel scale and bias (the affine part of GroupNorm / LayerNorm)."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        del rngs
        self.scale = nnx.Param(logical(nnx.initializers.ones_init(), ("conv_out",))(None, (dim,), jnp.float32))
        self.bias = nnx.Param(logical(nnx.initializers.zeros_init(), ("conv_out",))(None, (dim,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.scale.get_value() + self.bias.get_value()


class ConvPositionalEmbedding(nnx.Module):
    """wav2vec 2.0's relative position embedding: `gelu(grouped_conv(x))`, same length as `x`.

    Kernel `kernel` (128 in base) with `kernel // 2` zero padding each side; an even kernel gives
    one frame too many, which is dropped (fairseq's `SamePad`). With `weight_norm`, the kernel is
    `g * v / ||v||`, the norm per kernel position over the other two axes (PyTorch's
    `weight_norm(dim=2)` on fairseq's `[out, in / groups, kernel]` weight), `g` starting at `||v||`.
    """

    def __init__(self, dim: int, *, kernel: int = 128, groups: int = 16, weight_norm: bool = True,
                 dtype: Any = jnp.float32, rngs: nnx.Rngs):  # fmt: skip
        if kernel < 1:
            raise ValueError(f"position conv kernel must be >= 1; got {kernel}")
        self.conv = Conv1d(dim, dim, kernel=kernel, padding=kernel // 2, groups=groups, use_bias=True,
                           dtype=dtype, rngs=rngs)  # fmt: skip
        # fairseq's init: normal with std sqrt(4 / (kernel * dim)), not He.
        std = (4.0 / (kernel * dim)) ** 0.5
        self.conv.kernel.set_value(std * jax.random.normal(rngs.params(), self.conv.kernel.get_value().shape))
        norm = jnp.linalg.norm(self.conv.kernel.get_value(), axis=(1, 2))
        self.gain = (
            nnx.Param(logical(lambda key, shape, dtype=jnp.float32: norm.astype(dtype), (None,))(None, norm.shape))
            if weight_norm else nnx.data(None)
        )  # fmt: skip
        self.trim = kernel % 2 == 0

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.gain is not None:
            v = self.conv.kernel.get_value()
            w = self.gain.get_value()[:, None, None] * v / jnp.linalg.norm(v, axis=(1, 2), keepdims=True)
            y = conv1d(x.astype(self.conv.dtype), w.astype(self.conv.dtype), padding=self.conv.padding,
                       groups=self.conv.groups) + self.conv.bias.get_value().astype(self.conv.dtype)  # fmt: skip
        else:
            y = self.conv(x)
        if self.trim:
            y = y[:, :-1]
        return nnx.gelu(y.astype(jnp.float32), approximate=False)


def span_mask(rng: jax.Array, *, lengths: jax.Array, frames: int, mask_prob: float, span: int,
              min_spans: int = 2) -> jax.Array:  # fmt: skip
    """wav2vec 2.0's time mask: bool `[batch, frames]` from real-frame counts `lengths: [batch]`.

    Per example (fairseq's `compute_mask_indices`): `n = floor(mask_prob * length / span + u)`
    spans (u ~ U[0, 1), at least `min_spans`), their starts drawn uniformly without replacement
    from `0 .. length - span`; each masks `span` consecutive frames, and spans may overlap, so
    the masked fraction is below `mask_prob` (about 0.49 for 0.65 and 10). Frames past `length`
    are never masked. Drawn for the whole batch from one key, so the mask is the same however
    the batch is sharded.
    """
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1]; got {mask_prob}")
    if span < 1:
        raise ValueError(f"mask span length must be >= 1; got {span}")
    b = lengths.shape[0]
    k_count, k_start = jax.random.split(rng)
    lengths = lengths.astype(jnp.int32)
    starts_available = jnp.maximum(lengths - span + 1, 1)
    u = jax.random.uniform(k_count, (b,))
    n = jnp.floor(mask_prob * lengths.astype(jnp.float32) / span + u).astype(jnp.int32)
    n = jnp.clip(n, min_spans, starts_available)
    t = jnp.arange(frames)
    # Uniform subset of size n among the available starts: the n smallest of uniform scores.
    scores = jnp.where(t[None, :] < starts_available[:, None], jax.random.uniform(k_start, (b, frames)), 2.0)
    rank = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
    starts = (rank < n[:, None]).astype(jnp.int32)
    covered = jnp.cumsum(starts, axis=1)
    covered = covered - jnp.pad(covered, ((0, 0), (span, 0)))[:, :frames]  # starts in (t - span, t]
    return (covered > 0) & (t[None, :] < lengths[:, None])


class GumbelQuantizer(nnx.Module):
    """Product quantizer: `features [..., in_dim]` -> `(quantized [..., groups * entry_dim], probs [..., G, V])`.

    A linear map gives `groups x entries` logits; `jssl.losses.gumbel_product_quantizer` picks one
    codeword per group (straight-through Gumbel softmax at `temperature`). Base: G = 2, V = 320,
    codewords of 128 (256 in all); codewords start uniform in [0, 1) and the logits' map normal
    (std 1, zero bias), as fairseq's `GumbelVectorQuantizer`.
    """

    def __init__(self, in_dim: int, *, groups: int, entries: int, dim: int, rngs: nnx.Rngs):
        if dim % groups:
            raise ValueError(f"quantizer dim {dim} is not divisible by its {groups} groups")
        self.groups, self.entries = groups, entries
        self.logits = nnx.Linear(
            in_dim, groups * entries, kernel_init=logical(nnx.initializers.normal(1.0), ("conv_out", None)),
            bias_init=logical(nnx.initializers.zeros_init(), (None,)), rngs=rngs,
        )  # fmt: skip
        self.codebooks = nnx.Param(
            logical(nnx.initializers.uniform(1.0), (None, None, None))(rngs.params(), (groups, entries, dim // groups))
        )

    def __call__(self, x: jax.Array, *, rng: jax.Array, temperature: Any) -> tuple[jax.Array, jax.Array]:
        logits = self.logits(x.astype(jnp.float32)).reshape(*x.shape[:-1], self.groups, self.entries)
        return losses.gumbel_product_quantizer(logits, self.codebooks.get_value(), rng=rng, temperature=temperature)


class Wav2Vec2Encoder(nnx.Module):
    """wav2vec 2.0 without its quantizer and heads: waveform -> features -> (masked) context.

    `encode_features` runs the conv encoder; `contextualize` projects, masks and runs the
    Transformer; `__call__(waveform, mask)` is the unmasked forward pooled over the real frames
    (`[b, embed_dim]`, for kNN and probes).

    Args:
      conv_layers, feature_norm, conv_bias: the `FeatureEncoder`'s.
      embed_dim, depth, num_heads, mlp_dim: the Transformer's (base 768, 12, 12, 3072).
      pos_conv_kernel, pos_conv_groups, pos_conv_weight_norm: the position conv's (128, 16, True).
      drop_path: LayerDrop-like stochastic depth rate of the last block (base: LayerDrop 0.05;
        this drops residual branches per example instead of whole layers per batch).
      remat: rematerialize each Transformer block in the backward pass.
    """

    def __init__(self, *, conv_layers: ConvSpec = WAV2VEC2_CONV, feature_norm: str = "group_norm",
                 conv_bias: bool = False, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_dim: int = 3072, pos_conv_kernel: int = 128, pos_conv_groups: int = 16,
                 pos_conv_weight_norm: bool = True, drop_path: float = 0.0, remat: bool = False,
                 dtype: Any = jnp.float32, rngs: nnx.Rngs):  # fmt: skip
        self.feature_encoder = FeatureEncoder(layers=conv_layers, norm=feature_norm, conv_bias=conv_bias,
                                              dtype=dtype, rngs=rngs)  # fmt: skip
        conv_dim = self.feature_encoder.dim
        self.feature_norm = LayerNorm(conv_dim, epsilon=1e-5, rngs=rngs)
        self.projection = dense(conv_dim, embed_dim, ("conv_out", "embed"), dtype=dtype, rngs=rngs)
        self.mask_embedding = nnx.Param(logical(nnx.initializers.uniform(1.0), ("embed",))(rngs.params(), (embed_dim,)))
        self.pos_conv = ConvPositionalEmbedding(embed_dim, kernel=pos_conv_kernel, groups=pos_conv_groups,
                                                weight_norm=pos_conv_weight_norm, dtype=dtype, rngs=rngs)  # fmt: skip
        self.transformer = Encoder(depth=depth, embed_dim=embed_dim, num_heads=num_heads, mlp_dim=mlp_dim,
                                   drop_path=drop_path, remat=remat, norm_epsilon=1e-5, dtype=dtype, rngs=rngs)  # fmt: skip
        self.conv_dim, self.embed_dim = conv_dim, embed_dim

    @property
    def feature_dim(self) -> int:
        return self.embed_dim

    def output_length(self, samples: Any) -> Any:
        return self.feature_encoder.output_length(samples)

    def encode_features(self, waveform: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """`(raw features [b, L, C], normalized features [b, L, C], frame mask [b, L])`.

        The raw ones are what the feature penalty squares; the normalized ones feed the
        projection and the quantizer (fairseq: `layer_norm(features)`, `unmasked_features`).
        """
        features, frames = self.feature_encoder(waveform, mask)
        return features, self.feature_norm(features), frames

    def contextualize(self, normalized: jax.Array, frames: jax.Array, *, time_mask: jax.Array | None = None) -> jax.Array:
        """`[b, L, embed]` context vectors; frames where `time_mask` are replaced by the mask embedding."""
        x = self.projection(normalized).astype(jnp.float32)
        if time_mask is not None:
            x = jnp.where(time_mask[..., None], self.mask_embedding.get_value(), x)
        x = jnp.where(frames[..., None], x, 0.0)  # padding enters the position conv as zeros (fairseq)
        x = constrain(x, ("batch", None, "embed"))
        x = x + self.pos_conv(x)
        return self.transformer(x, key_mask=frames)

    def __call__(self, waveform: jax.Array, mask: jax.Array) -> jax.Array:
        _, normalized, frames = self.encode_features(waveform, mask)
        return _masked_mean(self.contextualize(normalized, frames), frames)


class CPCEncoder(nnx.Module):
    """CPC's strided conv encoder: `waveform [b, T]` -> `(z [b, T / 160, C] float32, frame mask)`.

    ReLU after every conv (the paper); `norm='layer_norm'` adds a LayerNorm over channels before
    each ReLU (the channel normalization of later CPC code, which trains more stably), `'none'`
    is the paper's plain stack.
    """

    def __init__(self, *, layers: ConvSpec = CPC_CONV, paddings: Sequence[int] = (3, 2, 1, 1, 1),
                 norm: str = "layer_norm", dtype: Any = jnp.float32, rngs: nnx.Rngs):  # fmt: skip
        if norm not in ("layer_norm", "none"):
            raise ValueError(f"CPC encoder norm must be 'layer_norm' or 'none'; got {norm!r}")
        if len(paddings) != len(layers):
            raise ValueError(f"CPC encoder: {len(layers)} layers but {len(paddings)} paddings")
        self.layers, self.paddings, self.norm = tuple(tuple(s) for s in layers), tuple(paddings), norm
        dims = [1] + [c for c, _, _ in self.layers]
        self.convs = nnx.List([
            Conv1d(dims[i], c, kernel=k, stride=s, padding=p, use_bias=True, dtype=dtype, rngs=rngs)
            for i, ((c, k, s), p) in enumerate(zip(self.layers, self.paddings))
        ])  # fmt: skip
        self.norms = nnx.List([_ChannelAffine(c, rngs=rngs) for c, _, _ in self.layers] if norm == "layer_norm" else [])
        self.dim = dims[-1]

    def output_length(self, samples: Any) -> Any:
        return conv_output_length(samples, layers=self.layers, paddings=self.paddings)

    def __call__(self, waveform: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        if waveform.ndim != 2:
            raise ValueError(f"the CPC encoder takes waveform [batch, samples]; got shape {waveform.shape}")
        x = waveform.astype(jnp.float32)[..., None]
        for i, conv in enumerate(self.convs):
            x = conv(x).astype(jnp.float32)
            if self.norms:
                x = self.norms[i](_normalize(x, axis=(2,)))
            x = constrain(jax.nn.relu(x), ("batch", None, None))
        return x, _frame_mask(mask, layers=self.layers, paddings=self.paddings, frames=x.shape[1])


class CPCModel(nnx.Module):
    """CPC's encoder and autoregressive GRU: `context(waveform, mask)` -> `(z, c, frame mask)`.

    `__call__` pools the context vectors c_t over the real frames (`[b, context_dim]`), the
    representation the paper's linear classifiers read. The GRU is replicated (small); padding
    is a suffix, so it never reaches the context of a real frame. The convs pad with zeros on both
    sides (the reference code's paddings, so that T samples give T / 160 frames); frames that read
    the right-hand padding are not real (`real_frames`: 99 of the 100 frames of a 1 s crop), so a
    clip's features do not depend on whether, or with what, it is padded.
    """

    def __init__(self, *, conv_layers: ConvSpec = CPC_CONV, paddings: Sequence[int] = (3, 2, 1, 1, 1),
                 norm: str = "layer_norm", context_dim: int = 256, dtype: Any = jnp.float32, rngs: nnx.Rngs):  # fmt: skip
        self.encoder = CPCEncoder(layers=conv_layers, paddings=paddings, norm=norm, dtype=dtype, rngs=rngs)
        cell = nnx.GRUCell(
            self.encoder.dim, context_dim,
            kernel_init=logical(nnx.initializers.lecun_normal(), (None, None)),
            recurrent_kernel_init=logical(nnx.initializers.orthogonal(), (None, None)),
            bias_init=logical(nnx.initializers.zeros_init(), (None,)), rngs=rngs,
        )  # fmt: skip
        self.gru = nnx.RNN(cell)
        self.context_dim = context_dim

    @property
    def feature_dim(self) -> int:
        return self.context_dim

    def output_length(self, samples: Any) -> Any:
        return self.encoder.output_length(samples)

    def context(self, waveform: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        z, frames = self.encoder(waveform, mask)
        c = self.gru(z).astype(jnp.float32)
        return z, constrain(c, ("batch", None, None)), frames

    def __call__(self, waveform: jax.Array, mask: jax.Array) -> jax.Array:
        _, c, frames = self.context(waveform, mask)
        return _masked_mean(c, frames)


def _w2v(**kw: Any) -> dict[str, Any]:
    return dict(family="wav2vec2", **kw)


def _cpc(**kw: Any) -> dict[str, Any]:
    return dict(family="cpc", **kw)


_TINY_CONV = ((64, 10, 5),) + ((64, 3, 2),) * 4 + ((64, 2, 2),) * 2
#: Variant name -> constructor arguments (`family` picks the class).
AUDIO_MODELS: dict[str, dict[str, Any]] = {
    # Baevski et al. 2020, base: 7 convs of 512, 12 x 768 blocks, 12 heads, 3072 MLP (95M with its quantizer).
    "wav2vec2_base": _w2v(),
    # ... large (LibriVox): layer-norm feature encoder with conv biases, 24 x 1024 blocks.
    "wav2vec2_large": _w2v(feature_norm="layer_norm", conv_bias=True, embed_dim=1024, depth=24, num_heads=16,
                           mlp_dim=4096),  # fmt: skip
    # CPU: 64-channel convs (same kernels and strides), 2 x 128 blocks, position conv 32 / 8 groups.
    "wav2vec2_tiny": _w2v(conv_layers=_TINY_CONV, embed_dim=128, depth=2, num_heads=4, mlp_dim=256,
                          pos_conv_kernel=32, pos_conv_groups=8),  # fmt: skip
    # van den Oord et al. 2018: 5 convs of 512, GRU of 256.
    "cpc_paper": _cpc(),
    "cpc_tiny": _cpc(conv_layers=tuple((64, k, s) for _, k, s in CPC_CONV), context_dim=64),
}


def get_audio_model(name: str, *, rngs: nnx.Rngs, dtype: Any = jnp.float32, **overrides: Any) -> nnx.Module:
    """Builds audio model `name` (an `AUDIO_MODELS` key), with constructor arguments overridden by `overrides`."""
    if name not in AUDIO_MODELS:
        raise ValueError(f"unknown audio model {name!r}; known: {sorted(AUDIO_MODELS)}")
    kwargs = {**AUDIO_MODELS[name], **overrides}
    family = kwargs.pop("family")
    for key in ("conv_layers", "paddings"):
        if key in kwargs:
            kwargs[key] = tuple(tuple(v) if isinstance(v, (tuple, list)) else v for v in kwargs[key])
    cls = Wav2Vec2Encoder if family == "wav2vec2" else CPCModel
    try:
        return cls(rngs=rngs, dtype=dtype, **kwargs)
    except TypeError as error:
        raise ValueError(f"audio model {name!r} ({cls.__name__}) got unknown arguments: {error}") from error
