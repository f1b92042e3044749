"""DDPM: a U-Net learns to denoise images at every noise level; DDIM samples from it.

Training (Ho et al. 2020, Algorithm 1): for a clean image `x0` (pixels scaled to [-1, 1]:
the recipes normalize with mean 0.5, std 0.5), draw `t ~ U{0, ..., T-1}` and `eps ~ N(0, I)`,
form `x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps` (`losses.ddpm_corrupt`) and regress the
U-Net's output on `eps` (`prediction='epsilon'`, L_simple) or on
`v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0` (`prediction='v'`, Salimans & Ho 2022)
(`losses.ddpm`). `abar_t = prod_{s<=t} (1 - beta_s)` for the `linear` schedule (betas
`beta_start`..`beta_end`, Ho et al.) or the `cosine` one (Nichol & Dhariwal 2021, Eq. 17).
The draws come from the step's `rngs` (the trainer folds the step into the run's key), made
for the global batch: a pure function of (seed, step), identical on any mesh and after a resume.

Both parametrizations give the clean-image and noise estimates (`predict_x0_eps`):
  epsilon: x0 = (x_t - sqrt(1 - abar) eps_hat) / sqrt(abar);
  v:       x0 = sqrt(abar) x_t - sqrt(1 - abar) v_hat,  eps = sqrt(1 - abar) x_t + sqrt(abar) v_hat.

EMA: sampling, pictures, held-out measures and the representation use an exponential moving
average of the weights (`ema_unet`, a `Teacher` copy, never trained), updated after each
optimizer step k (0-based) as `ema <- d_k ema + (1 - d_k) theta` with `d_k = ema_decay`, or with
`ema_warmup`: `d_k = min(ema_decay, (1 + k) / (10 + k))` (the warm-up of TensorFlow's
`ExponentialMovingAverage(num_updates=k)`), so short runs are not dominated by the initial weights.

Sampling: DDIM (Song et al. 2021, Eq. 12) on `sample_steps` timesteps
`tau = round(linspace(T - 1, 0, S))`:
  x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z,
  sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev), abar_{-1} = 1;
`eta = 0` is deterministic, `eta = 1` on all T steps is ancestral DDPM sampling (`ddpm_sample`,
Ho et al. Algorithm 2 with the posterior variance beta_tilde). `x0_hat` is clipped to [-1, 1]
(`clip_denoised`, as the reference code) and `eps_hat` recomputed from it. Both run under
`jax.lax.scan`: one compile whatever the number of steps.

Representation (`represent`, kNN and probes): the EMA U-Net's middle-block activations
averaged over space, for the image noised to `represent_timestep` (small, e.g. 50 of 1000)
with one fixed noise image shared by every example, so an image's features never depend on
its batch. Diffusion-representation work reads such intermediate activations at a small t
(Baranchuk et al. 2022; Xiang et al. 2023, who find the middle/up blocks at small t best). The
training step's `features` (the online probe's input) are the same pooled activations of the
online network on the step's noised batch (random t), so that probe sees noisier inputs.

Fine-tuning (`backbone()`): not supported; a U-Net maps (image, t) to an image, not to
features, and `jssl eval` fine-tunes a `get_backbone` classifier. The recipes set
`finetune.enabled = False`; `backbone()` raises a `NotImplementedError` saying so.

Generation (`generate`, the trainer's Fréchet evaluation) and pictures: `samples` (DDIM from the EMA weights, `num_samples` images in a square-ish grid)
and `denoising` (the held-out images; then, for each of `picture_timesteps`, the noised image
and the EMA network's one-step x0 estimate). Held-out measures: `denoise_mse_t<t>` for each of
`heldout_timesteps`: the per-example training objective (MSE against eps or v) of the EMA
network at that fixed t.

Config (`config.method`): `schedule` ('linear' | 'cosine'), `num_timesteps` (T), `beta_start`,
`beta_end` (linear), `prediction` ('epsilon' | 'v'), `ema_decay`, `ema_warmup`,
`sample_steps`, `eta`, `clip_denoised`, `num_samples`, `represent_timestep`,
`picture_timesteps`, `heldout_timesteps`. Model: `config.model.name='unet'` with
`config.model.kwargs` (see `jssl.models.unet`).

References:
  Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020, https://arxiv.org/abs/2006.11239;
  Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021 (cosine schedule);
  Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, https://arxiv.org/abs/2010.02502;
  Salimans & Ho, "Progressive Distillation for Fast Sampling of Diffusion Models", ICLR 2022 (v);
  Baranchuk et al., "Label-Efficient Semantic Segmentation with Diffusion Models", ICLR 2022;
  Xiang et al., "Denoising Diffusion Autoencoders are Unified Self-supervised Learners", ICCV 2023.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jssl import losses
from jssl.methods import common
from jssl.methods.base import Method, MethodOutput
from jssl.models.unet import get_unet

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "v")
# The noise image `represent` adds comes from this fixed key: features are a function of the image.
REPRESENT_SEED = 1234

# (x_t [b, ...], t [b] int) -> network output [b, ...]
ModelFn = Callable[[jax.Array, jax.Array], jax.Array]


def make_alphas_cumprod(
    schedule: str, num_timesteps: int, *, beta_start: float = 1e-4, beta_end: float = 0.02
) -> np.ndarray:
    """abar_t for t = 0..T-1, float64, for the `linear` (Ho et al.) or `cosine` (Nichol & Dhariwal) betas."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown method.schedule {schedule!r}; known: {list(SCHEDULES)}")
    if int(num_timesteps) < 1:
        raise ValueError(f"method.num_timesteps must be >= 1; got {num_timesteps}")
    if schedule == "linear":
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(f"need 0 < method.beta_start <= method.beta_end < 1; got {beta_start}, {beta_end}")
        betas = losses.linear_beta_schedule(int(num_timesteps), beta_start, beta_end)
    else:
        betas = losses.cosine_beta_schedule(int(num_timesteps))
    return losses.alphas_cumprod(betas)


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


