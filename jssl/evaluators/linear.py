"""Offline linear probe: multinomial logistic regression on frozen, standardized features.

Fitted full-batch with L-BFGS (optax), which converges in a few hundred iterations on
small evaluation sets and has no learning rate to tune, so the number it reports is a
property of the features, not of a probe recipe. A fit whose final loss is NaN or infinite
raises `NonFiniteLossError` instead of reporting an accuracy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jssl.data.checks import check_labels
from jssl.nonfinite import NonFiniteLossError


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit(x, y, *, num_classes: int, steps: int, l2: float):
    params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}

    def objective(p):
        logits = x @ p["w"] + p["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean() + 0.5 * l2 * jnp.sum(p["w"] ** 2)

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def body(_, carry):
        p, state = carry
        value, grad = value_and_grad(p, state=state)
        updates, state = solver.update(grad, state, p, value=value, grad=grad, value_fn=objective)
        return optax.apply_updates(p, updates), state

    params, _ = jax.lax.fori_loop(0, steps, body, (params, solver.init(params)))
    return params, objective(params)


def linear_probe_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    num_classes: int,
    steps: int = 300,
    l2: float = 1e-4,
) -> float:
    """Test top-1 accuracy of a linear classifier fitted on the training features.

    Args:
      train_features: `[num_train, dim]`; standardized with training statistics.
      train_labels: `[num_train]` integer labels in `[0, num_classes)`.
      test_features: `[num_test, dim]`.
      test_labels: `[num_test]`.
      num_classes: number of classes.
      steps: L-BFGS iterations.
      l2: weight of the L2 penalty on the weights.
    """
    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"features must be [n, dim] with the same dim; got {train_features.shape} and {test_features.shape}"
        )
    check_labels(train_labels, num_classes, split="train", setting="num_classes")
    check_labels(test_labels, num_classes, split="test", setting="num_classes")
    train_x = np.asarray(train_features, np.float32)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    x = jnp.asarray((train_x - mean) / std)
    params, loss = _fit(x, jnp.asarray(train_labels, jnp.int32), num_classes=num_classes, steps=steps, l2=l2)
    if not np.isfinite(float(loss)):
        bad = not (np.all(np.isfinite(train_x)) and np.all(np.isfinite(np.asarray(test_features, np.float32))))
        cause = "the features hold NaN or inf (the encoder diverged?)" if bad else "raise eval.linear_probe_l2"
        raise NonFiniteLossError(
            f"the offline linear probe loss is non-finite (NaN or inf) after {steps} L-BFGS steps; {cause}"
        )
    test_x = jnp.asarray((np.asarray(test_features, np.float32) - mean) / std)
    predictions = np.asarray(jnp.argmax(test_x @ params["w"] + params["b"], axis=-1))
    return float(np.mean(predictions == np.asarray(test_labels)))
