"""Vision Transformers (Dosovitskiy et al., ICLR 2021, https://arxiv.org/abs/2010.11929) in Flax NNX.

Registered variants (`jssl.models.BACKBONES`), all built for 224 px unless named `_28`:

  | name                  | width | depth | heads | patch |
  |-----------------------|-------|-------|-------|-------|
  | vit_ti16 / vit_ti14   | 192   | 12    | 3     | 16/14 |
  | vit_s16 / vit_s14     | 384   | 12    | 6     | 16/14 |
  | vit_b16 / vit_b14     | 768   | 12    | 12    | 16/14 |
  | vit_l16 / vit_l14     | 1024  | 24    | 16    | 16/14 |
  | vit_h16 / vit_h14     | 1280  | 32    | 16    | 16/14 |
  | vit_ti4_28 / vit_ti7_28 | 192 | 6     | 3     | 4/7, built for 28 px (MNIST) |
  | vit_s4_28 / vit_s7_28   | 384 | 6     | 6     | 4/7, built for 28 px (MNIST) |

Any constructor argument may be overridden through `config.model.kwargs` (e.g. `depth=1,
embed_dim=16, num_heads=2` for tests). ResNet options (`width_multiplier`, `small_image_stem`,
`stem_stride`) raise a `ValueError`, as does any unknown option: a ViT config must set its own
`config.model.kwargs`.

The interface other code builds on (MAE, fine-tuning with layer-wise learning-rate decay):
  * `feature_dim`, `patch_size`, `num_layers`, `embed_dim`, `num_prefix_tokens` (1 with a
    class token, else 0), `image_size` (the build resolution);
  * `__call__(images [b, h, w, c]) -> [b, feature_dim]` pooled features;
  * `embed_patches(images) -> [b, n, embed_dim]`: patch embedding + position embedding (no
    class token); `grid_size(image_size) -> (gh, gw)`;
  * `encode(tokens [b, n, d]) -> [b, prefix + n, d]`: class token (if any) + blocks + final
    norm, on any subset of patch tokens (MAE's visible tokens); `pool(encoded) -> [b, d]`;
  * `layer_index(path) -> int`: 0 for embeddings and class token, i + 1 for block i,
    `num_layers + 1` for the final norm;
  * `patchify(images, patch_size) -> [b, n, p * p * c]`, re-exported from `jssl.losses` (MAE's targets).

Position embeddings: `learned` (a table at the build resolution, bicubically interpolated to
other grids, as DINO does for its 96 px crops) or `sincos` (fixed 2-D sine-cosine, MoCo v3 /
MAE; no parameter). At another resolution the sin-cos table is computed at the positions the
interpolation would sample (cell centres in units of the build grid), so both kinds see
a crop as the same field of view at a different sampling density.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jssl.losses.reconstruction import patchify  # MAE's targets use the same patch layout
from jssl.models.partitioning import logical
from jssl.models.transformer import Encoder

POOL_MODES = ("cls", "gap")
POS_EMBED_KINDS = ("learned", "sincos")
RESNET_ONLY_KWARGS = ("width_multiplier", "small_image_stem", "stem_stride", "width")


def sincos_2d(grid: tuple[int, int], dim: int, *, base_grid: tuple[int, int] | None = None) -> np.ndarray:
    """Fixed 2-D sine-cosine position embedding `[gh * gw, dim]` (row-major positions).

    Channels: `[sin(x w), cos(x w), sin(y w), cos(y w)]` with `w = 1 / 10000^(i / (dim/4))`,
    x the column and y the row (MoCo v3's `build_2d_sincos_position_embedding`). Positions
    are in units of `base_grid` (default: `grid`): cell centres of a `grid` spread over
    `base_grid`, i.e. integers when the two are equal.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need embed_dim divisible by 4; got {dim}")
    gh, gw = grid
    bh, bw = base_grid or grid
    y = (np.arange(gh, dtype=np.float64) + 0.5) * bh / gh - 0.5
    x = (np.arange(gw, dtype=np.float64) + 0.5) * bw / gw - 0.5
    yy, xx = np.meshgrid(y, x, indexing="ij")
    omega = 1.0 / 10000.0 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))
    ox = xx.reshape(-1, 1) * omega
    oy = yy.reshape(-1, 1) * omega
    return np.concatenate([np.sin(ox), np.cos(ox), np.sin(oy), np.cos(oy)], axis=1).astype(np.float32)


