"""DDPM: the forward process against q(x_t | x_0), schedules, the epsilon/v conversions, the DDIM
and ancestral samplers against an oracle network, the EMA formula, pictures, held-out
measures, the representation, the option errors, and the CIFAR-10 recipe on a tiny TFDS set.

The generic checks every method passes (sharded step equality, one trace, teachers never
trained, SIGKILL resume) live in `test_all_methods.py`.
"""

from __future__ import annotations

import io
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx
from PIL import Image

from jssl import losses
from jssl.methods import DDPM, build_method
from jssl.methods.common import Teacher
from jssl.methods.ddpm import (
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    ema_decay_at,
    make_alphas_cumprod,
    predict_x0_eps,
    q_sample,
    regression_target,
)
from jssl.train import train
from tests.methods.helpers import apply, tiny_config
from tests.train.helpers import load_config

IMAGE_SHAPE = (28, 28, 1)


def _method(**overrides) -> DDPM:
    config = tiny_config("ddpm", **overrides)
    return build_method(config, in_channels=1, dtype=jnp.float32, rngs=nnx.Rngs(0))


def _images(n: int = 4, seed: int = 0) -> jax.Array:
    return jnp.clip(jax.random.normal(jax.random.PRNGKey(seed), (n, *IMAGE_SHAPE)), -1.0, 1.0)


# ==================================================================================================
# Schedules and the forward process
# ==================================================================================================


