"""BYOL and SimSiam specifics: loss values, the momentum schedule, the EMA target, stop-gradients, validation.

Generic cross-method properties (sharded == single device, single trace, resume, teacher not
in the optimizer state, ImageNet configs) live in the cross-method tests.
"""

from __future__ import annotations

import importlib.util
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jssl import data, losses, sharding
from jssl.methods import BYOL, SimSiam, build_method, common
from jssl.train import build_experiment
from tests.train.helpers import REPO, random_batch, tiny_config

BATCH = 16


def _config(name: str, **overrides):
    base = dict(
        **{
            "method.name": name,
            "model.kwargs.width_multiplier": 0.25,
            "global_batch_size": BATCH,
            "total_steps": 10,
        }
    )
    config = tiny_config(**base)
    hp = config.method
    if name == "byol":
        hp.momentum_base, hp.momentum_final, hp.predictor_hidden_dim = 0.9, 1.0, 24
    else:
        hp.projection_layers, hp.predictor_hidden_dim = 3, 8
    for key, value in overrides.items():
        target = config
        *path, last = key.split(".")
        for p in path:
            target = target[p]
        target[last] = value
    return config


def _method(config, seed: int = 0):
    return build_method(config, in_channels=1, dtype=jnp.float32, rngs=nnx.Rngs(seed))


def _views(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.normal(size=(BATCH, 16, 16, 1)), jnp.float32) for _ in range(2)]


