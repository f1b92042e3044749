"""Projection/prediction MLP heads and the linear classifier used by probes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jssl.models.partitioning import logical

_DENSE_AXES = ("embed", "mlp")


def dense(
    in_features: int, out_features: int, *, use_bias: bool = True, dtype=jnp.float32, rngs: nnx.Rngs
) -> nnx.Linear:
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        dtype=dtype,
        kernel_init=logical(nnx.initializers.lecun_normal(), _DENSE_AXES),
        bias_init=logical(nnx.initializers.zeros_init(), ("mlp",)),
        rngs=rngs,
    )


def _batch_norm(features: int, *, affine: bool = True, dtype, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(
        features,
        momentum=0.9,
        use_scale=affine,
        use_bias=affine,
        dtype=dtype,
        scale_init=logical(nnx.initializers.ones_init(), ("mlp",)),
        bias_init=logical(nnx.initializers.zeros_init(), ("mlp",)),
        rngs=rngs,
    )


class MLPHead(nnx.Module):
    """Linear -> BN -> ReLU, repeated, then a final Linear (optionally followed by BN).

    This one class covers SimCLR's projector (2-3 layers), BYOL/SimSiam projectors and
    predictors, and Barlow/VICReg expanders, which differ only in depth, widths and final BN.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int,
        *,
        num_layers: int = 2,
        last_batch_norm: bool = False,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if num_layers < 1:
            raise ValueError(f"MLPHead needs num_layers >= 1, got {num_layers}")
        widths = [in_features] + [hidden_features] * (num_layers - 1) + [out_features]
        self.layers = nnx.List(
            [
                dense(a, b, use_bias=i == num_layers - 1, dtype=dtype, rngs=rngs)
                for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))
            ]
        )
        norms = [_batch_norm(w, dtype=dtype, rngs=rngs) for w in widths[1:-1]]
        if last_batch_norm:
            norms.append(_batch_norm(out_features, affine=False, dtype=dtype, rngs=rngs))
        self.norms = nnx.List(norms)
        self.last_batch_norm = last_batch_norm

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = nnx.relu(self.norms[i](x))
        if self.last_batch_norm:
            x = self.norms[-1](x)
        # Losses accumulate in float32 whatever the compute dtype.
        return x.astype(jnp.float32)


class LinearClassifier(nnx.Module):
    """A linear layer on features, kept in float32 (probes are cheap and precision-sensitive)."""

    def __init__(self, in_features: int, num_classes: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(
            in_features,
            num_classes,
            kernel_init=logical(nnx.initializers.zeros_init(), ("embed", None)),
            bias_init=logical(nnx.initializers.zeros_init(), (None,)),
            rngs=rngs,
        )

    def __call__(self, features: jax.Array) -> jax.Array:
        return self.linear(features.astype(jnp.float32))
