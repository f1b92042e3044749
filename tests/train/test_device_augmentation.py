"""`data.augment_on='device'`: the host moves source images, the jit'd step draws the views.

Checked here: the Grain iterator's batches, the step on 1 vs 8 devices (same views, loss and
gradients whatever the mesh), one trace over several steps (multi-crop too), exact resume after
SIGKILL, and clear errors.
"""

from __future__ import annotations

import functools

import chex
import jax
import numpy as np
import pytest

from jssl import data, sharding
from jssl.train import build_experiment
from tests.methods.helpers import tiny_config
from tests.train.test_end_to_end import CONFIG, TINY, sigkill_and_resume


def _image_batch(global_batch: int, *, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (global_batch, 28, 28, 1), dtype=np.uint8),
            "label": rng.integers(0, 10, global_batch).astype(np.int32)}


def _steps(config, mesh, num_steps: int, **kwargs):
    exp = build_experiment(config, image_shape=(28, 28, 1), mesh=mesh, **kwargs)
    state = exp.init_state()
    metrics = []
    for step in range(num_steps):
        state, m = exp.train_step(state, sharding.host_batch_to_global(_image_batch(config.global_batch_size,
                                                                                     seed=step), mesh))
        metrics.append(jax.device_get(m))
        if step == 0:
            after_first = jax.device_get(state)
    return exp, after_first, metrics


def test_iterator_yields_source_images_once():
    rng = np.random.default_rng(0)
    source = data.ArraySource(rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 40))
    it = data.make_train_iterator(source, global_batch_size=8, num_views=2, augment="random_resized_crop(16)|hflip",
                                  seed=0, augment_on="device")
    batch = next(it)
    assert sorted(batch) == ["image", "label"]
    assert batch["image"].shape == (8, 28, 28, 1) and batch["image"].dtype == np.uint8
    # The images are the source's own (no host augmentation), in the shuffled order.
    flat = source.images.reshape(40, -1)
    assert all((flat == img.reshape(1, -1)).all(1).any() for img in batch["image"])


# Two views; 2 global + 4 local crops (46 s on 2 cores: heavy).
@pytest.mark.parametrize("method", ["simclr", pytest.param("dino", marks=pytest.mark.heavy)])
def test_sharded_step_equals_single_device_and_compiles_once(method):
    config = tiny_config(method, **{"data.augment_on": "device"})
    one = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
    eight = sharding.make_mesh({"data": 4, "fsdp": 2, "tensor": 1})
    chex.clear_trace_counter()  # chex counts per function code: every build's step shares it
    exp, state_1, metrics_1 = _steps(config, one, 3, wrap_step=functools.partial(chex.assert_max_traces, n=1))
    assert exp.augment_on == "device" and exp.step_traces() == 1
    _, state_8, metrics_8 = _steps(config, eight, 3)
    for m1, m8 in zip(metrics_1, metrics_8):
        np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=2e-5)
        np.testing.assert_allclose(m8["grad_norm"], m1["grad_norm"], rtol=2e-4)
    # After one step (later steps compound the meshes' different reduction orders through LARS at
    # DINO's large learning rate; the losses above already pin every step's views).
    chex.assert_trees_all_close(state_8.params, state_1.params, rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(state_8.buffers, state_1.buffers, rtol=1e-4, atol=1e-5)


def test_device_views_are_redrawn_each_step():
    # Same parameters, same source batch, steps 0 and 5: the keys fold in the step, so the views
    # and with them the loss must differ (a key derivation that ignored the step would repeat them).
    config = tiny_config("simclr", **{"data.augment_on": "device"})
    mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
    exp = build_experiment(config, image_shape=(28, 28, 1), mesh=mesh)
    batch = sharding.host_batch_to_global(_image_batch(config.global_batch_size, seed=0), mesh)
    _, at_0 = exp.train_step(exp.init_state(), batch)
    state = exp.init_state()
    _, at_5 = exp.train_step(state.replace(step=state.step + 5), batch)
    _, again_0 = exp.train_step(exp.init_state(), batch)
    assert float(at_0["loss"]) == float(again_0["loss"])
    assert float(at_0["loss"]) != float(at_5["loss"])


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"data.augment_on": "gpu"}, "data.augment_on must be one of"),
        ({"data.augment_on": "device", "data.augment": "random_resized_crop(16)|nonsense"}, "nonsense"),
    ],
)
def test_bad_options_are_clear_errors(overrides, match):
    config = tiny_config("simclr", **overrides)
    with pytest.raises(ValueError, match=match):
        build_experiment(config, image_shape=(28, 28, 1))