def _np_normalize(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ==================================================================================================
# BYOL
# ==================================================================================================


def test_byol_loss_matches_numpy():
    method = _method(_config("byol"))
    # Make the target differ from the online network, so a swapped or unsymmetrized loss shows.
    for t in jax.tree.leaves(nnx.state(method.target_projector, common.Teacher), is_leaf=lambda x: isinstance(x, nnx.Variable)):
        t.set_value(t.get_value() + 0.3 * jnp.sin(jnp.arange(t.get_value().size, dtype=jnp.float32)).reshape(t.get_value().shape))
    views = _views()
    reference = nnx.clone(method)
    out = method(views, step=jnp.int32(0))

    # Independent pieces: online predictions and target projections (train-mode BN on each view).
    q = [np.asarray(reference.predictor(reference.projector(reference.encoder(v)))) for v in views]
    z = [np.asarray(reference.target_projector(reference.target_encoder(v))) for v in views]
    # Paper Eq. 2: || q/|q| - z'/|z'| ||^2, batch mean, summed over the two view orders.
    expected = sum(
        np.mean(np.sum((_np_normalize(q[a]) - _np_normalize(z[b])) ** 2, axis=-1)) for a, b in ((0, 1), (1, 0))
    )
    np.testing.assert_allclose(float(out.loss), expected, rtol=1e-5)
    cos = np.mean([np.mean(np.sum(_np_normalize(q[a]) * _np_normalize(z[b]), -1)) for a, b in ((0, 1), (1, 0))])
    np.testing.assert_allclose(float(out.metrics["cosine_similarity"]), cos, rtol=1e-5)
    assert out.features.shape == (BATCH, method.feature_dim)
    for key in ("embedding_std", "embedding_spread", "momentum"):
        assert key in out.metrics


def test_byol_momentum_follows_cosine_schedule():
    total, base = 10, 0.9
    method = _method(_config("byol", **{"total_steps": total, "method.momentum_base": base}))

    def formula(k):
        return 1 - (1 - base) * (math.cos(math.pi * k / total) + 1) / 2

    for k, expected in ((0, base), (total // 2, (1 + base) / 2), (total, 1.0)):
        assert formula(k) == pytest.approx(expected)
        np.testing.assert_allclose(float(method.momentum(jnp.int32(k))), expected, rtol=1e-6)
    np.testing.assert_allclose(float(method.momentum(jnp.int32(3))), formula(3), rtol=1e-6)


def _variables(module, kind):
    return [np.asarray(v.get_value()) for v in jax.tree.leaves(nnx.state(module, kind), is_leaf=lambda x: isinstance(x, nnx.Variable))]


def test_byol_target_is_exact_ema_after_one_step():
    config = _config("byol", **{"optimizer.warmup_steps": 0})  # a non-zero first learning rate
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    exp = build_experiment(config, image_shape=(16, 16, 1), mesh=mesh)
    state = exp.init_state()
    old = nnx.merge(exp.graphdef, jax.device_get(state.params), jax.device_get(state.buffers)).method
    old_target = _variables(old.target_encoder, common.Teacher) + _variables(old.target_projector, common.Teacher)
    old_online = _variables(old.encoder, nnx.Param) + _variables(old.projector, nnx.Param)
    for t, s in zip(old_target, old_online):
        np.testing.assert_array_equal(t, s)  # the target starts as a copy of the online network

    state, metrics = exp.train_step(state, sharding.host_batch_to_global(random_batch(BATCH), mesh))
    new = nnx.merge(exp.graphdef, jax.device_get(state.params), jax.device_get(state.buffers)).method
    new_target = _variables(new.target_encoder, common.Teacher) + _variables(new.target_projector, common.Teacher)
    new_online = _variables(new.encoder, nnx.Param) + _variables(new.projector, nnx.Param)

    tau = np.float32(config.method.momentum_base)  # tau at step 0
    np.testing.assert_allclose(float(metrics["method/momentum"]), tau, rtol=1e-7)
    moved = 0
    for t_old, s_new, t_new, s_old in zip(old_target, new_online, new_target, old_online):
        expected = tau * t_old + (np.float32(1) - tau) * s_new
        np.testing.assert_allclose(t_new, expected, rtol=1e-6, atol=1e-7)
        moved += int(not np.array_equal(s_new, s_old))
    assert moved > len(new_online) // 2  # the online network did change, so the check is not vacuous


def test_byol_target_gets_no_gradient():
    method = _method(_config("byol"))
    views = _views()
    params = nnx.state(method, nnx.Param)
    assert not any("target" in str(path) for path, _ in nnx.to_flat_state(params))
    graphdef, teacher, rest = nnx.split(method, common.Teacher, ...)
    assert len(jax.tree.leaves(teacher)) > 0

    def loss_of_teacher(teacher_state):
        model = nnx.merge(graphdef, teacher_state, rest, copy=True)
        return model(views, step=jnp.int32(0)).loss

    grads = jax.jit(jax.grad(loss_of_teacher))(teacher)
    for g in jax.tree.leaves(grads):
        np.testing.assert_array_equal(np.asarray(g), 0.0)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("method.momentum_base", 1.5, "method.momentum_base must be in \\[0, 1\\]"),
        ("method.momentum_base", -0.1, "method.momentum_base must be in \\[0, 1\\]"),
        ("method.momentum_final", 2.0, "method.momentum_final must be in \\[0, 1\\]"),
        ("method.momentum_final", 0.5, "method.momentum_final .* must be >= method.momentum_base"),
        ("method.projection_dim", 0, "method.projection_dim must be positive"),
        ("method.predictor_hidden_dim", -4, "method.predictor_hidden_dim must be positive"),
    ],
)
def test_byol_bad_options_are_one_line_errors(field, value, match):
    with pytest.raises(ValueError, match=match) as info:
        _method(_config("byol", **{field: value}))
    assert "\n" not in str(info.value)


# ==================================================================================================
# SimSiam
# ==================================================================================================


def _simsiam_loss_by_hand(model, views, *, stop_gradient: bool):
    z = [model.projector(model.encoder(v)) for v in views]
    p = [model.predictor(zi) for zi in z]
    sg = jax.lax.stop_gradient if stop_gradient else (lambda x: x)

    def d(a, b):
        a = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
        b = b / jnp.linalg.norm(b, axis=-1, keepdims=True)
        return -jnp.mean(jnp.sum(a * b, -1))

    return 0.5 * (d(p[0], sg(z[1])) + d(p[1], sg(z[0])))


def test_simsiam_gradient_flows_only_through_the_predictor_branch():
    method = _method(_config("simsiam"))
    views = _views(1)
    graphdef, params, rest = nnx.split(method, nnx.Param, ...)

    def grad_of(fn):
        def loss(p):
            return fn(nnx.merge(graphdef, p, rest, copy=True))

        return jax.jit(jax.grad(loss))(params)  # one compile, not op-by-op dispatch

    got = grad_of(lambda m: m(views, step=jnp.int32(0)).loss)
    with_sg = grad_of(lambda m: _simsiam_loss_by_hand(m, views, stop_gradient=True))
    without_sg = grad_of(lambda m: _simsiam_loss_by_hand(m, views, stop_gradient=False))
    flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])  # noqa: E731
    np.testing.assert_allclose(flat(got), flat(with_sg), rtol=1e-4, atol=1e-6)
    # Without the stop-gradient the gradient is different: the check can tell the two apart.
    assert np.max(np.abs(flat(got) - flat(without_sg))) > 1e-3 * np.max(np.abs(flat(got)))



