"""Barlow Twins: make the cross-correlation matrix of two views' embeddings the identity.

Encoder -> projector (3 linear layers, BatchNorm + ReLU between them, as in the paper's
8192-8192-8192 projector) on each view separately, then `losses.barlow_twins`:
`sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2` with lambda = 5e-3.

The paper normalizes each view's embedding per dimension over the batch (the reference
code's affine-free `BatchNorm1d` after the projector) before `C = z1^T z2 / N`.
`losses.barlow_twins` does exactly that standardization itself (biased variance + 1e-5,
like BatchNorm), so the projector here ends with a plain linear layer and no BatchNorm:
normalizing twice would be harmless in value but wasteful and confusing. The statistics are
per view over the batch; each view has its own forward pass (per-view BatchNorm statistics,
as in the reference code); under `jax.jit` with the batch sharded over the mesh they cover
the global batch.

The projector's widths and depth are `method.projection_hidden_dim`, `method.projection_dim`
and `method.projection_layers`; the off-diagonal weight is `method.lambda_`.

References:
  Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins: Self-Supervised Learning via Redundancy
  Reduction", ICML 2021, https://arxiv.org/abs/2103.03230
  (reference code: https://github.com/facebookresearch/barlowtwins)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import ml_collections
from flax import nnx

from jssl import losses
from jssl.methods.base import Method, MethodOutput
from jssl.methods.common import embedding_diagnostics
from jssl.methods.vicreg import check_coefficient, check_head
from jssl.models import MLPHead, get_backbone


class BarlowTwins(Method):
    def __init__(self, config: ml_collections.ConfigDict, *, in_channels: int, dtype, rngs: nnx.Rngs):
        hp = config.method
        check_head(hp)
        check_coefficient("lambda_", hp.lambda_, 5e-3)
        self.lambda_ = float(hp.lambda_)
        self.encoder = get_backbone(
            config.model.name, in_channels=in_channels, dtype=dtype, rngs=rngs, **config.model.kwargs
        )
        self.projector = MLPHead(
            self.encoder.feature_dim,
            int(hp.projection_hidden_dim),
            int(hp.projection_dim),
            num_layers=int(hp.projection_layers),
            dtype=dtype,
            rngs=rngs,
        )

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    def __call__(self, views: Sequence[jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        del step, rngs
        # One forward per view: BatchNorm statistics per view, as in the reference code.
        features = [self.encoder(v) for v in views[:2]]
        z1, z2 = (self.projector(f) for f in features)
        loss, metrics = losses.barlow_twins(z1, z2, lambda_=self.lambda_)
        return MethodOutput(loss=loss, metrics={**metrics, **embedding_diagnostics(z1)}, features=features[0])

    def represent(self, images: jax.Array) -> jax.Array:
        return self.encoder(images)
