"""Probes that used to report garbage: labels past num_classes, NaN online and offline probe losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jssl import sharding
from jssl.evaluators import knn_accuracy, linear_probe_accuracy
from jssl.nonfinite import NonFiniteLossError, decode_nonfinite, raise_if_nonfinite, track_nonfinite
from jssl.train import build_experiment
from tests.train.helpers import random_batch, tiny_config


@pytest.mark.parametrize("fn", [knn_accuracy, linear_probe_accuracy])
def test_labels_past_num_classes_are_errors(fn):
    x, y = np.random.default_rng(0).normal(size=(12, 4)), np.arange(12) % 6
    with pytest.raises(ValueError, match="labels of split 'train' reach 5 but num_classes=4: set num_classes=6"):
        fn(x, y, x, y % 4, num_classes=4)
    with pytest.raises(ValueError, match="labels of split 'test' include -1"):
        fn(x, y % 4, x, y % 4 - 1, num_classes=4)


def test_offline_linear_probe_with_a_nonfinite_loss_stops():
    x, y = np.random.default_rng(0).normal(size=(20, 4)), np.arange(20) % 2
    x[3, 1] = np.nan
    with pytest.raises(NonFiniteLossError, match="offline linear probe loss is non-finite.*features hold NaN or inf"):
        linear_probe_accuracy(x, y, x, y, num_classes=2, steps=5)


def test_nonfinite_code_keeps_the_first_step_and_names_the_losses():
    first = jnp.int32(-1)
    first = track_nonfinite(first, jnp.int32(0), jnp.float32(1.0), jnp.float32(2.0))
    assert decode_nonfinite(first) is None
    first = track_nonfinite(first, jnp.int32(7), jnp.float32(1.0), jnp.float32(jnp.nan))
    first = track_nonfinite(first, jnp.int32(8), jnp.float32(jnp.inf), jnp.float32(jnp.nan))  # the first one stays
    assert decode_nonfinite(first) == (7, False, True, False)
    both = track_nonfinite(jnp.int32(-1), jnp.int32(3), jnp.float32(jnp.nan), jnp.float32(jnp.nan))
    with pytest.raises(NonFiniteLossError, match=r"the training and online probe losses became non-finite .* step 3"):
        raise_if_nonfinite(type("S", (), {"first_nonfinite_step": both})(), 2)


def test_a_nonfinite_gradient_of_a_finite_loss_stops_the_run():
    """SimCLR on all-equal (infinite) embeddings has the finite loss log(2B - 1) but a NaN gradient,
    after which every parameter is NaN: the gradient is tracked beside the losses."""
    code = track_nonfinite(jnp.int32(-1), jnp.int32(5), jnp.float32(4.14), jnp.float32(2.3), jnp.float32(jnp.nan))
    assert decode_nonfinite(code) == (5, False, False, True)
    with pytest.raises(NonFiniteLossError, match=r"the gradient of the training loss \(the loss itself stayed finite\)"):
        raise_if_nonfinite(type("S", (), {"first_nonfinite_step": code})(), None)



def test_online_probe_nan_stops_the_run_naming_the_probe():
    # Labels 0..9 with a 3-way probe: the probe's loss is NaN while the SSL loss stays finite.
    config = tiny_config(**{"data.num_classes": 3})
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    exp = build_experiment(config, image_shape=(16, 16, 1), mesh=mesh)
    state = exp.init_state()
    state, metrics = exp.train_step(state, sharding.host_batch_to_global(random_batch(16), mesh))
    assert np.isfinite(float(metrics["loss"])) and not np.isfinite(float(metrics["probe/loss"]))
    with pytest.raises(NonFiniteLossError, match=r"the online probe loss became non-finite .* at step 0.*data.num_classes"):
        raise_if_nonfinite(state, None)
