"""What every registered method's step must satisfy, checked for each (new methods are picked up by name).

- one step on an 8-device mesh (data=8, and data=4 x fsdp=2) equals the 1-device step: loss,
  gradients, and every buffer after the post-step update (BN statistics, teachers, queues, centers);
  the 1-device steps compile once (multi-crop included), log finite losses and move the parameters;
- teachers are not parameters, are not in the optimizer state and receive no gradient;
- each method has its CPU recipe and its large recipe (ImageNet, or CIFAR-10 for DDPM).

The large recipes' two-step runs are in `test_all_recipes.py` and the SIGKILL resume of every
method in `test_all_resume.py`: separate files so the test workers (`--dist loadfile`) share them.
"""

from __future__ import annotations

import functools
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jssl import sharding
from jssl.methods.common import Teacher
from jssl.train.trainer import view_augmentations
from tests.methods.helpers import (
    METHOD_NAMES,
    REPO,
    config_path,
    large_recipe,
    run_steps,
    tiny_config,
    view_batch,
)
from tests.train.helpers import load_config

IMAGE_SHAPE = (28, 28, 1)
# Plain SGD without momentum or decay: the parameter change is exactly -lr * gradient, so
# comparing updated parameters compares gradients.
SGD = {
    "optimizer.name": "sgd",
    "optimizer.momentum": 0.0,
    "optimizer.weight_decay": 0.0,
    "optimizer.warmup_steps": 0,
    "optimizer.base_learning_rate": 1.0,
    "optimizer.lr_scaling_batch": 16,
}


def _run_steps(name: str, mesh, num_steps: int, wrap_step=None):
    return run_steps(tiny_config(name, **SGD), mesh, num_steps, image_shape=IMAGE_SHAPE, wrap_step=wrap_step)


@functools.lru_cache(maxsize=None)
def _single_device(name: str):
    """Two steps on one device, the step wrapped so that a second trace fails."""
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    chex.clear_trace_counter()  # chex counts per function code: every method's step shares it
    return _run_steps(name, mesh, 2, wrap_step=functools.partial(chex.assert_max_traces, n=1))


# Every method on the 8-way data mesh (every cross-device batch term); the FSDP mesh (parameters
# sharded too) for one method per backbone family by default, the rest `heavy` (10-19 s each on
# 2 cores; the suite must stay under 15 minutes).
FSDP_BY_DEFAULT = ("simclr", "mae")
_AXES = {"data8": dict(data=8, fsdp=1, tensor=1), "fsdp2": dict(data=4, fsdp=2, tensor=1)}


@pytest.mark.parametrize(
    "name, axes",
    [
        pytest.param(n, _AXES[a], id=f"{n}-{a}", marks=() if a == "data8" or n in FSDP_BY_DEFAULT else pytest.mark.heavy)
        for n in METHOD_NAMES
        for a in _AXES
    ],
)
def test_sharded_step_equals_single_device(name, axes):
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    exp, before1, state1, metrics1 = _single_device(name)
    # The single-device steps: two steps, one trace (assert_max_traces guards the rest), finite
    # losses, the collapse diagnostics logged, parameters moved.
    assert exp.step_traces() == 1
    for m in metrics1:
        assert np.isfinite(m["loss"]) and m["grad_norm"] > 0, m
        assert "method/embedding_spread" in m, "every method logs its collapse diagnostics"
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), before1, state1.params)
    assert max(jax.tree.leaves(moved)) > 0
    _, before8, state8, metrics8 = _run_steps(name, sharding.make_mesh(axes), 1)
    chex.assert_trees_all_close(before1, before8)  # same initialization whatever the mesh
    np.testing.assert_allclose(metrics1[0]["loss"], metrics8[0]["loss"], rtol=1e-5, atol=1e-6)
    # With SGD (lr = 1, no momentum), old params - new params is the gradient. float32 sums in
    # another order differ in the last bits; a wrong cross-device term differs in the first.
    grads1 = jax.tree.map(lambda a, b: a - b, before1, state1.params)
    grads8 = jax.tree.map(lambda a, b: a - b, before8, state8.params)
    assert float(metrics1[0]["grad_norm"]) > 0
    chex.assert_trees_all_close(grads1, grads8, atol=1e-4, rtol=1e-3)
    # Every buffer after the post-step update: BN statistics, teachers, queues, centers.
    chex.assert_trees_all_close(state1.buffers, state8.buffers, atol=2e-5, rtol=1e-4)


