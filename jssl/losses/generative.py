"""Generative objectives: the (beta-)VAE evidence lower bound and DDPM's denoising
loss with epsilon- or v-prediction, plus noise-schedule helpers.

These are per-example losses (no batch statistics), so they need no `axis_name`; inside
`shard_map`, `pmean` the loss. Randomness (DDPM's timesteps and noise) is drawn by
`ddpm_corrupt` from an explicit `rng`, keeping the loss itself deterministic.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jssl.losses import _checks

Metrics = dict[str, jax.Array]


def vae_terms(
    reconstruction: jax.Array,
    x: jax.Array,
    mean: jax.Array,
    log_var: jax.Array,
    *,
    likelihood: str = "bernoulli",
) -> tuple[jax.Array, jax.Array]:
    """Per-example `(nll [batch], kl [batch, latent])` of a VAE, in nats: the two ELBO terms.

    `nll = -log p(x|z)` summed over the data dims (see `vae_elbo` for the likelihoods);
    `kl[b, j] = KL(N(mean, exp(log_var)) || N(0, 1))` of latent dim j, in closed form
    `0.5 * (mean^2 + exp(log_var) - 1 - log_var)`. `vae_elbo` reduces these; held-out
    likelihood measures need them per example.
    """
    fn = "vae_elbo"
    _checks.check_array(fn, "reconstruction", reconstruction)
    _checks.check_array(fn, "x", x)
    _checks.check_same_shape(fn, reconstruction=reconstruction, x=x)
    _checks.check_array(fn, "mean", mean, ndim=2)
    _checks.check_array(fn, "log_var", log_var, ndim=2)
    _checks.check_same_shape(fn, mean=mean, log_var=log_var)
    if mean.shape[0] != x.shape[0]:
        raise ValueError(f"{fn}: batch sizes differ: x {tuple(x.shape)}, mean {tuple(mean.shape)}.")
    if likelihood not in ("bernoulli", "gaussian"):
        raise ValueError(f"{fn}: `likelihood` must be 'bernoulli' or 'gaussian', got {likelihood!r}.")
    r = reconstruction.astype(jnp.float32).reshape(x.shape[0], -1)
    xf = x.astype(jnp.float32).reshape(x.shape[0], -1)
    if likelihood == "bernoulli":
        # softplus(r) - x r is -log Bernoulli(x; sigmoid(r)) without log(0) at saturation.
        nll = jnp.sum(jax.nn.softplus(r) - xf * r, axis=1)
    else:
        nll = 0.5 * jnp.sum(jnp.square(xf - r) + math.log(2 * math.pi), axis=1)
    mu = mean.astype(jnp.float32)
    lv = log_var.astype(jnp.float32)
    kl = -0.5 * (1.0 + lv - jnp.square(mu) - jnp.exp(lv))
    return nll, kl


def vae_elbo(
    reconstruction: jax.Array,
    x: jax.Array,
    mean: jax.Array,
    log_var: jax.Array,
    *,
    beta: float = 1.0,
    likelihood: str = "bernoulli",
    free_bits: float = 0.0,
) -> tuple[jax.Array, Metrics]:
    """Negative ELBO of a VAE with a diagonal-Gaussian posterior and N(0, I) prior.

    `loss = E_b[ -log p(x|z) + beta * KL(q(z|x) || N(0, I)) ]`, the log-likelihood summed
    over the data dims and the KL (closed form
    `-0.5 * sum(1 + log_var - mean^2 - exp(log_var))`) over the latent dims, averaged over
    the batch. `beta = 1` is the VAE; `beta > 1` is beta-VAE.

    With `free_bits = lambda > 0`, the KL term becomes `sum_j max(lambda, E_b[KL_j])`: each
    latent dim's KL, averaged over the batch, counts only above `lambda` nats, so the
    optimizer gains nothing by pushing a dim's KL below it and the posterior does not collapse
    onto the prior early in training (Kingma et al. 2016, Eq. 15, with one group per latent
    dim). The batch mean is over the global batch (the arrays are global under `jit`), so the
    loss does not depend on the mesh. `metrics['kl']` stays the true mean KL.

    Args:
      reconstruction: [batch, ...] decoder output for one sample z ~ q(z|x): logits for
        'bernoulli', the mean for 'gaussian' (unit variance).
      x: [batch, ...] data, same shape ([0, 1] values for 'bernoulli').
      mean: [batch, latent] posterior means.
      log_var: [batch, latent] posterior log-variances.
      beta: KL weight, 1 for the VAE (beta-VAE uses e.g. 4).
      likelihood: 'bernoulli' or 'gaussian'.
      free_bits: nats per latent dim below which the KL is not penalized; 0 (default): off.

    Returns:
      `(loss, metrics)` with `reconstruction` (mean NLL) and `kl` (mean KL).

    References:
      Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014, Eq. (10) and App. B;
      Higgins et al., "beta-VAE", ICLR 2017, Eq. (4);
      Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling, "Improved Variational Inference
      with Inverse Autoregressive Flow", NeurIPS 2016, Sec. C.8 / Eq. (15) ("free bits").
    """
    fn = "vae_elbo"
    _checks.check_positive(fn, "beta", beta, allow_zero=True)
    _checks.check_positive(fn, "free_bits", free_bits, allow_zero=True)
    nll, kl = vae_terms(reconstruction, x, mean, log_var, likelihood=likelihood)
    kl_example = jnp.sum(kl, axis=1)
    if free_bits > 0:
        kl_term = jnp.sum(jnp.maximum(jnp.float32(free_bits), jnp.mean(kl, axis=0)))
    else:  # the exact plain objective, not max(0, .) of a float that may round below 0
        kl_term = jnp.mean(kl_example)
    sg = jax.lax.stop_gradient
    loss = jnp.mean(nll) + beta * kl_term
    return loss, {"reconstruction": sg(jnp.mean(nll)), "kl": sg(jnp.mean(kl_example))}


def linear_beta_schedule(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """DDPM's linear variance schedule (Ho et al. 2020, Sec. 4): float64 [num_steps]."""
    _checks.check_positive_int("linear_beta_schedule", "num_steps", num_steps, optional=False)
    return np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)


