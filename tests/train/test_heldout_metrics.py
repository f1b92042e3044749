"""The trainer's held-out measures: a method's per-example `heldout_metrics`, averaged over the split.

A SimCLR subclass stands in for a generative method: one deterministic measure (each image's
mean squared value, checkable in numpy) and one drawn from the eval key (the noise must be the
same on every mesh and at every call, and differ between chunks).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jssl import methods, sharding
from jssl.methods.simclr import SimCLR
from jssl.train import build_experiment
from jssl.train.trainer import heldout_metrics
from tests.train.helpers import tiny_config


class _SimCLRWithHeldout(SimCLR):
    def heldout_metrics(self, images, *, rngs):
        x = images.astype(jnp.float32).reshape(images.shape[0], -1)
        noise = jax.random.normal(rngs.default(), (images.shape[0],))
        return {"mean_square": jnp.mean(x**2, axis=1), "noise": noise}


@pytest.fixture
def heldout_method(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "simclr_heldout", _SimCLRWithHeldout)
    return "simclr_heldout"


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 16, 16, 1), dtype=np.uint8)


def _measure(method: str, mesh, images: np.ndarray) -> dict[str, float]:
    # eval.batch_size 24 does not divide 70: the last chunk is padded, and the padding must not count.
    config = tiny_config(**{"method.name": method, "eval.batch_size": 24})
    exp = build_experiment(config, image_shape=(16, 16, 1), mesh=mesh)
    return heldout_metrics(exp, exp.init_state(), images)


def test_heldout_means_are_exact_over_the_split_and_mesh_independent(heldout_method):
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    images = _images(70)
    one = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    single = _measure(heldout_method, one, images)
    assert set(single) == {"heldout/mean_square", "heldout/noise"}
    # Normalized as the trainer does for this config: (x / 255 - mean) / std.
    config = tiny_config()
    x = (images.astype(np.float64) / 255.0 - config.data.mean[0]) / config.data.std[0]
    np.testing.assert_allclose(single["heldout/mean_square"], np.mean(x**2), rtol=1e-5)
    # The noise is a standard normal draw per example: its mean over 70 is small but not 0,
    # and it is the same whatever the mesh (fold_in(key, chunk), drawn for the global chunk).
    assert 0 < abs(single["heldout/noise"]) < 0.6
    eight = _measure(heldout_method, sharding.make_mesh(dict(data=8, fsdp=1, tensor=1)), images)
    np.testing.assert_allclose(eight["heldout/noise"], single["heldout/noise"], rtol=1e-5)
    np.testing.assert_allclose(eight["heldout/mean_square"], single["heldout/mean_square"], rtol=1e-5)
    again = _measure(heldout_method, one, images)
    assert again == single  # fixed draws: the same weights give the same numbers


def test_chunks_draw_different_noise(heldout_method):
    # Two identical chunks: if each used the same key, the per-chunk noise means would coincide.
    config = tiny_config(**{"method.name": heldout_method, "eval.batch_size": 8})
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    exp = build_experiment(config, image_shape=(16, 16, 1), mesh=mesh)
    state = exp.init_state()
    block = _images(8)
    first = heldout_metrics(exp, state, block)["heldout/noise"]
    both = heldout_metrics(exp, state, np.concatenate([block, block]))["heldout/noise"]
    assert both != pytest.approx(first)


def test_methods_without_heldout_metrics_add_nothing():
    config = tiny_config(**{"eval.batch_size": 8})
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    exp = build_experiment(config, image_shape=(16, 16, 1), mesh=mesh)
    assert heldout_metrics(exp, exp.init_state(), _images(8)) == {}
