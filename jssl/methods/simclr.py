"""SimCLR: two augmented views, a shared encoder + MLP projector, NT-Xent over the global batch.

Negatives come from the whole global batch: the trainer runs this under `jax.jit` with the
batch sharded over the mesh, so the similarity matrix in `losses.nt_xent` spans all devices,
and BatchNorm statistics are global too (SimCLR's synchronized BN).

References:
  Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
  ICML 2020, https://arxiv.org/abs/2002.05709
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jssl import losses
from jssl.methods.base import Method, MethodOutput
from jssl.methods.common import embedding_diagnostics
from jssl.models import MLPHead, get_backbone


class SimCLR(Method):
    def __init__(self, config: ml_collections.ConfigDict, *, in_channels: int, dtype, rngs: nnx.Rngs):
        self.encoder = get_backbone(
            config.model.name, in_channels=in_channels, dtype=dtype, rngs=rngs, **config.model.kwargs
        )
        hp = config.method
        self.projector = MLPHead(
            self.encoder.feature_dim,
            hp.projection_hidden_dim,
            hp.projection_dim,
            num_layers=hp.projection_layers,
            dtype=dtype,
            rngs=rngs,
        )
        self.temperature = float(hp.temperature)

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    def __call__(self, views: Sequence[jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        del step, rngs
        # One forward over both views: BN statistics then cover all 2N images, as in SimCLR.
        batch = views[0].shape[0]
        features = self.encoder(jnp.concatenate(list(views[:2]), axis=0))
        z = self.projector(features)
        loss, metrics = losses.nt_xent(z[:batch], z[batch:], temperature=self.temperature)
        return MethodOutput(loss=loss, metrics={**metrics, **embedding_diagnostics(z[:batch])}, features=features[:batch])

    def represent(self, images: jax.Array) -> jax.Array:
        return self.encoder(images)
