"""wav2vec 2.0 and CPC through the trainer: sharded steps equal one device, one compile, exact resume.

Tiny networks (16-32 channels, one Transformer block) on 0.25 s random waveforms of varying
length (so the padding masks matter); SGD with lr 1 makes the parameter change the gradient.
"""

from __future__ import annotations

import functools
import json
import os
import shutil

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jssl import sharding
from jssl.data.audio import AudioInputs
from jssl.methods import CPC, Wav2Vec2
from jssl.methods.wav2vec2 import gumbel_temperature
from tests.train.helpers import load_config

CROP = 4000
BATCH = 16
SGD = {
    "optimizer.name": "sgd", "optimizer.momentum": 0.0, "optimizer.weight_decay": 0.0,
    "optimizer.warmup_steps": 0, "optimizer.base_learning_rate": 1.0, "optimizer.lr_scaling_batch": BATCH,
}  # fmt: skip
TINY = {
    "cpc": {"model.kwargs": ml_collections.ConfigDict(dict(conv_layers=tuple((16, k, s) for _, k, s in
                                                                         ((0, 10, 5), (0, 8, 4), (0, 4, 2), (0, 4, 2), (0, 4, 2))),
                                                          context_dim=16)),
            "method.prediction_steps": 4},
    "wav2vec2": {"model.kwargs": ml_collections.ConfigDict(dict(conv_layers=((16, 10, 5),) + ((16, 3, 2),) * 4 + ((16, 2, 2),) * 2,
                                                               embed_dim=32, depth=1, num_heads=2, mlp_dim=64,
                                                               pos_conv_kernel=4, pos_conv_groups=2)),
                 "method.mask_length": 2, "method.num_negatives": 5, "method.codebook_entries": 8,
                 "method.codebook_dim": 16, "method.final_dim": 16},
}  # fmt: skip
METHODS = {"cpc": CPC, "wav2vec2": Wav2Vec2}


def _config(name: str, **overrides):
    config = load_config("smoke", name=f"{name}_digits")
    config.global_batch_size = BATCH
    config.data.crop_samples = CROP
    config.eval.baselines = False
    for key, value in {**SGD, **TINY[name], **overrides}.items():
        target = config
        *path, last = key.split(".")
        for p in path:
            target = target[p]
        target[last] = value
    return config


def _batch(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(CROP // 2, CROP + 1, BATCH)
    mask = np.arange(CROP)[None] < lengths[:, None]
    wave = (rng.normal(size=(BATCH, CROP)) * mask).astype(np.float32)
    return {"waveform": wave, "mask": mask, "label": rng.integers(0, 10, BATCH).astype(np.int32)}


def _run(name: str, axes: dict[str, int], steps: int, wrap_step=None):
    from jssl.train import build_experiment

    config = _config(name)
    devices = jax.devices()[: int(np.prod(list(axes.values())))]
    mesh = sharding.make_mesh(axes, devices=devices)
    exp = build_experiment(config, inputs=AudioInputs(config, method_class=METHODS[name]), mesh=mesh,
                           wrap_step=wrap_step)  # fmt: skip
    state = exp.init_state()
    before = jax.device_get(state.params)
    metrics = []
    for step in range(steps):
        state, m = exp.train_step(state, sharding.host_batch_to_global(_batch(step), mesh))
        metrics.append(jax.device_get(m))
        if step == 0:
            first = jax.device_get(state)
    return exp, before, first, metrics


@functools.lru_cache(maxsize=None)
def _single(name: str):
    chex.clear_trace_counter()
    return _run(name, dict(data=1, fsdp=1, tensor=1), 2, wrap_step=functools.partial(chex.assert_max_traces, n=1))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_step_compiles_once_and_learns(name):
    exp, before, after, metrics = _single(name)
    assert exp.step_traces() == 1
    for m in metrics:
        assert np.isfinite(m["loss"]) and m["grad_norm"] > 0
        assert "method/contrastive_accuracy" in m and "probe/loss" in m
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), before, after.params)
    assert max(jax.tree.leaves(moved)) > 0


