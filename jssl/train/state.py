"""The train state pytree and the model wrapper the trainer optimizes.

`TrainState` holds everything a step reads and writes, so the step is a pure function
`(state, batch) -> (state, metrics)` that can be jit'd with donation and checkpointed whole.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
from flax import nnx

from jssl.methods import Method
from jssl.models import LinearClassifier


class SSLModel(nnx.Module):
    """The SSL method plus the online linear probe trained on its stop-gradient features."""

    def __init__(self, method: Method, *, num_classes: int, rngs: nnx.Rngs):
        self.method = method
        self.probe = LinearClassifier(method.feature_dim, num_classes, rngs=rngs)


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any  # nnx.State of nnx.Param: what the optimizer updates
    buffers: Any  # nnx.State of everything else: BN statistics, EMA teachers, queues, centers
    opt_state: Any
    rng: jax.Array
    # -1, or the first step whose loss or online-probe loss was non-finite and which of them
    # (`jssl.nonfinite.track_nonfinite`). Checked at log steps so the loop never synchronizes
    # with the device every step, yet the error names the exact step and loss.
    first_nonfinite_step: jax.Array
