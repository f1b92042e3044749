"""What every SSL method provides to the trainer.

A method is one NNX module holding all its networks and buffers (online/target encoders,
predictor, prototypes, queue, center) so that sharding and checkpointing need no special
cases. The trainer asks it exactly five things:

1. its networks and buffers: the module itself (non-trainable state as NNX variables);
2. `num_views`: how many augmented views the data pipeline must produce per example;
3. `__call__(views, rngs)`: the loss on a batch, as a `MethodOutput`;
4. `after_step(step)`: the post-step update (EMA teachers, queues, centers); default: none;
5. `represent(images)`: the representation used for evaluation (kNN, probes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
from flax import nnx


@dataclasses.dataclass(frozen=True)
class MethodOutput:
    """The loss to minimize, scalar diagnostics, and first-view features for the online probe.

    `features` are backbone features of `views[0]` (before any projection head): the online
    linear probe trains on their stop-gradient, so the probe never needs an extra forward pass.
    """

    loss: jax.Array
    metrics: dict[str, jax.Array]
    features: jax.Array


class Method(nnx.Module):
    """Base class; subclasses set `num_views` and implement `__call__` and `represent`."""

    num_views: int = 2

    def __call__(self, views: Sequence[jax.Array], *, rngs: nnx.Rngs | None = None) -> MethodOutput:
        raise NotImplementedError

    def represent(self, images: jax.Array) -> jax.Array:
        raise NotImplementedError

    def after_step(self, step: jax.Array) -> None:
        """Post-optimizer-step update of buffers; most contrastive methods have none."""
        del step

    @property
    def feature_dim(self) -> int:
        raise NotImplementedError
