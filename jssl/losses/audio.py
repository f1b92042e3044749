"""Audio / sequence objectives: CPC's InfoNCE over future steps and wav2vec 2.0's
contrastive loss over quantized targets, with its Gumbel-softmax product quantizer.

CPC draws negatives from the other sequences of the batch, so it all-gathers them over
`axis_name`. wav2vec 2.0 draws distractors from the same utterance only; its sole batch
statistic is the codebook usage of the diversity term. Distractor sampling is keyed per
example by `fold_in(rng, global_example_index)`, so a sharded batch samples exactly what
the single-device call samples for the same examples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jssl.losses import _checks
from jssl.losses import _sharding
from jssl.losses._sharding import AxisName
from jssl.losses.contrastive import l2_normalize

Metrics = dict[str, jax.Array]
_NEG = -1e30


def cpc(
    context: jax.Array,
    future: jax.Array,
    weights: jax.Array,
    *,
    mask: jax.Array | None = None,
    temperature: float = 1.0,
    axis_name: AxisName = None,
) -> tuple[jax.Array, Metrics]:
    """Contrastive Predictive Coding: InfoNCE over k = 1..K future steps.

    The score of candidate z for context c_t at offset k is the log-bilinear
    `z . (W_k c_t) / temperature`. For each sequence b, time t and step k, the positive is
    `future[b, t + k]` and the negatives are `future[b', t + k]` for every other sequence b'
    of the (global) batch. The loss averages the cross-entropy over all valid (k, b, t).

    Args:
      context: [batch, time, context_dim] autoregressive context vectors c_t.
      future: [batch, time, latent_dim] encoder latents z_t to be predicted.
      weights: [K, context_dim, latent_dim] one prediction matrix W_k per step (a model
        parameter; gradients flow into it).
      mask: optional [batch, time] bool, True at real (not padding) steps of clips shorter
        than the batch's. A term (b, t, k) counts only where both t and t + k are real, and
        padding steps are never negatives. None: every step is real.
      temperature: divides the scores; the paper's bilinear score has none (1.0).
      axis_name: mesh axis the batch is sharded over, inside `shard_map`.

    Returns:
      `(loss, metrics)` with `contrastive_accuracy` over all (k, b, t).

    References:
      van den Oord, Li, Vinyals, "Representation Learning with Contrastive Predictive
      Coding", arXiv:1807.03748, Eq. (3)-(4).
    """
    fn = "cpc"
    _checks.check_array(fn, "context", context, ndim=3)
    _checks.check_array(fn, "future", future, ndim=3)
    _checks.check_array(fn, "weights", weights, ndim=3)
    _checks.check_positive(fn, "temperature", temperature)
    b, t, dc = context.shape
    k_steps = weights.shape[0]
    if future.shape[:2] != (b, t):
        raise ValueError(
            f"{fn}: `future` must be [batch, time, dim] with batch and time of "
            f"`context` {tuple(context.shape)}, got {tuple(future.shape)}."
        )
    if weights.shape[1:] != (dc, future.shape[2]):
        raise ValueError(f"{fn}: `weights` must be [K, {dc}, {future.shape[2]}], got {tuple(weights.shape)}.")
    if not 1 <= k_steps < t:
        raise ValueError(f"{fn}: need 1 <= K < time, got K={k_steps}, time={t}.")
    if mask is not None:
        _checks.check_array(fn, "mask", mask, ndim=2, kind="any")
        if mask.shape != (b, t):
            raise ValueError(f"{fn}: `mask` must be [batch, time] = {(b, t)}, got {tuple(mask.shape)}.")
    valid = jnp.ones((b, t), jnp.float32) if mask is None else mask.astype(jnp.float32)
    c = context.astype(jnp.float32)
    z = future.astype(jnp.float32)
    w = weights.astype(jnp.float32)
    pos_idx = jnp.arange(b) + _sharding.axis_index(axis_name) * b
    total, correct, count = 0.0, 0.0, 0.0
    for k in range(1, k_steps + 1):
        pred = jnp.einsum("btc,cz->btz", c[:, : t - k], w[k - 1])
        cands = _sharding.all_gather(z[:, k:], axis_name)  # [global_b, t - k, z]
        cand_valid = _sharding.all_gather(valid[:, k:], axis_name)  # [global_b, t - k]
        logits = jnp.einsum("btz,ntz->btn", pred, cands) / temperature
        logits = jnp.where(cand_valid.T[None] > 0, logits, _NEG)
        logp = jax.nn.log_softmax(logits, axis=-1)
        pos_logp = jnp.take_along_axis(logp, jnp.broadcast_to(pos_idx[:, None, None], (b, t - k, 1)), axis=-1)
        term = valid[:, : t - k] * valid[:, k:]  # both the context step and its target are real
        total = total - jnp.sum(pos_logp[..., 0] * term)
        correct = correct + jnp.sum((jnp.argmax(logits, -1) == pos_idx[:, None]) * term)
        count = count + jnp.sum(term)
    count = _sharding.psum(count, axis_name)
    return (
        _sharding.psum(total, axis_name) / jnp.maximum(count, 1.0),
        {"contrastive_accuracy": _sharding.psum(correct, axis_name) / jnp.maximum(count, 1.0)},
    )


def gumbel_product_quantizer(
    logits: jax.Array,
    codebooks: jax.Array,
    *,
    rng: jax.Array,
    temperature: float = 2.0,
    hard: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """wav2vec 2.0's product quantizer with a straight-through Gumbel softmax.

    For each of G codebooks, choose one of V entries with
    `softmax((logits + Gumbel noise) / temperature)`; with `hard`, the forward pass uses the
    one-hot argmax and the backward pass the soft probabilities (straight-through). The G
    chosen entries are concatenated.

    Args:
      logits: [..., G, V] codeword logits per group.
      codebooks: [G, V, entry_dim] codeword embeddings.
      rng: PRNG key for the Gumbel noise.
      temperature: Gumbel-softmax temperature, annealed from 2 to 0.5 in the paper.
      hard: straight-through one-hot (the paper) or plain soft mixing.

    Returns:
      `(quantized, probs)`: quantized [..., G * entry_dim] and the noise-free softmax
      `probs` [..., G, V] that the diversity term of `wav2vec2` consumes.

    References:
      Baevski et al., "wav2vec 2.0", NeurIPS 2020, Sec. 2 (Quantization module);
      Jang et al., "Categorical Reparameterization with Gumbel-Softmax", ICLR 2017.
    """
    fn = "gumbel_product_quantizer"
    _checks.check_array(fn, "logits", logits)
    _checks.check_array(fn, "codebooks", codebooks, ndim=3)
    _checks.check_positive(fn, "temperature", temperature)
    if logits.ndim < 2 or logits.shape[-2:] != codebooks.shape[:2]:
        raise ValueError(
            f"{fn}: `logits` must end in [G, V] = {tuple(codebooks.shape[:2])}, got {tuple(logits.shape)}."
        )
    l = logits.astype(jnp.float32)
    g = jax.random.gumbel(rng, l.shape, jnp.float32)
    soft = jax.nn.softmax((l + g) / temperature, axis=-1)
    if hard:
        one_hot = jax.nn.one_hot(jnp.argmax(soft, axis=-1), l.shape[-1], dtype=soft.dtype)
        soft = one_hot + soft - lax.stop_gradient(soft)
    q = jnp.einsum("...gv,gvd->...gd", soft, codebooks.astype(jnp.float32))
    return q.reshape(*q.shape[:-2], -1), jax.nn.softmax(l, axis=-1)


def sample_distractors(
    mask: jax.Array, *, rng: jax.Array, num_negatives: int, first_index: jax.Array | int = 0
) -> jax.Array:
    """For each time step, `num_negatives` indices of *other* masked steps of the same
    utterance, uniformly with replacement (as fairseq's wav2vec 2.0).

    Args:
      mask: [batch, time] bool; each utterance needs at least 2 masked steps.
      rng: PRNG key; example b uses `fold_in(rng, first_index + b)`.
      num_negatives: K.
      first_index: global index of this shard's first example.

    Returns:
      [batch, time, K] int32 time indices (meaningful at masked steps).
    """
    b, t = mask.shape

    def one(key, m):
        order = jnp.argsort(~m, stable=True)  # masked steps first, in time order
        n_masked = jnp.sum(m)
        rank = jnp.cumsum(m) - 1
        r = jax.random.randint(key, (t, num_negatives), 0, jnp.maximum(n_masked - 1, 1))
        r = r + (r >= rank[:, None])  # skip the anchor itself
        return order[r].astype(jnp.int32)

    keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(b) + first_index)
    return jax.vmap(one)(keys, mask.astype(bool))


def wav2vec2(
    context: jax.Array,
    quantized: jax.Array,
    mask: jax.Array,
    *,
    rng: jax.Array,
    codebook_probs: jax.Array | None = None,
    num_negatives: int = 100,
    temperature: float = 0.1,
    diversity_weight: float = 0.1,
    axis_name: AxisName = None,
) -> tuple[jax.Array, Metrics]:
    """wav2vec 2.0's objective: contrastive loss over quantized targets plus diversity.

    At every masked step t, the context vector c_t must identify the true quantized latent
    q_t among it and K distractors q_d sampled uniformly from the other masked steps of the
    same utterance: `-log exp(cos(c_t, q_t)/kappa) / sum_{q in {q_t} + Q_t} exp(cos(c_t,q)/kappa)`.
    As in fairseq, a distractor identical to q_t is dropped from the denominator. The
    diversity term `(GV - sum_g exp(H(p_g))) / GV` uses the codebook probabilities averaged
    over the *masked* steps of the (global) batch, the steps whose quantized targets the
    contrastive term uses: fairseq quantizes only those steps (`quantizer(y[mask_indices])`)
    and HF transformers averages with `mask_time_indices`. Earlier jssl versions averaged over
    all steps; that figure is kept as the diagnostic `codebook_perplexity_all_steps` (not part
    of the loss). With `axis_name` both averages are global over the devices.

    Args:
      context: [batch, time, dim] transformer outputs (projected to the code dim).
      quantized: [batch, time, dim] quantized targets (projected); gradients flow into
        them, as in the paper (which trains the quantizer through this loss).
      mask: [batch, time] bool, the masked steps (>= 2 per utterance).
      rng: PRNG key for the distractors.
      codebook_probs: optional [batch, time, G, V] noise-free codeword probabilities (the
        second output of `gumbel_product_quantizer`); omit to skip the diversity term.
      num_negatives: K = 100 in the paper.
      temperature: kappa = 0.1 in the paper.
      diversity_weight: alpha = 0.1 in the paper.
      axis_name: mesh axis the batch is sharded over, inside `shard_map`.

    Returns:
      `(loss, metrics)` with `contrastive`, `contrastive_accuracy` and, with
      `codebook_probs`, `diversity`, `codebook_perplexity` (masked steps, the one in the loss)
      and `codebook_perplexity_all_steps` (every step; a diagnostic).

    References:
      Baevski, Zhou, Mohamed, Auli, "wav2vec 2.0: A Framework for Self-Supervised Learning
      of Speech Representations", NeurIPS 2020, Eq. (3)-(4).
    """
    fn = "wav2vec2"
    _checks.check_array(fn, "context", context, ndim=3)
    _checks.check_array(fn, "quantized", quantized, ndim=3)
    _checks.check_same_shape(fn, context=context, quantized=quantized)
    _checks.check_array(fn, "mask", mask, ndim=2, kind="any")
    if mask.shape != context.shape[:2]:
        raise ValueError(f"{fn}: `mask` must be [batch, time] = {tuple(context.shape[:2])}, got {tuple(mask.shape)}.")
    _checks.check_positive_int(fn, "num_negatives", num_negatives, optional=False)
    _checks.check_positive(fn, "temperature", temperature)
    b = context.shape[0]
    first = _sharding.axis_index(axis_name) * b
    idx = sample_distractors(mask, rng=rng, num_negatives=num_negatives, first_index=first)
    c = l2_normalize(context.astype(jnp.float32))
    q = l2_normalize(quantized.astype(jnp.float32))
    raw_q = quantized.astype(jnp.float32)
    neg = jax.vmap(lambda qb, ib: qb[ib])(q, idx)  # [b, t, K, d]
    raw_neg = jax.vmap(lambda qb, ib: qb[ib])(raw_q, idx)
    pos_logit = jnp.sum(c * q, -1) / temperature
    neg_logit = jnp.einsum("btd,btkd->btk", c, neg) / temperature
    same = jnp.all(raw_neg == raw_q[:, :, None, :], axis=-1)
    neg_logit = jnp.where(same, _NEG, neg_logit)
    logits = jnp.concatenate([pos_logit[..., None], neg_logit], axis=-1)
    nll = jax.nn.logsumexp(logits, axis=-1) - pos_logit
    m = mask.astype(jnp.float32)
    n_masked = _sharding.psum(jnp.sum(m), axis_name)
    contrastive = _sharding.psum(jnp.sum(nll * m), axis_name) / jnp.maximum(n_masked, 1.0)
    correct = (jnp.argmax(logits, -1) == 0).astype(jnp.float32)
    acc = _sharding.psum(jnp.sum(correct * m), axis_name) / jnp.maximum(n_masked, 1.0)
    metrics = {"contrastive": lax.stop_gradient(contrastive), "contrastive_accuracy": acc}
    loss = contrastive
    if codebook_probs is not None:
        _checks.check_array(fn, "codebook_probs", codebook_probs, ndim=4)
        if codebook_probs.shape[:2] != mask.shape:
            raise ValueError(f"{fn}: `codebook_probs` must be [batch, time, G, V], got {tuple(codebook_probs.shape)}.")
        p = codebook_probs.astype(jnp.float32)
        g, v = p.shape[2:]
        avg = _sharding.psum(jnp.einsum("bt,btgv->gv", m, p), axis_name) / jnp.maximum(n_masked, 1.0)  # [G, V]
        perplexity = _perplexity(avg)
        diversity = (g * v - perplexity) / (g * v)
        loss = loss + diversity_weight * diversity
        steps = p.shape[0] * p.shape[1]
        avg_all = _sharding.global_mean(jnp.sum(p, axis=(0, 1)), steps, axis_name)
        metrics["diversity"] = lax.stop_gradient(diversity)
        metrics["codebook_perplexity"] = lax.stop_gradient(perplexity)
        metrics["codebook_perplexity_all_steps"] = lax.stop_gradient(_perplexity(avg_all))
    return loss, metrics


def _perplexity(avg: jax.Array) -> jax.Array:
    """`sum_g exp(H(avg_g))` of averaged codeword probabilities `avg [G, V]` (fairseq's epsilon)."""
    return jnp.sum(jnp.exp(-jnp.sum(avg * jnp.log(avg + 1e-7), axis=-1)))
