"""The one Transformer block family: pre-norm self-attention + MLP blocks and their stack.

ViTs, the text encoders and decoders (`jssl.models.text`, causal through `causal=True`) and
wav2vec 2.0's context network share it (hence the attention mask arguments), so it knows
nothing about images or tokens.

Precision: parameters are float32; matrix products run in the compute `dtype` (bfloat16 for
mixed precision); LayerNorm statistics and the attention softmax are float32
(`jax.nn.dot_product_attention` computes its logits in float32 for bfloat16 inputs). The
residual stream is kept in float32, as PyTorch autocast does for the reference ViTs (their
float32 position embedding promotes it), so deep stacks do not accumulate bfloat16 rounding.

Sharding: every parameter carries logical axis names, so Megatron-style tensor parallelism is a
rules change (`heads` and `mlp` -> `tensor`) and FSDP another (`embed` -> `fsdp`):
  * query/key/value kernel `[embed, 3, heads, kv]`, bias `[3, heads, kv]`;
  * output kernel `[heads, kv, embed]`, bias `[embed]`;
  * MLP kernels `[embed, mlp]` / `[mlp, embed]`, biases `[mlp]` / `[embed]`;
  * LayerNorm scale/bias and LayerScale `[embed]`.
Activations are constrained (`jssl.models.partitioning.constrain`, active only inside the
trainer's step) at block boundaries to `[batch, tokens, embed]`, inside attention to
`[.., batch, tokens, heads, kv]` and inside the MLP to `[batch, tokens, mlp]`: the batch over
the data-parallel axes, heads and hidden units over the tensor axis (Megatron).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jssl.models.partitioning import constrain, logical

# MoCo v3 / MAE initialize every linear layer with Xavier-uniform; for the fused q/k/v kernel
# the fans are those of one of q, k, v ([embed] -> [heads * kv]), as MoCo v3 does explicitly.
_QKV_INIT = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=0, out_axis=(2, 3), batch_axis=(1,))
_OUT_INIT = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(0, 1), out_axis=2)
_DENSE_INIT = nnx.initializers.xavier_uniform()
_ZEROS = nnx.initializers.zeros_init()
_ONES = nnx.initializers.ones_init()


def _param(init, axes: tuple[str | None, ...], shape: tuple[int, ...], rngs: nnx.Rngs) -> nnx.Param:
    """A float32 parameter initialized by `init` and carrying logical axis names `axes`."""
    return nnx.Param(logical(init, axes)(rngs.params(), shape, jnp.float32))


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis with float32 statistics; the output is cast to `dtype`."""

    def __init__(self, dim: int, *, epsilon: float = 1e-6, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.scale = _param(_ONES, ("embed",), (dim,), rngs)
        self.bias = _param(_ZEROS, ("embed",), (dim,), rngs)
        self.epsilon = epsilon
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32)
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        return (y * self.scale.get_value() + self.bias.get_value()).astype(self.dtype)


