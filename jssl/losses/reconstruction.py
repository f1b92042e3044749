"""Reconstruction losses: MAE's masked-patch MSE (with patchify / unpatchify) and the
denoising-autoencoder loss.

The MAE loss is a mean over *masked* patches, whose count differs between devices, so it
takes `axis_name`: numerator and denominator are all-reduced separately, which a `pmean`
of per-device means would get wrong.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jssl.losses import _checks
from jssl.losses import _sharding
from jssl.losses._sharding import AxisName

Metrics = dict[str, jax.Array]


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
    """Splits images into flattened non-overlapping patches, row-major over the grid.

    Args:
      images: [batch, height, width, channels] (NHWC); height and width divisible by
        `patch_size`.
      patch_size: side p of the square patches.

    Returns:
      [batch, (height/p) * (width/p), p * p * channels]; each patch is flattened in
      (row, column, channel) order, as in MAE.
    """
    fn = "patchify"
    _checks.check_array(fn, "images", images, ndim=4, kind="any")
    _checks.check_positive_int(fn, "patch_size", patch_size, optional=False)
    b, h, w, c = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"{fn}: image size {h}x{w} is not divisible by patch_size {p}.")
    x = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: jax.Array, patch_size: int, height: int, width: int) -> jax.Array:
    """Inverse of `patchify`: [batch, L, p*p*C] -> [batch, height, width, C]."""
    fn = "unpatchify"
    _checks.check_array(fn, "patches", patches, ndim=3, kind="any")
    p = patch_size
    b, n, dim = patches.shape
    if height % p or width % p or n != (height // p) * (width // p) or dim % (p * p):
        raise ValueError(
            f"{fn}: patches {tuple(patches.shape)} do not tile a {height}x{width} image with patch_size {p}."
        )
    c = dim // (p * p)
    x = patches.reshape(b, height // p, width // p, p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, height, width, c)


def mae(
    pred: jax.Array,
    target: jax.Array,
    mask: jax.Array,
    *,
    norm_pix: bool = True,
    epsilon: float = 1e-6,
    axis_name: AxisName = None,
) -> tuple[jax.Array, Metrics]:
    """Masked-autoencoder loss: per-patch MSE, averaged over the masked patches only.

    With `norm_pix`, each target patch is standardised by its own mean and (unbiased, as
    in the reference code's `torch.var`) variance: `(t - mean) / sqrt(var + epsilon)`.

    Args:
      pred: [batch, num_patches, patch_dim] decoder predictions.
      target: [batch, num_patches, patch_dim] patchified images (see `patchify`).
      mask: [batch, num_patches], 1/True where the patch was masked (removed from the
        encoder input); visible patches do not count.
      norm_pix: normalise target pixels per patch; MAE's default for its best results.
      epsilon: variance epsilon for `norm_pix`, 1e-6 as in MAE.
      axis_name: mesh axis the batch is sharded over, inside `shard_map`.

    Returns:
      `(loss, metrics)` with `mask_ratio` (fraction of masked patches).

    References:
      He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022, Sec. 3
      ("Reconstruction target").
    """
    fn = "mae"
    _checks.check_array(fn, "pred", pred, ndim=3)
    _checks.check_array(fn, "target", target, ndim=3)
    _checks.check_same_shape(fn, pred=pred, target=target)
    _checks.check_array(fn, "mask", mask, ndim=2, kind="any")
    if mask.shape != pred.shape[:2]:
        raise ValueError(
            f"{fn}: `mask` must be [batch, num_patches] = {tuple(pred.shape[:2])}, got {tuple(mask.shape)}."
        )
    t = target.astype(jnp.float32)
    if norm_pix:
        if t.shape[-1] < 2:
            raise ValueError(f"{fn}: norm_pix needs patch_dim >= 2, got {tuple(t.shape)}.")
        mean = jnp.mean(t, axis=-1, keepdims=True)
        var = jnp.sum(jnp.square(t - mean), axis=-1, keepdims=True) / (t.shape[-1] - 1)
        t = (t - mean) / jnp.sqrt(var + epsilon)
    per_patch = jnp.mean(jnp.square(pred.astype(jnp.float32) - t), axis=-1)
    m = mask.astype(jnp.float32)
    num = _sharding.psum(jnp.sum(per_patch * m), axis_name)
    den = _sharding.psum(jnp.sum(m), axis_name)
    loss = num / jnp.maximum(den, 1.0)
    ratio = _sharding.global_mean(jnp.sum(m), m.size, axis_name)
    return loss, {"mask_ratio": ratio}


def denoising(
    reconstruction: jax.Array,
    clean: jax.Array,
    *,
    mask: jax.Array | None = None,
    loss_type: str = "mse",
) -> tuple[jax.Array, Metrics]:
    """Denoising-autoencoder loss: reconstruct the clean input from a corrupted one.

    Corrupt the input yourself (e.g. `clean + sigma * jax.random.normal(rng, shape)`, or
    masking noise) and pass the decoder output here. The loss is the mean over all elements
    (or over `mask`'s True elements, e.g. only the corrupted ones) of the squared error
    (`'mse'`) or, for inputs in [0, 1] and logits as `reconstruction`, the binary
    cross-entropy (`'bce'`).

    Args:
      reconstruction: [batch, ...] decoder output (logits for 'bce').
      clean: [batch, ...] uncorrupted input, same shape.
      mask: optional [batch, ...] bool/0-1 weights, same shape.
      loss_type: 'mse' or 'bce'.

    Returns:
      `(loss, metrics)` with `mse` (the squared error even when training with 'bce').

    References:
      Vincent et al., "Extracting and Composing Robust Features with Denoising
      Autoencoders", ICML 2008, Sec. 2.3; Vincent et al., JMLR 2010.
    """
    fn = "denoising"
    _checks.check_array(fn, "reconstruction", reconstruction)
    _checks.check_array(fn, "clean", clean)
    _checks.check_same_shape(fn, reconstruction=reconstruction, clean=clean)
    if loss_type not in ("mse", "bce"):
        raise ValueError(f"{fn}: `loss_type` must be 'mse' or 'bce', got {loss_type!r}.")
    r = reconstruction.astype(jnp.float32)
    x = clean.astype(jnp.float32)
    if loss_type == "mse":
        per, pred = jnp.square(r - x), r
    else:
        per, pred = jax.nn.softplus(r) - x * r, jax.nn.sigmoid(r)
    w = jnp.ones_like(per) if mask is None else mask.astype(jnp.float32)
    if mask is not None and mask.shape != clean.shape:
        raise ValueError(f"{fn}: `mask` must have shape {tuple(clean.shape)}, got {tuple(mask.shape)}.")
    den = jnp.maximum(jnp.sum(w), 1.0)
    loss = jnp.sum(per * w) / den
    mse = jax.lax.stop_gradient(jnp.sum(jnp.square(pred - x) * w) / den)
    return loss, {"mse": mse}