def test_auto_augments_on_the_device_only_where_it_can_and_pays():
    from jssl.data.image_inputs import resolve_augment_on
    from jssl.methods import get_method_class

    config = tiny_config("simclr")
    assert config.data.augment_on == "auto"  # the default
    method = get_method_class("simclr")
    fixed, varying = (lambda: (28, 28, 1)), (lambda: None)
    assert resolve_augment_on(config, method, fixed, backend="cpu")[0] == "host"
    assert resolve_augment_on(config, method, fixed, backend="gpu") == ("device", "auto: the gpu backend")
    where, why = resolve_augment_on(config, method, varying, backend="gpu")
    assert where == "host" and "varying size" in why
    config.data.device_source_size = 24
    assert resolve_augment_on(config, method, varying, backend="gpu")[0] == "device"
    config.data.augment = "random_resized_crop(16)|gaussian_blur(kernel_frac=None)"
    where, why = resolve_augment_on(config, method, fixed, backend="tpu")
    assert where == "host" and "no device twin" in why
    for configured in ("host", "device"):  # taken as configured, on any backend
        config.data.augment_on = configured
        assert resolve_augment_on(config, method, varying, backend="gpu") == (configured, "configured")


def test_auto_on_an_accelerator_trains_on_the_device_and_reads_the_source_shape(monkeypatch):
    # The embedded MNIST source has one image size, so 'auto' on a (pretended) accelerator draws
    # the views in the step and the iterator moves source images; on the CPU backend: the host.
    config = tiny_config("simclr")
    exp = build_experiment(config)
    assert exp.augment_on == "host" and "CPU backend" in exp.inputs.describe()["augment_on_why"]
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    exp = build_experiment(config)
    assert exp.augment_on == "device" and exp.inputs.on_device is not None
    batch = next(exp.inputs.train_iterator(process_index=0, process_count=1))
    assert sorted(batch) == ["image", "label"] and batch["image"].shape[1:] == (28, 28, 1)


def test_the_iterator_wants_a_settled_place():
    source = data.ArraySource(np.zeros((8, 28, 28, 1), np.uint8), np.zeros(8, np.int32))
    with pytest.raises(ValueError, match="'auto' depends on the backend"):
        data.make_train_iterator(source, global_batch_size=8, num_views=1, augment="hflip", seed=0, augment_on="auto")


def test_unequal_source_images_are_a_clear_error():
    images = [np.zeros((28, 28, 1), np.uint8)] * 7 + [np.zeros((30, 28, 1), np.uint8)]

    class Ragged:
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return {"image": images[i], "label": 0}

    it = data.make_train_iterator(Ragged(), global_batch_size=8, num_views=2, augment="random_resized_crop(16)",
                                  seed=0, augment_on="device")
    with pytest.raises(ValueError, match="equally sized source images"):
        next(it)


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_with_identical_losses_on_device(tmp_path, tmp_path_factory):
    """The device-drawn views are a function of (seed, step, position): the steps redone after the
    resume see the same views, so their losses are bitwise those logged before the kill."""
    args = [f"--config={CONFIG}:smoke", *TINY, "--config.total_steps=16", "--config.checkpoint.every_steps=4",
            "--config.data.augment_on=device"]
    sigkill_and_resume(args, tmp_path, tmp_path_factory, total_steps=16)
