"""Denoising autoencoder: reconstruct the clean image from a corrupted one (Vincent et al. 2008).

Each step corrupts the batch with Gaussian noise (`method.noise='gaussian'`, standard
deviation `method.sigma` in [0, 1] pixel units, whatever the data normalization) or masking
noise (`'masking'`: a fraction `method.mask_fraction` of each image's pixel positions, drawn
anew per example, set to black, i.e. pixel value 0, as Vincent et al.'s "forced to 0"), encodes
it with a convolutional encoder (`jssl.models.autoencoder`) to a `latent_dim` code, and decodes
the code with the mirrored decoder. The loss (`jssl.losses.denoising`) is the squared error
against the clean image over all pixels (`method.loss='mse'`, in the normalized units the
method sees), or the binary cross-entropy with the decoder's output as logits (`'bce'`, for
data normalized to [0, 1]: `data.mean = (0.,)`, `data.std = (1.,)`, checked at build time).

The noise comes from the step's `rngs` (the trainer folds the step into the run's key) and is
drawn for the global batch, so corruptions are a pure function of seed and step: identical on
any mesh and after a resume. `represent` encodes the clean image; the online probe's features
are the codes of the corrupted training images (no second, clean forward during training, as
MAE's visible-token features).

References:
  Vincent, Larochelle, Bengio, Manzagol, "Extracting and Composing Robust Features with
  Denoising Autoencoders", ICML 2008 (Sec. 2.3, masking noise);
  Vincent, Larochelle, Lajoie, Bengio, Manzagol, "Stacked Denoising Autoencoders", JMLR 11,
  2010 (Sec. 4.2: additive Gaussian and masking noise; Sec. 6: cross-entropy for [0, 1] data).
"""

from __future__ import annotations

import math
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
from jssl.models.autoencoder import AUTOENCODERS, ConvEncoder, mirror_decoder

NOISES = ("gaussian", "masking")
LOSS_TYPES = ("mse", "bce")
# Held-out denoising error (pixel MSE) at these fixed noise levels, whatever the training noise,
# so runs with different training noise are compared on the same footing.
HELDOUT_SIGMAS = (0.1, 0.3, 0.5)
HELDOUT_MASK_FRACTIONS = (0.25, 0.5)


# ==================================================================================================
# Pieces the VAE shares
# ==================================================================================================


def maps_to_unit_interval(mean: Sequence[float], std: Sequence[float]) -> bool:
    """Whether normalizing [0, 1] pixels with `(p - mean) / std` leaves them in [0, 1]: mean 0, std 1."""
    return all(float(m) == 0.0 for m in mean) and all(float(s) == 1.0 for s in std)


def check_unit_interval(config: ml_collections.ConfigDict, what: str) -> None:
    """Raises unless `config.data.mean/std` map pixels to [0, 1] (needed by Bernoulli / BCE)."""
    mean, std = tuple(config.data.mean), tuple(config.data.std)
    if not maps_to_unit_interval(mean, std):
        raise ValueError(
            f"{what} needs data in [0, 1], but data.mean={mean}, data.std={std} maps pixels to "
            f"[{min(-m / s for m, s in zip(mean, std)):.3g}, {max((1 - m) / s for m, s in zip(mean, std)):.3g}]; "
            "set data.mean=(0.,) and data.std=(1.,) (one entry per channel)"
        )


def build_autoencoder(
    config: ml_collections.ConfigDict, *, in_channels: int, dtype: Any, rngs: nnx.Rngs, method: str
) -> tuple[ConvEncoder, nnx.Module]:
    """`(encoder, mirrored decoder)` for `config.model`, which must name a convolutional autoencoder."""
    if config.model.name not in AUTOENCODERS:
        raise ValueError(
            f"{method} needs a convolutional autoencoder backbone (model.name in {sorted(AUTOENCODERS)}); "
            f"got {config.model.name!r}"
        )
    encoder = get_backbone(config.model.name, in_channels=in_channels, dtype=dtype, rngs=rngs, **config.model.kwargs)
    return encoder, mirror_decoder(encoder, out_channels=in_channels, dtype=dtype, rngs=rngs)


def step_key(rngs: nnx.Rngs | None, step: jax.Array) -> jax.Array:
    if rngs is not None:
        return rngs.default()
    # Direct calls without rngs (tests, notebooks): still a pure function of the step.
    return jax.random.fold_in(jax.random.PRNGKey(0), jnp.asarray(step, jnp.int32))


def per_channel(values: Sequence[float], channels: int) -> tuple[float, ...]:
    """`data.mean`/`data.std` as one float per channel (a single entry serves every channel)."""
    v = tuple(float(x) for x in values)
    return v * channels if len(v) == 1 else v


# ==================================================================================================
# Noise
# ==================================================================================================


def gaussian_noise(images: jax.Array, key: jax.Array, *, sigma: float, std: jax.Array) -> jax.Array:
    """`images` (normalized) plus Gaussian noise of standard deviation `sigma` in pixel units."""
    noise = jax.random.normal(key, images.shape, jnp.float32) * (sigma / std)
    return (images.astype(jnp.float32) + noise).astype(images.dtype)


def masking_mask(key: jax.Array, *, batch: int, height: int, width: int, fraction: float) -> jax.Array:
    """`[b, h, w, 1]` bool, True at exactly `round(fraction * h * w)` random positions per example.

    An exact count per example (rank of uniform noise below the count), as Vincent et al.'s
    "a fixed number of components chosen at random", not a Bernoulli draw per pixel.
    """
    n = height * width
    count = round(fraction * n)
    noise = jax.random.uniform(key, (batch, n))
    rank = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)
    return (rank < count).reshape(batch, height, width, 1)