def resize_pos_embed(table: jax.Array, grid: tuple[int, int], new_grid: tuple[int, int]) -> jax.Array:
    """Bicubic interpolation of a `[gh * gw, d]` position table to `new_grid`, in float32.

    Without antialiasing (as torch's `F.interpolate(mode='bicubic')` in DINO/timm): the table
    is sampled, not low-pass filtered, when the grid shrinks.
    """
    if tuple(grid) == tuple(new_grid):
        return table
    d = table.shape[-1]
    image = table.astype(jnp.float32).reshape(grid[0], grid[1], d)
    out = jax.image.resize(image, (new_grid[0], new_grid[1], d), method="bicubic", antialias=False)
    return out.reshape(new_grid[0] * new_grid[1], d)


class FrozenParam(nnx.Variable):
    """A weight that keeps its initial value: not an `nnx.Param`, so never optimized or decayed.

    MoCo v3's "stop-grad conv1" (a frozen random patch projection, Sec. 4.2 of the paper).
    It is sharded and checkpointed like any other variable; a `teacher_copy` keeps it as is.
    """


class PatchEmbed(nnx.Module):
    """Non-overlapping `p x p` patches -> `embed_dim` (a stride-p convolution, as a matmul).

    `frozen=True` keeps the random initial projection (`FrozenParam`).
    """

    def __init__(
        self, *, patch_size: int, in_channels: int, embed_dim: int, frozen: bool = False, dtype: Any, rngs: nnx.Rngs
    ):
        # MAE and MoCo v3 initialize the patch projection like a linear layer on the flattened
        # patch (Xavier-uniform with fans p * p * c and embed_dim).
        init = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(0, 1, 2), out_axis=3)
        shape = (patch_size, patch_size, in_channels, embed_dim)
        kind = FrozenParam if frozen else nnx.Param
        self.kernel = kind(logical(init, (None, None, None, "embed"))(rngs.params(), shape, jnp.float32))
        self.bias = kind(logical(nnx.initializers.zeros_init(), ("embed",))(rngs.params(), (embed_dim,)))
        self.patch_size = patch_size
        self.dtype = dtype

    def __call__(self, images: jax.Array) -> jax.Array:
        patches = patchify(images.astype(self.dtype), self.patch_size)
        kernel = self.kernel.get_value().reshape(-1, self.kernel.get_value().shape[-1]).astype(self.dtype)
        return (patches @ kernel).astype(jnp.float32) + self.bias.get_value()


