"""Self-distillation losses: BYOL/SimSiam's negative cosine and DINO's cross-entropy to a
centered (or Sinkhorn-Knopp balanced), sharpened teacher, with DINO's center update.

The cosine loss is per-example given its inputs: inside `shard_map`, `pmean` it. Batch
statistics take `axis_name`: the DINO center (`update_center`) and DINO's Sinkhorn-Knopp
teacher balancing (`dino(centering='sinkhorn_knopp')`, which equipartitions the teacher's
outputs over the global batch); `dino` also averages its loss over `axis_name`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jssl.losses import _checks
from jssl.losses import _sharding
from jssl.losses._sharding import AxisName
from jssl.losses.clustering import sinkhorn_knopp
from jssl.losses.contrastive import l2_normalize

Metrics = dict[str, jax.Array]


def negative_cosine(
    p: jax.Array,
    z: jax.Array,
    *,
    stop_gradient: bool = True,
) -> tuple[jax.Array, Metrics]:
    """Negative cosine similarity between a prediction and a (stopped) target, as in
    SimSiam and BYOL.

    Where the stop-gradient goes: on the *target* `z` only. In SimSiam, `p` is the predictor
    output of one view and `z` the projector output of the other view (same network); in
    BYOL, `p` is the online predictor output and `z` the target (EMA) network's projection.
    The gradient flows through `p` alone; without it SimSiam collapses (paper Sec. 4.1).
    Symmetrise by calling twice: `0.5 * (D(p1, z2) + D(p2, z1))`.

    BYOL writes its loss as `2 - 2 cos(p, z)` (Eq. 2), which is `2 + 2 * this loss`: the
    same minimiser, with twice the gradient.

    Args:
      p: [batch, dim] predictions.
      z: [batch, dim] targets.
      stop_gradient: apply `lax.stop_gradient` to `z` (the papers' setting).

    Returns:
      `(loss, metrics)`: `-mean_i cos(p_i, z_i)` and `{'cosine_similarity': mean cosine}`.

    References:
      Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021, Eq. (1)-(2);
      Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020, Eq. (2).
    """
    fn = "negative_cosine"
    _checks.check_array(fn, "p", p, ndim=2)
    _checks.check_array(fn, "z", z, ndim=2)
    _checks.check_same_shape(fn, p=p, z=z)
    if stop_gradient:
        z = lax.stop_gradient(z)
    cos = jnp.sum(l2_normalize(p.astype(jnp.float32)) * l2_normalize(z.astype(jnp.float32)), axis=-1)
    loss = -jnp.mean(cos)
    return loss, {"cosine_similarity": lax.stop_gradient(-loss)}


def _check_dino(fn, student_logits, teacher_logits, center):
    _checks.check_array(fn, "student_logits", student_logits, ndim=3)
    _checks.check_array(fn, "teacher_logits", teacher_logits, ndim=3)
    _checks.check_array(fn, "center", center, ndim=(1, 2))
    s, b, k = student_logits.shape
    g = teacher_logits.shape[0]
    if teacher_logits.shape[1:] != (b, k):
        raise ValueError(
            f"{fn}: `teacher_logits` must be [global_crops, batch, K] with batch and K matching "
            f"`student_logits` {tuple(student_logits.shape)}, got {tuple(teacher_logits.shape)}."
        )
    if g > s:
        raise ValueError(
            f"{fn}: the teacher has {g} crops but the student only {s}; the "
            "student's first crops must be the teacher's global crops."
        )
    if center.shape[-1] != k or center.size != k:
        raise ValueError(f"{fn}: `center` must be [K] or [1, K] with K={k}, got {tuple(center.shape)}.")


def dino(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    *,
    center: jax.Array,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
    centering: str = "center",
    sinkhorn_iterations: int = 3,
    axis_name: AxisName = None,
) -> tuple[jax.Array, Metrics]:
    """DINO's self-distillation loss over multi-crop views.

    The teacher's distribution is `softmax((teacher_logits - center) / teacher_temperature)`
    (centering and sharpening prevent collapse) and is a constant (`stop_gradient`): the
    teacher is an EMA of the student, not trained by gradients. For every teacher (global)
    crop g and every student crop v != g, the loss is the cross-entropy
    `-sum_k P_t[g, k] log P_s[v, k]`, averaged over the pairs and the batch.

    `centering='sinkhorn_knopp'` replaces the running center by DINOv2's teacher balancing:
    the teacher's distribution is Sinkhorn-Knopp of `teacher_logits / teacher_temperature`
    over all global crops of the global batch, so every prototype receives equal mass in
    every batch (the running center balances only on average). `center` is then ignored.

    Args:
      student_logits: [crops, batch, K] student head outputs; the first `global_crops`
        crops must be the global crops, in the same order as the teacher's.
      teacher_logits: [global_crops, batch, K] teacher head outputs on the global crops.
      center: [K] running center of the teacher logits (see `update_center`).
      student_temperature: 0.1 in the paper.
      teacher_temperature: 0.04 in the paper (after a warm-up from 0.04 to 0.07 in some
        configs; pass the scheduled value).
      centering: 'center' (DINO: subtract `center`) or 'sinkhorn_knopp' (DINOv2).
      sinkhorn_iterations: Sinkhorn-Knopp rounds (3 in DINOv2); only with 'sinkhorn_knopp'.
      axis_name: mesh axis the batch is sharded over, inside `shard_map` (equal shards): the
        Sinkhorn-Knopp balancing runs over the global batch, and the loss and metrics are
        averaged over the axis.

    Returns:
      `(loss, metrics)` with `teacher_entropy` and `student_entropy` (mean entropy of the
      teacher's and student's distributions; a collapsing teacher drives the first to 0 or
      log K).

    References:
      Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021,
      Eq. (3)-(4) and Algorithm 1; Oquab et al., "DINOv2: Learning Robust Visual Features
      without Supervision", TMLR 2024, Sec. 5 (Sinkhorn-Knopp centering).
    """
    fn = "dino"
    _check_dino(fn, student_logits, teacher_logits, center)
    _checks.check_positive(fn, "student_temperature", student_temperature)
    _checks.check_positive(fn, "teacher_temperature", teacher_temperature)
    if centering not in ("center", "sinkhorn_knopp"):
        raise ValueError(f"{fn}: centering must be 'center' or 'sinkhorn_knopp', got {centering!r}.")
    s_crops, g_crops = student_logits.shape[0], teacher_logits.shape[0]
    if s_crops < 2:
        raise ValueError(f"{fn}: needs at least 2 crops, got {s_crops}.")
    t = lax.stop_gradient(teacher_logits.astype(jnp.float32))
    if centering == "center":
        c = lax.stop_gradient(center.astype(jnp.float32).reshape(-1))
        t_prob = jax.nn.softmax((t - c) / teacher_temperature, axis=-1)
    else:
        # One balancing over both global crops together, as DINOv2 does.
        flat = t.reshape(-1, t.shape[-1])
        t_prob = sinkhorn_knopp(
            flat, epsilon=teacher_temperature, num_iters=sinkhorn_iterations, axis_name=axis_name
        ).reshape(t.shape)
    s_logp = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temperature, axis=-1)
    # cross[g, v] = mean_b CE(teacher crop g, student crop v); an einsum avoids a python
    # double loop over crops.
    cross = -jnp.einsum("gbk,vbk->gv", t_prob, s_logp) / t.shape[1]
    same_view = jnp.eye(g_crops, s_crops, dtype=bool)
    n_pairs = g_crops * s_crops - g_crops
    loss = jnp.sum(jnp.where(same_view, 0.0, cross)) / n_pairs
    t_ent = -jnp.sum(t_prob * jnp.log(jnp.maximum(t_prob, 1e-30)), -1).mean()
    s_ent = -jnp.sum(jnp.exp(s_logp) * s_logp, -1).mean()
    metrics = {"teacher_entropy": t_ent, "student_entropy": lax.stop_gradient(s_ent)}
    # Equal shards: the mean of the shards' means is the global mean.
    return _sharding.pmean(loss, axis_name), _sharding.pmean(metrics, axis_name)


def update_center(
    center: jax.Array,
    teacher_logits: jax.Array,
    *,
    momentum: float = 0.9,
    axis_name: AxisName = None,
) -> jax.Array:
    """DINO's center EMA: `center <- m * center + (1 - m) * mean(teacher_logits)`.

    The mean is over crops and the global batch (all-reduced over `axis_name`), as in the
    reference implementation.

    Args:
      center: [K] (or [1, K]) current center.
      teacher_logits: [global_crops, batch, K] or [batch, K] teacher outputs.
      momentum: EMA rate, 0.9 in the paper.
      axis_name: mesh axis the batch is sharded over, inside `shard_map`.

    Returns:
      The new center, same shape and dtype as `center`.

    References:
      Caron et al., ICCV 2021, Eq. (4).
    """
    fn = "update_center"
    _checks.check_array(fn, "center", center, ndim=(1, 2))
    _checks.check_array(fn, "teacher_logits", teacher_logits, ndim=(2, 3))
    _checks.check_in_range(fn, "momentum", momentum, 0.0, 1.0)
    k = teacher_logits.shape[-1]
    if center.size != k:
        raise ValueError(f"{fn}: `center` has {center.size} entries, logits have K={k}.")
    t = lax.stop_gradient(teacher_logits.astype(jnp.float32)).reshape(-1, k)
    batch_center = _sharding.global_mean(jnp.sum(t, axis=0), t.shape[0], axis_name)
    new = momentum * center.astype(jnp.float32).reshape(-1) + (1 - momentum) * batch_center
    return new.reshape(center.shape).astype(center.dtype)
