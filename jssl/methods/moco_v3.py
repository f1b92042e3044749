"""MoCo v3: momentum encoder, prediction head, symmetric in-batch InfoNCE (no queue).

Online branch: encoder -> projector (MLP, last BatchNorm without affine, as in the reference
code) -> predictor (2-layer MLP); momentum branch: `Teacher` copies of encoder + projector,
updated after each optimizer step with `m * teacher + (1 - m) * student`, where m rises from
`momentum_base` to `momentum_final` (1) on the cosine curve `1 - (1 - m0)(cos(pi k / K) + 1) / 2`
(the reference `--moco-m-cos`). Loss, as the paper's Algorithm 1:

    2 T * (info_nce(q1, k2) + info_nce(q2, k1))

with the other keys of the global batch as negatives (the batch is sharded by GSPMD, so the
loss sees the global batch, as with MoCo v3's all-gather). Each view goes through the
networks in a forward of its own, so BatchNorm statistics are per view, as in the reference.

Options (`config.method.*`): `temperature` (1.0 for ResNet-50 in the reference code, 0.2 for
ViT), `momentum_base` / `momentum_final` (0.99 -> 1), `projection_layers` (the paper: 3; the
reference ResNet code: 2), `projection_hidden_dim` / `projection_dim` (4096 / 256),
`predictor_hidden_dim` (4096).

References:
  Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision Transformers",
  ICCV 2021, https://arxiv.org/abs/2104.02057 (Algorithm 1, Sec. 3 and Appendix).
  Reference code: https://github.com/facebookresearch/moco-v3 (moco/builder.py).
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
    check_momentum,
    check_positive,
    cosine_momentum,
    ema_update,
    embedding_diagnostics,
    teacher_copy,
)
from jssl.models import MLPHead, get_backbone


class MoCoV3(Method):
    def __init__(self, config: ml_collections.ConfigDict, *, in_channels: int, dtype, rngs: nnx.Rngs):
        hp = config.method
        check_positive("method.temperature", hp.temperature)
        check_momentum("method.momentum_base", hp.momentum_base)
        check_momentum("method.momentum_final", hp.momentum_final)
        if int(hp.projection_layers) < 1:
            raise ValueError(f"method.projection_layers must be >= 1; got {hp.projection_layers}")
        self.temperature = float(hp.temperature)
        self.momentum = cosine_momentum(float(hp.momentum_base), float(hp.momentum_final), config.total_steps)

        self.encoder = get_backbone(
            config.model.name, in_channels=in_channels, dtype=dtype, rngs=rngs, **config.model.kwargs
        )
        self.projector = MLPHead(
            self.encoder.feature_dim,
            hp.projection_hidden_dim,
            hp.projection_dim,
            num_layers=int(hp.projection_layers),
            last_batch_norm=True,
            dtype=dtype,
            rngs=rngs,
        )
        self.predictor = MLPHead(
            hp.projection_dim, hp.predictor_hidden_dim, hp.projection_dim, num_layers=2, dtype=dtype, rngs=rngs
        )
        self.momentum_encoder = teacher_copy(self.encoder)
        self.momentum_projector = teacher_copy(self.projector)

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    def __call__(self, views: Sequence[jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        del rngs
        features = [self.encoder(v) for v in views[:2]]
        z = [self.projector(f) for f in features]
        q = [self.predictor(x) for x in z]
        k = [jax.lax.stop_gradient(self.momentum_projector(self.momentum_encoder(v))) for v in views[:2]]
        loss1, m1 = losses.info_nce(q[0], k[1], temperature=self.temperature)
        loss2, m2 = losses.info_nce(q[1], k[0], temperature=self.temperature)
        loss = (loss1 + loss2) * (2.0 * self.temperature)
        metrics = {name: (m1[name] + m2[name]) / 2 for name in m1}
        metrics["momentum"] = jnp.asarray(self.momentum(step), jnp.float32)
        metrics.update(embedding_diagnostics(z[0]))
        return MethodOutput(loss=loss, metrics=metrics, features=features[0])

    def after_step(self, step: jax.Array) -> None:
        m = self.momentum(step)
        ema_update(self.momentum_encoder, self.encoder, m)
        ema_update(self.momentum_projector, self.projector, m)

    def represent(self, images: jax.Array) -> jax.Array:
        return self.encoder(images)