class MultiHeadSelfAttention(nnx.Module):
    """Self-attention through `jax.nn.dot_product_attention` (cuDNN flash on GPU when it applies).

    `implementation=None` lets JAX choose: the cuDNN kernel on GPU for bfloat16/float16 inputs
    of supported shapes, XLA's reference implementation otherwise (CPU, float32).
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        head_dim = embed_dim // num_heads
        self.qkv_kernel = _param(_QKV_INIT, ("embed", None, "heads", "kv"), (embed_dim, 3, num_heads, head_dim), rngs)
        self.qkv_bias = _param(_ZEROS, (None, "heads", "kv"), (3, num_heads, head_dim), rngs) if qkv_bias else None
        self.out_kernel = _param(_OUT_INIT, ("heads", "kv", "embed"), (num_heads, head_dim, embed_dim), rngs)
        self.out_bias = _param(_ZEROS, ("embed",), (embed_dim,), rngs)
        self.dtype = dtype

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None, causal: bool = False) -> jax.Array:
        """`x [batch, tokens, embed]` -> `[batch, tokens, embed]` (float32).

        `mask`: boolean, broadcastable to `[batch, heads, tokens, tokens]`; True = may attend.
        `causal`: token i attends to tokens <= i only (GPT), passed as `is_causal` so that the
        cuDNN kernel can skip the masked half instead of reading a `[tokens, tokens]` mask.
        """
        qkv = jnp.einsum("bnd,dthk->tbnhk", x.astype(self.dtype), self.qkv_kernel.get_value().astype(self.dtype))
        if self.qkv_bias is not None:
            qkv = qkv + self.qkv_bias.get_value().astype(self.dtype)[:, None, None]
        # Heads stay split over the tensor axis from the projection to the output projection.
        qkv = constrain(qkv, (None, "batch", None, "heads", "kv"))
        out = jax.nn.dot_product_attention(qkv[0], qkv[1], qkv[2], mask=mask, is_causal=causal, implementation=None)
        out = constrain(out, ("batch", None, "heads", "kv"))
        y = jnp.einsum("bnhk,hkd->bnd", out, self.out_kernel.get_value().astype(self.dtype))
        return y.astype(jnp.float32) + self.out_bias.get_value()


class MLP(nnx.Module):
    """Linear -> GELU (exact, as torch's nn.GELU) -> Linear."""

    def __init__(self, *, embed_dim: int, mlp_dim: int, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.fc1_kernel = _param(_DENSE_INIT, ("embed", "mlp"), (embed_dim, mlp_dim), rngs)
        self.fc1_bias = _param(_ZEROS, ("mlp",), (mlp_dim,), rngs)
        self.fc2_kernel = _param(_DENSE_INIT, ("mlp", "embed"), (mlp_dim, embed_dim), rngs)
        self.fc2_bias = _param(_ZEROS, ("embed",), (embed_dim,), rngs)
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.astype(self.dtype) @ self.fc1_kernel.get_value().astype(self.dtype)
        h = nnx.gelu(h + self.fc1_bias.get_value().astype(self.dtype), approximate=False)
        h = constrain(h, ("batch", None, "mlp"))  # hidden units split over the tensor axis
        y = h @ self.fc2_kernel.get_value().astype(self.dtype)
        return y.astype(jnp.float32) + self.fc2_bias.get_value()


class DropPath(nnx.Module):
    """Stochastic depth: drops a whole residual branch per example with probability `rate`.

    Kept examples are scaled by `1 / (1 - rate)`. The random stream is forked from the build
    `rngs` and lives in the module's state (like `nnx.Dropout`), so it is checkpointed and
    identical on every mesh. `deterministic=True` (set by `module.eval()`, and on EMA teachers,
    which the reference code builds without drop path) makes it the identity.
    """

    def __init__(self, rate: float, *, rngs: nnx.Rngs):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1); got {rate}")
        self.rate = float(rate)
        self.deterministic = False
        # A stream only when needed: models without drop path carry no random state.
        self.rngs = rngs["dropout"].fork() if rate > 0 else nnx.data(None)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.deterministic or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = jax.random.bernoulli(self.rngs(), keep, shape)
        return jnp.where(mask, x / keep, jnp.zeros_like(x))


class LayerScale(nnx.Module):
    """Per-channel learned scale of a residual branch, initialized to `init` (CaiT, DINOv2)."""

    def __init__(self, dim: int, *, init: float, rngs: nnx.Rngs):
        self.gamma = _param(nnx.initializers.constant(init), ("embed",), (dim,), rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.gamma.get_value()


class TransformerBlock(nnx.Module):
    """Pre-norm block: `x + drop(ls(attn(norm(x))))`, then `x + drop(ls(mlp(norm(x))))`.

    Args:
      embed_dim, num_heads, mlp_dim: widths.
      qkv_bias: biases on the query/key/value projection (ViT: yes).
      layer_scale: initial LayerScale value (e.g. 1e-5 or 0.1), or None for none.
      drop_path: stochastic-depth rate of this block's two branches.
      norm_epsilon: LayerNorm epsilon (1e-6 as the reference ViTs).
      dtype: compute dtype; parameters stay float32.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        num_heads: int,
        mlp_dim: int,
        qkv_bias: bool = True,
        layer_scale: float | None = None,
        drop_path: float = 0.0,
        norm_epsilon: float = 1e-6,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.norm1 = LayerNorm(embed_dim, epsilon=norm_epsilon, dtype=dtype, rngs=rngs)
        self.attn = MultiHeadSelfAttention(
            embed_dim=embed_dim, num_heads=num_heads, qkv_bias=qkv_bias, dtype=dtype, rngs=rngs
        )
        self.norm2 = LayerNorm(embed_dim, epsilon=norm_epsilon, dtype=dtype, rngs=rngs)
        self.mlp = MLP(embed_dim=embed_dim, mlp_dim=mlp_dim, dtype=dtype, rngs=rngs)
        if layer_scale is not None:
            self.ls1 = LayerScale(embed_dim, init=layer_scale, rngs=rngs)
            self.ls2 = LayerScale(embed_dim, init=layer_scale, rngs=rngs)
        else:
            self.ls1 = self.ls2 = nnx.data(None)
        self.drop_path = DropPath(drop_path, rngs=rngs)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None, causal: bool = False) -> jax.Array:
        x = x.astype(jnp.float32)
        y = self.attn(self.norm1(x), mask=mask, causal=causal)
        x = x + self.drop_path(self.ls1(y) if self.ls1 is not None else y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(self.ls2(y) if self.ls2 is not None else y)


def attention_mask(*, key_mask: jax.Array | None = None, mask: jax.Array | None = None) -> jax.Array | None:
    """Combines a key padding mask `[batch, keys]` and/or a full mask into one boolean mask.

    Either may be None; the result broadcasts to `[batch, heads, queries, keys]` (True = attend).
    """
    out = None if mask is None else mask.astype(bool)
    if key_mask is not None:
        if key_mask.ndim != 2:
            raise ValueError(f"key_mask must be [batch, keys]; got shape {key_mask.shape}")
        padding = key_mask.astype(bool)[:, None, None, :]
        out = padding if out is None else out & padding
    return out


class Encoder(nnx.Module):
    """A stack of `TransformerBlock`s and a final LayerNorm.

    Args:
      depth: number of blocks.
      drop_path: the *last* block's stochastic-depth rate; rates rise linearly from 0 over
        the blocks, as in the reference ViTs (timm, DINO, MAE).
      remat: rematerialize each block in the backward pass (`nnx.remat`): activation memory of
        one block instead of `depth`, for one extra forward.
      others: as `TransformerBlock`.
    """

    def __init__(
        self,
        *,
        depth: int,
        embed_dim: int,
        num_heads: int,
        mlp_dim: int,
        qkv_bias: bool = True,
        layer_scale: float | None = None,
        drop_path: float = 0.0,
        remat: bool = False,
        norm_epsilon: float = 1e-6,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if depth < 1:
            raise ValueError(f"depth must be >= 1; got {depth}")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1); got {drop_path}")
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nnx.List(
            [
                TransformerBlock(
                    embed_dim=embed_dim,
                    num_heads=num_heads,
                    mlp_dim=mlp_dim,
                    qkv_bias=qkv_bias,
                    layer_scale=layer_scale,
                    drop_path=rate,
                    norm_epsilon=norm_epsilon,
                    dtype=dtype,
                    rngs=rngs,
                )
                for rate in rates
            ]
        )
        self.norm = LayerNorm(embed_dim, epsilon=norm_epsilon, dtype=jnp.float32, rngs=rngs)
        self.remat = remat

    def __call__(
        self,
        x: jax.Array,
        *,
        mask: jax.Array | None = None,
        key_mask: jax.Array | None = None,
        causal: bool = False,
    ) -> jax.Array:
        """`x [batch, tokens, embed]` -> normalized `[batch, tokens, embed]` float32.

        `key_mask [batch, tokens]`: True for real tokens, False for padding (text, audio).
        `mask`: a full boolean mask broadcastable to `[batch, heads, tokens, tokens]`.
        `causal`: each token attends only to itself and earlier tokens (GPT); combined with
        the masks above when both are given.
        """
        combined = attention_mask(key_mask=key_mask, mask=mask)

        def run(block: TransformerBlock, h: jax.Array) -> jax.Array:
            return block(h, mask=combined, causal=causal)

        if self.remat:
            run = nnx.remat(run)
        for block in self.blocks:
            # The residual stream between blocks: batch-sharded, replicated over the tensor axis.
            x = run(block, constrain(x, ("batch", None, "embed")))
        return self.norm(x)