def cosine_beta_schedule(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Improved-DDPM cosine schedule: alpha_bar(t) = cos^2((t/T + s)/(1 + s) * pi/2),
    betas clipped at `max_beta` (Nichol & Dhariwal 2021, Eq. 17). float64 [num_steps]."""
    _checks.check_positive_int("cosine_beta_schedule", "num_steps", num_steps, optional=False)
    t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    f = np.cos((t + s) / (1 + s) * np.pi / 2) ** 2
    return np.minimum(1.0 - f[1:] / f[:-1], max_beta)


def alphas_cumprod(betas) -> np.ndarray:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s), float64 [num_steps]."""
    return np.cumprod(1.0 - np.asarray(betas, np.float64))


def _bcast(v, x):
    return v.reshape(v.shape + (1,) * (x.ndim - 1))


def ddpm_corrupt(
    x0: jax.Array,
    *,
    rng: jax.Array,
    alphas_cumprod: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Samples t ~ U{0..T-1} and eps ~ N(0, I) and returns `(x_t, t, eps)` with
    `x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps` (Ho et al., Eq. 4)."""
    _checks.check_array("ddpm_corrupt", "x0", x0)
    k_t, k_n = jax.random.split(rng)
    ab = jnp.asarray(alphas_cumprod, jnp.float32)
    t = jax.random.randint(k_t, (x0.shape[0],), 0, ab.shape[0])
    eps = jax.random.normal(k_n, x0.shape, jnp.float32)
    a = _bcast(ab[t], x0)
    xt = jnp.sqrt(a) * x0.astype(jnp.float32) + jnp.sqrt(1.0 - a) * eps
    return xt.astype(x0.dtype), t, eps


def ddpm(
    model_output: jax.Array,
    x0: jax.Array,
    noise: jax.Array,
    timesteps: jax.Array,
    *,
    alphas_cumprod: jax.Array,
    prediction: str = "epsilon",
) -> tuple[jax.Array, Metrics]:
    """DDPM's simple loss: MSE between the network output and its regression target.

    With `x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps` (see `ddpm_corrupt`), the target is
    `eps` for `prediction='epsilon'` (L_simple of Ho et al.) or
    `v = sqrt(ab_t) eps - sqrt(1 - ab_t) x0` for `prediction='v'` (Salimans & Ho). The mean
    is over every element of the batch.

    Args:
      model_output: [batch, ...] network prediction given (x_t, t).
      x0: [batch, ...] clean data.
      noise: [batch, ...] the eps used to build x_t.
      timesteps: [batch] int timesteps in [0, T).
      alphas_cumprod: [T] cumulative products of (1 - beta) (see `alphas_cumprod`).
      prediction: 'epsilon' (DDPM default) or 'v'.

    Returns:
      `(loss, metrics)` with `x0_mse`, the implied clean-data reconstruction error.

    References:
      Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020, Eq. (14);
      Salimans & Ho, "Progressive Distillation for Fast Sampling of Diffusion Models",
      ICLR 2022, Sec. 4 and App. D (v-prediction).
    """
    fn = "ddpm"
    _checks.check_array(fn, "model_output", model_output)
    _checks.check_array(fn, "x0", x0)
    _checks.check_array(fn, "noise", noise)
    _checks.check_same_shape(fn, model_output=model_output, x0=x0, noise=noise)
    _checks.check_array(fn, "timesteps", timesteps, ndim=1, kind="int")
    _checks.check_dim(fn, "timesteps", timesteps, 0, x0.shape[0], "the batch size")
    if prediction not in ("epsilon", "v"):
        raise ValueError(f"{fn}: `prediction` must be 'epsilon' or 'v', got {prediction!r}.")
    ab = _bcast(jnp.asarray(alphas_cumprod, jnp.float32)[timesteps], x0)
    sa, sb = jnp.sqrt(ab), jnp.sqrt(1.0 - ab)
    out = model_output.astype(jnp.float32)
    x = x0.astype(jnp.float32)
    eps = noise.astype(jnp.float32)
    if prediction == "epsilon":
        target = eps
        x0_hat = (sa * x + sb * eps - sb * out) / sa
    else:
        target = sa * eps - sb * x
        x0_hat = sa * (sa * x + sb * eps) - sb * out
    loss = jnp.mean(jnp.square(out - target))
    return loss, {"x0_mse": jax.lax.stop_gradient(jnp.mean(jnp.square(x0_hat - x)))}
