"""Redundancy-reduction losses: VICReg and Barlow Twins.

Both use statistics of the whole batch (per-dimension variance, covariance or
cross-correlation). With `axis_name`, sums are all-reduced across the mesh axis and the
per-dimension mean is computed globally *before* centering, so the statistics, and hence
the gradients, are exactly those of the global batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jssl.losses import _checks
from jssl.losses import _sharding
from jssl.losses._sharding import AxisName

Metrics = dict[str, jax.Array]


def _check_pair(fn, z1, z2):
    _checks.check_array(fn, "z1", z1, ndim=2)
    _checks.check_array(fn, "z2", z2, ndim=2)
    _checks.check_same_shape(fn, z1=z1, z2=z2)


def _centered(z, axis_name):
    """Global-batch centering; returns the centered shard and the global batch size."""
    n_global = z.shape[0] * _sharding.axis_size(axis_name)
    mean = _sharding.psum(jnp.sum(z, axis=0), axis_name) / n_global
    return z - mean, n_global


def _off_diagonal_sq_sum(m):
    return jnp.sum(jnp.square(m)) - jnp.sum(jnp.square(jnp.diagonal(m)))


def vicreg(
    z1: jax.Array,
    z2: jax.Array,
    *,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    epsilon: float = 1e-4,
    gamma: float = 1.0,
    axis_name: AxisName = None,
) -> tuple[jax.Array, Metrics]:
    """VICReg: variance-invariance-covariance regularisation.

    * invariance: mean squared error between the views, averaged over batch and dims;
    * variance: per view, `mean_j relu(gamma - sqrt(Var_j + eps))` (unbiased batch variance),
      averaged over the two views;
    * covariance: per view, sum of squared off-diagonal entries of the (unbiased) covariance
      matrix divided by dim, summed over the two views.

    Args:
      z1: [batch, dim] expander outputs of the first view.
      z2: [batch, dim] expander outputs of the second view.
      invariance_weight: lambda, 25 in the paper.
      variance_weight: mu, 25 in the paper.
      covariance_weight: nu, 1 in the paper.
      epsilon: added to the variance before the square root, 1e-4 in the paper.
      gamma: target standard deviation, 1 in the paper.
      axis_name: mesh axis the batch is sharded over, inside `shard_map`.

    Returns:
      `(loss, metrics)`: metrics has the unweighted `invariance`, `variance` and
      `covariance` terms and `std` (mean per-dimension standard deviation).

    References:
      Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
      Self-Supervised Learning", ICLR 2022, Eq. (1)-(6) and Algorithm 1.
    """
    fn = "vicreg"
    _check_pair(fn, z1, z2)
    for name, v in (
        ("invariance_weight", invariance_weight),
        ("variance_weight", variance_weight),
        ("covariance_weight", covariance_weight),
        ("epsilon", epsilon),
        ("gamma", gamma),
    ):
        _checks.check_positive(fn, name, v, allow_zero=True)
    z1 = z1.astype(jnp.float32)
    z2 = z2.astype(jnp.float32)
    n, d = z1.shape
    invariance = _sharding.global_mean(jnp.sum(jnp.square(z1 - z2)), n * d, axis_name)

    def var_cov(z):
        zc, n_global = _centered(z, axis_name)
        if n_global < 2:
            raise ValueError(f"{fn}: needs a global batch of at least 2 for variances.")
        cov = _sharding.psum(zc.T @ zc, axis_name) / (n_global - 1)
        std = jnp.sqrt(jnp.diagonal(cov) + epsilon)
        return jnp.mean(jax.nn.relu(gamma - std)), _off_diagonal_sq_sum(cov) / d, std

    v1, c1, s1 = var_cov(z1)
    v2, c2, s2 = var_cov(z2)
    variance = 0.5 * (v1 + v2)
    covariance = c1 + c2
    loss = invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance
    sg = jax.lax.stop_gradient
    return loss, {
        "invariance": sg(invariance),
        "variance": sg(variance),
        "covariance": sg(covariance),
        "std": sg(0.5 * (s1.mean() + s2.mean())),
    }


def barlow_twins(
    z1: jax.Array,
    z2: jax.Array,
    *,
    lambda_: float = 5e-3,
    epsilon: float = 1e-5,
    axis_name: AxisName = None,
) -> tuple[jax.Array, Metrics]:
    """Barlow Twins: drive the cross-correlation of the two views' embeddings to identity.

    Each dimension is standardised over the batch (biased variance plus `epsilon`, as the
    reference code's affine-free BatchNorm does), `C = z1_std^T z2_std / batch`, and
    `loss = sum_i (1 - C_ii)^2 + lambda_ * sum_{i != j} C_ij^2`.

    Args:
      z1: [batch, dim] projector outputs of the first view.
      z2: [batch, dim] projector outputs of the second view.
      lambda_: off-diagonal weight, 5e-3 in the paper.
      epsilon: variance epsilon of the batch standardisation (BatchNorm's 1e-5).
      axis_name: mesh axis the batch is sharded over, inside `shard_map`.

    Returns:
      `(loss, metrics)` with `on_diagonal`, `off_diagonal` (unweighted sums) and
      `mean_diagonal_correlation`.

    References:
      Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
      ICML 2021, Eq. (1)-(2) and Algorithm 1.
    """
    fn = "barlow_twins"
    _check_pair(fn, z1, z2)
    _checks.check_positive(fn, "lambda_", lambda_, allow_zero=True)
    _checks.check_positive(fn, "epsilon", epsilon, allow_zero=True)

    def standardise(z):
        zc, n_global = _centered(z.astype(jnp.float32), axis_name)
        var = _sharding.psum(jnp.sum(jnp.square(zc), axis=0), axis_name) / n_global
        return zc / jnp.sqrt(var + epsilon), n_global

    a, n_global = standardise(z1)
    b, _ = standardise(z2)
    c = _sharding.psum(a.T @ b, axis_name) / n_global
    on = jnp.sum(jnp.square(1.0 - jnp.diagonal(c)))
    off = _off_diagonal_sq_sum(c)
    sg = jax.lax.stop_gradient
    return on + lambda_ * off, {
        "on_diagonal": sg(on),
        "off_diagonal": sg(off),
        "mean_diagonal_correlation": sg(jnp.mean(jnp.diagonal(c))),
    }
