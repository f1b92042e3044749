"""BERT and GPT: masking statistics, losses, held-out metrics, sampling, sharded == single device, errors.

The step here is the trainer's (merge, forward, value-and-grad) without the trainer, so the
methods are tested on 8 fake devices on data, FSDP and tensor meshes on their own.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jssl import sharding
from jssl.methods import BERT, GPT, METHODS
from jssl.methods.bert import mlm_corrupt, num_predictions
from jssl.methods.gpt import filter_top_k
from jssl.models.partitioning import activation_sharding
from tests.text_helpers import TINY_VOCAB, random_tokens, tiny_method_config

DATA_KWARGS = dict(vocab_size=TINY_VOCAB, pad_id=0, mask_id=1, bos_id=2, eos_id=3, num_special_tokens=4)


def build(name: str, config=None, **data_kwargs):
    config = config or tiny_method_config(name)
    return METHODS[name](config, dtype=jnp.float32, rngs=nnx.Rngs(0), **{**DATA_KWARGS, **data_kwargs})


def test_registered_and_declared_as_token_methods():
    assert METHODS["bert"] is BERT and METHODS["gpt"] is GPT
    assert BERT.inputs == GPT.inputs == "tokens"
    assert GPT.is_generative() and not BERT.is_generative()


def test_bert_masking_statistics():
    tokens = jnp.asarray(random_tokens(512, 128, seed=1))
    p = num_predictions(seq_len=128, mask_rate=0.15)
    assert p == 19
    corrupted, positions, weights = jax.jit(
        lambda k, t: mlm_corrupt(k, t, num_predict=p, mask_id=1, pad_id=0, random_low=4, random_high=TINY_VOCAB)
    )(jax.random.PRNGKey(0), tokens)
    positions, corrupted, tokens = map(np.asarray, (positions, corrupted, tokens))
    # Exactly p distinct positions per row; nothing else changes.
    assert all(len(set(row)) == p for row in positions) and (np.asarray(weights) == 1).all()
    chosen = np.zeros(tokens.shape, bool)
    np.put_along_axis(chosen, positions, True, axis=1)
    np.testing.assert_array_equal(corrupted[~chosen], tokens[~chosen])
    # 80% [MASK], 10% a random ordinary token, 10% kept (a random token equals the original
    # with probability 1/60, moving that share from "random" to "kept").
    n = chosen.sum()
    masked = (corrupted[chosen] == 1).mean()
    changed = ((corrupted[chosen] != 1) & (corrupted[chosen] != tokens[chosen])).mean()
    kept = (corrupted[chosen] == tokens[chosen]).mean()
    tol = 4 * math.sqrt(0.25 / n)
    assert abs(masked - 0.8) < tol and abs(changed - 0.1 * 59 / 60) < tol and abs(kept - (0.1 + 0.1 / 60)) < tol
    replaced = corrupted[chosen][(corrupted[chosen] != 1) & (corrupted[chosen] != tokens[chosen])]
    assert replaced.min() >= 4  # random tokens are never special
    # Positions are uniform over the sequence (each column chosen 15% of the time).
    column_rate = chosen.mean(axis=0)
    assert abs(column_rate.mean() - p / 128) < 1e-9 and column_rate.min() > 0.08 and column_rate.max() < 0.22


def test_bert_draws_padding_last():
    tokens = np.full((4, 16), 0, np.int32)
    tokens[:, :5] = 7  # 5 real tokens, 11 padding
    _, positions, weights = jax.jit(
        lambda k, t: mlm_corrupt(k, t, num_predict=8, mask_id=1, pad_id=0, random_low=4, random_high=64)
    )(jax.random.PRNGKey(0), jnp.asarray(tokens))
    assert (np.sort(np.asarray(positions)[:, :5], axis=1) == np.arange(5)).all()
    np.testing.assert_array_equal(np.asarray(weights).sum(1), [5, 5, 5, 5])


@pytest.mark.parametrize("name", ["bert", "gpt"])
def test_loss_heldout_and_summary(name):
    method = build(name)
    tokens = jnp.asarray(random_tokens(8, 16))

    def forward(m, t):
        out = m({"tokens": t}, step=jnp.int32(0), rngs=nnx.Rngs(1))
        return out.loss, out.metrics, out.features

    loss, metrics, features = nnx.jit(forward)(method, tokens)
    # At initialization the loss is about log(vocab) (near-uniform predictions).
    assert abs(float(loss) - math.log(TINY_VOCAB)) < 0.5
    assert features.shape == (8, 16) and features.dtype == jnp.float32
    assert {"accuracy", "num_tokens", "perplexity"} <= set(metrics)
    assert float(metrics["num_tokens"]) == (8 * 2 if name == "bert" else 8 * 15)  # round(0.15 * 16) = 2
    method.eval()
    heldout = nnx.jit(lambda m, t: m.heldout_metrics({"tokens": t}, rngs=nnx.Rngs(5)))(method, tokens)
    assert all(v.shape == (8,) for v in heldout.values())
    means = {k: float(np.mean(v)) for k, v in heldout.items()}
    summary = type(method).summarize_heldout(means)
    if name == "gpt":
        # Full windows: the per-window mean NLL averages to the token mean exactly.
        assert means["nll"] == pytest.approx(summary["token_nll"], rel=1e-6)
        assert summary["perplexity"] == pytest.approx(math.exp(summary["token_nll"]))
    else:
        assert means["masked_count"] == 2 == method.max_predictions and 0 <= summary["masked_accuracy"] <= 1
        # Masks from the key: the same key gives the same numbers.
        again = nnx.jit(lambda m, t: m.heldout_metrics({"tokens": t}, rngs=nnx.Rngs(5)))(method, tokens)
        np.testing.assert_array_equal(heldout["masked_nll_sum"], again["masked_nll_sum"])
    features = nnx.jit(lambda m, t: m.represent({"tokens": t}))(method, tokens)
    assert features.shape == (8, method.feature_dim)
    with pytest.raises(NotImplementedError, match="finetune.enabled = False"):
        method.backbone()


def test_gpt_generate_samples_from_bos_with_top_k():
    method = build("gpt", tiny_method_config("gpt", **{"method.sample_top_k": 5}))
    method.eval()
    samples = np.asarray(nnx.jit(lambda m: m.generate(6, rngs=nnx.Rngs(3)))(method))
    assert samples.shape == (6, 16) and samples.dtype == np.int32
    assert (samples[:, 0] == 2).all()
    rest = samples[:, 1:]
    assert ((rest >= 4) | (rest == 3)).all() and (rest < TINY_VOCAB).all()  # no [PAD]/[MASK]/[BOS]
    logits = jnp.asarray([[0.0, 3.0, 1.0, 2.0]])
    np.testing.assert_array_equal(np.isfinite(filter_top_k(logits, k=2)), [[False, True, False, True]])


def _loss_and_grads(name: str, config, tokens: np.ndarray, mesh=None, *, traces=None):
    """One step's loss, metrics and gradients, the trainer's way, single device or on `mesh`."""
    method = build(name, config)
    graphdef, params, rest = nnx.split(method, nnx.Param, ...)
    key = jax.random.PRNGKey(1)

    def step(params, rest, tokens, step):
        if traces is not None:
            traces.append(1)

        def loss_fn(p):
            model = nnx.merge(graphdef, p, rest, copy=True)
            out = model({"tokens": tokens}, step=step, rngs=nnx.Rngs(jax.random.fold_in(key, step)))
            return out.loss, out.metrics

        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    if mesh is None:
        return jax.jit(step)(params, rest, jnp.asarray(tokens), jnp.int32(3))
    rules = config.sharding_rules
    shardings = sharding.state_shardings(nnx.split(method, nnx.Param, ...)[1:], rules, mesh)
    activations = sharding.activation_sharding_fn(rules, mesh)

    def sharded_step(*args):
        with activation_sharding(activations):
            return step(*args)

    fn = jax.jit(sharded_step, in_shardings=(*shardings, sharding.batch_sharding(mesh), sharding.replicated(mesh)))
    placed = jax.device_put((params, rest), tuple(shardings))
    return fn(*placed, sharding.host_batch_to_global({"t": tokens}, mesh)["t"], jnp.int32(3)), (fn, placed)


MESHES = {
    "data": dict(data=8, fsdp=1, tensor=1),
    "fsdp": dict(data=1, fsdp=8, tensor=1),
    "tensor": dict(data=2, fsdp=1, tensor=4),
}


@pytest.mark.parametrize("name", ["bert", "gpt"])
def test_sharded_step_equals_single_device_and_compiles_once(name):
    config = tiny_method_config(name)
    tokens = random_tokens(8, 16, seed=4)
    (loss, metrics), grads = _loss_and_grads(name, config, tokens)
    for mesh_name, axes in MESHES.items():
        mesh, traces = sharding.make_mesh(axes), []
        ((s_loss, s_metrics), s_grads), (fn, placed) = _loss_and_grads(name, config, tokens, mesh, traces=traces)
        np.testing.assert_allclose(s_loss, loss, rtol=2e-5, err_msg=mesh_name)
        np.testing.assert_allclose(s_metrics["accuracy"], metrics["accuracy"], err_msg=mesh_name)
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(s_grads), jax.tree.leaves(grads)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=f"{mesh_name} {jax.tree_util.keystr(path)}")
        if mesh_name == "tensor":
            # The embedding (and with it the logits) is split over the vocabulary.
            embed = s_grads["model"]["token_embed"].get_value()
            assert embed.sharding.spec[0] == "tensor"
            # Later steps with new data and step numbers reuse the compiled step.
            seen = {float(s_loss)}
            for step in (4, 5):
                batch = sharding.host_batch_to_global({"t": random_tokens(8, 16, seed=10 + step)}, mesh)["t"]
                seen.add(float(fn(*placed, batch, jnp.int32(step))[0][0]))
            assert len(traces) == 1 and len(seen) == 3


def test_clear_errors():
    with pytest.raises(ValueError, match="tokenizer has 60000 tokens but model 'gpt2_small' a 50257-row"):
        build("gpt", tiny_method_config("gpt", **{"model.name": "gpt2_small"}), vocab_size=60000)
    with pytest.raises(ValueError, match="data.seq_len=64 exceeds model 'text_tiny''s 32 positions"):
        build("bert", tiny_method_config("bert", **{"data.seq_len": 64}))
    with pytest.raises(ValueError, match="mask_rate must be in"):
        build("bert", tiny_method_config("bert", **{"method.mask_rate": 0.0}))
    with pytest.raises(ValueError, match="sample_temperature must be > 0"):
        build("gpt", tiny_method_config("gpt", **{"method.sample_temperature": 0.0}))
    method = build("gpt")
    with pytest.raises(ValueError, match=r"expects \{'tokens'"):
        method(jnp.zeros((2, 16), jnp.int32), step=jnp.int32(0))


@pytest.mark.parametrize("recipe, params", [("gpt2_small", 124_439_808), ("bert_base", None)])
def test_published_recipes_build_their_models(recipe, params):
    from tests.train.helpers import load_config

    config = load_config(None, name=recipe)
    assert config.finetune.enabled is False and config.eval.baselines is True
    data_kwargs = {**DATA_KWARGS, "vocab_size": config.data.vocab_size}
    method = nnx.eval_shape(
        lambda: METHODS[config.method.name](config, dtype=jnp.bfloat16, rngs=nnx.Rngs(0), **data_kwargs)
    )
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(method, nnx.Param)))
    if params is not None:
        assert count == params
    else:
        assert 108e6 < count < 111e6
    assert method.model.max_len >= config.data.seq_len
