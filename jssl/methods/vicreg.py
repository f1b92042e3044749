"""VICReg: variance-invariance-covariance regularization of two views' expander outputs.

Encoder -> expander (3 linear layers, BatchNorm + ReLU between them, as in the paper's
8192-8192-8192 expander) on each view separately, then `losses.vicreg`:
`lambda * invariance + mu * variance + nu * covariance` with lambda = mu = 25, nu = 1
(scaled as the reference code, which the 25/25/1 were tuned for: the two views' variance
terms are averaged, their covariance terms summed).

The variance and covariance terms are statistics of each view's embedding over the batch
(never of the two views concatenated), and each view goes through the networks in its own
forward pass, so BatchNorm statistics are per view too, as in the reference code. Under
`jax.jit` the batch is sharded over the mesh, so these statistics (and BatchNorm's) cover the
global batch, as the reference code's all-gathered embeddings and synchronized BN do.

The expander's widths and depth are `method.projection_hidden_dim`, `method.projection_dim`
and `method.projection_layers` (the same fields as every method's head, so overrides that
shrink a model mean the same thing everywhere).

References:
  Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
  Self-Supervised Learning", ICLR 2022, https://arxiv.org/abs/2105.04906
  (reference code: https://github.com/facebookresearch/vicreg)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import ml_collections
from flax import nnx

from jssl import losses
from jssl.methods.base import Method, MethodOutput
from jssl.methods.common import embedding_diagnostics
from jssl.models import MLPHead, get_backbone


def check_head(hp: ml_collections.ConfigDict) -> None:
    """One-line errors for head widths/depth shared by VICReg and Barlow Twins."""
    for name in ("projection_hidden_dim", "projection_dim", "projection_layers"):
        value = hp[name]
        if int(value) != value or value < 1:
            raise ValueError(f"method.{name} must be a positive integer; got {value!r} (set --config.method.{name})")


def check_coefficient(name: str, value: float, paper: float) -> None:
    if not float(value) > 0:
        raise ValueError(f"method.{name} must be positive; got {value!r} (the paper uses {paper}: set --config.method.{name})")


class VICReg(Method):
    def __init__(self, config: ml_collections.ConfigDict, *, in_channels: int, dtype, rngs: nnx.Rngs):
        hp = config.method
        check_head(hp)
        for name, paper in (("invariance_weight", 25.0), ("variance_weight", 25.0), ("covariance_weight", 1.0)):
            check_coefficient(name, hp[name], paper)
        self.invariance_weight = float(hp.invariance_weight)
        self.variance_weight = float(hp.variance_weight)
        self.covariance_weight = float(hp.covariance_weight)
        self.encoder = get_backbone(
            config.model.name, in_channels=in_channels, dtype=dtype, rngs=rngs, **config.model.kwargs
        )
        self.expander = MLPHead(
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
        z1, z2 = (self.expander(f) for f in features)
        loss, metrics = losses.vicreg(
            z1,
            z2,
            invariance_weight=self.invariance_weight,
            variance_weight=self.variance_weight,
            covariance_weight=self.covariance_weight,
        )
        return MethodOutput(loss=loss, metrics={**metrics, **embedding_diagnostics(z1)}, features=features[0])

    def represent(self, images: jax.Array) -> jax.Array:
        return self.encoder(images)
