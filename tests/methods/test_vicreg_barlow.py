"""VICReg and Barlow Twins: the loss a method computes is the paper's, over each view's batch.

Each method's loss is checked against an independent numpy transcription of the paper's
equations applied to the method's own per-view embeddings, with non-default coefficients so
that the config really reaches the loss. Generic step tests (sharded step, single trace,
resume, ImageNet configs) live with the trainer tests.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jssl import methods, sharding
from tests.train.helpers import load_config

SIZE, BATCH = 16, 16


def tiny(name: str, **method_overrides):
    config = load_config("smoke", name=f"{name}_mnist")
    config.model.name = "resnet_mini"
    config.model.kwargs.width_multiplier = 0.25
    config.method.projection_hidden_dim = 32
    config.method.projection_dim = 16
    config.global_batch_size = BATCH
    for key, value in method_overrides.items():
        config.method[key] = value
    return config


def build(config):
    return methods.build_method(config, in_channels=1, dtype=jnp.float32, rngs=nnx.Rngs(0))


def views(seed: int = 0, batch: int = BATCH):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.normal(size=(batch, SIZE, SIZE, 1)), jnp.float32) for _ in range(2)]


def head(method):
    return method.expander if isinstance(method, methods.VICReg) else method.projector


def embeddings(method, vs):
    """Each view through encoder and head on its own (train-mode BN: batch statistics)."""
    return [np.asarray(head(method)(method.encoder(v)), np.float64) for v in vs]


# --- the papers' equations, in numpy ------------------------------------------------------------


def off_diagonal(m):
    return m[~np.eye(len(m), dtype=bool)]


def vicreg_numpy(z1, z2, lam, mu, nu):
    """VICReg, Bardes et al. 2022, Eq. (1)-(6), scaled as the reference code (the 25/25/1 it tunes).

    The variance terms of the two views are averaged (main_vicreg.py's `/ 2`), the covariance
    terms summed; variances and covariances are unbiased, per view, over the batch.
    """
    n, d = z1.shape
    invariance = np.mean((z1 - z2) ** 2)

    def var_cov(z):
        zc = z - z.mean(0)
        cov = zc.T @ zc / (n - 1)
        std = np.sqrt(z.var(0, ddof=1) + 1e-4)
        return np.mean(np.maximum(0.0, 1.0 - std)), np.sum(off_diagonal(cov) ** 2) / d

    (v1, c1), (v2, c2) = var_cov(z1), var_cov(z2)
    variance, covariance = (v1 + v2) / 2, c1 + c2
    terms = dict(invariance=invariance, variance=variance, covariance=covariance)
    return lam * invariance + mu * variance + nu * covariance, terms


def barlow_numpy(z1, z2, lam):
    """Barlow Twins, Zbontar et al. 2021, Eq. (1)-(2): C_ij over the batch-normalized embeddings."""
    n = len(z1)
    a = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + 1e-5)
    b = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + 1e-5)
    c = a.T @ b / n
    on, off = np.sum((1 - np.diag(c)) ** 2), np.sum(off_diagonal(c) ** 2)
    return on + lam * off, dict(on_diagonal=on, off_diagonal=off)


CASES = {
    # Non-default coefficients: a method that ignored its config would fail.
    "vicreg": (
        dict(invariance_weight=10.0, variance_weight=20.0, covariance_weight=3.0),
        lambda z1, z2: vicreg_numpy(z1, z2, 10.0, 20.0, 3.0),
    ),
    "barlow_twins": (dict(lambda_=0.02), lambda z1, z2: barlow_numpy(z1, z2, 0.02)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_is_the_papers_on_each_views_embeddings(name):
    overrides, reference = CASES[name]
    method = build(tiny(name, **overrides))
    vs = views()
    out = method(vs, step=jnp.zeros((), jnp.int32))
    expected, terms = reference(*embeddings(method, vs))
    np.testing.assert_allclose(float(out.loss), expected, rtol=2e-5)
    for key, value in terms.items():
        np.testing.assert_allclose(float(out.metrics[key]), value, rtol=2e-5, atol=1e-7)
    assert {"embedding_std", "embedding_spread"} <= set(out.metrics)
    assert out.features.shape == (BATCH, method.feature_dim)
    np.testing.assert_allclose(out.features, method.encoder(vs[0]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_statistics_are_over_the_batch_of_each_view(name):
    method = build(tiny(name))
    v1, v2 = views()
    step = jnp.zeros((), jnp.int32)
    loss = float(method([v1, v2], step=step).loss)
    perm = np.random.default_rng(1).permutation(BATCH)
    # The same permutation of both views: the same pairs, the same batch statistics.
    np.testing.assert_allclose(float(method([v1[perm], v2[perm]], step=step).loss), loss, rtol=1e-5)
    # Permuting one view breaks the pairs: the loss must notice.
    assert abs(float(method([v1, v2[perm]], step=step).loss) - loss) > 1e-3 * abs(loss)


@pytest.mark.parametrize("name", sorted(CASES))
def test_sharded_loss_terms_equal_single_device(name):
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    method = build(tiny(name))
    graphdef, state = nnx.split(method)

    @jax.jit
    def loss_terms(state, v1, v2):
        out = nnx.merge(graphdef, state)([v1, v2], step=jnp.zeros((), jnp.int32))
        return out.loss, out.metrics

    vs = views()
    results = []
    for mesh in (
        sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1]),
        sharding.make_mesh(dict(data=8, fsdp=1, tensor=1)),
    ):
        placed = [jax.device_put(v, sharding.batch_sharding(mesh)) for v in vs]
        assert len(placed[0].sharding.device_set) == mesh.size
        results.append(jax.device_get(loss_terms(jax.device_put(state, sharding.replicated(mesh)), *placed)))
    (loss1, metrics1), (loss8, metrics8) = results
    np.testing.assert_allclose(loss8, loss1, rtol=1e-5)
    for key in metrics1:
        np.testing.assert_allclose(metrics8[key], metrics1[key], rtol=1e-4, atol=1e-6, err_msg=key)


BAD = [
    ("vicreg", "invariance_weight", 0.0),
    ("vicreg", "variance_weight", -25.0),
    ("vicreg", "covariance_weight", 0.0),
    ("vicreg", "projection_dim", 0),
    ("vicreg", "projection_layers", 0),
    ("barlow_twins", "lambda_", 0.0),
    ("barlow_twins", "lambda_", -5e-3),
    ("barlow_twins", "projection_hidden_dim", -1),
]


@pytest.mark.parametrize("name,field,value", BAD)
def test_bad_options_are_one_line_errors_naming_the_field(name, field, value):
    with pytest.raises(ValueError, match=f"method.{field}") as info:
        build(tiny(name, **{field: value}))
    assert "\n" not in str(info.value)
    assert "--config.method." in str(info.value)


def test_registered_and_projector_does_not_normalize_twice():
    assert methods.get_method_class("vicreg") is methods.VICReg
    assert methods.get_method_class("barlow_twins") is methods.BarlowTwins
    # losses.barlow_twins standardizes each dimension itself (the paper's affine-free BN).
    method = build(tiny("barlow_twins"))
    assert not method.projector.last_batch_norm
    assert len(method.projector.layers) == 3  # the paper's 3 linear layers
    assert len(build(tiny("vicreg")).expander.layers) == 3
