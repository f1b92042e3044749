"""MAE: a ViT encoder on a random 25% of the patches, a light decoder rebuilding the rest.

Per example, a random subset of the patch tokens is kept (argsort of uniform noise, so every
example gets its own mask); the encoder sees only those, the decoder sees the encoded visible
tokens plus a shared learned mask token at every removed position, and predicts the pixels of
each patch. The loss is the MSE on the *removed* patches only, against per-patch normalized
pixels by default (`norm_pix_loss`). One view per example with light augmentation (random
resized crop + flip); no negatives, no teacher.

The noise comes from the step's `rngs` (the trainer folds the step into the run's key), drawn
for the global batch, so masks are a pure function of seed and step: identical on any mesh and
after a resume. Evaluation (`represent`) runs the encoder on the full, unmasked image.

`pictures` rebuilds a held-out batch for the trainer's picture writer: rows original /
masked input / reconstruction (visible patches pasted back, predicted patches un-normalized
with each original patch's mean and variance when `norm_pix_loss`). Caveat: with
`norm_pix_loss` those statistics come from the hidden patch itself, so even an untrained
model's picture shows the digit at patch resolution; only `norm_pix_loss=False` pictures
show what the model alone predicts.

References:
  He, Chen, Xie, Li, Dollar, Girshick, "Masked Autoencoders Are Scalable Vision Learners",
  CVPR 2022, https://arxiv.org/abs/2111.06377 (Sec. 3 and Appendix A.1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jssl import losses
from jssl.methods.base import Method, MethodOutput
from jssl.methods.common import embedding_diagnostics
from jssl.models import get_backbone
from jssl.models.partitioning import logical
from jssl.models.transformer import Encoder
from jssl.models.vit import sincos_2d

DECODER_POS_EMBED_KINDS = ("sincos", "learned")
# MAE's reference code computes the norm_pix variance with this epsilon (`(var + 1.e-6)**.5`).
NORM_PIX_EPSILON = 1e-6
# Masked patches are drawn in this gray in the "masked" picture row (pixels in [0, 1]).
MASK_GRAY = 0.5


def num_visible(*, num_patches: int, mask_ratio: float) -> int:
    """Tokens the encoder sees: `int(n * (1 - ratio))`, the reference code's rounding."""
    return int(num_patches * (1.0 - mask_ratio))


