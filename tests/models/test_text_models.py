"""Text Transformers: causality, parameter counts, the vocab-parallel loss, clear errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jssl import losses, sharding
from jssl.models import TEXT_MODELS, get_text_model
from jssl.models.transformer import Encoder


def _count(module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_causal_encoder_lets_no_position_see_the_future():
    enc = Encoder(depth=1, embed_dim=16, num_heads=2, mlp_dim=32, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (1, 6, 16))
    w = jax.random.normal(jax.random.PRNGKey(2), (16,))  # a projection: LayerNorm makes plain sums constant

    def jacobian_norms(causal: bool) -> np.ndarray:
        """|d out[t] / d x[s]| summed over features: [t, s]."""
        graphdef, state = nnx.split(enc)
        f = lambda state, x: nnx.merge(graphdef, state)(x, causal=causal)[0] @ w
        jac = jax.jit(jax.jacrev(f, argnums=1))(state, x)[:, 0]  # [t, s, d]
        return np.asarray(jnp.abs(jac).sum(-1))

    # Exactly zero for every s > t (no rounding: the masked scores get no gradient path), nonzero for s <= t.
    norms = jacobian_norms(True)
    future = np.triu(np.ones((6, 6), bool), k=1)
    assert (norms[future] == 0.0).all() and (norms[~future] > 0).all()
    # Without the flag every position sees every other (the ViT's behaviour).
    assert (jacobian_norms(False) > 0).all()


def test_gpt_logits_at_t_ignore_later_tokens():
    model = get_text_model(
        "text_tiny", vocab_size=50, causal=True, embed_dim=16, num_heads=2, depth=1, rngs=nnx.Rngs(0)
    )
    a = jnp.asarray([[2, 7, 9, 11, 13, 15]])
    b = a.at[:, 4:].set(40)
    logits = nnx.jit(lambda m, t: m.logits(m.encode(t)))
    la, lb = logits(model, a), logits(model, b)
    np.testing.assert_array_equal(la[:, :4], lb[:, :4])
    assert not np.allclose(la[:, 4:], lb[:, 4:])


def test_parameter_counts_of_the_published_sizes():
    gpt2 = nnx.eval_shape(lambda: get_text_model("gpt2_small", causal=True, rngs=nnx.Rngs(0)))
    assert _count(gpt2) == 124_439_808  # GPT-2 small with tied embeddings (the "124M")
    assert gpt2.max_len == 1024 and gpt2.vocab_size == 50257
    bert = nnx.eval_shape(lambda: get_text_model("bert_base", rngs=nnx.Rngs(0)))
    # BERT-Base is 110M with token types and the pooler, which MLM-only training does not use.
    assert 108e6 < _count(bert) < 111e6
    assert bert.encoder.blocks[0].attn.qkv_kernel.shape == (768, 3, 12, 64)


def test_embedding_and_head_carry_the_vocab_axis():
    model = nnx.eval_shape(
        lambda: get_text_model("text_tiny", vocab_size=64, tie_embeddings=False, head_bias=True, rngs=nnx.Rngs(0))
    )
    assert model.token_embed.get_metadata()["out_sharding"] == ("vocab", "embed")
    assert model.head_kernel.get_metadata()["out_sharding"] == ("embed", "vocab")
    assert model.head_bias.get_metadata()["out_sharding"] == ("vocab",)


def _reference_nll(logits, labels):
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]


def test_vocab_parallel_loss_equals_the_plain_loss_and_gathers_no_logits():
    key = jax.random.PRNGKey(0)
    logits = (4 * jax.random.normal(key, (8, 12, 256))).astype(jnp.bfloat16)
    labels = jax.random.randint(jax.random.PRNGKey(1), (8, 12), 0, 256)
    np.testing.assert_allclose(losses.token_nll(logits, labels), _reference_nll(logits, labels), rtol=1e-5, atol=1e-5)

    mesh = sharding.make_mesh({"data": 2, "fsdp": 1, "tensor": 4})
    spec = NamedSharding(mesh, P("data", None, "tensor"))  # batch over data, vocab over tensor
    loss_fn = jax.jit(lambda lg, lb: losses.next_token(lg, lb)[0], in_shardings=(spec, NamedSharding(mesh, P("data"))))
    sharded_logits = jax.device_put(logits, spec)
    np.testing.assert_allclose(loss_fn(sharded_logits, labels), losses.next_token(logits, labels)[0], rtol=1e-6)
    grad = jax.jit(jax.grad(lambda lg: losses.masked_lm(lg, labels, labels % 3 == 0)[0]), in_shardings=spec)
    np.testing.assert_allclose(
        np.asarray(grad(sharded_logits), np.float32),
        np.asarray(jax.grad(lambda lg: losses.masked_lm(lg, labels, labels % 3 == 0)[0])(logits), np.float32),
        atol=1e-6,
    )
    # Each device reduces its own vocabulary shard: the compiled loss moves no logits between
    # devices (only [batch, seq] partial sums are all-reduced).
    hlo = loss_fn.lower(sharded_logits, labels).compile().as_text()
    assert "all-gather" not in hlo and "all-to-all" not in hlo and "all-reduce" in hlo


def test_text_model_errors():
    with pytest.raises(ValueError, match=r"unknown text model 'gpt3'.*gpt2_small"):
        get_text_model("gpt3", vocab_size=10, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="pass vocab_size"):
        get_text_model("text_tiny", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown options"):
        get_text_model("text_tiny", vocab_size=10, width_multiplier=2, rngs=nnx.Rngs(0))
    model = get_text_model("text_tiny", vocab_size=10, max_len=8, embed_dim=8, num_heads=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="9 tokens exceed the 8-row position table"):
        model(jnp.zeros((1, 9), jnp.int32))
    assert set(TEXT_MODELS) == {"text_tiny", "text_small", "bert_base", "gpt2_small"}