def masking_noise(images: jax.Array, key: jax.Array, *, fraction: float, black: jax.Array) -> jax.Array:
    """`images` (normalized) with `fraction` of each image's pixel positions set to black (pixel 0)."""
    b, h, w, _ = images.shape
    mask = masking_mask(key, batch=b, height=h, width=w, fraction=fraction)
    return jnp.where(mask, black.astype(images.dtype), images)


class DAE(Method):
    """Denoising autoencoder on a convolutional encoder/decoder pair (`model.name='conv_ae_small'`).

    Config fields (`config.method`): `noise` ('gaussian' or 'masking'), `sigma` (Gaussian
    standard deviation in [0, 1] pixel units, > 0), `mask_fraction` (in (0, 1)), `loss`
    ('mse' or 'bce'; 'bce' needs data.mean=(0.,), data.std=(1.,)).
    """

    views_per_example = 1

    def __init__(self, config: ml_collections.ConfigDict, *, in_channels: int, dtype: Any, rngs: nnx.Rngs):
        hp = config.method
        if hp.noise not in NOISES:
            raise ValueError(f"unknown method.noise {hp.noise!r}; known: {list(NOISES)}")
        if hp.loss not in LOSS_TYPES:
            raise ValueError(f"unknown method.loss {hp.loss!r}; known: {list(LOSS_TYPES)}")
        self.sigma = float(hp.sigma)
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"method.sigma must be a positive number (pixel units); got {hp.sigma}")
        self.mask_fraction = float(hp.mask_fraction)
        if not 0.0 < self.mask_fraction < 1.0:
            raise ValueError(f"method.mask_fraction must be in (0, 1); got {hp.mask_fraction}")
        if hp.loss == "bce":
            check_unit_interval(config, "dae with method.loss='bce'")
        self.noise = str(hp.noise)
        self.loss_type = str(hp.loss)
        # Static floats, not arrays: module attributes that are arrays would be state.
        self.pixel_mean = per_channel(config.data.mean, in_channels)
        self.pixel_std = per_channel(config.data.std, in_channels)
        self.encoder, self.decoder = build_autoencoder(
            config, in_channels=in_channels, dtype=dtype, rngs=rngs, method="dae"
        )

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    @property
    def mean(self) -> jax.Array:
        return jnp.asarray(self.pixel_mean, jnp.float32)

    @property
    def std(self) -> jax.Array:
        return jnp.asarray(self.pixel_std, jnp.float32)

    def corrupt(self, images: jax.Array, key: jax.Array, *, noise: str | None = None, level: float | None = None):
        """The training corruption (or `noise` at `level`: sigma or mask fraction) of normalized `images`."""
        noise = self.noise if noise is None else noise
        if noise == "gaussian":
            return gaussian_noise(images, key, sigma=self.sigma if level is None else level, std=self.std)
        fraction = self.mask_fraction if level is None else level
        return masking_noise(images, key, fraction=fraction, black=-self.mean / self.std)

    def reconstruct(self, corrupted: jax.Array) -> jax.Array:
        """The decoder's output for `corrupted`: normalized values ('mse') or logits ('bce')."""
        return self.decoder(self.encoder(corrupted))

    def to_normalized(self, output: jax.Array) -> jax.Array:
        """Decoder output -> the reconstruction in the normalized units of the input."""
        return jax.nn.sigmoid(output) if self.loss_type == "bce" else output

    def __call__(self, views: Sequence[jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        images = views[0]
        self.encoder.check_images(images)
        code = self.encoder(self.corrupt(images, step_key(rngs, step)))
        loss, metrics = losses.denoising(self.decoder(code), images, loss_type=self.loss_type)
        return MethodOutput(loss=loss, metrics={**metrics, **embedding_diagnostics(code)}, features=code)

    def represent(self, images: jax.Array) -> jax.Array:
        return self.encoder(images)

    def pictures(
        self, images: jax.Array, *, rngs: nnx.Rngs, to_pixels: Callable[[jax.Array], jax.Array]
    ) -> dict[str, jax.Array]:
        """`{'denoising': [3, n, h, w, c]}` in [0, 1]: clean / corrupted (training noise) / denoised."""
        corrupted = self.corrupt(images, rngs.default())
        denoised = self.to_normalized(self.reconstruct(corrupted))
        rows = [to_pixels(images), to_pixels(corrupted), to_pixels(denoised)]
        return {"denoising": jnp.clip(jnp.stack(rows), 0.0, 1.0)}

    def heldout_metrics(self, images: jax.Array, *, rngs: nnx.Rngs) -> dict[str, jax.Array]:
        """Per-example pixel MSE ([0, 1] units, mean over pixels) of the denoised image at fixed noise.

        `denoise_mse_sigma{s}` for Gaussian noise of standard deviation s and
        `denoise_mse_mask{f}` for masking noise of fraction f (`HELDOUT_SIGMAS`,
        `HELDOUT_MASK_FRACTIONS`), whatever the training noise. In pixel units, so runs with
        different normalizations or losses compare directly.
        """
        clean = images.astype(jnp.float32) * self.std + self.mean
        levels = [("gaussian", s, f"denoise_mse_sigma{s:g}") for s in HELDOUT_SIGMAS]
        levels += [("masking", f, f"denoise_mse_mask{f:g}") for f in HELDOUT_MASK_FRACTIONS]
        out = {}
        for (noise, level, name), key in zip(levels, jax.random.split(rngs.default(), len(levels))):
            denoised = self.to_normalized(self.reconstruct(self.corrupt(images, key, noise=noise, level=level)))
            pixels = denoised.astype(jnp.float32) * self.std + self.mean
            out[name] = jnp.mean(jnp.square(pixels - clean), axis=(1, 2, 3)).astype(jnp.float32)
        return out
