"""Language-modelling objectives: masked LM (BERT) and next-token prediction (GPT).

Both are token-level means over a data-dependent number of tokens (masked or non-padding),
so they take `axis_name` and divide the global sum by the global count.

Vocabulary parallelism: the per-token cross-entropy (`token_nll`) is written as a
logsumexp minus a one-hot contraction, never as a gather along the vocabulary. Both are
reductions over the last axis, so when the logits are sharded over the vocabulary (tensor
parallelism, Megatron's vocab-parallel cross-entropy) the compiler reduces each device's
shard and all-reduces `[batch, seq]` partial sums; a gather would instead make it collect
the whole `[batch, seq, vocab]` logits on every device. The float32 conversion happens
inside those reductions, so the logits may stay in the compute dtype (bfloat16).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jssl.losses import _checks
from jssl.losses import _sharding
from jssl.losses._sharding import AxisName

Metrics = dict[str, jax.Array]


def token_nll(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-token cross-entropy `-log softmax(logits)[label]` in float32, vocab-parallel.

    Args:
      logits: [..., vocab] unnormalized scores, any float dtype (kept in it; the reductions
        accumulate in float32).
      labels: [...] int target ids in `[0, vocab)`.

    Returns:
      [...] float32 negative log-likelihoods.

    References:
      Shoeybi et al., "Megatron-LM: Training Multi-Billion Parameter Language Models Using
      Model Parallelism", 2019, Sec. 3 (the cross-entropy fused with the vocab-parallel GEMM).
    """
    _checks.check_array("token_nll", "logits", logits, ndim=(2, 3, 4))
    _checks.check_array("token_nll", "labels", labels, ndim=logits.ndim - 1, kind="int")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"token_nll: labels {tuple(labels.shape)} must match the logits {tuple(logits.shape)} without their last axis."
        )
    x = logits.astype(jnp.float32)
    m = jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    lse = jnp.log(jnp.sum(jnp.exp(x - m), axis=-1)) + m[..., 0]
    target = jnp.sum(x * jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32), axis=-1)
    return lse - target


def _token_ce(fn, logits, labels, weights, axis_name):
    nll = token_nll(logits, labels.astype(jnp.int32))
    w = weights.astype(jnp.float32)
    count = _sharding.psum(jnp.sum(w), axis_name)
    loss = _sharding.psum(jnp.sum(nll * w), axis_name) / jnp.maximum(count, 1.0)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    acc = _sharding.psum(jnp.sum(correct * w), axis_name) / jnp.maximum(count, 1.0)
    return loss, {"accuracy": acc, "num_tokens": count, "perplexity": jnp.exp(jax.lax.stop_gradient(loss))}


def _check_logits_labels(fn, logits, labels):
    _checks.check_array(fn, "logits", logits, ndim=3)
    _checks.check_array(fn, "labels" if fn == "masked_lm" else "tokens", labels, ndim=2, kind="int")
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"{fn}: logits {tuple(logits.shape)} must be [batch, seq, vocab] with "
            f"[batch, seq] matching the labels {tuple(labels.shape)}."
        )


def masked_lm(
    logits: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    *,
    axis_name: AxisName = None,
) -> tuple[jax.Array, Metrics]:
    """BERT's masked-language-model loss: cross-entropy at the masked positions only.

    Args:
      logits: [batch, seq, vocab] predictions.
      labels: [batch, seq] int original token ids (values at unmasked positions are ignored
        but must be valid indices).
      mask: [batch, seq] bool/0-1, where a token was selected for prediction (15% in BERT).
      axis_name: mesh axis the batch is sharded over, inside `shard_map`.

    Returns:
      `(loss, metrics)`: mean CE over masked tokens of the global batch; metrics has
      `accuracy`, `num_tokens` and `perplexity`.

    References:
      Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
      Understanding", NAACL 2019, Sec. 3.1 (Task #1).
    """
    fn = "masked_lm"
    _check_logits_labels(fn, logits, labels)
    _checks.check_array(fn, "mask", mask, ndim=2, kind="any")
    if mask.shape != labels.shape:
        raise ValueError(f"{fn}: `mask` must have shape {tuple(labels.shape)}, got {tuple(mask.shape)}.")
    return _token_ce(fn, logits, labels, mask, axis_name)


def next_token(
    logits: jax.Array,
    tokens: jax.Array,
    *,
    mask: jax.Array | None = None,
    axis_name: AxisName = None,
) -> tuple[jax.Array, Metrics]:
    """Autoregressive next-token cross-entropy: `logits[:, t]` predicts `tokens[:, t + 1]`.

    The shift is done here, so pass the model's logits and its input tokens unshifted; the
    last position's logits are unused.

    Args:
      logits: [batch, seq, vocab] model outputs at every input position.
      tokens: [batch, seq] int input token ids.
      mask: optional [batch, seq] bool/0-1 validity of each *token* (e.g. not padding);
        target token `t + 1` counts only where `mask[:, t + 1]`.
      axis_name: mesh axis the batch is sharded over, inside `shard_map`.

    Returns:
      `(loss, metrics)`: mean CE per predicted token over the global batch; metrics has
      `accuracy`, `num_tokens` and `perplexity`.

    References:
      Radford et al., "Improving Language Understanding by Generative Pre-Training", 2018,
      Eq. (1); Bengio et al., "A Neural Probabilistic Language Model", JMLR 2003.
    """
    fn = "next_token"
    _check_logits_labels(fn, logits, tokens)
    if tokens.shape[1] < 2:
        raise ValueError(f"{fn}: needs sequences of length >= 2, got {tuple(tokens.shape)}.")
    if mask is None:
        weights = jnp.ones(tokens[:, 1:].shape, jnp.float32)
    else:
        _checks.check_array(fn, "mask", mask, ndim=2, kind="any")
        if mask.shape != tokens.shape:
            raise ValueError(f"{fn}: `mask` must have shape {tuple(tokens.shape)}, got {tuple(mask.shape)}.")
        weights = mask[:, 1:]
    return _token_ce(fn, logits[:, :-1], tokens[:, 1:], weights, axis_name)
