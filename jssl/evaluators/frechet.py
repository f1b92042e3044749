"""Fréchet distance between two sets of features, each summarized by a Gaussian.

`d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`, the squared 2-Wasserstein distance
between N(mu_a, S_a) and N(mu_b, S_b). With Inception-v3 pool features this is the FID; jssl
computes it in the feature space of one of its own SSL encoders (see `jssl.train.frechet`), which
is a different number and must be labelled as such.

`tr (S_a S_b)^(1/2)` is computed as the sum of the square roots of the eigenvalues of the
symmetric PSD matrix `S_a^(1/2) S_b S_a^(1/2)` (same eigenvalues as `S_a S_b`), in float64: no
complex parts to discard, as a general matrix square root of `S_a S_b` would produce.

References:
  Fréchet, "Sur la distance de deux lois de probabilité", 1957; Dowson & Landau, "The Fréchet
  distance between multivariate normal distributions", J. Multivariate Anal. 1982;
  Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
  Equilibrium", NeurIPS 2017 (FID).
"""

from __future__ import annotations

import numpy as np


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance_from_moments(
    mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray
) -> float:
    """Squared Fréchet distance of N(mean_a, cov_a) and N(mean_b, cov_b).

    Args:
      mean_a, mean_b: [dim] means.
      cov_a, cov_b: [dim, dim] symmetric positive semi-definite covariances.

    Returns:
      The squared distance (>= 0 up to rounding), as a Python float.
    """
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    dim = mean_a.shape[0] if mean_a.ndim == 1 else -1
    if mean_a.ndim != 1 or mean_b.shape != (dim,) or cov_a.shape != (dim, dim) or cov_b.shape != (dim, dim):
        raise ValueError(
            f"frechet_distance: means must be [dim] and covariances [dim, dim] of one dim; got means "
            f"{mean_a.shape}, {mean_b.shape} and covariances {cov_a.shape}, {cov_b.shape}"
        )
    root_a = _psd_sqrt(cov_a)
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(cross, 0.0, None))))
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Squared Fréchet distance between the Gaussians fitted to two feature sets.

    Args:
      features_a: [n, dim] features of one set (e.g. held-out images), n >= 2.
      features_b: [m, dim] features of the other (e.g. generated samples), m >= 2.

    Returns:
      `|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))` with unbiased sample covariances.
      It is biased upward for small sets: compare numbers computed with equal set sizes.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance: features must be [n, dim] with one dim; got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance: needs at least 2 examples per set; got {len(a)} and {len(b)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("frechet_distance: features contain NaN or inf")
    return frechet_distance_from_moments(
        a.mean(0),
        np.cov(a, rowvar=False).reshape(a.shape[1], a.shape[1]),
        b.mean(0),
        np.cov(b, rowvar=False).reshape(b.shape[1], b.shape[1]),
    )
