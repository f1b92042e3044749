"""SwAV: online clustering with swapped prediction over multi-crop views.

Every crop goes through the encoder and a 2-layer projection MLP, is L2-normalized and scored
against `K` prototypes (a bias-free linear layer whose columns are unit vectors). Codes are
computed for the global crops only, by Sinkhorn-Knopp over the *global* batch (the trainer
runs the step under `jax.jit` with the batch sharded over the mesh, so `losses.swav` without
`axis_name` already sees every device's samples); every other crop predicts them
(`losses.swav`). Multi-crop runs one forward per resolution group (`forward_by_resolution`),
so the 2 global crops share one encoder call and the local crops another, and BatchNorm
statistics span each group as in the reference code.

Paper details kept here:
  * prototypes are re-normalized after every optimizer step (`after_step`);
  * prototypes are frozen for the first `method.freeze_prototypes_steps` steps
    (`frozen_steps`; 313 iterations in the paper);
  * an optional queue of past global-crop embeddings (a `Buffer`
    [num_global_crops, queue_length, dim]) is filled from `method.queue_start_step` on and,
    once full, joins the Sinkhorn batch (not the loss): scores of queued embeddings are taken
    against the *current* prototypes, as in the reference code. `queue_length` must be a
    multiple of the global batch (the reference rounds it down to one; here it is an error).

References:
  Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments",
  NeurIPS 2020, https://arxiv.org/abs/2006.09882 (Sec. 3, Sec. 4 multi-crop and queue,
  Appendix A implementation details).
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
    check_positive,
    embedding_diagnostics,
    forward_by_resolution,
    multicrop_counts,
)
from jssl.models import MLPHead, get_backbone
from jssl.models.heads import dense


def _normalize_columns(kernel: jax.Array) -> jax.Array:
    """Each prototype (a column of the [dim, K] kernel) scaled to unit L2 norm."""
    return kernel / jnp.maximum(jnp.linalg.norm(kernel, axis=0, keepdims=True), 1e-12)


class SwAV(Method):
    @classmethod
    def num_views(cls, config: ml_collections.ConfigDict) -> int:
        return sum(multicrop_counts(config, "SwAV", "the crops codes are computed for"))

    def __init__(self, config: ml_collections.ConfigDict, *, in_channels: int, dtype, rngs: nnx.Rngs):
        hp = config.method
        g, l = multicrop_counts(config, "SwAV", "the crops codes are computed for")
        check_positive("method.temperature", hp.temperature)
        check_positive("method.epsilon", hp.epsilon)
        if int(hp.sinkhorn_iters) < 1:
            raise ValueError(f"method.sinkhorn_iters must be >= 1; got {hp.sinkhorn_iters}")
        if int(hp.num_prototypes) < 1:
            raise ValueError(f"method.num_prototypes must be >= 1; got {hp.num_prototypes}")
        if int(hp.freeze_prototypes_steps) < 0:
            raise ValueError(f"method.freeze_prototypes_steps must be >= 0; got {hp.freeze_prototypes_steps}")
        queue_length = int(hp.queue_length)
        batch = int(config.global_batch_size)
        if queue_length < 0 or queue_length % batch:
            raise ValueError(
                f"method.queue_length ({queue_length}) must be 0 (no queue) or a positive multiple of "
                f"global_batch_size ({batch}); e.g. {max(1, queue_length // batch) * batch}"
            )
        if int(hp.queue_start_step) < 0:
            raise ValueError(f"method.queue_start_step must be >= 0; got {hp.queue_start_step}")

        self.num_global_crops = g
        self.temperature = float(hp.temperature)
        self.epsilon = float(hp.epsilon)
        self.sinkhorn_iters = int(hp.sinkhorn_iters)
        self.freeze_prototypes_steps = int(hp.freeze_prototypes_steps)
        self.queue_length = queue_length
        self.queue_start_step = int(hp.queue_start_step)
        # The queue is full (and used) once it has received queue_length / batch batches.
        self.queue_full_step = self.queue_start_step + queue_length // batch

        self.encoder = get_backbone(
            config.model.name, in_channels=in_channels, dtype=dtype, rngs=rngs, **config.model.kwargs
        )
        self.projector = MLPHead(
            self.encoder.feature_dim,
            hp.projection_hidden_dim,
            hp.projection_dim,
            num_layers=hp.projection_layers,
            dtype=dtype,
            rngs=rngs,
        )
        self.prototypes = dense(hp.projection_dim, hp.num_prototypes, use_bias=False, dtype=dtype, rngs=rngs)
        self.prototypes.kernel.set_value(_normalize_columns(self.prototypes.kernel.get_value()))
        if queue_length:
            self.queue = Buffer(
                jnp.zeros((g, queue_length, int(hp.projection_dim)), jnp.float32), out_sharding=(None, None, None), eager_sharding=False
            )

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    def __call__(self, views: Sequence[jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        del rngs
        batch = views[0].shape[0]
        g = self.num_global_crops
        first_features = []

        def embed(x):
            features = self.encoder(x)
            if not first_features:
                first_features.append(features[:batch])  # the first group starts with view 0
            return losses.l2_normalize(self.projector(features))

        z = forward_by_resolution(embed, views)  # one [batch, dim] embedding per crop
        # One prototype matmul over all crops (sizes differ only before pooling).
        scores = self.prototypes(jnp.concatenate(z, axis=0)).astype(jnp.float32).reshape(len(views), batch, -1)
        swav = lambda queue_scores=None: losses.swav(  # noqa: E731
            scores,
            num_global_crops=g,
            temperature=self.temperature,
            epsilon=self.epsilon,
            num_iters=self.sinkhorn_iters,
            queue_scores=queue_scores,
        )
        metrics = {}
        if self.queue_length:
            queue = self.queue.get_value()
            # Queued embeddings scored against the current prototypes; a target only.
            queue_scores = jax.lax.stop_gradient(self.prototypes(queue.reshape(-1, queue.shape[-1]))).astype(jnp.float32)
            queue_scores = queue_scores.reshape(g, self.queue_length, -1)
            use_queue = step >= self.queue_full_step
            loss, loss_metrics = jax.lax.cond(use_queue, lambda: swav(queue_scores), lambda: swav())
            # Newest first: shift by one batch and put this batch's global-crop embeddings in front.
            new = jax.lax.stop_gradient(jnp.stack(z[:g]).astype(jnp.float32))
            shifted = jnp.concatenate([new, queue[:, :-batch]], axis=1)
            self.queue.set_value(jnp.where(step >= self.queue_start_step, shifted, queue))
            metrics["queue_in_use"] = use_queue.astype(jnp.float32)
        else:
            loss, loss_metrics = swav()
        metrics.update(loss_metrics)
        metrics.update(embedding_diagnostics(z[0]))
        return MethodOutput(loss=loss, metrics=metrics, features=first_features[0])

    def after_step(self, step: jax.Array) -> None:
        del step
        self.prototypes.kernel.set_value(_normalize_columns(self.prototypes.kernel.get_value()))

    def frozen_steps(self) -> dict[str, int]:
        return {"prototypes": self.freeze_prototypes_steps} if self.freeze_prototypes_steps else {}

    def represent(self, images: jax.Array) -> jax.Array:
        return self.encoder(images)