class VisionTransformer(nnx.Module):
    """A ViT trunk mapping images `[b, h, w, c]` to pooled features `[b, embed_dim]`.

    Args:
      patch_size: side of the square patches.
      embed_dim, depth, num_heads, mlp_ratio: width, blocks, heads, MLP width / embed_dim.
      in_channels: image channels (1 for MNIST, 3 for RGB).
      image_size: build resolution; the learned position table has its grid. Other
        resolutions divisible by `patch_size` work (interpolated position embeddings).
      pool: `'cls'` (the class token's output) or `'gap'` (mean of the patch tokens' outputs).
      class_token: prepend a class token; default: `pool == 'cls'`.
      pos_embed: `'learned'` or `'sincos'` (fixed).
      layer_scale: LayerScale initial value, or None.
      drop_path: stochastic depth of the last block (linear from 0 over the blocks).
      remat: rematerialize each block in the backward pass.
      qkv_bias: biases on the query/key/value projection.
      frozen_patch_embed: keep the random patch projection fixed (MoCo v3's stability trick).
      dtype: compute dtype (bfloat16 for mixed precision); parameters stay float32.
    """

    def __init__(
        self,
        *,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        in_channels: int = 3,
        image_size: int = 224,
        pool: str = "cls",
        class_token: bool | None = None,
        pos_embed: str = "learned",
        layer_scale: float | None = None,
        drop_path: float = 0.0,
        remat: bool = False,
        qkv_bias: bool = True,
        frozen_patch_embed: bool = False,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if pool not in POOL_MODES:
            raise ValueError(f"unknown pool mode {pool!r}; known: {list(POOL_MODES)}")
        if pos_embed not in POS_EMBED_KINDS:
            raise ValueError(f"unknown pos_embed {pos_embed!r}; known: {list(POS_EMBED_KINDS)}")
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1; got {patch_size}")
        class_token = pool == "cls" if class_token is None else bool(class_token)
        if pool == "cls" and not class_token:
            raise ValueError("pool='cls' needs class_token=True (or leave class_token unset)")
        self.patch_size = int(patch_size)
        self.embed_dim = int(embed_dim)
        self.feature_dim = int(embed_dim)
        self.num_layers = int(depth)
        self.image_size = int(image_size)
        self.pool_mode = pool
        self.pos_embed_kind = pos_embed
        self.num_prefix_tokens = int(class_token)
        self.base_grid = self.grid_size(image_size)
        if pos_embed == "sincos":
            sincos_2d(self.base_grid, embed_dim)  # fail now, not at the first call, on a bad width

        self.patch_embed = PatchEmbed(
            patch_size=patch_size,
            in_channels=in_channels,
            embed_dim=embed_dim,
            frozen=frozen_patch_embed,
            dtype=dtype,
            rngs=rngs,
        )
        trunc = nnx.initializers.truncated_normal(0.02)
        axes = (None, None, "embed")
        if class_token:
            self.cls_token = nnx.Param(logical(trunc, axes)(rngs.params(), (1, 1, embed_dim), jnp.float32))
        else:
            self.cls_token = nnx.data(None)
        if pos_embed == "learned":
            # Like timm/DINO the table has a row for the class token too (a constant offset of
            # it, redundant but kept so parameter counts and checkpoints match the references).
            n = self.num_prefix_tokens + self.base_grid[0] * self.base_grid[1]
            self.pos_embed = nnx.Param(logical(trunc, axes)(rngs.params(), (1, n, embed_dim), jnp.float32))
        else:
            self.pos_embed = nnx.data(None)
        self.transformer = Encoder(
            depth=depth,
            embed_dim=embed_dim,
            num_heads=num_heads,
            mlp_dim=round(embed_dim * mlp_ratio),
            qkv_bias=qkv_bias,
            layer_scale=layer_scale,
            drop_path=drop_path,
            remat=remat,
            dtype=dtype,
            rngs=rngs,
        )

    # ----------------------------------------------------------------------------------------
    # Pieces (MAE encodes the visible tokens only: embed_patches -> mask -> encode -> pool)
    # ----------------------------------------------------------------------------------------

    def grid_size(self, image_size: int | Sequence[int]) -> tuple[int, int]:
        """`(gh, gw)` patches for an image of side `image_size` (or `(h, w)`)."""
        h, w = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not divisible by the patch size {self.patch_size}")
        return h // self.patch_size, w // self.patch_size

    def patch_pos_embed(self, grid: tuple[int, int]) -> jax.Array:
        """`[gh * gw, embed_dim]` float32 position embeddings of the patches of `grid`."""
        if self.pos_embed_kind == "sincos":
            return jnp.asarray(sincos_2d(grid, self.embed_dim, base_grid=self.base_grid))
        table = self.pos_embed.get_value()[0, self.num_prefix_tokens :]
        return resize_pos_embed(table, self.base_grid, grid)

    def embed_patches(self, images: jax.Array) -> jax.Array:
        """`[b, h, w, c]` -> `[b, n, embed_dim]` float32: patch embeddings + position embeddings."""
        if images.ndim != 4:
            raise ValueError(f"images must be [batch, height, width, channels]; got shape {images.shape}")
        grid = self.grid_size(images.shape[1:3])
        return self.patch_embed(images) + self.patch_pos_embed(grid)[None]

    def encode(self, tokens: jax.Array, *, key_mask: jax.Array | None = None) -> jax.Array:
        """`[b, n, d]` -> `[b, prefix + n, d]`: class token (if any), the blocks, the final norm.

        `key_mask [b, n]` (True = real token) lets padded token sets share a batch.
        """
        if self.cls_token is not None:
            cls = self.cls_token.get_value()
            if self.pos_embed is not None:
                cls = cls + self.pos_embed.get_value()[:, :1]
            tokens = jnp.concatenate([jnp.broadcast_to(cls, (tokens.shape[0], 1, self.embed_dim)), tokens], axis=1)
            if key_mask is not None:
                key_mask = jnp.concatenate([jnp.ones((key_mask.shape[0], 1), bool), key_mask.astype(bool)], axis=1)
        return self.transformer(tokens, key_mask=key_mask)

    def pool(self, encoded: jax.Array) -> jax.Array:
        """`[b, prefix + n, d]` -> `[b, d]`: the class token's output, or the mean patch output."""
        if self.pool_mode == "cls":
            return encoded[:, 0]
        return jnp.mean(encoded[:, self.num_prefix_tokens :], axis=1)

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.pool(self.encode(self.embed_patches(images))).astype(jnp.float32)

    def layer_index(self, path: Sequence[str | int]) -> int:
        """Depth of the parameter at `path` (relative to this module) for layer-wise lr decay."""
        head = str(path[0]) if path else ""
        if head in ("patch_embed", "cls_token", "pos_embed"):
            return 0
        if head == "transformer" and len(path) > 2 and str(path[1]) == "blocks":
            return int(path[2]) + 1
        return self.num_layers + 1  # the final norm, and anything fine-tuning adds after it


# ================================================================================================
# Registry
# ================================================================================================

# name -> (embed_dim, depth, num_heads): the ViT paper's Base/Large/Huge and DeiT's Tiny/Small.
_SIZES = {"ti": (192, 12, 3), "s": (384, 12, 6), "b": (768, 12, 12), "l": (1024, 24, 16), "h": (1280, 32, 16)}
_OPTIONS = tuple(p for p in inspect.signature(VisionTransformer.__init__).parameters if p not in ("self", "rngs"))


def _vit(**defaults: Any) -> Callable[..., VisionTransformer]:
    def build(**kwargs: Any) -> VisionTransformer:
        resnet = sorted(set(kwargs) & set(RESNET_ONLY_KWARGS))
        if resnet:
            raise ValueError(
                f"ViT got ResNet options {resnet}: set config.model.kwargs for the ViT "
                f"(e.g. config.model.kwargs = ml_collections.ConfigDict(dict(drop_path=0.1))); "
                f"ViT options: {list(_OPTIONS)}"
            )
        unknown = sorted(set(kwargs) - set(_OPTIONS) - {"rngs"})
        if unknown:
            raise ValueError(f"unknown ViT options {unknown}; known: {list(_OPTIONS)}")
        return VisionTransformer(**{**defaults, **kwargs})

    return build


VITS: dict[str, Callable[..., VisionTransformer]] = {}
for _size, (_dim, _depth, _heads) in _SIZES.items():
    for _patch in (16, 14):
        VITS[f"vit_{_size}{_patch}"] = _vit(patch_size=_patch, embed_dim=_dim, depth=_depth, num_heads=_heads)
    if _size in ("ti", "s"):
        # Small-image variants for the embedded 28 px MNIST: 7x7 or 4x4 patches (16 or 49
        # tokens), half the depth, so a CPU run stays minutes long.
        for _patch in (7, 4):
            VITS[f"vit_{_size}{_patch}_28"] = _vit(
                patch_size=_patch, embed_dim=_dim, depth=6, num_heads=_heads, image_size=28
            )
