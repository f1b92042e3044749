"""DINO: self-distillation with no labels, with multi-crop.

A student (backbone + DINO head) and a teacher of the same architecture whose weights are an
EMA of the student's (`teacher_copy`: `Teacher` variables, never in the optimizer). The teacher
sees only the global crops, the student every crop; the student's softmax (temperature 0.1)
of each crop is trained to match the teacher's centered, sharpened softmax of every *other*
global crop (`losses.dino`). The center is a `Buffer` [K] moved after each batch by
`losses.update_center` (momentum 0.9) from the teacher's logits over the global batch.
`method.centering='sinkhorn_knopp'` balances the teacher by Sinkhorn-Knopp over the global
batch instead (DINOv2, Oquab et al. 2024); the center is then still tracked, as a diagnostic.

The DINO head: an MLP (`head_layers` linear layers, GELU, optional BatchNorm; hidden 2048 ->
bottleneck 256 in the paper), L2 normalization, then a weight-normalized linear layer to K
outputs; with `norm_last_layer=True` its norm is fixed to 1 (only the direction is learned).
The last layer is frozen for `freeze_last_layer_steps` (the first epoch in the paper).

Schedules (pure functions of the step, logged as metrics):
  * teacher temperature: linear from `teacher_temperature_start` to `teacher_temperature`
    over `teacher_temperature_warmup_steps`, then constant;
  * teacher momentum: cosine from `teacher_momentum` (0.996) to `teacher_momentum_final`
    (1.0) over the run.

Evaluation (`represent`) uses the teacher backbone, as the paper reports.

References:
  Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021,
  https://arxiv.org/abs/2104.14294 (Sec. 3.1, Algorithm 1, Appendix);
  official code https://github.com/facebookresearch/dino (main_dino.py, vision_transformer.py
  DINOHead).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax
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
    forward_by_resolution,
    multicrop_counts,
    teacher_copy,
)
from jssl.models import get_backbone
from jssl.models.heads import _batch_norm, dense
from jssl.models.partitioning import logical


class WeightNormLinear(nnx.Module):
    """`x @ (g * v / ||v||)` without bias, the norm taken per output unit (column of `v`).

    `fixed_norm=True` fixes `g = 1` (DINO's `norm_last_layer`): only the direction `v` is a
    parameter. Otherwise `g` is a trainable `[out]` parameter initialized to 1.
    """

    def __init__(self, in_features: int, out_features: int, *, fixed_norm: bool, dtype, rngs: nnx.Rngs):
        init = logical(nnx.initializers.truncated_normal(0.02), ("embed", "mlp"))
        self.kernel = nnx.Param(init(rngs.params(), (in_features, out_features), jnp.float32))
        if not fixed_norm:
            self.scale = nnx.Param(logical(nnx.initializers.ones_init(), ("mlp",))(rngs.params(), (out_features,)))
        self.fixed_norm = fixed_norm
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        v = self.kernel.get_value()
        w = v / jnp.maximum(jnp.linalg.norm(v, axis=0, keepdims=True), 1e-12)
        if not self.fixed_norm:
            w = w * self.scale.get_value()
        return jnp.dot(x.astype(self.dtype), w.astype(self.dtype))


class DINOHead(nnx.Module):
    """MLP -> L2 normalization -> weight-normalized last layer (DINO's projection head)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden_features: int = 2048,
        bottleneck_features: int = 256,
        num_layers: int = 3,
        batch_norm: bool = False,
        norm_last_layer: bool = True,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        widths = [in_features] + [hidden_features] * (num_layers - 1) + [bottleneck_features]
        self.layers = nnx.List(
            [dense(a, b, dtype=dtype, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])]
        )
        self.norms = nnx.List([_batch_norm(w, dtype=dtype, rngs=rngs) for w in widths[1:-1]] if batch_norm else [])
        self.last_layer = WeightNormLinear(
            bottleneck_features, out_features, fixed_norm=norm_last_layer, dtype=dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns `(logits [batch, K] float32, bottleneck embedding [batch, bottleneck])`."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                if len(self.norms):
                    x = self.norms[i](x)
                x = nnx.gelu(x, approximate=False)
        z = losses.l2_normalize(x.astype(jnp.float32))
        return self.last_layer(z).astype(jnp.float32), z


class DINO(Method):
    @classmethod
    def num_views(cls, config: ml_collections.ConfigDict) -> int:
        return sum(multicrop_counts(config, "DINO", "the teacher's crops"))

    def __init__(self, config: ml_collections.ConfigDict, *, in_channels: int, dtype, rngs: nnx.Rngs):
        hp = config.method
        g, l = multicrop_counts(config, "DINO", "the teacher's crops")
        check_positive("method.student_temperature", hp.student_temperature)
        check_positive("method.teacher_temperature", hp.teacher_temperature)
        check_positive("method.teacher_temperature_start", hp.teacher_temperature_start)
        if int(hp.teacher_temperature_warmup_steps) < 0:
            raise ValueError(
                f"method.teacher_temperature_warmup_steps must be >= 0; got {hp.teacher_temperature_warmup_steps}"
            )
        check_momentum("method.teacher_momentum", hp.teacher_momentum)
        check_momentum("method.teacher_momentum_final", hp.teacher_momentum_final)
        check_momentum("method.center_momentum", hp.center_momentum)
        centering = hp.get("centering", "center")
        if centering not in ("center", "sinkhorn_knopp"):
            raise ValueError(f"method.centering must be 'center' (DINO) or 'sinkhorn_knopp' (DINOv2); got {centering!r}")
        sinkhorn_iterations = int(hp.get("sinkhorn_iterations", 3))
        if sinkhorn_iterations < 1:
            raise ValueError(f"method.sinkhorn_iterations must be >= 1; got {sinkhorn_iterations}")
        if int(hp.out_dim) < 2:
            raise ValueError(f"method.out_dim (K) must be >= 2; got {hp.out_dim}")
        if int(hp.head_layers) < 1:
            raise ValueError(f"method.head_layers must be >= 1; got {hp.head_layers}")
        if int(hp.freeze_last_layer_steps) < 0:
            raise ValueError(f"method.freeze_last_layer_steps must be >= 0; got {hp.freeze_last_layer_steps}")

        self.num_global_crops = g
        self.student_temperature = float(hp.student_temperature)
        self.center_momentum = float(hp.center_momentum)
        self.centering = centering
        self.sinkhorn_iterations = sinkhorn_iterations
        self.freeze_last_layer_steps = int(hp.freeze_last_layer_steps)
        self.teacher_temperature_schedule = optax.linear_schedule(
            float(hp.teacher_temperature_start), float(hp.teacher_temperature), int(hp.teacher_temperature_warmup_steps)
        )
        self.momentum_schedule = cosine_momentum(
            float(hp.teacher_momentum), float(hp.teacher_momentum_final), int(config.total_steps)
        )

        self.encoder = get_backbone(
            config.model.name, in_channels=in_channels, dtype=dtype, rngs=rngs, **config.model.kwargs
        )
        self.head = DINOHead(
            self.encoder.feature_dim,
            int(hp.out_dim),
            hidden_features=int(hp.head_hidden_dim),
            bottleneck_features=int(hp.head_bottleneck_dim),
            num_layers=int(hp.head_layers),
            batch_norm=bool(hp.head_batch_norm),
            norm_last_layer=bool(hp.norm_last_layer),
            dtype=dtype,
            rngs=rngs,
        )
        self.teacher_encoder = teacher_copy(self.encoder)
        self.teacher_head = teacher_copy(self.head)
        self.center = Buffer(jnp.zeros((int(hp.out_dim),), jnp.float32), out_sharding=(None,), eager_sharding=False)

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    def teacher_temperature(self, step: jax.Array) -> jax.Array:
        return jnp.asarray(self.teacher_temperature_schedule(step), jnp.float32)

    def teacher_momentum(self, step: jax.Array) -> jax.Array:
        return jnp.asarray(self.momentum_schedule(step), jnp.float32)

    def __call__(self, views: Sequence[jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        del rngs
        batch = views[0].shape[0]
        g = self.num_global_crops
        first = []

        def student(x):
            features = self.encoder(x)
            logits, z = self.head(features)
            if not first:
                first.append((features[:batch], z[:batch]))  # the first group starts with view 0
            return logits

        def teacher(x):
            return self.teacher_head(self.teacher_encoder(x))[0]

        student_logits = jnp.stack(forward_by_resolution(student, views))
        teacher_logits = jax.lax.stop_gradient(jnp.stack(forward_by_resolution(teacher, views[:g])))
        temperature = self.teacher_temperature(step)
        center = self.center.get_value()
        loss, metrics = losses.dino(
            student_logits,
            teacher_logits,
            center=center,
            student_temperature=self.student_temperature,
            teacher_temperature=temperature,
            centering=self.centering,
            sinkhorn_iterations=self.sinkhorn_iterations,
        )
        self.center.set_value(losses.update_center(center, teacher_logits, momentum=self.center_momentum))
        features, z = first[0]
        metrics = {
            **metrics,
            **embedding_diagnostics(z),
            "teacher_temperature": temperature,
            "teacher_momentum": self.teacher_momentum(step),
            "center_norm": jnp.linalg.norm(center),
        }
        return MethodOutput(loss=loss, metrics=metrics, features=features)

    def after_step(self, step: jax.Array) -> None:
        momentum = self.teacher_momentum(step)
        ema_update(self.teacher_encoder, self.encoder, momentum)
        ema_update(self.teacher_head, self.head, momentum)

    def frozen_steps(self) -> dict[str, int]:
        return {"head.last_layer": self.freeze_last_layer_steps} if self.freeze_last_layer_steps else {}

    def represent(self, images: jax.Array) -> jax.Array:
        return self.teacher_encoder(images)

    def backbone(self) -> nnx.Module:
        return self.teacher_encoder  # DINO evaluates (and fine-tunes) the teacher
