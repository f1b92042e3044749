"""What every registered method must satisfy, checked for each (new methods are picked up by name).

- one step on an 8-device mesh (data=8, and data=4 x fsdp=2) equals the 1-device step: loss,
  gradients, and every buffer after the post-step update (BN statistics, teachers, queues, centers);
- the step compiles once (multi-crop included);
- teachers are not parameters, are not in the optimizer state and receive no gradient;
- each method has its CPU recipe and its ImageNet recipe, and the ImageNet recipe runs end to end
  (2 steps) on a tiny ImageNet-structured TFDS data set with the model shrunk; so do the ViT
  ImageNet recipes (`VIT_RECIPES`);
- a run killed with SIGKILL resumes with exactly the losses of the uninterrupted run.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jssl import sharding
from jssl.methods.common import Teacher
from jssl.train import train
from jssl.train.trainer import view_augmentations
from tests.methods.helpers import (
    IMAGENET_METHODS,
    METHOD_NAMES,
    REPO,
    VIT_RECIPES,
    apply,
    as_cli,
    config_path,
    large_recipe,
    run_steps,
    tiny_config,
    tiny_overrides,
    view_batch,
)
from tests.conftest import FAST_COMPILE
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


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_step_compiles_once_and_learns_something(name):
    exp, before, after, metrics = _single_device(name)
    assert exp.step_traces() == 1  # two steps, one trace (assert_max_traces guards the rest)
    for m in metrics:
        assert np.isfinite(m["loss"]), m
        assert m["grad_norm"] > 0
        assert "method/embedding_spread" in m, "every method logs its collapse diagnostics"
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), before, after.params)
    assert max(jax.tree.leaves(moved)) > 0


@pytest.mark.parametrize("axes", [dict(data=8, fsdp=1, tensor=1), dict(data=4, fsdp=2, tensor=1)], ids=["data8", "fsdp2"])
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_sharded_step_equals_single_device(name, axes):
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    _, before1, state1, metrics1 = _single_device(name)
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


@pytest.mark.parametrize("name", METHOD_NAMES)
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


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGENET_METHODS)
def test_imagenet_recipe_runs_two_steps_on_tiny_imagenet(name, tiny_imagenet, tmp_path):
    _run_imagenet_recipe(f"{name}_imagenet", tiny_imagenet, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", VIT_RECIPES)
def test_vit_imagenet_recipe_runs_two_steps_on_tiny_imagenet(recipe, tiny_imagenet, tmp_path):
    assert load_config(None, name=recipe).model.name.startswith("vit_")
    _run_imagenet_recipe(recipe, tiny_imagenet, tmp_path)


def _run_imagenet_recipe(recipe: str, tiny_imagenet, tmp_path) -> None:
    tfds_name, data_dir = tiny_imagenet
    config = load_config(None, name=recipe)
    apply(config, tiny_overrides(config))
    apply(
        config,
        {
            "data.tfds_name": tfds_name,
            "data.data_dir": data_dir,
            "total_steps": 2,
            "global_batch_size": 8,
            "log_every_steps": 1,
            "checkpoint.every_steps": 1,
            "eval.linear_probe_steps": 5,
            "eval.batch_size": 8,
            "data.max_eval_examples": 16,
            "progress_bar": False,
            # bf16 convolutions are slow on CPU and the recipe's dtype is not what is tested here;
            # 16 data worker processes would cost more than the two steps.
            "model.dtype": "float32",
            "data.num_workers": 0,
        },
    )
    results = train(config, str(tmp_path / "run"))
    assert results["step"] == 2
    assert results["eval"]["num_train"] == 16 and results["eval"]["num_test"] == 16
    assert 0.0 <= results["ssl"]["knn"] <= 1.0
    assert os.path.isdir(tmp_path / "run" / "checkpoints" / "2")


# ==================================================================================================
# SIGKILL + resume, every method
# ==================================================================================================


def _losses(workdir: str) -> dict[int, float]:
    out = {}
    path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.endswith("\n"):  # a line cut by the kill is not a record
                    record = json.loads(line)
                    if "loss" in record:
                        out.setdefault(record["step"], record["loss"])  # the first run's value
    return out


def _checkpoints(workdir: str) -> list[int]:
    directory = os.path.join(workdir, "checkpoints")
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit()) if os.path.isdir(directory) else []


@pytest.mark.slow
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_sigkill_then_rerun_resumes_with_identical_losses(name, tmp_path, tmp_path_factory):
    """The run is killed a few steps after a checkpoint; the rerun redoes those steps bitwise.

    The steps between the last checkpoint and the kill were computed by the uninterrupted run,
    so the rerun's losses there are compared with that run's: no third run is needed.
    """
    every = 6
    config = load_config("smoke", name=f"{name}_mnist")
    args = [
        f"--config={config_path(name)}:smoke",
        *as_cli(tiny_overrides(config)),
        "--config.total_steps=60",
        f"--config.checkpoint.every_steps={every}",
        "--config.log_every_steps=1",
        "--config.data.max_eval_examples=100",
    ]
    cache = str(tmp_path_factory.getbasetemp() / "jax_cache")
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count=2 {FAST_COMPILE}",
        "PYTHONPATH": REPO,
        # Both runs compile the same step: the second one reads it from the cache.
        "JAX_COMPILATION_CACHE_DIR": cache,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    workdir = str(tmp_path / "run")
    command = [sys.executable, "-m", "jssl.cli", "train", *args, f"--workdir={workdir}"]
    proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while True:  # kill mid-interval, after the first checkpoint
        logged = _losses(workdir)
        last = max(logged, default=0)
        if last > every and last % every >= every - 2 and _checkpoints(workdir):
            break
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before_kill = _losses(workdir)
    resume_from = max(_checkpoints(workdir))
    redone = [s for s in before_kill if s > resume_from]
    assert redone, f"no step between the checkpoint at {resume_from} and the kill at {max(before_kill)}"

    rerun = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if "loss" in record:
                resumed[record["step"]] = record["loss"]  # the last value: the rerun's
    assert sorted(resumed) == list(range(1, 61))
    np.testing.assert_array_equal([resumed[s] for s in redone], [before_kill[s] for s in redone])