def test_schedules():
    ab = make_alphas_cumprod("linear", 1000)
    np.testing.assert_allclose(ab, np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)))
    assert ab[0] == pytest.approx(1 - 1e-4) and ab[-1] == pytest.approx(4.04e-5, rel=0.01)  # Ho et al.'s SNR at T
    cos = make_alphas_cumprod("cosine", 1000)
    f = np.cos((np.arange(1001) / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    # Nichol & Dhariwal Eq. 17: abar_t = f(t) / f(0), away from the clipped last betas.
    np.testing.assert_allclose(cos[:900], (f[1:] / f[0])[:900], rtol=1e-6)
    for a in (ab, cos):
        assert np.all(np.diff(a) < 0) and 0 < a[-1] < a[0] < 1
    with pytest.raises(ValueError, match="unknown method.schedule 'quadratic'"):
        make_alphas_cumprod("quadratic", 1000)


def test_corruption_is_the_closed_form_given_the_noise():
    x0 = _images(8)
    ab = jnp.asarray(make_alphas_cumprod("linear", 1000), jnp.float32)
    x_t, t, eps = losses.ddpm_corrupt(x0, rng=jax.random.PRNGKey(3), alphas_cumprod=ab)
    a = np.asarray(ab)[np.asarray(t)][:, None, None, None]
    np.testing.assert_allclose(
        x_t, np.sqrt(a) * np.asarray(x0) + np.sqrt(1 - a) * np.asarray(eps), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(q_sample(x0, t, eps, ab), x_t, rtol=1e-6, atol=1e-6)
    assert len(set(np.asarray(t).tolist())) > 1  # t is drawn per example


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_corruption_matches_q_xt_given_x0_in_distribution(schedule):
    """Mean sqrt(abar_t) x0 and variance 1 - abar_t, per t, over many draws (T = 10: ~5,000 each)."""
    ab = make_alphas_cumprod(schedule, 10, beta_start=0.05, beta_end=0.3)
    x0 = jnp.full((50_000, 2), 0.7).at[:, 1].set(-0.4)
    x_t, t, _ = losses.ddpm_corrupt(x0, rng=jax.random.PRNGKey(0), alphas_cumprod=jnp.asarray(ab, jnp.float32))
    x_t, t = np.asarray(x_t), np.asarray(t)
    for step in range(10):
        sel = x_t[t == step]
        assert len(sel) > 4000
        # 5 standard errors: a wrong coefficient (e.g. abar instead of its root) is off by far more.
        tol = 5 * np.sqrt((1 - ab[step]) / len(sel))
        np.testing.assert_allclose(sel.mean(0), np.sqrt(ab[step]) * np.array([0.7, -0.4]), atol=tol)
        np.testing.assert_allclose(sel.var(0), 1 - ab[step], rtol=0.08)


# ==================================================================================================
# Parametrizations
# ==================================================================================================


def test_epsilon_and_v_conversions_agree():
    x0, eps = _images(4, 1), _images(4, 2)
    ab = jnp.asarray(make_alphas_cumprod("cosine", 1000), jnp.float32)
    t = jnp.array([0, 10, 500, 999])
    x_t = q_sample(x0, t, eps, ab)
    for prediction in ("epsilon", "v"):
        target = regression_target(x0, eps, ab[t], prediction)
        x0_hat, eps_hat = predict_x0_eps(target, x_t, ab[t], prediction)
        np.testing.assert_allclose(eps_hat, eps, atol=2e-3 if prediction == "epsilon" else 1e-4)
        np.testing.assert_allclose(x0_hat, x0, atol=2e-3)  # dividing by sqrt(abar) ~ 0.006 at t = 999
        # The loss the method trains with has the same target: zero loss for a perfect output.
        loss, _ = losses.ddpm(target, x0, eps, t, alphas_cumprod=ab, prediction=prediction)
        assert float(loss) < 1e-10
    v = regression_target(x0, eps, ab[t], "v")
    a = ab[t][:, None, None, None]
    # v = sqrt(abar) eps - sqrt(1 - abar) x0, and x0 = sqrt(abar) x_t - sqrt(1 - abar) v.
    np.testing.assert_allclose(v, jnp.sqrt(a) * eps - jnp.sqrt(1 - a) * x0, atol=1e-6)
    with pytest.raises(ValueError, match="unknown prediction 'x0'"):
        predict_x0_eps(v, x_t, ab[t], "x0")


# ==================================================================================================
# Samplers
# ==================================================================================================


def _oracle(x0: jax.Array, ab: jax.Array, prediction: str):
    """A network that knows x0: it returns the exact eps (or v) of whatever x_t it is given."""

    def model_fn(x_t, t):
        a = ab[t][:, None, None, None]
        eps = (x_t - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)
        return regression_target(x0, eps, ab[t], prediction)

    return model_fn


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
@pytest.mark.parametrize("steps", [1, 7, 50])
def test_ddim_eta0_given_the_true_noise_recovers_x0(prediction, steps):
    ab = jnp.asarray(make_alphas_cumprod("linear", 50), jnp.float32)
    x0, eps = _images(3, 4), _images(3, 5)
    x_T = q_sample(x0, 49, eps, ab)
    true_eps = lambda x, t: regression_target(x0, eps, ab[t], prediction)
    timesteps = ddim_timesteps(50, steps)
    out = ddim_sample(
        true_eps, x_T, alphas_cumprod=ab, timesteps=timesteps, key=jax.random.PRNGKey(0), prediction=prediction
    )
    np.testing.assert_allclose(out, x0, atol=1e-4)


def test_ancestral_sampling_with_an_oracle_recovers_x0_and_equals_ddim_eta1():
    ab = jnp.asarray(make_alphas_cumprod("linear", 20, beta_start=1e-3, beta_end=0.2), jnp.float32)
    x0 = _images(2, 6)
    x_T = jax.random.normal(jax.random.PRNGKey(7), x0.shape)
    key = jax.random.PRNGKey(8)
    out = ddpm_sample(_oracle(x0, ab, "epsilon"), x_T, alphas_cumprod=ab, key=key)
    np.testing.assert_allclose(out, x0, atol=1e-4)
    # DDIM with eta = 1 on all T steps is ancestral sampling (Song et al. Sec. 4.1), draw for draw.
    model = lambda x, t: 0.3 * x + 0.01 * t[:, None, None, None]
    a = ddpm_sample(model, x_T, alphas_cumprod=ab, key=key)
    b = ddim_sample(model, x_T, alphas_cumprod=ab, timesteps=ddim_timesteps(20, 20), key=key, eta=1.0)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # eta = 0 is deterministic: the key does not matter.
    c = ddim_sample(model, x_T, alphas_cumprod=ab, timesteps=ddim_timesteps(20, 5), key=key)
    d = ddim_sample(model, x_T, alphas_cumprod=ab, timesteps=ddim_timesteps(20, 5), key=jax.random.PRNGKey(9))
    np.testing.assert_array_equal(c, d)


def test_ddim_timesteps():
    np.testing.assert_array_equal(ddim_timesteps(1000, 1), [999])
    ts = ddim_timesteps(1000, 50)
    assert ts[0] == 999 and ts[-1] == 0 and len(set(ts.tolist())) == 50 and np.all(np.diff(ts) < 0)
    assert len(set(ddim_timesteps(10, 10).tolist())) == 10
    for bad in (0, 11):
        with pytest.raises(ValueError, match=r"sample_steps must be in \[1, num_timesteps=10\]"):
            ddim_timesteps(10, bad)


def test_sampling_runs_under_one_jit_and_stays_in_range():
    method = _method(**{"method.sample_steps": 3})
    samples = jax.jit(lambda key: method.sample(4, key=key))(jax.random.PRNGKey(0))
    assert samples.shape == (4, *IMAGE_SHAPE) and bool(jnp.all(jnp.isfinite(samples)))
    # Untrained (output 0) with clipping: every x0 estimate is in [-1, 1], so is the last step's.
    assert float(jnp.max(jnp.abs(samples))) <= 1.0 + 1e-6
    ancestral = method.sample(2, key=jax.random.PRNGKey(0), sampler="ddpm")
    assert ancestral.shape == (2, *IMAGE_SHAPE)
    with pytest.raises(ValueError, match="unknown sampler"):
        method.sample(2, key=jax.random.PRNGKey(0), sampler="euler")


# ==================================================================================================
# EMA
# ==================================================================================================


@pytest.mark.parametrize("warmup", [pytest.param(False, marks=pytest.mark.heavy), True])  # 28 s each
def test_ema_weights_follow_their_formula(warmup):
    method = _method(**{"method.ema_decay": 0.9, "method.ema_warmup": warmup})
    ema = [np.asarray(v) for v in jax.tree.leaves(nnx.state(method.ema_unet, Teacher))]
    after_step = nnx.jit(lambda m, k: m.after_step(k))  # one compile, not op-by-op dispatch
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    for k in range(4):
        # A fake optimizer step: the online weights move, then the post-step update.
        state = nnx.state(method.unet, nnx.Param)
        leaves, treedef = jax.tree.flatten(state)
        moved = [x + jax.random.normal(jax.random.fold_in(keys[k], i), x.shape) for i, x in enumerate(leaves)]
        nnx.update(method.unet, jax.tree.unflatten(treedef, moved))
        after_step(method, jnp.int32(k))
        d = min(0.9, (1 + k) / (10 + k)) if warmup else 0.9
        assert float(ema_decay_at(k, 0.9, warmup)) == pytest.approx(d)
        ema = [d * e + (1 - d) * np.asarray(m) for e, m in zip(ema, moved)]
        for expected, got in zip(ema, jax.tree.leaves(nnx.state(method.ema_unet, Teacher))):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# ==================================================================================================
# Pictures, held-out measures, representation
# ==================================================================================================


def test_pictures_shapes_and_range():
    method = _method(**{"method.num_samples": 6, "method.picture_timesteps": (10, 500)})
    images = _images(3)
    pics = nnx.jit(lambda m, x: m.pictures(x, rngs=nnx.Rngs(0), to_pixels=lambda y: y * 0.5 + 0.5))(method, images)
    assert pics["samples"].shape == (2, 3, *IMAGE_SHAPE)  # 6 samples, as square as 6 allows
    assert pics["denoising"].shape == (5, 3, *IMAGE_SHAPE)  # originals, then (noised, x0 estimate) per t
    for value in pics.values():
        assert float(value.min()) >= 0.0 and float(value.max()) <= 1.0
    np.testing.assert_allclose(pics["denoising"][0], np.clip(images * 0.5 + 0.5, 0, 1), atol=1e-6)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_heldout_denoising_loss_is_per_example_and_exact_at_init(prediction):
    method = _method(**{"method.heldout_timesteps": (50, 500), "method.prediction": prediction})
    images = _images(5)
    out = method.heldout_metrics(images, rngs=nnx.Rngs(3))
    assert sorted(out) == ["denoise_mse_t50", "denoise_mse_t500"]
    key = nnx.Rngs(3).default()
    ab = method.alphas_cumprod()
    for i, (t, name) in enumerate([(50, "denoise_mse_t50"), (500, "denoise_mse_t500")]):
        assert out[name].shape == (5,) and out[name].dtype == jnp.float32
        # The untrained network outputs 0 (zero-initialized last conv): the loss is the target's
        # mean square, E[eps^2] or E[v^2] with v = sqrt(abar) eps - sqrt(1 - abar) x0.
        eps = jax.random.normal(jax.random.fold_in(key, i), images.shape)
        target = regression_target(images, eps, ab[t], prediction)
        np.testing.assert_allclose(out[name], jnp.mean(target**2, axis=(1, 2, 3)), rtol=1e-5)
    again = method.heldout_metrics(images, rngs=nnx.Rngs(3))
    np.testing.assert_array_equal(out["denoise_mse_t50"], again["denoise_mse_t50"])


def test_representation_is_deterministic_and_independent_of_the_batch():
    method = _method()
    images = _images(4)
    represent = nnx.jit(lambda m, x: m.represent(x))
    f = represent(method, images)
    assert f.shape == (4, method.feature_dim)
    np.testing.assert_allclose(represent(method, images[2:3])[0], f[2], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(represent(method, images), f)
    with pytest.raises(NotImplementedError, match="fine-tuning is not supported"):
        method.backbone()


def test_training_output_and_v_prediction():
    for prediction in ("epsilon", "v"):
        method = _method(**{"method.prediction": prediction})
        out = method([_images(4)], step=jnp.int32(0), rngs=nnx.Rngs(0))
        assert np.isfinite(float(out.loss)) and out.features.shape == (4, method.feature_dim)
        assert {"x0_mse", "embedding_spread", "ema_decay"} <= set(out.metrics)


# ==================================================================================================
# Option errors
# ==================================================================================================


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"method.schedule": "sigmoid"}, "unknown method.schedule 'sigmoid'"),
        ({"method.prediction": "x0"}, "unknown method.prediction 'x0'"),
        ({"method.represent_timestep": 1000}, r"represent_timestep \[1000\] out of range"),
        ({"method.represent_timestep": -1}, r"represent_timestep \[-1\] out of range"),
        ({"method.heldout_timesteps": (50, 1000)}, r"heldout_timesteps \[1000\] out of range"),
        ({"method.sample_steps": 1001}, "sample_steps must be in"),
        ({"method.sample_steps": 0}, "sample_steps must be in"),
        ({"method.num_timesteps": 0}, "num_timesteps must be >= 1"),
        ({"method.ema_decay": 1.5}, r"ema_decay must be in \[0, 1\]"),
        ({"model.kwargs.ch_mult": (1, 2, 2, 2)}, "cannot be halved 3 times"),
        ({"model.name": "unet_big"}, "unknown denoising network 'unet_big'"),
    ],
)
def test_option_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        _method(**overrides)


