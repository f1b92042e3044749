"""kNN against a loop-written numpy reference; the linear probe on data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from jssl.evaluators import knn_accuracy, linear_probe_accuracy


def _knn_reference(train_x, train_y, test_x, *, k, temperature, num_classes):
    train_x = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    predictions = []
    for query in test_x:
        query = query / np.linalg.norm(query)
        similarity = train_x @ query
        neighbours = np.argsort(-similarity, kind="stable")[:k]
        votes = np.zeros(num_classes)
        for j in neighbours:
            votes[train_y[j]] += np.exp(similarity[j] / temperature)
        predictions.append(np.argmax(votes))
    return np.array(predictions)


def test_knn_matches_reference():
    rng = np.random.default_rng(0)
    train_x, test_x = rng.normal(size=(300, 16)), rng.normal(size=(70, 16))
    train_y, test_y = rng.integers(0, 5, 300), rng.integers(0, 5, 70)
    expected = np.mean(_knn_reference(train_x, train_y, test_x, k=20, temperature=0.07, num_classes=5) == test_y)
    got = knn_accuracy(train_x, train_y, test_x, test_y, num_classes=5, k=20, temperature=0.07, chunk_size=32)
    assert got == pytest.approx(expected)


def test_knn_on_clusters_is_perfect_and_k_is_clipped():
    centers = np.eye(4) * 10
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 40)
    x = centers[y] + rng.normal(scale=0.1, size=(40, 4))
    assert knn_accuracy(x, y, x, y, num_classes=4, k=1000) == 1.0


def test_linear_probe_separates_linearly_separable_data():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 10))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int32)
    assert linear_probe_accuracy(x[:300], y[:300], x[300:], y[300:], num_classes=2, steps=100) > 0.97


def test_linear_probe_on_noise_is_near_chance():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(600, 20)), rng.integers(0, 2, 600)
    assert abs(linear_probe_accuracy(x[:400], y[:400], x[400:], y[400:], num_classes=2, steps=100) - 0.5) < 0.12


@pytest.mark.parametrize("fn", [knn_accuracy, linear_probe_accuracy])
def test_mismatched_feature_shapes_are_errors(fn):
    with pytest.raises(ValueError, match="features must be"):
        fn(np.zeros((4, 3)), np.zeros(4), np.zeros((4, 5)), np.zeros(4), num_classes=2)