def random_masking(
    key: jax.Array, *, batch: int, num_patches: int, keep: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-example random subsets of `keep` of `num_patches` tokens.

    Returns `(ids_keep [b, keep], mask [b, n] float 1 = removed, ids_restore [b, n])`:
    `ids_keep` lists the kept token indices (in noise order), and `ids_restore` puts the
    concatenation `[kept tokens, removed tokens]` back in patch order.
    """
    noise = jax.random.uniform(key, (batch, num_patches))
    ids_shuffle = jnp.argsort(noise, axis=1)
    ids_restore = jnp.argsort(ids_shuffle, axis=1)
    ids_keep = ids_shuffle[:, :keep]
    mask = (ids_restore >= keep).astype(jnp.float32)  # rank >= keep in the shuffle: removed
    return ids_keep, mask, ids_restore


def _gather_tokens(tokens: jax.Array, ids: jax.Array) -> jax.Array:
    """`tokens [b, n, d]`, `ids [b, k]` -> `[b, k, d]`."""
    return jnp.take_along_axis(tokens, ids[..., None], axis=1)


def _linear(in_features: int, out_features: int, axes: tuple[str | None, str | None], *, rngs: nnx.Rngs) -> nnx.Linear:
    # Xavier-uniform as every linear layer of the reference MAE; float32 in and out.
    return nnx.Linear(
        in_features,
        out_features,
        kernel_init=logical(nnx.initializers.xavier_uniform(), axes),
        bias_init=logical(nnx.initializers.zeros_init(), (axes[1],)),
        rngs=rngs,
    )


class MAE(Method):
    """Masked autoencoder on a ViT backbone (one with `embed_patches`/`encode`/`pool`).

    Config fields (`config.method`): `mask_ratio` (0.75), `decoder_embed_dim` (512),
    `decoder_depth` (8), `decoder_num_heads` (16), `decoder_mlp_ratio` (4.0),
    `decoder_pos_embed` ('sincos' fixed, as MAE, or 'learned'), `norm_pix_loss` (True).
    """

    views_per_example = 1

    def __init__(self, config: ml_collections.ConfigDict, *, in_channels: int, dtype: Any, rngs: nnx.Rngs):
        hp = config.method
        self.encoder = get_backbone(
            config.model.name, in_channels=in_channels, dtype=dtype, rngs=rngs, **config.model.kwargs
        )
        missing = [a for a in ("embed_patches", "encode", "pool", "grid_size") if not hasattr(self.encoder, a)]
        if missing:
            raise ValueError(
                f"mae needs a ViT backbone (one with embed_patches/encode/pool); model {config.model.name!r} "
                f"lacks {missing}. Use e.g. model.name='vit_ti4_28' or 'vit_b16'."
            )
        enc = self.encoder
        if enc.image_size % enc.patch_size:
            raise ValueError(f"mae: image size {enc.image_size} is not divisible by the patch size {enc.patch_size}")
        self.grid = enc.grid_size(enc.image_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.patch_size = enc.patch_size

        self.mask_ratio = float(hp.mask_ratio)
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"method.mask_ratio must be in (0, 1); got {hp.mask_ratio}")
        self.keep = num_visible(num_patches=self.num_patches, mask_ratio=self.mask_ratio)
        if self.keep < 1:
            raise ValueError(
                f"method.mask_ratio={self.mask_ratio} leaves no visible token of the {self.num_patches} patches "
                f"({self.grid[0]}x{self.grid[1]}); lower it or use smaller patches"
            )
        if self.keep >= self.num_patches:
            raise ValueError(f"method.mask_ratio={self.mask_ratio} removes no patch of {self.num_patches}")
        self.norm_pix_loss = bool(hp.norm_pix_loss)
        if self.norm_pix_loss and self.patch_size * self.patch_size * in_channels < 2:
            raise ValueError("method.norm_pix_loss needs patches of at least 2 values")

        dim, depth, heads = int(hp.decoder_embed_dim), int(hp.decoder_depth), int(hp.decoder_num_heads)
        if dim < 1 or depth < 1 or heads < 1:
            raise ValueError(
                f"decoder_embed_dim, decoder_depth, decoder_num_heads must be >= 1; got {dim}, {depth}, {heads}"
            )
        if dim % heads:
            raise ValueError(f"method.decoder_embed_dim {dim} is not divisible by method.decoder_num_heads {heads}")
        if hp.decoder_pos_embed not in DECODER_POS_EMBED_KINDS:
            raise ValueError(
                f"unknown method.decoder_pos_embed {hp.decoder_pos_embed!r}; known: {list(DECODER_POS_EMBED_KINDS)}"
            )
        if hp.decoder_pos_embed == "sincos" and dim % 4:
            raise ValueError(f"sin-cos decoder position embeddings need decoder_embed_dim divisible by 4; got {dim}")

        self.decoder_embed = _linear(enc.embed_dim, dim, ("embed", "embed"), rngs=rngs)
        # MAE initializes the mask token (and its learned positions) with normal(0.02).
        normal = nnx.initializers.normal(0.02)
        self.mask_token = nnx.Param(logical(normal, (None, None, "embed"))(rngs.params(), (1, 1, dim), jnp.float32))
        if hp.decoder_pos_embed == "learned":
            shape = (1, self.num_patches, dim)
            self.decoder_pos = nnx.Param(logical(normal, (None, None, "embed"))(rngs.params(), shape, jnp.float32))
        else:
            # Fixed, not a parameter: a constant of the graph (the class token's row is zero,
            # as the reference code's, so prefix tokens get no position).
            self.decoder_pos = nnx.data(None)
        self.decoder_pos_kind = str(hp.decoder_pos_embed)
        self.decoder_dim = dim
        self.decoder = Encoder(
            depth=depth,
            embed_dim=dim,
            num_heads=heads,
            mlp_dim=int(round(dim * float(hp.decoder_mlp_ratio))),
            qkv_bias=True,
            dtype=dtype,
            rngs=rngs,
        )
        self.decoder_pred = _linear(dim, self.patch_size**2 * in_channels, ("embed", None), rngs=rngs)

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    # ----------------------------------------------------------------------------------------
    # Pieces
    # ----------------------------------------------------------------------------------------

    def _check_images(self, images: jax.Array) -> None:
        grid = self.encoder.grid_size(images.shape[1:3])
        if grid != self.grid:
            raise ValueError(
                f"mae was built for {self.encoder.image_size} px images ({self.grid} patches); got "
                f"{images.shape[1]}x{images.shape[2]} ({grid} patches): set the crop size to the model's image_size"
            )

    def _decoder_pos(self) -> jax.Array:
        if self.decoder_pos is not None:
            return self.decoder_pos.get_value()[0]
        return jnp.asarray(sincos_2d(self.grid, self.decoder_dim))

    def encode_visible(self, images: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Masks and encodes: `(encoded [b, prefix + keep, d], mask [b, n], ids_restore [b, n])`."""
        self._check_images(images)
        tokens = self.encoder.embed_patches(images)
        ids_keep, mask, ids_restore = random_masking(
            key, batch=tokens.shape[0], num_patches=self.num_patches, keep=self.keep
        )
        return self.encoder.encode(_gather_tokens(tokens, ids_keep)), mask, ids_restore

    def decode(self, encoded: jax.Array, ids_restore: jax.Array) -> jax.Array:
        """`encoded [b, prefix + keep, d]` -> predicted patches `[b, n, p * p * c]` (float32)."""
        prefix = self.encoder.num_prefix_tokens
        x = self.decoder_embed(encoded.astype(jnp.float32))
        b = x.shape[0]
        masked = jnp.broadcast_to(self.mask_token.get_value(), (b, self.num_patches - self.keep, self.decoder_dim))
        patches = _gather_tokens(jnp.concatenate([x[:, prefix:], masked], axis=1), ids_restore)
        patches = patches + self._decoder_pos()[None]
        out = self.decoder(jnp.concatenate([x[:, :prefix], patches], axis=1))
        return self.decoder_pred(out[:, prefix:]).astype(jnp.float32)

    @staticmethod
    def _key(rngs: nnx.Rngs | None, step: jax.Array) -> jax.Array:
        if rngs is not None:
            return rngs.default()
        # Direct calls without rngs (tests, notebooks): still a pure function of the step.
        return jax.random.fold_in(jax.random.PRNGKey(0), jnp.asarray(step, jnp.int32))

    # ----------------------------------------------------------------------------------------
    # The five questions
    # ----------------------------------------------------------------------------------------

    def __call__(self, views: Sequence[jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        images = views[0]
        encoded, mask, ids_restore = self.encode_visible(images, self._key(rngs, step))
        pred = self.decode(encoded, ids_restore)
        target = losses.patchify(images.astype(jnp.float32), self.patch_size)
        loss, metrics = losses.mae(pred, target, mask, norm_pix=self.norm_pix_loss, epsilon=NORM_PIX_EPSILON)
        # Features for the online probe: the encoder's pooled output on the visible tokens (no
        # second, unmasked forward during training); kNN and probes evaluate full images.
        features = self.encoder.pool(encoded).astype(jnp.float32)
        return MethodOutput(loss=loss, metrics={**metrics, **embedding_diagnostics(features)}, features=features)

    def represent(self, images: jax.Array) -> jax.Array:
        return self.encoder(images)

    def pictures(
        self, images: jax.Array, *, rngs: nnx.Rngs, to_pixels: Callable[[jax.Array], jax.Array]
    ) -> dict[str, jax.Array]:
        """`{'reconstruction': [3, n, h, w, c]}` in [0, 1]: original, masked input, reconstruction."""
        encoded, mask, ids_restore = self.encode_visible(images, rngs.default())
        pred = self.decode(encoded, ids_restore)
        x = images.astype(jnp.float32)
        target = losses.patchify(x, self.patch_size)
        if self.norm_pix_loss:
            # Predictions are in each patch's normalized units: map back with the true patch's
            # statistics (unbiased variance, as the loss's), which the visible-patch picture
            # otherwise could not show.
            mean = jnp.mean(target, axis=-1, keepdims=True)
            var = jnp.var(target, axis=-1, keepdims=True, ddof=1)
            pred = pred * jnp.sqrt(var + NORM_PIX_EPSILON) + mean
        m = mask[..., None]
        h, w = images.shape[1:3]
        pasted = losses.unpatchify(target * (1 - m) + pred * m, self.patch_size, h, w)
        original = to_pixels(x)
        gray = jnp.full_like(target, MASK_GRAY)
        masked = losses.patchify(original, self.patch_size) * (1 - m) + gray * m
        rows = [original, losses.unpatchify(masked, self.patch_size, h, w), to_pixels(pasted)]
        return {"reconstruction": jnp.clip(jnp.stack(rows), 0.0, 1.0)}