# ==================================================================================================
# The CIFAR-10 recipe on a tiny CIFAR-10-structured TFDS data set
# ==================================================================================================


class JsslTinyCifar10(tfds.core.GeneratorBasedBuilder):
    """Like `cifar10`: 32x32x3 PNG `image`, 10-way `label`, an `id`; 32 train + 16 test images."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # no checksums directory for a builder defined in a test (see tests/methods/conftest.py)
    SPLITS: ClassVar[dict[str, int]] = {"train": 32, "test": 16}

    def _info(self) -> tfds.core.DatasetInfo:
        features = {
            "image": tfds.features.Image(shape=(32, 32, 3), encoding_format="png"),
            "label": tfds.features.ClassLabel(num_classes=10),
            "id": tfds.features.Text(),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(split) for split in self.SPLITS}

    def _generate_examples(self, split: str):
        for i in range(self.SPLITS[split]):
            rng = np.random.default_rng([len(split), i])
            # Encoded here (PNG, as cifar10 stores): TFDS would need TensorFlow to encode arrays.
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="PNG")
            yield i, {"image": buffer.getvalue(), "label": int(rng.integers(0, 10)), "id": f"{split}_{i}"}


@pytest.mark.slow
@pytest.mark.heavy
def test_cifar10_recipe_runs_two_steps_on_tiny_cifar10(tmp_path):
    data_dir = tmp_path / "tfds"
    JsslTinyCifar10(data_dir=str(data_dir)).download_and_prepare(file_format="array_record")
    config = load_config(None, name="ddpm_cifar10")
    assert config.data.tfds_name == "cifar10" and config.model.kwargs.ch == 128
    small = load_config("smoke", name="ddpm_cifar10").model.kwargs
    apply(
        config,
        {
            "data.tfds_name": "jssl_tiny_cifar10",
            "data.data_dir": str(data_dir),
            "model.kwargs": small,  # the recipe's U-Net at the smoke width: compiling is what costs here
            "model.dtype": "float32",  # bf16 convolutions are slow on CPU; not what is tested here
            "data.num_workers": 0,
            "total_steps": 2,
            "global_batch_size": 8,
            "log_every_steps": 1,
            "checkpoint.every_steps": 1,
            "eval.linear_probe_steps": 5,
            "eval.batch_size": 8,
            "eval.num_pictures": 2,
            "method.num_samples": 2,
            "method.sample_steps": 2,
            "eval.baselines": False,
            "data.max_eval_examples": 16,
            "progress_bar": False,
        },
    )
    results = train(config, str(tmp_path / "run"))
    assert results["step"] == 2
    assert results["eval"]["num_train"] == 16 and results["eval"]["num_test"] == 16
    assert 0.0 <= results["ssl"]["knn"] <= 1.0
    assert (tmp_path / "run" / "checkpoints" / "2").is_dir()
    assert (tmp_path / "run" / "pictures" / "samples.png").is_file()
    assert (tmp_path / "run" / "pictures" / "denoising.png").is_file()
