"""MoCo v2: a momentum key encoder and a queue of negatives, InfoNCE against the queue.

Query encoder + 2-layer MLP projector (Linear -> ReLU -> Linear, no BatchNorm, as in MoCo v2)
are trained; the key encoder + projector are `Teacher` copies moved by an EMA of the query
weights after each optimizer step (`after_step`). Each query's logits are
`[q . k+, q . queue] / T` (MoCo's Eq. 1, other keys of the batch are *not* negatives); the
batch's keys are then pushed into the FIFO queue (a `Buffer`), overwriting the oldest.

Options (`config.method.*`): `queue_size` (a multiple of the keys pushed per step, as MoCo
asserts), `temperature` (0.2 in v2), `momentum_base` / `momentum_final` (0.999 constant in
MoCo v2; `final != base` gives BYOL's cosine increase), `projection_hidden_dim` /
`projection_dim` (2048 / 128), `projection_batch_norm` (BN in the projector's hidden layer, as
in solo-learn's "MoCo v2+"; off in MoCo v2) and `symmetric`:

* `symmetric=False` (MoCo v2 as published, the default): queries from view 0, keys from
  view 1; one loss; the global batch of keys is pushed (the pointer advances by the batch).
* `symmetric=True`: also queries from view 1 against keys from view 0 (the mean of the two
  losses, as in MoCo v3 / solo-learn); both key batches are pushed (2 x batch per step).

Deviation: MoCo shuffles the key batch across GPUs (Shuffle-BN) so that per-GPU BatchNorm
statistics cannot leak which key is the positive. Here the batch is sharded by GSPMD and
BatchNorm statistics are global (synchronized BN) for the query and key forwards alike; no
shuffle is done (there is no per-device BN to shuffle across).

References:
  He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020,
  https://arxiv.org/abs/1911.05722 (Algorithm 1).
  Chen, Fan, Girshick, He, "Improved Baselines with Momentum Contrastive Learning",
  https://arxiv.org/abs/2003.04297 (MLP head, stronger augmentation, cosine lr).
  Reference code: https://github.com/facebookresearch/moco
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jssl import losses
from jssl.methods.base import Method, MethodOutput
from jssl.methods.common import (
    Buffer,
    check_momentum,
    check_positive,
    cosine_momentum,
    ema_update,
    embedding_diagnostics,
    teacher_copy,
)
from jssl.models import MLPHead, get_backbone
from jssl.models.heads import dense


class LinearReluLinear(nnx.Module):
    """MoCo v2's projection head: Linear -> ReLU -> Linear (with biases, no BatchNorm)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int, *, dtype, rngs: nnx.Rngs):
        self.hidden = dense(in_features, hidden_features, dtype=dtype, rngs=rngs)
        self.out = dense(hidden_features, out_features, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(nnx.relu(self.hidden(x))).astype(jnp.float32)


def check_queue_size(queue_size: int, pushed: int, what: str) -> None:
    if queue_size <= 0 or queue_size % pushed:
        raise ValueError(
            f"method.queue_size={queue_size} must be a positive multiple of the keys pushed per step ({pushed} = {what}); "
            f"set it to e.g. {max(1, round(queue_size / pushed)) * pushed}"
        )


class MoCoV2(Method):
    def __init__(self, config: ml_collections.ConfigDict, *, in_channels: int, dtype, rngs: nnx.Rngs):
        hp = config.method
        check_positive("method.temperature", hp.temperature)
        check_momentum("method.momentum_base", hp.momentum_base)
        check_momentum("method.momentum_final", hp.momentum_final)
        self.symmetric = bool(hp.get("symmetric", False))
        pushed = config.global_batch_size * (2 if self.symmetric else 1)
        check_queue_size(
            int(hp.queue_size), pushed, "2 x global_batch_size (symmetric)" if self.symmetric else "global_batch_size"
        )
        self.temperature = float(hp.temperature)
        self.momentum = cosine_momentum(float(hp.momentum_base), float(hp.momentum_final), config.total_steps)

        self.encoder = get_backbone(
            config.model.name, in_channels=in_channels, dtype=dtype, rngs=rngs, **config.model.kwargs
        )
        dims = (self.encoder.feature_dim, hp.projection_hidden_dim, hp.projection_dim)
        if hp.get("projection_batch_norm", False):
            self.projector = MLPHead(*dims, num_layers=2, dtype=dtype, rngs=rngs)
        else:
            self.projector = LinearReluLinear(*dims, dtype=dtype, rngs=rngs)
        self.key_encoder = teacher_copy(self.encoder)
        self.key_projector = teacher_copy(self.projector)
        # MoCo initializes the queue with random unit vectors; the pointer is the oldest entry.
        queue = jax.random.normal(rngs.params(), (int(hp.queue_size), int(hp.projection_dim)), jnp.float32)
        self.queue = Buffer(losses.l2_normalize(queue), out_sharding=(None, None), eager_sharding=False)
        self.queue_ptr = Buffer(jnp.zeros((), jnp.int32))

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    def _keys(self, x: jax.Array) -> jax.Array:
        return jax.lax.stop_gradient(losses.l2_normalize(self.key_projector(self.key_encoder(x))))

    def __call__(self, views: Sequence[jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        del rngs
        queue = self.queue.get_value()
        features = self.encoder(views[0])
        q1 = self.projector(features)
        k2 = self._keys(views[1])
        loss, metrics = losses.info_nce(q1, k2, negatives=queue, temperature=self.temperature)
        keys = k2
        if self.symmetric:
            q2 = self.projector(self.encoder(views[1]))
            k1 = self._keys(views[0])
            loss2, metrics2 = losses.info_nce(q2, k1, negatives=queue, temperature=self.temperature)
            loss = (loss + loss2) / 2
            metrics = {name: (metrics[name] + metrics2[name]) / 2 for name in metrics}
            keys = jnp.concatenate([k2, k1], axis=0)
        new_queue, new_ptr = losses.update_queue(queue, keys, self.queue_ptr.get_value())
        self.queue.set_value(new_queue)
        self.queue_ptr.set_value(new_ptr)
        metrics = {**metrics, "momentum": jnp.asarray(self.momentum(step), jnp.float32), **embedding_diagnostics(q1)}
        return MethodOutput(loss=loss, metrics=metrics, features=features)

    def after_step(self, step: jax.Array) -> None:
        m = self.momentum(step)
        ema_update(self.key_encoder, self.encoder, m)
        ema_update(self.key_projector, self.projector, m)

    def represent(self, images: jax.Array) -> jax.Array:
        return self.encoder(images)
