"""`eval.frechet_encoder`: a generative run's samples scored in another jssl run's feature space.

A SimCLR subclass with a `generate` stands in for a generative method (the real ones, VAE and
DDPM, run this path in their own tests): its "samples" are pure noise, so their distance to the
held-out digits must exceed that of real training digits, the reference in the same units.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from jssl import methods
from jssl.methods.simclr import SimCLR
from jssl.train import train
from tests.train.helpers import tiny_config


class _NoiseGenerator(SimCLR):
    def generate(self, num, *, rngs):
        return jax.random.normal(rngs.default(), (num, 28, 28, 1))


def _config(method: str, **overrides):
    return tiny_config(
        **{
            "method.name": method,
            "total_steps": 2,
            "log_every_steps": 1,
            "checkpoint.every_steps": 2,
            "eval.baselines": False,
            "eval.every_steps": 0,
            "eval.batch_size": 32,
            "eval.linear_probe_steps": 5,
            "data.max_eval_examples": 64,
            "progress_bar": False,
            **overrides,
        }
    )


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("encoder") / "run")
    train(_config("simclr"), workdir)
    return workdir


def test_samples_are_scored_in_the_encoders_feature_space(encoder_run, tmp_path, monkeypatch):
    monkeypatch.setitem(methods.METHODS, "noise_generator", _NoiseGenerator)
    results = train(
        _config("noise_generator", **{"eval.frechet_encoder": encoder_run, "eval.frechet_samples": 40}),
        str(tmp_path / "gen"),
    )
    ssl = results["ssl"]
    assert ssl["frechet_distance"] > ssl["frechet_reference_train_vs_heldout"] > 0
    assert "not Inception" in ssl["frechet_setup"] and "40 generated vs 40 held-out" in ssl["frechet_setup"]
    assert "simclr" in ssl["frechet_setup"]


def test_non_generative_methods_and_missing_encoders_fail_before_training(encoder_run, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="does not generate images"):
        train(_config("simclr", **{"eval.frechet_encoder": encoder_run}), str(tmp_path / "a"))
    monkeypatch.setitem(methods.METHODS, "noise_generator", _NoiseGenerator)
    with pytest.raises(ValueError, match="has no checkpoints"):
        train(_config("noise_generator", **{"eval.frechet_encoder": str(tmp_path / "nowhere")}), str(tmp_path / "b"))
    assert not (tmp_path / "b" / "checkpoints").exists()  # nothing was trained


def test_generated_uint8_images_follow_the_normalization():
    # The trainer maps normalized samples back with data.mean/std and rounds to uint8.
    from jssl import sharding
    from jssl.train import build_experiment

    class Constant(SimCLR):
        def generate(self, num, *, rngs):
            return jnp.full((num, 28, 28, 1), 0.2)  # normalized: pixel = 0.2 * std + mean

    config = _config("simclr")
    methods.METHODS["constant_generator"] = Constant
    try:
        config.method.name = "constant_generator"
        mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
        exp = build_experiment(config, image_shape=(28, 28, 1), mesh=mesh)
        state = exp.init_state()
        images = jax.device_get(exp.generate(state.params, state.buffers, jax.random.PRNGKey(0)))
    finally:
        del methods.METHODS["constant_generator"]
    expected = round((0.2 * config.data.std[0] + config.data.mean[0]) * 255)
    assert images.dtype == "uint8" and images.shape == (32, 28, 28, 1)
    assert (images == expected).all()
