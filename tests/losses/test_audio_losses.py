"""wav2vec 2.0's diversity term over the masked steps, and CPC with a padding mask.

The generic cases (`cases.py`) already compare `losses.wav2vec2` with the numpy reference and
sharded with single-device; these pin what changed: which steps the codebook average covers,
and CPC's padding mask.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jssl import losses
from tests.losses import reference
from tests.losses.helpers import P, check_sharded_matches_single


def _perplexity(avg):
    return float(np.sum(np.exp(-np.sum(avg * np.log(avg + 1e-7), axis=-1))))


def _w2v_inputs(seed=0, b=8, t=10, d=6, g=2, v=5):
    rng = np.random.default_rng(seed)
    ctx = jnp.asarray(rng.normal(size=(b, t, d)), jnp.float32)
    q = jnp.asarray(rng.normal(size=(b, t, d)), jnp.float32)
    mask = rng.random((b, t)) < 0.4
    mask[:, :2] = True
    # Codeword use differs between masked and unmasked steps, so the two averages differ.
    logits = rng.normal(size=(b, t, g, v)) + 4.0 * mask[..., None, None] * (np.arange(v) == 0)
    probs = jax.nn.softmax(jnp.asarray(logits, jnp.float32), -1)
    return ctx, q, jnp.asarray(mask), probs


def test_diversity_averages_over_masked_steps_only():
    ctx, q, mask, probs = _w2v_inputs()
    _, metrics = losses.wav2vec2(ctx, q, mask, rng=jax.random.key(0), codebook_probs=probs, num_negatives=4)
    p, m = np.asarray(probs, np.float64), np.asarray(mask)
    masked, every = _perplexity(p[m].mean(0)), _perplexity(p.reshape(-1, *p.shape[2:]).mean(0))
    assert abs(masked - every) > 0.3  # the test data tell the two apart
    np.testing.assert_allclose(float(metrics["codebook_perplexity"]), masked, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["codebook_perplexity_all_steps"]), every, rtol=1e-5)
    g, v = p.shape[2:]
    np.testing.assert_allclose(float(metrics["diversity"]), (g * v - masked) / (g * v), rtol=1e-5)


def test_diversity_sharded_equals_single_device(mesh):
    ctx, q, mask, probs = _w2v_inputs(seed=1)

    def make(axis):
        def f(c, qq, m, p):
            return losses.wav2vec2(c, qq, m, rng=jax.random.key(3), codebook_probs=p, num_negatives=4, axis_name=axis)

        return f

    got, _ = check_sharded_matches_single(mesh, make, (ctx, q, mask, probs), [P("data")] * 4, (0, 1, 3))
    assert "codebook_perplexity_all_steps" in got[1]


def _cpc_inputs(seed=0, b=8, t=7):
    rng = np.random.default_rng(seed)
    c = jnp.asarray(rng.normal(size=(b, t, 5)), jnp.float32)
    z = jnp.asarray(rng.normal(size=(b, t, 4)), jnp.float32)
    w = jnp.asarray(0.5 * rng.normal(size=(3, 5, 4)), jnp.float32)
    lengths = np.array([7, 7, 5, 6, 4, 7, 5, 6])
    return c, z, w, jnp.asarray(np.arange(t)[None] < lengths[:, None])


def test_cpc_mask_matches_reference_and_ignores_padding():
    c, z, w, mask = _cpc_inputs()
    loss, _ = losses.cpc(c, z, w, mask=mask)
    np.testing.assert_allclose(float(loss), reference.cpc(c, z, w, mask=np.asarray(mask)), rtol=1e-5)
    # Whatever sits in the padding changes nothing.
    noise = jnp.where(mask[..., None], 0.0, 100.0)
    loss2, _ = losses.cpc(c + noise[..., :1], z + noise[..., :1], w, mask=mask)
    np.testing.assert_allclose(float(loss2), float(loss), rtol=1e-5)
    full, _ = losses.cpc(c, z, w, mask=jnp.ones_like(mask))
    np.testing.assert_allclose(float(full), float(losses.cpc(c, z, w)[0]), rtol=1e-6)


def test_cpc_mask_sharded_equals_single_device(mesh):
    c, z, w, mask = _cpc_inputs(seed=2)

    def make(axis):
        return lambda cc, zz, ww, m: losses.cpc(cc, zz, ww, mask=m, axis_name=axis)

    check_sharded_matches_single(mesh, make, (c, z, w, mask), [P("data"), P("data"), P(), P("data")], (0, 1, 2))


def test_cpc_mask_shape_error():
    c, z, w, mask = _cpc_inputs()
    with pytest.raises(ValueError, match="mask"):
        losses.cpc(c, z, w, mask=mask[:, :3])
