"""Per-family behaviour: each loss does what its math says, helpers are right, and bad
inputs raise clear ValueErrors. (Reference, jit, bf16, grad and sharding checks for every
loss live in test_common.py.)"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jssl import losses
from tests.losses import cases
from tests.losses import helpers
from tests.losses import reference

P = helpers.P
_normal = cases._normal


# -- contrastive ---------------------------------------------------------------------


def test_info_nce_scale_invariant_and_queue_changes_loss():
    q, k = cases._pair()
    base, _ = losses.info_nce(q, k)
    scaled, _ = losses.info_nce(2.0 * q, 0.3 * k)
    np.testing.assert_allclose(float(scaled), float(base), rtol=1e-5)
    with_queue, _ = losses.info_nce(q, k, negatives=_normal(5, 30, 8))
    assert float(with_queue) != float(base)


def test_update_queue_fifo_wraps():
    queue = jnp.zeros((5, 2))
    keys = jnp.arange(6.0).reshape(3, 2)
    q1, p1 = losses.update_queue(queue, keys, jnp.int32(0))
    q2, p2 = losses.update_queue(q1, keys + 10, p1)
    assert int(p1) == 3 and int(p2) == 1
    np.testing.assert_array_equal(q2[:, 0], [14.0, 2.0, 4.0, 10.0, 12.0])


def test_update_queue_sharded_matches_single(mesh):
    queue, keys = _normal(1, 24, 4), _normal(2, 16, 4)
    f = lambda ax: lambda q, k, p: losses.update_queue(q, k, p, axis_name=ax)
    ref = f(None)(queue, keys, jnp.int32(20))
    got = jax.jit(helpers.shard_map(f("data"), mesh, in_specs=(P(), P("data"), P()), out_specs=(P(), P())))(
        queue, keys, jnp.int32(20)
    )
    chex.assert_trees_all_close(got, ref)


# -- distillation --------------------------------------------------------------------


def test_negative_cosine_stops_gradient_on_target():
    p, z = cases._pair()
    gp, gz = jax.grad(lambda a, b: losses.negative_cosine(a, b)[0], argnums=(0, 1))(p, z)
    assert float(jnp.abs(gz).sum()) == 0.0 and float(jnp.abs(gp).sum()) > 0
    np.testing.assert_allclose(float(losses.negative_cosine(p, 3 * p)[0]), -1.0, rtol=1e-6)


def test_dino_skips_same_view_pairs():
    s, t = _normal(1, 2, 4, 6), _normal(2, 1, 4, 6)
    g = jax.grad(lambda x: losses.dino(x, t, center=jnp.zeros(6))[0])(s)
    assert float(jnp.abs(g[0]).sum()) == 0.0 and float(jnp.abs(g[1]).sum()) > 0


def test_update_center_formula_and_sharded(mesh):
    c, t = _normal(1, 10), _normal(2, 2, 16, 10)
    new = losses.update_center(c, t, momentum=0.9)
    np.testing.assert_allclose(new, 0.9 * np.asarray(c) + 0.1 * np.asarray(t).mean((0, 1)), rtol=1e-5, atol=1e-6)
    sharded = helpers.shard_map(
        lambda a, b: losses.update_center(a, b, axis_name="data"), mesh, in_specs=(P(), P(None, "data")), out_specs=P()
    )
    chex.assert_trees_all_close(jax.jit(sharded)(c, t), new, rtol=1e-5, atol=1e-6)


# -- redundancy ----------------------------------------------------------------------


def test_vicreg_invariance_zero_for_identical_views():
    z = _normal(1, 16, 8)
    _, m = losses.vicreg(z, z)
    assert float(m["invariance"]) == 0.0


def test_barlow_twins_zero_for_decorrelated_identical_views():
    h = np.array([[1.0]])
    for _ in range(3):
        h = np.block([[h, h], [h, -h]])
    z = jnp.asarray(h[:, 1:5], jnp.float32)  # zero-mean, unit-variance, orthogonal columns
    loss, m = losses.barlow_twins(z, z)
    assert float(loss) < 1e-8
    np.testing.assert_allclose(float(m["mean_diagonal_correlation"]), 1.0, rtol=1e-4)


# -- clustering ----------------------------------------------------------------------


def test_sinkhorn_marginals_uniform_and_matches_reference():
    s = jnp.tanh(_normal(1, 16, 4))
    q = losses.sinkhorn_knopp(s, num_iters=200)
    np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(q.sum(0), 16 / 4, rtol=1e-4)
    np.testing.assert_allclose(losses.sinkhorn_knopp(s), reference.sinkhorn_knopp(s), rtol=1e-5, atol=1e-6)


def test_sinkhorn_sharded_matches_single_and_is_stable(mesh):
    s = jnp.tanh(_normal(1, 16, 4))
    ref = losses.sinkhorn_knopp(s, epsilon=0.005)  # exp(+-200) over/underflows float32
    assert np.all(np.isfinite(ref))
    f = helpers.shard_map(
        lambda x: losses.sinkhorn_knopp(x, epsilon=0.005, axis_name="data"),
        mesh,
        in_specs=P("data"),
        out_specs=P("data"),
    )
    chex.assert_trees_all_close(jax.jit(f)(s), ref, rtol=1e-5, atol=1e-6)


# -- reconstruction ------------------------------------------------------------------


def test_patchify_matches_loop_and_roundtrips():
    imgs = np.asarray(_normal(1, 2, 8, 12, 3))
    p = losses.patchify(jnp.asarray(imgs), 4)
    np.testing.assert_array_equal(p, reference.patchify(imgs, 4))
    np.testing.assert_array_equal(losses.unpatchify(p, 4, 8, 12), imgs)


def test_mae_ignores_visible_patches():
    pred, target, mask = cases._mae_build()
    other = jnp.where(mask[..., None], pred, pred + 100.0)
    np.testing.assert_allclose(losses.mae(other, target, mask)[0], losses.mae(pred, target, mask)[0], rtol=1e-6)


# -- language ------------------------------------------------------------------------


def test_next_token_mask_none_equals_all_ones_and_shift():
    logits, tokens, _ = cases._tokens_build()
    a, _ = losses.next_token(logits, tokens)
    b, _ = losses.next_token(logits, tokens, mask=jnp.ones(tokens.shape, bool))
    np.testing.assert_allclose(a, b, rtol=1e-6)
    perfect = 50.0 * jax.nn.one_hot(jnp.roll(tokens, -1, axis=1), 11)
    loss, m = losses.next_token(perfect, tokens)
    assert float(loss) < 1e-6 and float(m["accuracy"]) == 1.0


# -- audio ---------------------------------------------------------------------------


def test_distractors_are_other_masked_steps_of_same_utterance():
    _, _, mask, _ = cases._w2v_build()
    idx = np.asarray(losses.sample_distractors(mask, rng=jax.random.key(0), num_negatives=9))
    m = np.asarray(mask)
    for b in range(m.shape[0]):
        for t in np.flatnonzero(m[b]):
            assert m[b, idx[b, t]].all() and (idx[b, t] != t).all()


def test_gumbel_quantizer_hard_forward_straight_through_backward():
    logits, books = _normal(1, 3, 2, 5), _normal(2, 2, 5, 4)
    q, probs = losses.gumbel_product_quantizer(logits, books, rng=jax.random.key(0))
    assert q.shape == (3, 8) and probs.shape == (3, 2, 5)
    entries = np.asarray(books)
    for i in range(3):
        for g in range(2):
            assert any(np.allclose(q[i, 4 * g : 4 * g + 4], e, atol=1e-6) for e in entries[g])
    g = jax.grad(lambda l: losses.gumbel_product_quantizer(l, books, rng=jax.random.key(0))[0].sum())(logits)
    assert float(jnp.abs(g).sum()) > 0


# -- generative ----------------------------------------------------------------------


def test_vae_kl_zero_at_prior_and_beta_scales_kl():
    recon, x, mean, log_var = cases._vae_build(True)
    _, m = losses.vae_elbo(recon, x, jnp.zeros_like(mean), jnp.zeros_like(log_var))
    assert abs(float(m["kl"])) < 1e-7
    l1, m1 = losses.vae_elbo(recon, x, mean, log_var)
    l4, _ = losses.vae_elbo(recon, x, mean, log_var, beta=4.0)
    np.testing.assert_allclose(l4 - l1, 3 * m1["kl"], rtol=1e-5)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_ddpm_exact_prediction_gives_zero_loss(prediction):
    ab = losses.alphas_cumprod(losses.cosine_beta_schedule(100))
    x0 = _normal(1, 4, 6)
    xt, t, eps = losses.ddpm_corrupt(x0, rng=jax.random.key(0), alphas_cumprod=ab)
    a = jnp.asarray(ab, jnp.float32)[t][:, None]
    np.testing.assert_allclose(xt, jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * eps, rtol=1e-5, atol=1e-6)
    target = eps if prediction == "epsilon" else jnp.sqrt(a) * eps - jnp.sqrt(1 - a) * x0
    loss, m = losses.ddpm(target, x0, eps, t, alphas_cumprod=ab, prediction=prediction)
    assert float(loss) == 0.0 and float(m["x0_mse"]) < 1e-6


def test_schedules():
    for betas in (losses.linear_beta_schedule(), losses.cosine_beta_schedule()):
        ab = losses.alphas_cumprod(betas)
        assert betas.shape == (1000,) and np.all(np.diff(ab) < 0) and 0 < ab[-1] < ab[0] < 1


# -- input validation ----------------------------------------------------------------

_z = jnp.ones((4, 3))
_BAD = [
    (lambda: losses.info_nce(_z, jnp.ones((4, 2))), "same shape"),
    (lambda: losses.info_nce(_z, _z, negatives=jnp.ones((5, 2))), "embedding dim"),
    (lambda: losses.update_queue(jnp.ones((2, 3)), _z, jnp.int32(0)), "larger than"),
    (lambda: losses.negative_cosine(_z, _z.astype(jnp.int32)), "floating"),
    (lambda: losses.dino(jnp.ones((4, 2, 5)), jnp.ones((2, 2, 6)), center=jnp.zeros(5)), "teacher_logits"),
    (lambda: losses.dino(jnp.ones((1, 2, 5)), jnp.ones((2, 2, 5)), center=jnp.zeros(5)), "student"),
    (
        lambda: losses.dino(jnp.ones((4, 2, 5)), jnp.ones((2, 2, 5)), center=jnp.zeros(5), teacher_temperature=-1.0),
        "teacher_temperature",
    ),
    (
        lambda: losses.dino(jnp.ones((4, 2, 5)), jnp.ones((2, 2, 5)), center=jnp.zeros(5), centering="mean"),
        "centering",
    ),
    (lambda: losses.update_center(jnp.zeros(5), jnp.ones((2, 3, 5)), momentum=2.0), "momentum"),
    (lambda: losses.vicreg(_z, jnp.ones((3, 3))), "same shape"),
    (lambda: losses.vicreg(jnp.ones((1, 3)), jnp.ones((1, 3))), "at least 2"),
    (lambda: losses.barlow_twins(jnp.ones((4, 3, 1)), jnp.ones((4, 3, 1))), "rank 2"),
    (lambda: losses.sinkhorn_knopp(_z, num_iters=0), "num_iters"),
    (lambda: losses.sinkhorn_knopp(_z, epsilon=0.0), "epsilon"),
    (lambda: losses.swav(jnp.ones((2, 4, 3)), num_global_crops=3), "num_global_crops"),
    (lambda: losses.swav(jnp.ones((2, 4, 3)), queue_scores=jnp.ones((2, 5, 4))), "queue_scores"),
    (lambda: losses.mae(jnp.ones((2, 3, 4)), jnp.ones((2, 3, 4)), jnp.ones((2, 4))), "mask"),
    (lambda: losses.patchify(jnp.ones((1, 6, 8, 3)), 4), "divisible"),
    (lambda: losses.unpatchify(jnp.ones((1, 5, 48)), 4, 8, 8), "tile"),
    (lambda: losses.denoising(_z, _z, loss_type="l3"), "loss_type"),
    (lambda: losses.masked_lm(jnp.ones((2, 3, 5)), jnp.ones((2, 3)), jnp.ones((2, 3))), "integer"),
    (lambda: losses.masked_lm(jnp.ones((2, 3, 5)), jnp.ones((2, 4), jnp.int32), jnp.ones((2, 4))), "labels"),
    (lambda: losses.next_token(jnp.ones((2, 1, 5)), jnp.ones((2, 1), jnp.int32)), "length >= 2"),
    (lambda: losses.cpc(jnp.ones((2, 5, 3)), jnp.ones((2, 5, 4)), jnp.ones((2, 3, 3))), "weights"),
    (lambda: losses.cpc(jnp.ones((2, 3, 3)), jnp.ones((2, 3, 4)), jnp.ones((3, 3, 4))), "K < time"),
    (
        lambda: losses.wav2vec2(jnp.ones((2, 5, 3)), jnp.ones((2, 5, 3)), jnp.ones((2, 4)), rng=jax.random.key(0)),
        "mask",
    ),
    (
        lambda: losses.gumbel_product_quantizer(jnp.ones((3, 2, 4)), jnp.ones((2, 5, 4)), rng=jax.random.key(0)),
        "end in",
    ),
    (lambda: losses.vae_elbo(_z, _z, jnp.ones((4, 2)), jnp.ones((4, 3))), "same shape"),
    (lambda: losses.vae_elbo(_z, _z, jnp.ones((4, 2)), jnp.ones((4, 2)), likelihood="poisson"), "likelihood"),
    (lambda: losses.ddpm(_z, _z, _z, jnp.zeros((3,), jnp.int32), alphas_cumprod=jnp.ones(5)), "batch size"),
    (lambda: losses.ddpm(_z, _z, _z, jnp.zeros((4,)), alphas_cumprod=jnp.ones(5)), "integer"),
    (
        lambda: losses.ddpm(_z, _z, _z, jnp.zeros((4,), jnp.int32), alphas_cumprod=jnp.ones(5), prediction="x"),
        "prediction",
    ),
]


@pytest.mark.parametrize("call, match", _BAD, ids=[str(i) for i in range(len(_BAD))])
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