def q_sample(x0: jax.Array, t: jax.Array | int, eps: jax.Array, alphas_cumprod: jax.Array) -> jax.Array:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Ho et al. Eq. 4); `t` an int or `[b]`."""
    a = jnp.asarray(alphas_cumprod, jnp.float32)[jnp.asarray(t)]
    a = _bcast(a, x0) if a.ndim else a
    return jnp.sqrt(a) * x0.astype(jnp.float32) + jnp.sqrt(1.0 - a) * eps


def predict_x0_eps(
    output: jax.Array, x_t: jax.Array, abar_t: jax.Array, prediction: str
) -> tuple[jax.Array, jax.Array]:
    """The network output at `x_t` as `(x0_hat, eps_hat)`; `abar_t` is `[b]` (or a scalar)."""
    a = _bcast(jnp.asarray(abar_t, jnp.float32), x_t)
    sa, sb = jnp.sqrt(a), jnp.sqrt(1.0 - a)
    if prediction == "epsilon":
        return (x_t - sb * output) / sa, output
    if prediction == "v":
        return sa * x_t - sb * output, sb * x_t + sa * output
    raise ValueError(f"unknown prediction {prediction!r}; known: {list(PREDICTIONS)}")


def regression_target(x0: jax.Array, eps: jax.Array, abar_t: jax.Array, prediction: str) -> jax.Array:
    """What the network regresses: `eps`, or `v = sqrt(abar) eps - sqrt(1 - abar) x0`."""
    if prediction == "epsilon":
        return eps
    if prediction == "v":
        a = _bcast(jnp.asarray(abar_t, jnp.float32), x0)
        return jnp.sqrt(a) * eps - jnp.sqrt(1.0 - a) * x0
    raise ValueError(f"unknown prediction {prediction!r}; known: {list(PREDICTIONS)}")


def ddim_timesteps(num_timesteps: int, sample_steps: int) -> np.ndarray:
    """The S timesteps DDIM visits, from T-1 down to 0 (S <= T: all distinct)."""
    if not 1 <= int(sample_steps) <= int(num_timesteps):
        raise ValueError(f"method.sample_steps must be in [1, num_timesteps={num_timesteps}]; got {sample_steps}")
    return np.round(np.linspace(num_timesteps - 1, 0, int(sample_steps))).astype(np.int32)


def _denoise(model_fn: ModelFn, x: jax.Array, t: jax.Array, ab_t: jax.Array, prediction: str, clip: bool):
    output = model_fn(x, jnp.full((x.shape[0],), t, jnp.int32))
    x0, eps = predict_x0_eps(output, x, ab_t, prediction)
    if clip:
        # Recompute eps from the clipped x0 so that the step stays on the DDIM trajectory.
        x0 = jnp.clip(x0, -1.0, 1.0)
        eps = (x - jnp.sqrt(ab_t) * x0) / jnp.sqrt(1.0 - ab_t)
    return x0, eps


def ddim_sample(
    model_fn: ModelFn,
    x_T: jax.Array,
    *,
    alphas_cumprod: Any,
    timesteps: Any,
    key: jax.Array,
    eta: float = 0.0,
    prediction: str = "epsilon",
    clip_denoised: bool = False,
) -> jax.Array:
    """DDIM (Song et al. 2021, Eq. 12) from `x_T` over decreasing `timesteps`; returns x_0. See the module docstring."""
    ab = jnp.asarray(alphas_cumprod, jnp.float32)
    ts = jnp.asarray(timesteps, jnp.int32)
    ts_prev = jnp.concatenate([ts[1:], jnp.array([-1], jnp.int32)])

    def step(x, inputs):
        i, t, t_prev = inputs
        ab_t = ab[t]
        ab_prev = jnp.where(t_prev >= 0, ab[jnp.maximum(t_prev, 0)], 1.0)
        x0, eps = _denoise(model_fn, x, t, ab_t, prediction, clip_denoised)
        sigma = eta * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab_t)) * jnp.sqrt(1.0 - ab_t / ab_prev)
        z = jax.random.normal(jax.random.fold_in(key, i), x.shape, jnp.float32)
        direction = jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma**2, 0.0))
        return jnp.sqrt(ab_prev) * x0 + direction * eps + sigma * z, None

    x, _ = jax.lax.scan(step, x_T.astype(jnp.float32), (jnp.arange(ts.shape[0]), ts, ts_prev))
    return x


def ddpm_sample(
    model_fn: ModelFn,
    x_T: jax.Array,
    *,
    alphas_cumprod: Any,
    key: jax.Array,
    prediction: str = "epsilon",
    clip_denoised: bool = False,
) -> jax.Array:
    """Ancestral sampling (Ho et al. Algorithm 2) through all T steps with the posterior
    q(x_{t-1} | x_t, x0_hat): mean `c0 x0_hat + c1 x_t`, variance beta_tilde_t (0 at t = 0)."""
    ab = jnp.asarray(alphas_cumprod, jnp.float32)
    num = ab.shape[0]
    ab_prev_all = jnp.concatenate([jnp.ones((1,), jnp.float32), ab[:-1]])

    def step(x, i):
        t = num - 1 - i
        ab_t, ab_prev = ab[t], ab_prev_all[t]
        beta = 1.0 - ab_t / ab_prev
        x0, _ = _denoise(model_fn, x, t, ab_t, prediction, clip_denoised)
        mean = (jnp.sqrt(ab_prev) * beta * x0 + jnp.sqrt(1.0 - beta) * (1.0 - ab_prev) * x) / (1.0 - ab_t)
        var = beta * (1.0 - ab_prev) / (1.0 - ab_t)
        z = jax.random.normal(jax.random.fold_in(key, i), x.shape, jnp.float32)
        return mean + jnp.sqrt(var) * z, None

    x, _ = jax.lax.scan(step, x_T.astype(jnp.float32), jnp.arange(num))
    return x


def ema_decay_at(step: jax.Array, decay: float, warmup: bool) -> jax.Array:
    """d_k after step k: `decay`, or `min(decay, (1 + k) / (10 + k))` with the warm-up."""
    d = jnp.float32(decay)
    if not warmup:
        return d
    k = jnp.asarray(step, jnp.float32)
    return jnp.minimum(d, (1.0 + k) / (10.0 + k))


def _grid(images: jax.Array) -> jax.Array:
    """`[n, h, w, c]` -> `[rows, cols, h, w, c]`, as square as `n` allows."""
    n = images.shape[0]
    cols = next(c for c in range(math.ceil(math.sqrt(n)), n + 1) if n % c == 0)
    return images.reshape(n // cols, cols, *images.shape[1:])


def _timestep_tuple(name: str, values: Sequence[int], num_timesteps: int) -> tuple[int, ...]:
    out = tuple(int(v) for v in values)
    bad = [v for v in out if not 0 <= v < num_timesteps]
    if bad:
        raise ValueError(f"method.{name} {bad} out of range [0, num_timesteps={num_timesteps})")
    return out


class DDPM(Method):
    """Denoising diffusion on a U-Net (`jssl.models.unet`), with an EMA copy for sampling and evaluation."""

    views_per_example = 1

    def __init__(self, config: ml_collections.ConfigDict, *, in_channels: int, dtype: Any, rngs: nnx.Rngs):
        hp = config.method
        self.schedule = str(hp.get("schedule", "linear"))
        self.num_timesteps = int(hp.get("num_timesteps", 1000))
        self.beta_start = float(hp.get("beta_start", 1e-4))
        self.beta_end = float(hp.get("beta_end", 0.02))
        make_alphas_cumprod(self.schedule, self.num_timesteps, beta_start=self.beta_start, beta_end=self.beta_end)
        self.prediction = str(hp.get("prediction", "epsilon"))
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown method.prediction {self.prediction!r}; known: {list(PREDICTIONS)}")
        self.ema_decay = float(hp.get("ema_decay", 0.9999))
        common.check_momentum("method.ema_decay", self.ema_decay)
        self.ema_warmup = bool(hp.get("ema_warmup", False))
        self.sample_steps = int(hp.get("sample_steps", 100))
        ddim_timesteps(self.num_timesteps, self.sample_steps)  # checks the range
        self.eta = float(hp.get("eta", 0.0))
        if self.eta < 0:
            raise ValueError(f"method.eta must be >= 0; got {self.eta}")
        self.clip_denoised = bool(hp.get("clip_denoised", True))
        self.num_samples = int(hp.get("num_samples", 64))
        if self.num_samples < 0:
            raise ValueError(f"method.num_samples must be >= 0; got {self.num_samples}")
        t = self.num_timesteps
        self.represent_timestep = _timestep_tuple("represent_timestep", [hp.get("represent_timestep", 50)], t)[0]
        self.picture_timesteps = _timestep_tuple(
            "picture_timesteps", hp.get("picture_timesteps", (50, 250, 500, 750)), t
        )
        self.heldout_timesteps = _timestep_tuple(
            "heldout_timesteps", hp.get("heldout_timesteps", (50, 250, 500, 750)), t
        )

        self.unet = get_unet(
            config.model.name,
            in_channels=in_channels,
            out_channels=in_channels,
            dtype=dtype,
            rngs=rngs,
            **config.model.kwargs,
        )
        # The average starts equal to the initial weights; it is never dropped out (deterministic).
        self.ema_unet = common.teacher_copy(self.unet)

    @property
    def feature_dim(self) -> int:
        return self.unet.feature_dim

    def alphas_cumprod(self) -> jax.Array:
        """abar_t, float32 [T] (a constant of the traced graph, never state)."""
        ab = make_alphas_cumprod(self.schedule, self.num_timesteps, beta_start=self.beta_start, beta_end=self.beta_end)
        return jnp.asarray(ab, jnp.float32)

    @staticmethod
    def _key(rngs: nnx.Rngs | None, step: jax.Array) -> jax.Array:
        if rngs is not None:
            return rngs.default()
        # Direct calls without rngs (tests, notebooks): still a pure function of the step.
        return jax.random.fold_in(jax.random.PRNGKey(0), jnp.asarray(step, jnp.int32))

    def ema_decay_at(self, step: jax.Array) -> jax.Array:
        return ema_decay_at(step, self.ema_decay, self.ema_warmup)

    # ----------------------------------------------------------------------------------------
    # The five questions
    # ----------------------------------------------------------------------------------------

    def __call__(self, views: Sequence[jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        x0 = views[0].astype(jnp.float32)
        key_noise, key_dropout = jax.random.split(self._key(rngs, step))
        ab = self.alphas_cumprod()
        x_t, t, eps = losses.ddpm_corrupt(x0, rng=key_noise, alphas_cumprod=ab)
        output, features = self.unet(x_t, t, rngs=nnx.Rngs(key_dropout), return_features=True)
        loss, metrics = losses.ddpm(output, x0, eps, t, alphas_cumprod=ab, prediction=self.prediction)
        metrics = {**metrics, "ema_decay": self.ema_decay_at(step), **common.embedding_diagnostics(features)}
        return MethodOutput(loss=loss, metrics=metrics, features=features)

    def after_step(self, step: jax.Array) -> None:
        common.ema_update(self.ema_unet, self.unet, self.ema_decay_at(step))

    def represent(self, images: jax.Array) -> jax.Array:
        noise = jax.random.normal(jax.random.PRNGKey(REPRESENT_SEED), images.shape[1:], jnp.float32)
        x_t = q_sample(images, self.represent_timestep, noise[None], self.alphas_cumprod())
        t = jnp.full((images.shape[0],), self.represent_timestep, jnp.int32)
        _, features = self.ema_unet(x_t, t, return_features=True)
        return features

    def backbone(self) -> nnx.Module:
        raise NotImplementedError(
            "ddpm: fine-tuning is not supported: the U-Net maps (image, timestep) to an image, not to features "
            "a classifier head could take; set finetune.enabled=False (the ddpm recipes do) and evaluate the "
            "frozen representation (kNN, linear probe) instead"
        )

    # ----------------------------------------------------------------------------------------
    # Sampling, pictures, held-out measures
    # ----------------------------------------------------------------------------------------

    def _ema_fn(self) -> ModelFn:
        return lambda x, t: self.ema_unet(x, t)

    def sample(self, num: int, *, key: jax.Array, sampler: str = "ddim") -> jax.Array:
        """`num` images (normalized units) from the EMA network: DDIM (`sample_steps`, `eta`) or ancestral DDPM."""
        shape = (num, self.unet.image_size, self.unet.image_size, self.unet.in_channels)
        key_T, key_steps = jax.random.split(key)
        x_T = jax.random.normal(key_T, shape, jnp.float32)
        common_args = {
            "alphas_cumprod": self.alphas_cumprod(),
            "key": key_steps,
            "prediction": self.prediction,
            "clip_denoised": self.clip_denoised,
        }
        if sampler == "ddim":
            timesteps = ddim_timesteps(self.num_timesteps, self.sample_steps)
            return ddim_sample(self._ema_fn(), x_T, timesteps=timesteps, eta=self.eta, **common_args)
        if sampler == "ddpm":
            return ddpm_sample(self._ema_fn(), x_T, **common_args)
        raise ValueError(f"unknown sampler {sampler!r}; known: ['ddim', 'ddpm']")

    def generate(self, num: int, *, rngs: nnx.Rngs) -> jax.Array:
        """`num` DDIM samples from the EMA weights (normalized units): what the Fréchet evaluation scores."""
        return self.sample(num, key=rngs.default())

    def pictures(
        self, images: jax.Array, *, rngs: nnx.Rngs, to_pixels: Callable[[jax.Array], jax.Array]
    ) -> dict[str, jax.Array]:
        """`samples` `[rows, cols, h, w, c]` and `denoising` `[1 + 2 len(picture_timesteps), n, h, w, c]`, in [0, 1]."""
        out = {}
        key_samples, key_noise = jax.random.split(rngs.default())
        if self.num_samples:
            out["samples"] = jnp.clip(to_pixels(_grid(self.sample(self.num_samples, key=key_samples))), 0.0, 1.0)
        x0 = images.astype(jnp.float32)
        ab = self.alphas_cumprod()
        rows = [to_pixels(x0)]
        for i, t in enumerate(self.picture_timesteps):
            eps = jax.random.normal(jax.random.fold_in(key_noise, i), x0.shape, jnp.float32)
            x_t = q_sample(x0, t, eps, ab)
            output = self.ema_unet(x_t, jnp.full((x0.shape[0],), t, jnp.int32))
            x0_hat, _ = predict_x0_eps(output, x_t, ab[t], self.prediction)
            rows += [to_pixels(x_t), to_pixels(x0_hat)]
        out["denoising"] = jnp.clip(jnp.stack(rows), 0.0, 1.0)
        return out

    def heldout_metrics(self, images: jax.Array, *, rngs: nnx.Rngs) -> dict[str, jax.Array]:
        """`{'denoise_mse_t<t>': [batch]}`: the EMA network's training objective per example at fixed t."""
        x0 = images.astype(jnp.float32)
        ab = self.alphas_cumprod()
        key = rngs.default()
        out = {}
        for i, t in enumerate(self.heldout_timesteps):
            eps = jax.random.normal(jax.random.fold_in(key, i), x0.shape, jnp.float32)
            x_t = q_sample(x0, t, eps, ab)
            output = self.ema_unet(x_t, jnp.full((x0.shape[0],), t, jnp.int32))
            target = regression_target(x0, eps, ab[t], self.prediction)
            out[f"denoise_mse_t{t}"] = jnp.mean(jnp.square(output - target), axis=tuple(range(1, x0.ndim)))
        return out
