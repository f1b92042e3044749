"""DAE and VAE: the ELBO against a numpy computation written out by hand, free bits, the
reparameterization gradient, the corruptions, pictures, held-out metrics, option checks, and the
convolutional encoder/decoder they share.

The generic checks every method passes (sharded step equality, one trace, SIGKILL resume) live
in `test_all_methods.py`.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jssl import losses
from jssl.methods import DAE, VAE, build_method
from jssl.methods.dae import masking_mask, step_key
from jssl.methods.vae import INTERPOLATION_STEPS, SAMPLE_COLS, SAMPLE_ROWS, reparameterize
from jssl.models import get_backbone
from jssl.models.autoencoder import ConvEncoder, mirror_decoder
from jssl.train import train
from tests.methods.helpers import tiny_config

IMAGE_SHAPE = (28, 28, 1)
MNIST_NORM = {"data.mean": (0.1307,), "data.std": (0.3081,)}


def _method(name: str, **overrides) -> DAE | VAE:
    config = tiny_config(name, **overrides)
    return build_method(config, in_channels=1, dtype=jnp.float32, rngs=nnx.Rngs(0))


def _pixels(n: int = 4, seed: int = 0) -> jax.Array:
    return jax.random.uniform(jax.random.PRNGKey(seed), (n, *IMAGE_SHAPE))


# ==================================================================================================
# The ELBO, by hand
# ==================================================================================================


def _by_hand(recon, x, mean, log_var, likelihood):
    """Per-example NLL and KL, element by element in float64, without `jssl.losses`."""
    recon, x = np.asarray(recon, np.float64), np.asarray(x, np.float64)
    nll, kl = [], []
    for b in range(x.shape[0]):
        total = 0.0
        for r, v in zip(recon[b].ravel(), x[b].ravel()):
            if likelihood == "bernoulli":
                p = 1.0 / (1.0 + math.exp(-r))
                total -= v * math.log(p) + (1.0 - v) * math.log(1.0 - p)
            else:  # N(v; r, 1)
                total -= -0.5 * (v - r) ** 2 - 0.5 * math.log(2.0 * math.pi)
        nll.append(total)
        kl.append([0.5 * (m * m + math.exp(lv) - 1.0 - lv) for m, lv in zip(mean[b], log_var[b])])
    return np.array(nll), np.array(kl)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_elbo_equals_the_hand_computed_value(likelihood):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 2, 2, 1)).astype(np.float32)
    recon = rng.normal(size=(3, 2, 2, 1)).astype(np.float32)
    mean = rng.normal(size=(3, 2)).astype(np.float32)
    log_var = rng.normal(scale=0.5, size=(3, 2)).astype(np.float32)
    nll, kl = _by_hand(recon, x, mean, log_var, likelihood)
    for beta in (1.0, 2.5):
        loss, metrics = losses.vae_elbo(recon, x, mean, log_var, beta=beta, likelihood=likelihood)
        np.testing.assert_allclose(float(loss), np.mean(nll + beta * kl.sum(1)), rtol=1e-5)
        np.testing.assert_allclose(float(metrics["reconstruction"]), nll.mean(), rtol=1e-5)
        np.testing.assert_allclose(float(metrics["kl"]), kl.sum(1).mean(), rtol=1e-5)
    got_nll, got_kl = losses.vae_terms(recon, x, mean, log_var, likelihood=likelihood)
    np.testing.assert_allclose(np.asarray(got_nll), nll, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got_kl), kl, rtol=1e-5, atol=1e-7)


def test_free_bits_floor_the_batch_mean_kl_of_each_latent_dim():
    x = jnp.full((2, 2, 2, 1), 0.5)
    recon = jnp.zeros_like(x)
    # Dim 0: KL 0.5 * m^2 = 0.005 nats (below the floor); dim 1: 0.5 * 9 = 4.5 (above).
    mean = jnp.array([[0.1, 3.0], [0.1, 3.0]])
    log_var = jnp.zeros_like(mean)
    lam = 0.25
    nll = 4 * math.log(2.0)  # Bernoulli(0.5; sigmoid(0)) for each of the 4 pixels
    loss, metrics = losses.vae_elbo(recon, x, mean, log_var, free_bits=lam)
    np.testing.assert_allclose(float(loss), nll + lam + 4.5, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["kl"]), 0.005 + 4.5, rtol=1e-5)  # the true KL
    # No gradient pushes the dim under the floor further down; the other one still is pushed.
    grad = jax.grad(lambda m: losses.vae_elbo(recon, x, m, log_var, free_bits=lam)[0])(mean)
    assert np.all(np.asarray(grad[:, 0]) == 0.0) and np.all(np.asarray(grad[:, 1]) > 0.0)
    # Off: the plain ELBO.
    plain = losses.vae_elbo(recon, x, mean, log_var)[0]
    np.testing.assert_allclose(float(losses.vae_elbo(recon, x, mean, log_var, free_bits=0.0)[0]), float(plain))
    with pytest.raises(ValueError, match="free_bits"):
        losses.vae_elbo(recon, x, mean, log_var, free_bits=-1.0)


def test_reparameterization_gradient_flows_to_mean_and_log_var():
    mean, log_var = jnp.array([[0.3, -1.0]]), jnp.array([[0.2, -0.4]])
    key = jax.random.PRNGKey(4)
    eps = (reparameterize(mean, log_var, key) - mean) / jnp.exp(0.5 * log_var)
    np.testing.assert_allclose(np.asarray(eps), np.asarray(jax.random.normal(key, (1, 2))), rtol=1e-5)
    d_mean, d_log_var = jax.grad(lambda m, v: jnp.sum(reparameterize(m, v, key)), argnums=(0, 1))(mean, log_var)
    np.testing.assert_allclose(np.asarray(d_mean), 1.0)  # dz/dmean = 1
    np.testing.assert_allclose(np.asarray(d_log_var), np.asarray(0.5 * jnp.exp(0.5 * log_var) * eps), rtol=1e-5)

    # Through the method: the loss reaches both posterior heads.
    method = _method("vae")
    graphdef, params, rest = nnx.split(method, nnx.Param, ...)

    def loss(p):
        return nnx.merge(graphdef, p, rest, copy=True)([_pixels()], step=jnp.int32(0), rngs=nnx.Rngs(1)).loss

    grads = jax.jit(jax.grad(loss))(params)  # one compile, not op-by-op dispatch
    assert float(jnp.max(jnp.abs(grads["encoder"]["head"]["kernel"].get_value()))) > 0
    assert float(jnp.max(jnp.abs(grads["log_var_head"]["kernel"].get_value()))) > 0


# ==================================================================================================
# VAE method
# ==================================================================================================


def test_vae_features_and_represent_are_the_posterior_mean():
    method = _method("vae")
    x = _pixels()
    mean, log_var = method.posterior(x)
    out = method([x], step=jnp.int32(0), rngs=nnx.Rngs(3))
    np.testing.assert_allclose(np.asarray(out.features), np.asarray(mean), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(method.represent(x)), np.asarray(mean), rtol=1e-6)
    assert out.features.shape == (4, method.feature_dim)
    np.testing.assert_allclose(np.asarray(log_var), 0.0)  # zero-initialized head: unit variance at first
    np.testing.assert_allclose(
        float(out.metrics["neg_elbo"]), float(out.metrics["reconstruction"] + out.metrics["kl"]), rtol=1e-6
    )
    assert "embedding_spread" in out.metrics
    # The sample comes from the key: another key, another loss.
    again = method([x], step=jnp.int32(0), rngs=nnx.Rngs(3))
    other = method([x], step=jnp.int32(0), rngs=nnx.Rngs(4))
    assert float(again.loss) == float(out.loss) != float(other.loss)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_heldout_metrics_are_per_example_and_bits_are_nats_over_d_ln2(likelihood):
    norm = {} if likelihood == "bernoulli" else MNIST_NORM
    method = _method("vae", **{"method.likelihood": likelihood, **norm})
    x = _pixels(5)
    out = method.heldout_metrics(x, rngs=nnx.Rngs(2))
    assert sorted(out) == ["bits_per_dim", "kl_nats", "neg_elbo_nats", "reconstruction_nats"]
    for value in out.values():
        assert value.shape == (5,) and value.dtype == jnp.float32
    d = 28 * 28 * 1
    np.testing.assert_allclose(
        np.asarray(out["bits_per_dim"]), np.asarray(out["neg_elbo_nats"]) / (d * math.log(2)), rtol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(out["neg_elbo_nats"]), np.asarray(out["kl_nats"] + out["reconstruction_nats"]), rtol=1e-6
    )
    # The same numbers from the loss's own terms with the same posterior sample.
    mean, log_var = method.posterior(x)
    z = reparameterize(mean, log_var, nnx.Rngs(2).default())
    nll, kl = _by_hand(method.decoder(z), x, np.asarray(mean), np.asarray(log_var), likelihood)
    np.testing.assert_allclose(np.asarray(out["reconstruction_nats"]), nll, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(out["kl_nats"]), kl.sum(1), rtol=1e-4, atol=1e-6)
    # Fixed draws: the same rngs give the same numbers.
    np.testing.assert_array_equal(np.asarray(method.heldout_metrics(x, rngs=nnx.Rngs(2))["kl_nats"]), out["kl_nats"])


def test_vae_pictures_shapes_and_range():
    method = _method("vae")
    out = method.pictures(_pixels(5), rngs=nnx.Rngs(0), to_pixels=lambda y: y)
    assert out["reconstruction"].shape == (2, 5, *IMAGE_SHAPE)
    assert out["samples"].shape == (SAMPLE_ROWS, SAMPLE_COLS, *IMAGE_SHAPE)
    assert out["interpolation"].shape == (2, INTERPOLATION_STEPS, *IMAGE_SHAPE)  # pairs (0, 1), (2, 3)
    for grid in out.values():
        assert float(jnp.min(grid)) >= 0.0 and float(jnp.max(grid)) <= 1.0
    np.testing.assert_allclose(np.asarray(out["reconstruction"][0]), np.asarray(_pixels(5)), atol=1e-6)
    # The interpolation's endpoints decode the two posterior means, as the reconstruction row does.
    np.testing.assert_allclose(
        np.asarray(out["interpolation"][:, 0]), np.asarray(out["reconstruction"][1, 0:4:2]), atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(out["interpolation"][:, -1]), np.asarray(out["reconstruction"][1, 1:4:2]), atol=1e-5
    )
    assert "interpolation" not in method.pictures(_pixels(1), rngs=nnx.Rngs(0), to_pixels=lambda y: y)


def test_vae_generate_draws_the_prior_samples_of_the_pictures():
    method = _method("vae")
    samples = method.generate(SAMPLE_ROWS * SAMPLE_COLS, rngs=nnx.Rngs(3))
    grid = method.pictures(_pixels(2), rngs=nnx.Rngs(3), to_pixels=lambda y: y)["samples"]
    assert samples.shape == (SAMPLE_ROWS * SAMPLE_COLS, *IMAGE_SHAPE)
    np.testing.assert_allclose(np.asarray(samples), np.asarray(grid).reshape(samples.shape), atol=1e-6)
    assert type(method).is_generative()


# ==================================================================================================
# DAE method
# ==================================================================================================


def test_masking_mask_zeroes_exactly_the_fraction_per_example():
    mask = np.asarray(masking_mask(jax.random.PRNGKey(0), batch=6, height=28, width=28, fraction=0.25))
    assert mask.shape == (6, 28, 28, 1)
    np.testing.assert_array_equal(mask.reshape(6, -1).sum(1), round(0.25 * 784))
    assert len({m.tobytes() for m in mask}) == 6  # a different mask for every example


@pytest.mark.parametrize("norm", [{}, MNIST_NORM], ids=["unit", "mnist"])
def test_dae_masking_sets_the_fraction_of_pixels_to_black(norm):
    method = _method("dae", **{"method.noise": "masking", "method.mask_fraction": 0.4, "method.loss": "mse", **norm})
    mean, std = (norm.get("data.mean", (0.0,))[0], norm.get("data.std", (1.0,))[0])
    pixels = 0.5 + 0.5 * _pixels(3)  # never black, so every black pixel is a masked one
    corrupted = method.corrupt((pixels - mean) / std, jax.random.PRNGKey(0))
    black = np.isclose(np.asarray(corrupted) * std + mean, 0.0, atol=1e-6)
    np.testing.assert_array_equal(black.reshape(3, -1).sum(1), round(0.4 * 784))


def test_dae_gaussian_noise_has_sigma_in_pixel_units():
    method = _method("dae", **{"method.noise": "gaussian", "method.sigma": 0.3, "method.loss": "mse", **MNIST_NORM})
    x = jnp.zeros((64, *IMAGE_SHAPE))
    noise_pixels = np.asarray(method.corrupt(x, jax.random.PRNGKey(0))) * 0.3081
    assert abs(noise_pixels.std() - 0.3) < 0.01 and abs(noise_pixels.mean()) < 0.01


def test_dae_noise_differs_per_step_and_is_a_function_of_the_step_key():
    method = _method("dae")
    x = _pixels()
    run_key = jax.random.PRNGKey(1)
    # As the trainer: the step folded into the run's key, handed over as nnx.Rngs.
    keys = [step_key(nnx.Rngs(jax.random.fold_in(run_key, s)), jnp.int32(s)) for s in (0, 0, 1)]
    a, b, c = (np.asarray(method.corrupt(x, k)) for k in keys)
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)
    # Without rngs (direct calls), still a pure function of the step.
    assert np.any(np.asarray(step_key(None, jnp.int32(0))) != np.asarray(step_key(None, jnp.int32(1))))


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_dae_loss_is_the_denoising_loss_of_the_corrupted_input(loss):
    method = _method("dae", **{"method.loss": loss})
    x = _pixels()
    out = method([x], step=jnp.int32(0), rngs=nnx.Rngs(5))
    corrupted = method.corrupt(x, nnx.Rngs(5).default())
    expected, _ = losses.denoising(method.reconstruct(corrupted), x, loss_type=loss)
    np.testing.assert_allclose(float(out.loss), float(expected), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out.features), np.asarray(method.encoder(corrupted)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(method.represent(x)), np.asarray(method.encoder(x)), rtol=1e-6)
    assert "embedding_spread" in out.metrics


def test_dae_pictures_and_heldout_metrics():
    method = _method("dae", **{"method.loss": "mse", **MNIST_NORM})
    pixels = _pixels(5)
    x = (pixels - 0.1307) / 0.3081
    out = method.pictures(x, rngs=nnx.Rngs(0), to_pixels=lambda y: y * 0.3081 + 0.1307)
    grid = np.asarray(out["denoising"])
    assert grid.shape == (3, 5, *IMAGE_SHAPE) and grid.min() >= 0.0 and grid.max() <= 1.0
    np.testing.assert_allclose(grid[0], np.asarray(pixels), atol=1e-5)

    metrics = method.heldout_metrics(x, rngs=nnx.Rngs(1))
    assert sorted(metrics) == sorted(
        [
            "denoise_mse_sigma0.1",
            "denoise_mse_sigma0.3",
            "denoise_mse_sigma0.5",
            "denoise_mse_mask0.25",
            "denoise_mse_mask0.5",
        ]
    )
    for value in metrics.values():
        assert value.shape == (5,) and value.dtype == jnp.float32 and np.all(np.asarray(value) >= 0)
    # By hand for one level: the pixel MSE of the denoised image, with the first of the split keys.
    key = jax.random.split(nnx.Rngs(1).default(), 5)[0]
    denoised = method.reconstruct(method.corrupt(x, key, noise="gaussian", level=0.1)) * 0.3081 + 0.1307
    expected = np.mean((np.asarray(denoised) - np.asarray(pixels)) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(np.asarray(metrics["denoise_mse_sigma0.1"]), expected, rtol=1e-4)


# ==================================================================================================
# Option checks
# ==================================================================================================


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("dae", {"method.noise": "salt"}, "unknown method.noise"),
        ("dae", {"method.loss": "l1"}, "unknown method.loss"),
        ("dae", {"method.sigma": 0.0}, "sigma must be a positive"),
        ("dae", {"method.sigma": -0.1}, "sigma must be a positive"),
        ("dae", {"method.mask_fraction": 0.0}, r"mask_fraction must be in \(0, 1\)"),
        ("dae", {"method.mask_fraction": 1.0}, r"mask_fraction must be in \(0, 1\)"),
        ("dae", {"method.loss": "bce", **MNIST_NORM}, r"needs data in \[0, 1\]"),
        ("vae", {"method.likelihood": "poisson"}, "unknown method.likelihood"),
        ("vae", {"method.beta": 0.0}, "beta must be a positive"),
        ("vae", {"method.beta": -1.0}, "beta must be a positive"),
        ("vae", {"method.beta": float("inf")}, "beta must be a positive"),
        ("vae", {"method.free_bits": -0.5}, "free_bits must be >= 0"),
        ("vae", {"method.likelihood": "bernoulli", **MNIST_NORM}, r"needs data in \[0, 1\].*data.mean=\(0.,\)"),
        ("vae", {"model.kwargs.widths": (8, 8, 8)}, "cannot produce 28x28 images: its 4x4 latent grid"),
        ("dae", {"model.kwargs.widths": (8, 8, 8)}, "cannot produce 28x28"),
        ("vae", {"model.name": "resnet_mini", "model.kwargs": {"width_multiplier": 0.25}}, "convolutional autoencoder"),
    ],
)
def test_bad_options_raise_clear_errors(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        _method(name, **overrides)


@pytest.mark.parametrize("name", ["dae", "vae"])
def test_images_of_another_size_than_the_model_are_refused(name):
    method = _method(name)
    with pytest.raises(ValueError, match="built for 28x28x1 images; got 32x32x1"):
        method([jnp.zeros((2, 32, 32, 1))], step=jnp.int32(0), rngs=nnx.Rngs(0))


# ==================================================================================================
# The encoder and decoder
# ==================================================================================================


@pytest.mark.parametrize("shape, widths", [((28, 28, 1), (8, 16)), ((32, 32, 3), (8, 16, 16))])
def test_decoder_mirrors_the_encoder_back_to_the_image_size(shape, widths):
    encoder = get_backbone(
        "conv_ae_tiny", in_channels=shape[-1], image_size=shape[0], widths=widths, latent_dim=6, rngs=nnx.Rngs(0)
    )
    decoder = mirror_decoder(encoder, rngs=nnx.Rngs(1))
    z = encoder(jnp.ones((2, *shape)))
    assert z.shape == (2, 6) and encoder.feature_dim == 6
    assert decoder(z).shape == (2, *shape) and decoder(z).dtype == jnp.float32


def test_every_parameter_has_logical_axes_and_norms_are_per_example():
    encoder = get_backbone("conv_ae_tiny", in_channels=1, image_size=28, rngs=nnx.Rngs(0))
    decoder = mirror_decoder(encoder, rngs=nnx.Rngs(1))
    for module in (encoder, decoder):
        params = jax.tree.leaves(nnx.state(module, nnx.Param), is_leaf=lambda v: isinstance(v, nnx.Variable))
        assert params and all(p.get_metadata().get("out_sharding") for p in params)
        axes = {a for p in params for a in p.get_metadata()["out_sharding"]}
        assert {"conv_in", "conv_out", "embed"} <= axes
    # GroupNorm, not BatchNorm: an example's code does not depend on the rest of the batch.
    x = _pixels(3)
    np.testing.assert_allclose(np.asarray(encoder(x)[:1]), np.asarray(encoder(x[:1])), rtol=1e-5, atol=1e-6)


def test_encoder_options_and_registry_errors():
    with pytest.raises(ValueError, match="unknown model 'conv_ae_huge'"):
        get_backbone("conv_ae_huge", in_channels=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown autoencoder norm 'batch'"):
        ConvEncoder(in_channels=1, norm="batch", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="groups 8 must divide every width"):
        ConvEncoder(in_channels=1, widths=(12, 16), rngs=nnx.Rngs(0))
    encoder = ConvEncoder(in_channels=1, widths=(4, 8), norm="none", blocks_per_stage=0, rngs=nnx.Rngs(0))
    assert mirror_decoder(encoder, rngs=nnx.Rngs(0))(encoder(_pixels(1))).shape == (1, *IMAGE_SHAPE)


# ==================================================================================================
# The trainer writes the VAE's pictures
# ==================================================================================================


@pytest.mark.heavy  # 28 s; MAE's and DDPM's smoke runs cover the picture writer by default
def test_vae_smoke_run_writes_its_pictures(tmp_path):
    config = tiny_config(
        "vae", **{"total_steps": 2, "checkpoint.every_steps": 2, "eval.num_pictures": 4, "eval.baselines": True}
    )
    config.data.max_eval_examples = 64
    workdir = str(tmp_path / "run")
    results = train(config, workdir)
    # The trainer averages heldout_metrics over the held-out split, for the run and its random init.
    for key in ("ssl", "random_init"):
        measures = {k: v for k, v in results[key].items() if k.startswith("heldout/")}
        assert set(measures) == {
            f"heldout/{n}" for n in ("neg_elbo_nats", "bits_per_dim", "kl_nats", "reconstruction_nats")
        }
        np.testing.assert_allclose(
            measures["heldout/bits_per_dim"], measures["heldout/neg_elbo_nats"] / (784 * math.log(2)), rtol=1e-5
        )
    names = sorted(os.listdir(os.path.join(workdir, "pictures")))
    assert names == sorted(
        f"{n}{s}.png" for n in ("interpolation", "reconstruction", "samples") for s in ("", "_step2")
    )
