"""jssl: self-supervised learning in JAX/Flax NNX.

Subpackages are imported lazily by their users so that `from jssl import losses` pulls in
nothing heavier than jax.
"""

__version__ = "0.1.0"