AXES = {
    "data8": dict(data=8, fsdp=1, tensor=1),
    "fsdp2": dict(data=4, fsdp=2, tensor=1),
    "tensor2": dict(data=4, fsdp=1, tensor=2),
}
# The data meshes run by default; FSDP and tensor parallelism (each a minute of compiling on a
# loaded 2-core machine) are `heavy`. The grouped-conv gradient bug the tensor mesh found has a
# fast test of its own (tests/audio/test_audio_models.py).
HEAVY = pytest.mark.heavy
CASES = [
    pytest.param("cpc", "data8", id="cpc-data8"),
    pytest.param("wav2vec2", "data8", id="wav2vec2-data8"),
    pytest.param("cpc", "fsdp2", id="cpc-fsdp2", marks=HEAVY),
    pytest.param("wav2vec2", "fsdp2", id="wav2vec2-fsdp2", marks=HEAVY),
    pytest.param("wav2vec2", "tensor2", id="wav2vec2-tensor2", marks=HEAVY),
]


@pytest.mark.parametrize("name,axes", CASES)
def test_sharded_step_equals_single_device(name, axes):
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    _, before1, state1, metrics1 = _single(name)
    _, before8, state8, metrics8 = _run(name, AXES[axes], 1)
    chex.assert_trees_all_close(before1, before8)
    np.testing.assert_allclose(metrics1[0]["loss"], metrics8[0]["loss"], rtol=1e-5, atol=1e-6)
    grads1 = jax.tree.map(lambda a, b: a - b, before1, state1.params)
    grads8 = jax.tree.map(lambda a, b: a - b, before8, state8.params)
    chex.assert_trees_all_close(grads1, grads8, atol=1e-4, rtol=1e-3)


def test_gumbel_temperature_is_a_pure_function_of_the_step():
    t = np.asarray(gumbel_temperature(jnp.array([0, 1, 1000, 300_000]), start=2.0, end=0.5, decay=0.999995))
    np.testing.assert_allclose(t[:3], [2.0, 2.0 * 0.999995, 2.0 * 0.999995**1000], rtol=1e-6)
    assert t[3] == 0.5  # 2 * 0.999995**300000 = 0.45: floored at the end value


def test_clear_errors():
    config = _config("cpc", **{"model.kwargs": ml_collections.ConfigDict()})
    config.model.name = "wav2vec2_tiny"
    with pytest.raises(ValueError, match="CPC model"):
        CPC(config, dtype=jnp.float32, rngs=nnx.Rngs(0))
    config = _config("wav2vec2", **{"method.mask_prob": 0.0})
    with pytest.raises(ValueError, match="mask_prob"):
        Wav2Vec2(config, dtype=jnp.float32, rngs=nnx.Rngs(0))
    method = CPC(_config("cpc"), dtype=jnp.float32, rngs=nnx.Rngs(0))
    with pytest.raises(NotImplementedError, match="finetune.enabled"):
        method.backbone()
    with pytest.raises(ValueError, match="prediction steps"):  # traced only: the error is at trace time
        nnx.eval_shape(lambda m: m({"waveform": jnp.zeros((2, 480)), "mask": jnp.ones((2, 480), bool)},
                                   step=jnp.asarray(0)), method)  # fmt: skip


@pytest.mark.heavy
@pytest.mark.parametrize("name", sorted(METHODS))
def test_resume_is_exact(name, tmp_path, monkeypatch):
    """4 steps straight = 2 steps, the step-4 checkpoint removed, then a resumed run to 4."""
    from jssl.train.trainer import train

    monkeypatch.setenv("JSSL_CACHE", str(tmp_path / "cache"))
    overrides = {"total_steps": 4, "checkpoint.every_steps": 2, "log_every_steps": 1, "checkpoint.async_save": False,
                 "data.eval_samples": CROP, "data.max_eval_examples": 16, "eval.batch_size": 16,
                 "data.spoken_digits": ml_collections.ConfigDict(dict(voices=("en+m1", "en+m2", "en+f2"),
                                                                     held_out_voices=("en+f2",), rates=(170,),
                                                                     pitches=(50,)))}  # fmt: skip

    def rows(workdir):
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            return [r for r in map(json.loads, f) if "loss" in r]

    straight = train(_config(name, **overrides), str(tmp_path / "a"))
    train(_config(name, **overrides), str(tmp_path / "b"))
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "4")
    first_two = rows(tmp_path / "b")[:2]
    resumed = train(_config(name, **overrides), str(tmp_path / "b"))
    assert resumed == straight

    # The rerun resumed at step 2, not from scratch: steps 1-2 are the first run's rows, time
    # stamps included; steps 3-4 were logged again and replaced the first run's (each step once,
    # `jssl.metrics`), with exactly the straight run's losses.
    resumed_rows = rows(tmp_path / "b")
    assert [r["step"] for r in resumed_rows] == [1, 2, 3, 4] and resumed_rows[:2] == first_two
    assert [r["loss"] for r in resumed_rows] == [r["loss"] for r in rows(tmp_path / "a")]
