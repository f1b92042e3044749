"""Online clustering: the Sinkhorn-Knopp equipartition and SwAV's swapped prediction.

Sinkhorn alternates normalising the code matrix over prototypes and over the batch. The
batch-direction sums are all-reduced over `axis_name`, so the codes of a sharded batch are
exactly those of the global batch (the reference SwAV code does the same all-reduce).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jssl.losses import _checks
from jssl.losses import _sharding
from jssl.losses._sharding import AxisName

Metrics = dict[str, jax.Array]


def sinkhorn_knopp(
    scores: jax.Array,
    *,
    epsilon: float = 0.05,
    num_iters: int = 3,
    axis_name: AxisName = None,
) -> jax.Array:
    """Soft equipartitioned assignments of samples to prototypes (SwAV's codes).

    Computes `Q = diag(u) exp(scores / epsilon) diag(v)` by `num_iters` rounds of: scale
    each prototype's column to total mass `1/K`, then each sample's row to `1/B`; the result
    is multiplied by `B` so every row is a probability distribution. Columns converge to
    `B/K` (uniform use of prototypes). The output is a target, so it carries no gradient.

    Args:
      scores: [batch, K] sample-prototype similarities (usually cosines).
      epsilon: entropic regularisation, 0.05 in the paper.
      num_iters: Sinkhorn iterations, 3 in the paper.
      axis_name: mesh axis the batch is sharded over, inside `shard_map`.

    Returns:
      [batch, K] float32 codes, rows summing to 1.

    References:
      Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
      Assignments", NeurIPS 2020, Sec. 3.1 and Algorithm 1 (after Cuturi, NeurIPS 2013).
    """
    fn = "sinkhorn_knopp"
    _checks.check_array(fn, "scores", scores, ndim=2)
    _checks.check_positive(fn, "epsilon", epsilon)
    _checks.check_positive_int(fn, "num_iters", num_iters, optional=False)
    # Log domain: with small epsilon, exp(scores / epsilon) under- or overflows float32
    # (e.g. epsilon=0.01 and cosines of -1..1), which the usual direct iteration turns
    # into NaN; the log-domain iteration is the same algorithm without that failure.
    log_q = lax.stop_gradient(scores.astype(jnp.float32)) / epsilon
    b_global = log_q.shape[0] * _sharding.axis_size(axis_name)
    k = log_q.shape[1]
    log_q = log_q - _sharding.logsumexp(jax.nn.logsumexp(log_q, axis=1, keepdims=True), 0, axis_name)
    for _ in range(num_iters):
        log_q = log_q - _sharding.logsumexp(log_q, 0, axis_name) - jnp.log(k)
        log_q = log_q - jax.nn.logsumexp(log_q, axis=1, keepdims=True) - jnp.log(b_global)
    return jnp.exp(log_q + jnp.log(b_global))


def swav(
    scores: jax.Array,
    *,
    num_global_crops: int = 2,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    num_iters: int = 3,
    queue_scores: jax.Array | None = None,
    axis_name: AxisName = None,
) -> tuple[jax.Array, Metrics]:
    """SwAV's swapped prediction over multi-crop views.

    For each global crop g, codes `q_g = sinkhorn_knopp(scores[g])`; every other crop v
    predicts them: `-sum_k q_g[k] log softmax(scores[v] / temperature)[k]`. The loss
    averages over the `crops - 1` predicting crops, the batch and the global crops.

    Args:
      scores: [crops, batch, K] scores of each crop's normalised embedding against the
        normalised prototypes; the first `num_global_crops` are the crops codes are computed
        for (the two 224px crops in the paper).
      num_global_crops: how many leading crops get codes (2 in the paper).
      temperature: softmax temperature, 0.1 in the paper.
      epsilon: Sinkhorn regularisation, 0.05 in the paper.
      num_iters: Sinkhorn iterations, 3 in the paper.
      queue_scores: optional [num_global_crops, queue_len, K] scores of queued past
        embeddings against the *current* prototypes; they join the Sinkhorn batch (improving
        equipartition for small batches) but not the loss. Under `axis_name` each device
        passes its own queue shard, as in the reference code.
      axis_name: mesh axis the batch (and queue) is sharded over, inside `shard_map`.

    Returns:
      `(loss, metrics)` with `code_entropy` (mean entropy of the codes) and
      `prototype_usage` (fraction of prototypes that are some sample's argmax code).

    References:
      Caron et al., NeurIPS 2020, Eq. (1)-(3), Sec. 4 (multi-crop, queue).
    """
    fn = "swav"
    _checks.check_array(fn, "scores", scores, ndim=3)
    _checks.check_positive(fn, "temperature", temperature)
    _checks.check_positive_int(fn, "num_global_crops", num_global_crops, optional=False)
    v_crops, b, k = scores.shape
    if not 1 <= num_global_crops <= v_crops or v_crops < 2:
        raise ValueError(
            f"{fn}: need 2+ crops and 1 <= num_global_crops <= crops, got "
            f"scores {tuple(scores.shape)} and num_global_crops={num_global_crops}."
        )
    if queue_scores is not None:
        _checks.check_array(fn, "queue_scores", queue_scores, ndim=3)
        if queue_scores.shape[0] != num_global_crops or queue_scores.shape[2] != k:
            raise ValueError(
                f"{fn}: `queue_scores` must be [{num_global_crops}, queue_len, {k}], got {tuple(queue_scores.shape)}."
            )
    s = scores.astype(jnp.float32)
    logp = jax.nn.log_softmax(s / temperature, axis=-1)
    total, entropy, used = 0.0, 0.0, 0.0
    for g in range(num_global_crops):
        sg_scores = s[g]
        if queue_scores is not None:
            sg_scores = jnp.concatenate([queue_scores[g].astype(jnp.float32), sg_scores])
        q = sinkhorn_knopp(sg_scores, epsilon=epsilon, num_iters=num_iters, axis_name=axis_name)[-b:]
        others = [v for v in range(v_crops) if v != g]
        ce = -jnp.einsum("bk,vbk->", q, logp[jnp.array(others)]) / len(others)
        total = total + _sharding.global_mean(ce, b, axis_name)
        entropy = entropy + _sharding.global_mean(-jnp.sum(q * jnp.log(jnp.maximum(q, 1e-30))), b, axis_name)
        hit = jnp.zeros((k,), jnp.float32).at[jnp.argmax(q, axis=1)].set(1.0)
        if axis_name is not None:
            hit = lax.pmax(hit, axis_name)
        used = used + jnp.mean(hit)
    return total / num_global_crops, {
        "code_entropy": entropy / num_global_crops,
        "prototype_usage": used / num_global_crops,
    }
