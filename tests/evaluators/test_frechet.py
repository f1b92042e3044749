"""The Fréchet distance against independent formulations: the closed form for commuting
(diagonal) covariances, and scipy's general matrix square root of S_a S_b."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from jssl.evaluators.frechet import frechet_distance, frechet_distance_from_moments


def test_diagonal_covariances_match_the_closed_form():
    rng = np.random.default_rng(0)
    mean_a, mean_b = rng.normal(size=5), rng.normal(size=5)
    var_a, var_b = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    got = frechet_distance_from_moments(mean_a, np.diag(var_a), mean_b, np.diag(var_b))
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_features_match_scipy_sqrtm_formula():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8))
    b = rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8)) + 0.5
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    cross = scipy.linalg.sqrtm(ca @ cb).real
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb - 2 * cross)
    np.testing.assert_allclose(frechet_distance(a, b), expected, rtol=1e-6)


def test_identical_sets_are_at_distance_zero_and_shifts_add_their_square():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(100, 4))
    assert abs(frechet_distance(a, a)) < 1e-8
    shift = np.array([1.0, -2.0, 0.0, 0.5])
    np.testing.assert_allclose(frechet_distance(a, a + shift), np.sum(shift**2), rtol=1e-8)


def test_rank_deficient_covariances_are_fine():
    # Fewer examples than dimensions (singular covariances): still finite and non-negative.
    rng = np.random.default_rng(3)
    d = frechet_distance(rng.normal(size=(5, 16)), rng.normal(size=(6, 16)))
    assert np.isfinite(d) and d > 0


@pytest.mark.parametrize(
    "a, b, match",
    [
        (np.zeros((4, 3)), np.zeros((4, 2)), "one dim"),
        (np.zeros((1, 3)), np.zeros((4, 3)), "at least 2"),
        (np.full((4, 3), np.nan), np.zeros((4, 3)), "NaN"),
        (np.zeros(4), np.zeros(4), r"\[n, dim\]"),
    ],
)
def test_bad_inputs_are_clear_errors(a, b, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(a, b)
