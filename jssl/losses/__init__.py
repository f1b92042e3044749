"""jssl.losses: self-supervised objectives as pure, sharding-aware JAX functions.

Every loss takes arrays first and options keyword-only, and returns `(loss, metrics)`:
a float32 scalar and a flat dict of float32 scalar diagnostics. Losses that look at other
examples in the batch take `axis_name`; inside `shard_map` over that mesh axis they return
the same value and gradients as the single-device function on the global batch.

This package imports only jax and numpy.
"""

from jssl.losses.contrastive import l2_normalize
from jssl.losses.contrastive import nt_xent

__all__ = [
    "l2_normalize",
    "nt_xent",
]
