"""Weighted k-nearest-neighbour classification on L2-normalized features.

The protocol of Wu et al. (2018) used by DINO and solo-learn: cosine similarity to a bank of
training features, the top-k neighbours vote with weight exp(similarity / T).

References:
  Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
  CVPR 2018, https://arxiv.org/abs/1805.01978
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jssl.data.checks import check_labels


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _knn_predict_chunk(bank, bank_labels, queries, *, k: int, temperature: float, num_classes: int):
    similarity = queries @ bank.T  # [chunk, bank]
    top_sim, top_idx = jax.lax.top_k(similarity, k)
    weights = jnp.exp(top_sim / temperature)
    votes = jax.nn.one_hot(bank_labels[top_idx], num_classes) * weights[..., None]
    return jnp.argmax(votes.sum(axis=1), axis=-1)


def _l2_normalize(x: np.ndarray) -> jax.Array:
    x = jnp.asarray(x, jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def knn_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> float:
    """Top-1 accuracy of temperature-weighted kNN.

    Args:
      train_features: `[num_train, dim]` the bank.
      train_labels: `[num_train]` integer labels.
      test_features: `[num_test, dim]`.
      test_labels: `[num_test]`.
      num_classes: number of classes.
      k: neighbours (20 as in DINO/solo-learn); clipped to the bank size.
      temperature: vote temperature (0.07).
      chunk_size: test examples per similarity block, bounding memory to chunk x bank.
    """
    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"features must be [n, dim] with the same dim; got {train_features.shape} and {test_features.shape}"
        )
    if len(train_features) == 0 or len(test_features) == 0:
        raise ValueError("kNN needs a non-empty bank and test set")
    # A label past num_classes would vote for no class and silently count as wrong.
    check_labels(train_labels, num_classes, split="train", setting="num_classes")
    check_labels(test_labels, num_classes, split="test", setting="num_classes")
    bank = _l2_normalize(train_features)
    queries = _l2_normalize(test_features)
    bank_labels = jnp.asarray(train_labels, jnp.int32)
    k = min(k, len(train_features))
    predictions = []
    for start in range(0, len(queries), chunk_size):
        predictions.append(
            np.asarray(
                _knn_predict_chunk(
                    bank,
                    bank_labels,
                    queries[start : start + chunk_size],
                    k=k,
                    temperature=temperature,
                    num_classes=num_classes,
                )
            )
        )
    return float(np.mean(np.concatenate(predictions) == np.asarray(test_labels)))
