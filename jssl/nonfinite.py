"""Stopping a run whose losses become NaN or infinite, naming the step and the loss.

A train step tracks two losses: the method's own (the SSL loss; fine-tuning's loss in
`jssl eval`) and the online probe's (the linear classifier on stop-gradient features). Neither
may turn non-finite silently: a NaN probe loss leaves the SSL loss finite yet every reported
probe accuracy garbage. The step records the first bad step and which losses were bad in one
int32 of the train state (`TrainState.first_nonfinite_step`, kept a scalar so checkpoints keep
their structure), `-1` while all is well, else `step * 8 + mask` with bit 0 for the method's
loss, bit 1 for the probe's and bit 2 for the method's gradient (`track_nonfinite`): a loss can
stay finite while its gradient is not (SimCLR on all-equal, infinite embeddings gives exactly
log(2B - 1)), and the parameters are then NaN after one update. The loop reads it at log and checkpoint steps
only, so it never waits on the device each step, and `raise_if_nonfinite` names the exact step.
Saved checkpoints always hold `-1`: the check runs before every save.

The offline linear probe (`jssl.evaluators.linear`) raises the same `NonFiniteLossError`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

_SLOTS = 8  # values per step: the three bits of the mask

PRETRAINING_ADVICE = (
    "Lower optimizer.base_learning_rate, add optimizer.grad_clip_norm, use model.dtype='float32', "
    "or check the input normalization (data.mean, data.std)."
)
PROBE_ADVICE = (
    "The probe is a linear classifier on the encoder's stop-gradient features: check that labels lie in "
    "[0, data.num_classes) and that the features stay finite, or lower probe.learning_rate."
)


class NonFiniteLossError(FloatingPointError):
    """Raised when a training, probe or fine-tuning loss becomes NaN or infinite."""


def track_nonfinite(
    first: jax.Array,
    step: jax.Array,
    loss: jax.Array,
    probe_loss: jax.Array | None = None,
    grad_norm: jax.Array | None = None,
) -> jax.Array:
    """The next `first_nonfinite_step`: `first` once set; else `step * 8 + mask` if a loss (or the
    method's gradient norm) is non-finite, else -1."""
    mask = jnp.where(jnp.isfinite(loss), 0, 1)
    if probe_loss is not None:
        mask = mask + jnp.where(jnp.isfinite(probe_loss), 0, 2)
    if grad_norm is not None:
        mask = mask + jnp.where(jnp.isfinite(grad_norm), 0, 4)
    return jnp.where((first < 0) & (mask > 0), step * _SLOTS + mask, first).astype(jnp.int32)


def decode_nonfinite(value: int) -> tuple[int, bool, bool, bool] | None:
    """`(step, method loss bad, probe loss bad, gradient bad)` from a `first_nonfinite_step`, or None when it is -1."""
    value = int(value)
    if value < 0:
        return None
    step, mask = divmod(value, _SLOTS)
    return step, bool(mask & 1), bool(mask & 2), bool(mask & 4)


def raise_if_nonfinite(
    state: Any, last_checkpoint: int | None, *, what: str = "training", advice: str = PRETRAINING_ADVICE
) -> None:
    """Raises `NonFiniteLossError` naming the first step and the loss(es) that were NaN or inf, if any.

    `what` names the method's loss ('training', 'fine-tuning'); `advice` says how to avoid it.
    """
    decoded = decode_nonfinite(state.first_nonfinite_step)
    if decoded is None:
        return
    step, method_bad, probe_bad, grad_bad = decoded
    hint = f"the last checkpoint is at step {last_checkpoint}" if last_checkpoint is not None else "no checkpoint was saved"
    if method_bad and probe_bad:
        losses = f"the {what} and online probe losses"
    elif probe_bad:
        losses, advice = "the online probe loss", PROBE_ADVICE
    elif method_bad:
        losses = f"the {what} loss"
    else:  # grad_bad alone: the loss is finite but its gradient is not
        losses = f"the gradient of the {what} loss (the loss itself stayed finite)"
    raise NonFiniteLossError(f"{losses} became non-finite (NaN or inf) at step {step}; stopping ({hint}). {advice}")
