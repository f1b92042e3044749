"""Variational autoencoder (Kingma & Welling 2014), with beta-VAE's KL weight and free bits.

A convolutional encoder (`jssl.models.autoencoder`) maps an image to the mean of a diagonal
Gaussian posterior q(z|x) (the encoder's output, so `represent` is the posterior mean) and, by
a second linear head on the same flattened feature map, its log-variance. One reparameterized
sample `z = mean + exp(log_var / 2) * eps`, eps ~ N(0, I) from the step's `rngs` (drawn for the
global batch: a pure function of seed and step, identical on any mesh), goes through the
mirrored decoder, and the loss is the negative ELBO (`jssl.losses.vae_elbo`) against a
N(0, I) prior: `-log p(x|z) + beta * KL(q(z|x) || N(0, I))`, with `method.beta` (1: the VAE;
> 1: beta-VAE, Higgins et al. 2017) and optionally `method.free_bits` nats per latent dim
below which the batch-mean KL is not penalized (Kingma et al. 2016; 0: off).

Likelihoods (`method.likelihood`):
* 'bernoulli': the decoder outputs logits, `p(x|z) = prod Bernoulli(x_i; sigmoid(logit_i))`.
  Needs data in [0, 1]: `data.mean = (0.,)`, `data.std = (1.,)`, checked at build time.
  On MNIST's gray levels (not binarized), as many VAE codebases train: the cross-entropy of a
  gray x is not a normalized likelihood over gray levels, so its nats and bits per dimension
  are the standard binarized-MNIST-style numbers in form, comparable with other
  Bernoulli-on-[0, 1] runs, not with bounds reported on (stochastically) binarized MNIST.
* 'gaussian': the decoder outputs the mean, unit variance, on the normalized values the method
  sees, so its nats are a density on normalized units. For [0, 1] pixels,
  `x_pix = x * std + mean` gives `nats_pixels = nats_normalized + D * log(std)` (summed per
  channel's std); neither is a discrete likelihood of 8-bit images (that needs dequantization
  and then `+ D * log(256)` for [0, 255] bins), so compare Gaussian numbers only with
  Gaussian numbers of the same normalization.

`heldout_metrics` reports per-example `neg_elbo_nats` (beta = 1, no free bits: the true bound,
with one posterior sample), `kl_nats`, `reconstruction_nats` and `bits_per_dim =
neg_elbo_nats / (D ln 2)`, D = height x width x channels. `pictures` draws input /
reconstruction (the likelihood's mean at the posterior mean), samples from the prior, and
interpolations between the posterior means of pairs of held-out images.

References:
  Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (Sec. 2.4, App. B);
  Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
  Framework", ICLR 2017;
  Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling, "Improved Variational Inference with
  Inverse Autoregressive Flow", NeurIPS 2016 (free bits, App. C.8).
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
from jssl.methods.dae import build_autoencoder, check_unit_interval, step_key
from jssl.models.partitioning import logical

LIKELIHOODS = ("bernoulli", "gaussian")
# Picture sizes: a 4 x 8 grid of prior samples; interpolations in 8 steps between image pairs.
SAMPLE_ROWS, SAMPLE_COLS = 4, 8
INTERPOLATION_STEPS = 8
# Posterior log-variances are clipped to this range, as the latent-diffusion autoencoder's
# `DiagonalGaussianDistribution` (Rombach et al. 2022) does: exp(log_var) stays finite after a
# bad step (the generic tests take plain SGD steps at lr 1) and real posteriors lie far inside.
LOG_VAR_RANGE = (-30.0, 20.0)


def reparameterize(mean: jax.Array, log_var: jax.Array, key: jax.Array) -> jax.Array:
    """`z = mean + exp(log_var / 2) * eps`, eps ~ N(0, I): a sample of q(z|x) differentiable in both."""
    eps = jax.random.normal(key, mean.shape, jnp.float32)
    return mean + jnp.exp(0.5 * log_var) * eps


class VAE(Method):
    """VAE on a convolutional encoder/decoder pair (`model.name='conv_ae_small'`).

    Config fields (`config.method`): `likelihood` ('bernoulli' or 'gaussian'), `beta` (KL
    weight, > 0), `free_bits` (nats per latent dim, >= 0; 0: off).
    """

    views_per_example = 1

    def __init__(self, config: ml_collections.ConfigDict, *, in_channels: int, dtype: Any, rngs: nnx.Rngs):
        hp = config.method
        if hp.likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown method.likelihood {hp.likelihood!r}; known: {list(LIKELIHOODS)}")
        self.beta = float(hp.beta)
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise ValueError(f"method.beta must be a positive number (1: VAE, > 1: beta-VAE); got {hp.beta}")
        self.free_bits = float(hp.free_bits)
        if not (self.free_bits >= 0 and math.isfinite(self.free_bits)):
            raise ValueError(f"method.free_bits must be >= 0 nats per latent dim (0: off); got {hp.free_bits}")
        if hp.likelihood == "bernoulli":
            check_unit_interval(config, "vae with method.likelihood='bernoulli'")
        self.likelihood = str(hp.likelihood)
        self.encoder, self.decoder = build_autoencoder(
            config, in_channels=in_channels, dtype=dtype, rngs=rngs, method="vae"
        )
        # Zero-initialized: every posterior starts with unit variance, as the prior.
        zeros = nnx.initializers.zeros_init()
        self.log_var_head = nnx.Linear(
            self.encoder.hidden_dim,
            self.encoder.latent_dim,
            dtype=dtype,
            kernel_init=logical(zeros, (None, "embed")),
            bias_init=logical(zeros, ("embed",)),
            rngs=rngs,
        )

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_dim

    def posterior(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """`(mean, log_var)`, each `[b, latent_dim]` float32, of q(z|x)."""
        hidden = self.encoder.trunk(images)
        mean = self.encoder.head(hidden).astype(jnp.float32)
        return mean, jnp.clip(self.log_var_head(hidden).astype(jnp.float32), *LOG_VAR_RANGE)

    def likelihood_mean(self, output: jax.Array) -> jax.Array:
        """Decoder output -> the mean of p(x|z), in the normalized units of the input."""
        return jax.nn.sigmoid(output) if self.likelihood == "bernoulli" else output

    def __call__(self, views: Sequence[jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        images = views[0]
        mean, log_var = self.posterior(images)
        z = reparameterize(mean, log_var, step_key(rngs, step))
        loss, metrics = losses.vae_elbo(
            self.decoder(z), images, mean, log_var, beta=self.beta, likelihood=self.likelihood, free_bits=self.free_bits
        )
        # The true bound (beta = 1, no free bits), comparable across runs whatever beta is.
        metrics["neg_elbo"] = metrics["reconstruction"] + metrics["kl"]
        return MethodOutput(loss=loss, metrics={**metrics, **embedding_diagnostics(mean)}, features=mean)

    def represent(self, images: jax.Array) -> jax.Array:
        return self.encoder(images)  # the posterior mean

    def pictures(
        self, images: jax.Array, *, rngs: nnx.Rngs, to_pixels: Callable[[jax.Array], jax.Array]
    ) -> dict[str, jax.Array]:
        """Grids in [0, 1]: `reconstruction` [2, n, ...] (input / p(x|z)'s mean at z = the posterior
        mean), `samples` [4, 8, ...] (means of p(x|z), z ~ N(0, I)), and, for n >= 2,
        `interpolation` [n // 2, 8, ...] (row i: posterior means of images 2i and 2i + 1 mixed
        linearly, endpoints included)."""

        def draw(z: jax.Array) -> jax.Array:
            return jnp.clip(to_pixels(self.likelihood_mean(self.decoder(z))), 0.0, 1.0)

        n, h, w, c = images.shape
        mean, _ = self.posterior(images)
        out = {
            "reconstruction": jnp.stack([jnp.clip(to_pixels(images), 0.0, 1.0), draw(mean)]),
            "samples": draw(jax.random.normal(rngs.default(), (SAMPLE_ROWS * SAMPLE_COLS, self.latent_dim))).reshape(
                SAMPLE_ROWS, SAMPLE_COLS, h, w, c
            ),
        }
        pairs = n // 2
        if pairs:
            t = jnp.linspace(0.0, 1.0, INTERPOLATION_STEPS)[None, :, None]
            a, b = mean[0 : 2 * pairs : 2, None], mean[1 : 2 * pairs : 2, None]
            z = ((1.0 - t) * a + t * b).reshape(pairs * INTERPOLATION_STEPS, self.latent_dim)
            out["interpolation"] = draw(z).reshape(pairs, INTERPOLATION_STEPS, h, w, c)
        return out

    def generate(self, num: int, *, rngs: nnx.Rngs) -> jax.Array:
        """`num` samples: the means of p(x|z) for z ~ N(0, I) (normalized units), as the pictures draw them."""
        return self.likelihood_mean(self.decoder(jax.random.normal(rngs.default(), (num, self.latent_dim))))

    def heldout_metrics(self, images: jax.Array, *, rngs: nnx.Rngs) -> dict[str, jax.Array]:
        """Per-example `neg_elbo_nats`, `bits_per_dim`, `kl_nats`, `reconstruction_nats` ([b] float32).

        The negative ELBO with beta = 1 and no free bits (an upper bound on -log p(x) of the
        likelihood in use; see the module docstring for what its units mean), estimated with one
        sample of q(z|x) from `rngs` (unbiased for the bound; the KL is exact).
        """
        mean, log_var = self.posterior(images)
        z = reparameterize(mean, log_var, rngs.default())
        nll, kl = losses.vae_terms(self.decoder(z), images, mean, log_var, likelihood=self.likelihood)
        kl = jnp.sum(kl, axis=1)
        neg_elbo = nll + kl
        dims = math.prod(images.shape[1:])
        return {
            "neg_elbo_nats": neg_elbo.astype(jnp.float32),
            "bits_per_dim": (neg_elbo / (dims * math.log(2.0))).astype(jnp.float32),
            "kl_nats": kl.astype(jnp.float32),
            "reconstruction_nats": nll.astype(jnp.float32),
        }
