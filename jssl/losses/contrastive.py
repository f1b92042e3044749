"""Contrastive (InfoNCE-family) losses: SimCLR's NT-Xent and MoCo's InfoNCE, plus the
MoCo queue update.

All similarities are computed in float32 whatever the input dtype, because the softmax
over tens of thousands of negatives loses its small terms in bfloat16. With `axis_name`
set, the keys are all-gathered across that mesh axis and each device scores only its own
queries, so the per-device cost is `local_batch x global_batch`; `block_size` further
splits the global keys into chunks combined with an online logsumexp, so no device ever
holds the full similarity matrix, in the forward or (thanks to rematerialisation) the
backward pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jssl.losses import _checks
from jssl.losses import _sharding
from jssl.losses._sharding import AxisName

Metrics = dict[str, jax.Array]

# Finite stand-in for -inf: exp() of it underflows to exactly 0 and, unlike -inf, it never
# produces NaN through (-inf) - (-inf) in the online logsumexp, nor in its gradient.
_NEG = -1e30


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """`x / max(||x||, eps)` along `axis` (the same convention as torch's F.normalize)."""
    sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
    return x * lax.rsqrt(jnp.maximum(sq, eps * eps))


def _streaming_logsumexp(
    queries: jax.Array,
    keys: jax.Array,
    inv_temperature,
    *,
    exclude_idx: jax.Array | None,
    positive_idx: jax.Array | None,
    block_size: int | None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per query: logsumexp of `q . k / T` over all keys except `exclude_idx`, the max of
    those logits, and the logit at `positive_idx` (0 if None).

    queries: [m, d] float32, keys: [k, d] float32. With `block_size`, keys are scanned in
    chunks of that size under `jax.checkpoint`, so memory is O(m * block_size).
    """
    m, d = queries.shape
    k = keys.shape[0]
    bs = k if block_size is None or block_size >= k else block_size
    n_blocks = -(-k // bs)
    pad = n_blocks * bs - k
    if pad:
        keys = jnp.concatenate([keys, jnp.zeros((pad, d), keys.dtype)], axis=0)
    keys = keys.reshape(n_blocks, bs, d)
    starts = jnp.arange(n_blocks, dtype=jnp.int32) * bs

    def body(carry, xs):
        run_max, run_sum, pos = carry
        kb, start = xs
        logits = jnp.dot(queries, kb.T, preferred_element_type=jnp.float32) * inv_temperature
        idx = start + jnp.arange(bs, dtype=jnp.int32)
        valid = jnp.broadcast_to(idx[None, :] < k, logits.shape)
        if exclude_idx is not None:
            valid = valid & (idx[None, :] != exclude_idx[:, None])
        if positive_idx is not None:
            pos = pos + jnp.sum(jnp.where(idx[None, :] == positive_idx[:, None], logits, 0.0), 1)
        masked = jnp.where(valid, logits, _NEG)
        # The shift is a constant for differentiation; the gradient of m + log(sum exp(l - m))
        # does not depend on m, so stopping it keeps the backward pass cheap and exact.
        new_max = jnp.maximum(run_max, lax.stop_gradient(jnp.max(masked, axis=1)))
        block_sum = jnp.sum(jnp.where(valid, jnp.exp(masked - new_max[:, None]), 0.0), axis=1)
        run_sum = run_sum * jnp.exp(run_max - new_max) + block_sum
        return (new_max, run_sum, pos), None

    # Derived from `queries` so that under shard_map the carry has the same (device-varying)
    # type as the scan body's output.
    zeros = jnp.zeros_like(queries[:, 0], dtype=jnp.float32)
    init = (zeros + _NEG, zeros, zeros)
    if n_blocks == 1:
        (run_max, run_sum, pos), _ = body(init, (keys[0], starts[0]))
    else:
        (run_max, run_sum, pos), _ = lax.scan(jax.checkpoint(body), init, (keys, starts))
    return run_max + jnp.log(run_sum), run_max, pos


def _check_common(fn, temperature, block_size):
    _checks.check_positive(fn, "temperature", temperature)
    _checks.check_positive_int(fn, "block_size", block_size)


def nt_xent(
    z1: jax.Array,
    z2: jax.Array,
    *,
    temperature: float = 0.1,
    axis_name: AxisName = None,
    block_size: int | None = None,
) -> tuple[jax.Array, Metrics]:
    """SimCLR's normalized-temperature cross-entropy (NT-Xent), symmetric over both views.

    The 2N embeddings of both views are L2-normalized; each one's positive is the other view
    of the same example, and its negatives are the remaining 2N - 2 embeddings (itself is
    excluded). The loss is the mean over all 2N anchors of
    `-log softmax(sim / temperature)[positive]`.

    Args:
      z1: [batch, dim] projections of the first view (any float dtype; math in float32).
      z2: [batch, dim] projections of the second view; row i pairs with `z1[i]`.
      temperature: softmax temperature tau; 0.1 is SimCLR's default for large batches
        (the paper's Table 5 uses 0.1 with batch 4096; 0.5 suits small batches).
      axis_name: mesh axis (or tuple of axes) the batch is sharded over, inside
        `shard_map`. Keys are all-gathered, so the loss and its gradients equal those of the
        single-device loss on the concatenated global batch.
      block_size: if set, the logsumexp over the 2N keys is computed in chunks of this many
        keys with an online logsumexp (and rematerialised in the backward pass), so memory is
        O(local_2N x block_size) instead of O(local_2N x global_2N).

    Returns:
      `(loss, metrics)`: the scalar mean loss (float32) and a dict with
      `contrastive_accuracy` (fraction of anchors whose positive has the top logit among the
      2N - 1 candidates), `positive_similarity` and `negative_similarity` (mean cosine
      similarity of positive pairs and of negative pairs), all over the global batch.

    References:
      Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
      ICML 2020 (arXiv:2002.05709), Eq. (1).
    """
    fn = "nt_xent"
    _checks.check_array(fn, "z1", z1, ndim=2)
    _checks.check_array(fn, "z2", z2, ndim=2)
    _checks.check_same_shape(fn, z1=z1, z2=z2)
    _check_common(fn, temperature, block_size)
    n = z1.shape[0]
    if n < 1:
        raise ValueError(f"{fn}: batch must be non-empty, got z1 {_checks.shape_str(z1)}.")

    z1n = l2_normalize(z1.astype(jnp.float32))
    z2n = l2_normalize(z2.astype(jnp.float32))
    g1 = _sharding.all_gather(z1n, axis_name)
    g2 = _sharding.all_gather(z2n, axis_name)
    big_n = g1.shape[0]
    if big_n < 2:
        raise ValueError(f"{fn}: needs a global batch of at least 2 for any negatives.")
    keys = jnp.concatenate([g1, g2], axis=0)
    queries = jnp.concatenate([z1n, z2n], axis=0)

    local = jnp.arange(n, dtype=jnp.int32) + _sharding.axis_index(axis_name) * n
    self_idx = jnp.concatenate([local, local + big_n])
    pos_idx = jnp.concatenate([local + big_n, local])
    inv_t = 1.0 / jnp.asarray(temperature, jnp.float32)
    lse, max_logit, pos_logit = _streaming_logsumexp(
        queries, keys, inv_t, exclude_idx=self_idx, positive_idx=pos_idx, block_size=block_size
    )

    loss = _sharding.global_mean(jnp.sum(lse - pos_logit), 2 * n, axis_name)
    correct = (pos_logit >= max_logit).astype(jnp.float32)
    pos_sim = jnp.sum(z1n * z2n, axis=1)
    # Sum over all keys via the key sum: O(2N d) instead of another 2N x 2N pass.
    all_sim = queries @ jnp.sum(keys, axis=0)
    self_sim = jnp.sum(queries * queries, axis=1)
    neg_sim = all_sim - self_sim - jnp.concatenate([pos_sim, pos_sim])
    sg = lax.stop_gradient
    metrics = {
        "contrastive_accuracy": _sharding.global_mean(jnp.sum(correct), 2 * n, axis_name),
        "positive_similarity": sg(_sharding.global_mean(jnp.sum(pos_sim), n, axis_name)),
        "negative_similarity": sg(_sharding.psum(jnp.sum(neg_sim), axis_name) / (2 * big_n * (2 * big_n - 2))),
    }
    return loss, metrics


def info_nce(
    query: jax.Array,
    key: jax.Array,
    *,
    negatives: jax.Array | None = None,
    temperature: float = 0.2,
    normalize: bool = True,
    axis_name: AxisName = None,
    block_size: int | None = None,
) -> tuple[jax.Array, Metrics]:
    """InfoNCE as in MoCo: each query must pick out its own key.

    Two forms:

    * `negatives=None` (MoCo v3): in-batch negatives. Query i scores against every key of
      the (global) batch; its positive is key i. MoCo v3 symmetrises over two crops by
      calling this twice, `info_nce(q1, k2) + info_nce(q2, k1)` (the paper also multiplies
      by `2 * temperature`, which only rescales the gradient).
    * `negatives=queue` (MoCo v1/v2): the logits are `[q_i . k_i, q_i . queue]`; other keys
      in the batch are *not* negatives. Update the queue with `update_queue`.

    Gradients flow into `key` and `negatives` as well; MoCo's keys come from a momentum
    encoder, so callers pass `jax.lax.stop_gradient(key)` (the queue is a constant anyway).

    Args:
      query: [batch, dim] queries.
      key: [batch, dim] keys; row i is the positive for `query[i]`.
      negatives: optional [queue_size, dim] extra negatives, replicated on every device.
      temperature: softmax temperature; MoCo v2 and v3 use 0.2 (MoCo v1 used 0.07).
      normalize: L2-normalize queries, keys and negatives first (MoCo does).
      axis_name: mesh axis the batch is sharded over, inside `shard_map`; in-batch keys are
        all-gathered and the mean is over the global batch.
      block_size: compute the logsumexp over keys / negatives in chunks of this size.

    Returns:
      `(loss, metrics)`; metrics has `contrastive_accuracy` and `positive_similarity`
      (mean `q . k`, a cosine when `normalize`).

    References:
      He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
      CVPR 2020, Eq. (1); Chen et al., "Improved Baselines with Momentum Contrastive
      Learning" (MoCo v2), arXiv:2003.04297; Chen, Xie, He, "An Empirical Study of Training
      Self-Supervised Vision Transformers" (MoCo v3), ICCV 2021, Alg. 1.
    """
    fn = "info_nce"
    _checks.check_array(fn, "query", query, ndim=2)
    _checks.check_array(fn, "key", key, ndim=2)
    _checks.check_same_shape(fn, query=query, key=key)
    if negatives is not None:
        _checks.check_array(fn, "negatives", negatives, ndim=2)
        _checks.check_dim(fn, "negatives", negatives, 1, query.shape[1], "the embedding dim")
    _check_common(fn, temperature, block_size)

    prep = (lambda x: l2_normalize(x.astype(jnp.float32))) if normalize else (lambda x: x.astype(jnp.float32))
    q, k = prep(query), prep(key)
    n = q.shape[0]
    inv_t = 1.0 / jnp.asarray(temperature, jnp.float32)
    pos_sim = jnp.sum(q * k, axis=1)
    if negatives is None:
        keys = _sharding.all_gather(k, axis_name)
        pos_idx = jnp.arange(n, dtype=jnp.int32) + _sharding.axis_index(axis_name) * n
        lse, max_logit, pos_logit = _streaming_logsumexp(
            q, keys, inv_t, exclude_idx=None, positive_idx=pos_idx, block_size=block_size
        )
    else:
        pos_logit = pos_sim * inv_t
        lse_neg, max_neg, _ = _streaming_logsumexp(
            q, prep(negatives), inv_t, exclude_idx=None, positive_idx=None, block_size=block_size
        )
        lse = jnp.logaddexp(pos_logit, lse_neg)
        max_logit = jnp.maximum(pos_logit, max_neg)
    loss = _sharding.global_mean(jnp.sum(lse - pos_logit), n, axis_name)
    correct = (pos_logit >= max_logit).astype(jnp.float32)
    metrics = {
        "contrastive_accuracy": _sharding.global_mean(jnp.sum(correct), n, axis_name),
        "positive_similarity": lax.stop_gradient(_sharding.global_mean(jnp.sum(pos_sim), n, axis_name)),
    }
    return loss, metrics


def update_queue(
    queue: jax.Array,
    keys: jax.Array,
    pointer: jax.Array,
    *,
    axis_name: AxisName = None,
) -> tuple[jax.Array, jax.Array]:
    """MoCo's FIFO queue of negatives: writes the (global) batch of keys at `pointer`.

    The write wraps around the end of the queue, so `queue_size` need not be a multiple of
    the batch size (MoCo asserts it is). Keys are stored with `stop_gradient`.

    Args:
      queue: [queue_size, dim] current queue (replicated across devices).
      keys: [batch, dim] new keys (this device's shard when `axis_name` is set; all shards
        are gathered so every device writes the same global batch).
      pointer: int32 scalar, index of the oldest entry.
      axis_name: mesh axis the keys are sharded over, inside `shard_map`.

    Returns:
      `(new_queue, new_pointer)`.

    References:
      He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
      CVPR 2020, Sec. 3.2 and Algorithm 1.
    """
    fn = "update_queue"
    _checks.check_array(fn, "queue", queue, ndim=2)
    _checks.check_array(fn, "keys", keys, ndim=2)
    _checks.check_dim(fn, "keys", keys, 1, queue.shape[1], "the queue's embedding dim")
    _checks.check_array(fn, "pointer", jnp.asarray(pointer), ndim=0, kind="int")
    keys = _sharding.all_gather_replicated(lax.stop_gradient(keys), axis_name).astype(queue.dtype)
    size, b = queue.shape[0], keys.shape[0]
    if b > size:
        raise ValueError(f"{fn}: global batch {b} is larger than the queue ({size}).")
    rows = (pointer + jnp.arange(b, dtype=jnp.int32)) % size
    return queue.at[rows].set(keys), ((pointer + b) % size).astype(jnp.int32)