def _teacher_names(model) -> set[str]:
    state = nnx.state(model, Teacher)
    paths = [p for p, _ in jax.tree_util.tree_leaves_with_path(state)]
    return {".".join(str(getattr(k, "key", k)) for k in p[:-1]) for p in paths}


# Teachers are one mechanism (`Teacher` variables updated after the step); checked by default for
# an EMA teacher (BYOL) and a teacher with a center and frozen last layer (DINO); the others
# (MoCo v2/v3, DDPM's EMA weights, and the methods without one) are `heavy`: each costs 13-25 s
# of eager gradients on 2 cores.
TEACHERS_BY_DEFAULT = ("byol", "dino")


@pytest.mark.parametrize(
    "name", [n if n in TEACHERS_BY_DEFAULT else pytest.param(n, marks=pytest.mark.heavy) for n in METHOD_NAMES]
)
def test_teachers_are_not_trained(name):
    exp, _, state, _ = _single_device(name)
    state = jax.tree.map(jnp.asarray, state)  # device arrays: the forward below updates BN statistics
    model = nnx.merge(exp.graphdef, state.params, state.buffers)
    teachers = _teacher_names(model)
    if not teachers:
        pytest.skip(f"{name} has no teacher")
    param_paths = {
        ".".join(str(getattr(k, "key", k)) for k in p[:-1])
        for p, _ in jax.tree_util.tree_leaves_with_path(state.params)
    }
    assert not teachers & param_paths
    # The optimizer state holds one slot per parameter at most; no teacher path appears in it.
    opt_paths = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state.opt_state)}
    for teacher in teachers:
        leaf = teacher.split(".")[-1]
        top = teacher.split(".")[1]  # method.<module>...
        assert not any(f"'{top}'" in p and f"'{leaf}'" in p for p in opt_paths), teacher
    # Teachers stay float32 whatever the compute dtype.
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(nnx.state(model, Teacher)))

    # No gradient reaches a teacher even when one asks for it: the loss is constant in them.
    config = tiny_config(name)
    graphdef, teacher_state, rest = nnx.split(model.method, Teacher, ...)
    batch = view_batch(view_augmentations(config), 8)
    views = [jnp.asarray(batch[f"view_{i}"], jnp.float32) / 255.0 for i in range(len(batch) - 1)]

    def loss(teacher_values):
        method = nnx.merge(graphdef, teacher_values, rest, copy=True)
        return method(views, step=jnp.int32(0)).loss

    grads = jax.grad(loss)(teacher_state)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) == 0.0


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_has_cpu_and_large_recipes(name):
    assert os.path.exists(config_path(name)), f"{name} needs configs/{name}_mnist.py"
    config = load_config(None, name=f"{name}_mnist")
    assert config.method.name == name and config.data.name == "mnist"
    assert load_config("smoke", name=f"{name}_mnist").total_steps < config.total_steps
    recipe = large_recipe(name)
    if recipe is None:
        return
    assert os.path.exists(os.path.join(REPO, "configs", f"{recipe}.py")), f"{name} needs configs/{recipe}.py"
    large = load_config(None, name=recipe)
    assert large.method.name == name
    if recipe.endswith("_imagenet"):
        assert large.data.tfds_name == "imagenet2012"
        # ResNet-50 for the ResNet papers' recipes; MAE's is a ViT-B/16.
        assert large.model.name in ("resnet50", "vit_b16") and large.data.num_classes == 1000
