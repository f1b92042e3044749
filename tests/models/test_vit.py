"""Vision Transformers and the Transformer block family: sizes, interface, sharding, training.

- parameter counts equal the published ones (built abstractly: nothing big is allocated);
- the MAE-facing interface (embed_patches / encode / pool / grid_size / layer_index);
- position embeddings at another resolution (multi-crop), sin-cos interpolation;
- masks, drop path, remat, bfloat16;
- a SimCLR step with a tiny ViT on data=8, data=2 x fsdp=2 x tensor=2 and fsdp=8 equals the
  1-device step, compiles once, and the tensor axis really splits attention and MLP weights;
- DINO (multi-crop, two resolutions) and MoCo v3 train with a ViT on MNIST by config override.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jssl import sharding
from jssl.methods.common import teacher_copy
from jssl.models import get_backbone
from jssl.models.partitioning import activation_sharding, constrain
from jssl.models.transformer import Encoder
from jssl.models.vit import VITS, patchify, resize_pos_embed, sincos_2d
from jssl.train import build_experiment
from tests.methods.helpers import run_steps, tiny_config, view_batch

IMAGE_SHAPE = (28, 28, 1)
# A ViT that compiles in seconds: 16 px wide, 2 blocks, 4 heads (divisible by a tensor axis of
# 2), 16 patches of 7x7 on 28 px MNIST.
TINY = dict(embed_dim=16, depth=2, num_heads=4, mlp_ratio=2.0)
SGD = {
    "optimizer.name": "sgd",
    "optimizer.momentum": 0.0,
    "optimizer.weight_decay": 0.0,
    "optimizer.warmup_steps": 0,
    "optimizer.base_learning_rate": 1.0,
    "optimizer.lr_scaling_batch": 16,
}


def _num_params(module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _tiny(name: str = "vit_ti7_28", **kwargs):
    return get_backbone(name, in_channels=1, rngs=nnx.Rngs(0), **{**TINY, **kwargs})


# ==================================================================================================
# Sizes and interface
# ==================================================================================================


@pytest.mark.parametrize(
    "name, with_head, without_head",
    [
        # timm's vit_{small,base,large}_patch16_224 with / without the 1000-way classifier.
        ("vit_s16", 22_050_664, 21_665_664),
        ("vit_b16", 86_567_656, 85_798_656),
        ("vit_l16", 304_326_632, 303_301_632),
    ],
)
def test_parameter_counts_match_published(name, with_head, without_head):
    model = nnx.eval_shape(lambda: get_backbone(name, in_channels=3, rngs=nnx.Rngs(0)))
    n = _num_params(model)
    assert n == without_head
    assert n + model.feature_dim * 1000 + 1000 == with_head


def test_registry_names():
    for size in ("ti", "s", "b", "l", "h"):
        assert {f"vit_{size}16", f"vit_{size}14"} <= set(VITS)
    assert {"vit_ti4_28", "vit_ti7_28", "vit_s4_28", "vit_s7_28"} <= set(VITS)
    model = nnx.eval_shape(lambda: get_backbone("vit_h14", in_channels=3, rngs=nnx.Rngs(0)))
    assert (model.embed_dim, model.num_layers, model.patch_size) == (1280, 32, 14)


def test_interface_shapes_and_pieces_compose():
    model = _tiny()
    images = jax.random.normal(jax.random.key(1), (3, 28, 28, 1))
    assert (model.feature_dim, model.patch_size, model.num_layers, model.embed_dim) == (16, 7, 2, 16)
    assert model.grid_size(28) == (4, 4) and model.grid_size((14, 21)) == (2, 3)
    tokens = model.embed_patches(images)
    assert tokens.shape == (3, 16, 16)
    encoded = model.encode(tokens)
    assert encoded.shape == (3, 17, 16) and model.num_prefix_tokens == 1
    features = model(images)
    assert features.shape == (3, 16) and features.dtype == jnp.float32
    np.testing.assert_allclose(model.pool(encoded), features, rtol=1e-6)
    # MAE encodes a subset of the tokens: any count works.
    assert model.encode(tokens[:, :5]).shape == (3, 6, 16)
    assert patchify(images, 7).shape == (3, 16, 49)


def test_gap_pooling_without_class_token():
    model = _tiny(pool="gap")
    assert model.num_prefix_tokens == 0 and model.cls_token is None
    images = jnp.ones((2, 28, 28, 1))
    encoded = model.encode(model.embed_patches(images))
    assert encoded.shape == (2, 16, 16)
    np.testing.assert_allclose(model(images), encoded.mean(axis=1), rtol=1e-5, atol=1e-6)


def test_every_parameter_has_logical_axes_of_the_block_family():
    model = _tiny(layer_scale=0.1)
    params = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    for path, variable in params.items():
        names = variable.get_metadata().get("out_sharding")
        assert names is not None and len(names) == variable.get_value().ndim, path
    block = ("transformer", "blocks", 0)
    expected = {
        ("attn", "qkv_kernel"): ("embed", None, "heads", "kv"),
        ("attn", "out_kernel"): ("heads", "kv", "embed"),
        ("mlp", "fc1_kernel"): ("embed", "mlp"),
        ("mlp", "fc2_kernel"): ("mlp", "embed"),
        ("mlp", "fc1_bias"): ("mlp",),
        ("ls1", "gamma"): ("embed",),
    }
    for suffix, axes in expected.items():
        assert params[block + suffix].get_metadata()["out_sharding"] == axes


def test_clear_errors():
    with pytest.raises(ValueError, match="not divisible by the patch size 7"):
        _tiny()(jnp.ones((1, 30, 30, 1)))
    with pytest.raises(ValueError, match="unknown pool mode 'max'"):
        _tiny(pool="max")
    with pytest.raises(ValueError, match="unknown pos_embed"):
        _tiny(pos_embed="rope")
    with pytest.raises(ValueError, match=r"ResNet options \['small_image_stem', 'width_multiplier'\]"):
        get_backbone("vit_ti16", width_multiplier=1.0, small_image_stem=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"unknown ViT options \['heads'\]"):
        get_backbone("vit_ti16", heads=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        _tiny(num_heads=3)
    with pytest.raises(ValueError, match="pool='cls' needs class_token"):
        _tiny(class_token=False)


def test_layer_index_for_layerwise_lr_decay():
    model = _tiny()
    indices = {path: model.layer_index(path) for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert indices[("cls_token",)] == indices[("pos_embed",)] == indices[("patch_embed", "kernel")] == 0
    assert indices[("transformer", "blocks", 0, "attn", "qkv_kernel")] == 1
    assert indices[("transformer", "blocks", 1, "mlp", "fc2_bias")] == 2
    assert indices[("transformer", "norm", "scale")] == model.num_layers + 1 == 3
    resnet = nnx.eval_shape(lambda: get_backbone("resnet50", in_channels=3, rngs=nnx.Rngs(0)))
    rn = {path: resnet.layer_index(path) for path, _ in nnx.to_flat_state(nnx.state(resnet, nnx.Param))}
    assert rn[("stem_conv", "kernel")] == 0
    assert sorted(set(rn.values())) == [0, 1, 2, 3, 4]
    assert rn[("blocks", 2, "conv1", "kernel")] == 1 and rn[("blocks", 3, "conv1", "kernel")] == 2
    assert rn[("blocks", 15, "bn3", "scale")] == 4
    assert resnet.layer_index(("fc", "kernel")) == 5


# ==================================================================================================
# Position embeddings at other resolutions (multi-crop)
# ==================================================================================================


@pytest.mark.parametrize("pos_embed", ["learned", "sincos"])
def test_model_built_at_one_resolution_runs_at_another(pos_embed):
    # A tiny analogue of 224 -> 96 px: built at 32 px (8x8 patches of 4), run at 16 and 48.
    model = _tiny("vit_ti4_28", image_size=32, pos_embed=pos_embed)
    for size in (16, 32, 48):
        images = jax.random.normal(jax.random.key(size), (2, size, size, 1))
        features = model(images)
        assert features.shape == (2, 16) and bool(jnp.all(jnp.isfinite(features)))
    if pos_embed == "learned":
        table = model.pos_embed.get_value()[0, 1:]
        np.testing.assert_array_equal(model.patch_pos_embed((8, 8)), table)  # build grid: untouched


def test_interpolated_sincos_table_equals_the_freshly_computed_one():
    dim = 64
    table = jnp.asarray(sincos_2d((14, 14), dim))
    for new in ((6, 6), (7, 10)):  # 224 -> 96 px and a non-square crop, at patch 16
        interpolated = np.asarray(resize_pos_embed(table, (14, 14), new)).reshape(*new, dim)
        fresh = sincos_2d(new, dim, base_grid=(14, 14)).reshape(*new, dim)
        # The worst case is the highest frequency (a period of 2 pi cells): ~0.02 inside, up to
        # ~0.09 on the border, where the cubic kernel is renormalized; small on average.
        np.testing.assert_allclose(interpolated[1:-1, 1:-1], fresh[1:-1, 1:-1], atol=0.025)
        np.testing.assert_allclose(interpolated, fresh, atol=0.1)
        assert float(np.mean(np.abs(interpolated - fresh))) < 5e-3
    np.testing.assert_allclose(sincos_2d((14, 14), dim, base_grid=(14, 14)), table)


# ==================================================================================================
# Masks, drop path, remat, precision
# ==================================================================================================


def test_constrain_is_a_no_op_outside_the_trainer_and_checks_its_axes():
    x = jnp.ones((2, 3, 4))
    assert constrain(x, ("batch", None, "embed")) is x
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    with activation_sharding(sharding.activation_sharding_fn((), mesh)), pytest.raises(ValueError, match="2 axis"):
        constrain(x, ("batch", None))


def test_key_mask_makes_padding_invisible():
    encoder = Encoder(depth=2, embed_dim=16, num_heads=4, mlp_dim=32, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 5, 16))
    padded = jnp.concatenate([x, 100.0 * jnp.ones((2, 3, 16))], axis=1)
    key_mask = jnp.arange(8)[None, :].repeat(2, 0) < 5
    np.testing.assert_allclose(encoder(padded, key_mask=key_mask)[:, :5], encoder(x), rtol=1e-5, atol=1e-5)
    # A causal mask (text decoders): the first token sees only itself.
    causal = jnp.tril(jnp.ones((5, 5), bool))
    np.testing.assert_allclose(encoder(x, mask=causal)[:, 0], encoder(x[:, :1])[:, 0], rtol=1e-5, atol=1e-5)


def test_drop_path_is_random_in_training_and_off_in_eval_and_in_teachers():
    model = _tiny(drop_path=0.5, depth=4)
    images = jax.random.normal(jax.random.key(0), (8, 28, 28, 1))
    a, b = model(images), model(images)
    assert not np.allclose(a, b)  # a fresh mask per call (the stream's state advances)
    teacher = teacher_copy(model)
    np.testing.assert_array_equal(teacher(images), teacher(images))
    model.eval()
    np.testing.assert_array_equal(model(images), model(images))
    np.testing.assert_allclose(model(images), teacher(images), rtol=1e-6)


def test_remat_gives_the_same_gradients():
    images = jax.random.normal(jax.random.key(0), (4, 28, 28, 1))
    # Not the sum of squared features: after the final LayerNorm that is nearly constant, and
    # its gradient mere cancellation noise.
    weights = jax.random.normal(jax.random.key(1), (4, 16))

    def grads(remat: bool):
        model = _tiny(remat=remat, drop_path=0.5, layer_scale=0.5)  # masks must match too
        return nnx.grad(lambda m: jnp.sum(m(images) * weights))(model)

    chex.assert_trees_all_close(grads(False), grads(True), rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_float32_params_and_features():
    model = _tiny(dtype=jnp.bfloat16)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    features = model(jnp.ones((2, 28, 28, 1)))
    assert features.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(features)))
    ref = _tiny()(jnp.ones((2, 28, 28, 1)))
    np.testing.assert_allclose(features, ref, atol=0.1)


# ==================================================================================================
# Training: sharded equality, compile once, tensor parallelism, methods on MNIST
# ==================================================================================================


def _vit_config(method: str, **overrides):
    config = tiny_config(method, **overrides)
    config.model.name = "vit_ti7_28"
    config.model.kwargs = ml_collections.ConfigDict(TINY)
    return config


def _run_steps(mesh, num_steps: int, wrap_step=None):
    return run_steps(_vit_config("simclr", **SGD), mesh, num_steps, image_shape=IMAGE_SHAPE, wrap_step=wrap_step)


@functools.cache
def _single_device():
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    chex.clear_trace_counter()
    return _run_steps(mesh, 2, wrap_step=functools.partial(chex.assert_max_traces, n=1))


def test_vit_step_compiles_once_and_learns():
    exp, before, after, metrics = _single_device()
    assert exp.step_traces() == 1
    assert all(np.isfinite(m["loss"]) and m["grad_norm"] > 0 for m in metrics)
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), before, after.params)
    assert max(jax.tree.leaves(moved)) > 0


MESHES = {
    "data8": dict(data=8, fsdp=1, tensor=1),
    "data2_fsdp2_tensor2": dict(data=2, fsdp=2, tensor=2),
    "fsdp8": dict(data=1, fsdp=8, tensor=1),
}


@pytest.mark.parametrize("axes", list(MESHES.values()), ids=list(MESHES))
def test_sharded_vit_step_equals_single_device(axes):
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    _, before1, state1, metrics1 = _single_device()
    mesh = sharding.make_mesh(axes)
    exp, before8, state8, metrics8 = _run_steps(mesh, 1)
    chex.assert_trees_all_close(before1, before8)
    np.testing.assert_allclose(metrics1[0]["loss"], metrics8[0]["loss"], rtol=1e-5, atol=1e-6)
    grads1 = jax.tree.map(lambda a, b: a - b, before1, state1.params)  # SGD, lr 1: the gradient
    grads8 = jax.tree.map(lambda a, b: a - b, before8, state8.params)
    chex.assert_trees_all_close(grads1, grads8, atol=1e-4, rtol=1e-3)
    chex.assert_trees_all_close(state1.buffers, state8.buffers, atol=2e-5, rtol=1e-4)

    block = exp.state_shardings.params["method"]["encoder"]["transformer"]["blocks"][0]
    kernels = [("attn", "qkv_kernel"), ("attn", "out_kernel"), ("mlp", "fc1_kernel"), ("mlp", "fc2_kernel")]
    specs = {name: block[part][name].get_value().spec for part, name in kernels}
    fsdp = "fsdp" if axes["fsdp"] > 1 else None
    tensor = "tensor" if axes["tensor"] > 1 else None
    assert specs["qkv_kernel"] == P(fsdp, None, tensor, None)
    assert specs["out_kernel"] == P(tensor, None, fsdp)
    assert specs["fc1_kernel"] == P(fsdp, tensor)
    assert specs["fc2_kernel"] == P(tensor, fsdp)
    # The placed arrays really are split: [embed 16, 3, heads 4, kv 4] over fsdp and tensor.
    fresh = exp.init_state()
    placed = fresh.params["method"]["encoder"]["transformer"]["blocks"][0]["attn"]["qkv_kernel"]
    shard = placed.get_value().addressable_shards[0].data.shape
    assert shard == (16 // axes["fsdp"], 3, 4 // axes["tensor"], 4)
    # Activations are constrained too: batch over data x fsdp, heads and MLP units over tensor.
    batch = view_batch(exp.view_augmentations, 16, seed=0)
    text = exp.train_step.lower(fresh, sharding.host_batch_to_global(batch, mesh)).as_text()
    constraints = [line for line in text.splitlines() if "sharding_constraint" in line]
    batch_axes = '{"data"}' if axes["data"] > 1 and axes["fsdp"] == 1 else None
    assert constraints and (batch_axes is None or all(batch_axes in c for c in constraints))
    assert any('{"tensor"}' in c for c in constraints) == bool(tensor)


@pytest.mark.parametrize("method", [pytest.param("dino", marks=pytest.mark.heavy), "moco_v3"])
def test_dino_and_moco_v3_train_a_vit_on_mnist(method):
    mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
    config = _vit_config(method)
    config.model.name = "vit_ti4_28"  # 4 px patches tile DINO's 16 px local crops too
    config.model.kwargs.drop_path = 0.1
    exp = build_experiment(config, image_shape=IMAGE_SHAPE, mesh=mesh)
    state = exp.init_state()
    for step in range(2):
        batch = view_batch(exp.view_augmentations, config.global_batch_size, seed=step)
        state, metrics = exp.train_step(state, sharding.host_batch_to_global(batch, mesh))
        assert np.isfinite(float(metrics["loss"]))
    assert exp.step_traces() == 1  # DINO's 28 and 16 px crops: two resolutions, one compile


def test_drop_path_state_survives_a_checkpoint_and_the_resumed_step_is_identical(tmp_path):
    """The drop-path random stream lives in the train state: saved, restored, same next step."""
    import orbax.checkpoint as ocp

    mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
    config = _vit_config("simclr")
    config.model.kwargs.drop_path = 0.5
    exp = build_experiment(config, image_shape=IMAGE_SHAPE, mesh=mesh)
    batches = [
        sharding.host_batch_to_global(view_batch(exp.view_augmentations, config.global_batch_size, seed=s), mesh)
        for s in range(2)
    ]
    state, _ = exp.train_step(exp.init_state(), batches[0])
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "state", state)
    checkpointer.wait_until_finished()
    restored = checkpointer.restore(tmp_path / "state", exp.abstract_state)
    chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(state))
    _, expected = exp.train_step(state, batches[1])
    _, resumed = exp.train_step(restored, batches[1])
    assert float(resumed["loss"]) == float(expected["loss"])


def test_frozen_patch_embedding_is_not_trained_and_is_shared_by_the_teacher():
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    config = _vit_config("moco_v3")
    config.model.kwargs.frozen_patch_embed = True
    config.model.kwargs.pos_embed = "sincos"
    exp = build_experiment(config, image_shape=IMAGE_SHAPE, mesh=mesh)
    state = exp.init_state()
    assert "patch_embed" not in state.params["method"]["encoder"]
    assert "pos_embed" not in state.params["method"]["encoder"]  # sin-cos: no parameter
    before = jax.device_get(state.buffers["method"]["encoder"]["patch_embed"])
    batch = view_batch(exp.view_augmentations, config.global_batch_size, seed=0)
    state, metrics = exp.train_step(state, sharding.host_batch_to_global(batch, mesh))
    assert np.isfinite(float(metrics["loss"]))
    chex.assert_trees_all_equal(jax.device_get(state.buffers["method"]["encoder"]["patch_embed"]), before)
    teacher = jax.device_get(state.buffers["method"]["momentum_encoder"]["patch_embed"])
    chex.assert_trees_all_equal(teacher, before)


def test_heads_not_divisible_by_the_tensor_axis_fall_back_to_replication():
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    from jssl import config as common

    mesh = sharding.make_mesh(dict(data=1, fsdp=2, tensor=4))
    model = nnx.eval_shape(lambda: get_backbone("vit_ti16", in_channels=3, rngs=nnx.Rngs(0)))  # 3 heads
    shardings = sharding.state_shardings(nnx.state(model, nnx.Param), common.base_config().sharding_rules, mesh)
    attn = shardings["transformer"]["blocks"][0]["attn"]
    assert attn["qkv_kernel"].get_value().spec == P("fsdp", None, None, None)  # 3 heads: replicated
    assert shardings["transformer"]["blocks"][0]["mlp"]["fc1_kernel"].get_value().spec == P("fsdp", "tensor")


def test_evaluation_features_are_deterministic_with_drop_path():
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    config = _vit_config("simclr")
    config.model.kwargs.drop_path = 0.5
    exp = build_experiment(config, image_shape=IMAGE_SHAPE, mesh=mesh)
    state = exp.init_state()
    images = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1), dtype=np.uint8)
    # batch_statistics=True is the random-init baseline's mode: BatchNorm from the batch, yet
    # still no dropped paths.
    outputs = [exp.represent(state.params, state.buffers, {"image": images}, mode)[0] for mode in (False, True, True)]
    for other in outputs[1:]:
        np.testing.assert_array_equal(other, outputs[0])