def test_simsiam_loss_reaches_z_only_through_the_predictor():
    # d loss / d z equals the gradient that reaches z through p = h(z) alone (the predictor's
    # vector-Jacobian product of d loss / d p with z held constant): nothing via the target z.
    method = _method(_config("simsiam"))
    views = _views(3)
    z = [method.projector(method.encoder(v)) for v in views]
    graphdef, state = nnx.split(method)

    def loss_of_z(z0, z1):
        return nnx.merge(graphdef, state, copy=True).loss_from_projections([z0, z1])[0]

    dz = jax.grad(loss_of_z, argnums=(0, 1))(z[0], z[1])

    def predict(z0, z1):
        return tuple(nnx.merge(graphdef, state, copy=True).loss_from_projections([z0, z1])[1])

    p, vjp = jax.vjp(predict, z[0], z[1])

    def loss_of_p(p0, p1):
        return 0.5 * (losses.negative_cosine(p0, z[1])[0] + losses.negative_cosine(p1, z[0])[0])

    dp = jax.grad(loss_of_p, argnums=(0, 1))(*p)
    through_p = vjp(dp)
    for a, b in zip(dz, through_p):
        assert float(jnp.max(jnp.abs(b))) > 0
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-8)

    # Without the stop-gradient the z branch would add a non-zero term.
    def loss_without_sg(z0, z1):
        pp = predict(z0, z1)
        return 0.5 * (
            losses.negative_cosine(pp[0], z1, stop_gradient=False)[0]
            + losses.negative_cosine(pp[1], z0, stop_gradient=False)[0]
        )

    dz_no_sg = jax.grad(loss_without_sg, argnums=(0, 1))(z[0], z[1])
    assert float(jnp.max(jnp.abs(dz_no_sg[0] - dz[0]))) > 1e-3 * float(jnp.max(jnp.abs(dz[0])))


def test_simsiam_loss_range_and_metrics():
    method = _method(_config("simsiam"))
    out = method(_views(2), step=jnp.int32(0))
    assert -1.0 <= float(out.loss) <= 1.0
    np.testing.assert_allclose(float(out.metrics["cosine_similarity"]), -float(out.loss), rtol=1e-6)
    assert float(out.metrics["embedding_spread"]) > 0.3  # healthy (not collapsed) at init
    assert out.features.shape == (BATCH, method.feature_dim)
    assert not any(isinstance(v, common.Teacher) for v in jax.tree.leaves(nnx.state(method), is_leaf=lambda x: isinstance(x, nnx.Variable)))


@pytest.mark.parametrize(
    "field,value", [("method.projection_dim", 0), ("method.projection_layers", 0), ("method.predictor_hidden_dim", -1)]
)
def test_simsiam_bad_widths_are_one_line_errors(field, value):
    with pytest.raises(ValueError, match=f"{field} must be positive") as info:
        _method(_config("simsiam", **{field: value}))
    assert "\n" not in str(info.value)


# ==================================================================================================
# Configs
# ==================================================================================================


def _load(name, variant=None):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


@pytest.mark.parametrize("name", ["byol_mnist", "simsiam_mnist", "byol_imagenet", "simsiam_imagenet"])
def test_configs_load_and_views_parse(name):
    config = _load(name)
    cls = {"byol": BYOL, "simsiam": SimSiam}[config.method.name]
    specs = data.view_specs(config.data.augment, config.data.crops, cls.num_views(config), method=config.method.name)
    assert len(specs) == 2
    for spec in specs:
        data.parse_augment(spec)
    smoke = _load(name, "smoke")
    assert smoke.total_steps < config.total_steps
