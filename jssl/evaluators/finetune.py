"""Fine-tuning pieces that need no trainer: the classifier, layer-wise lr decay, the smoothed loss.

`jssl eval` (`jssl.train.finetune`) fine-tunes a pretrained backbone end to end with a new
linear head, as in the MAE and BEiT fine-tuning protocols:

* **Layer-wise learning-rate decay.** A backbone that defines `num_layers` and
  `layer_index(path) -> int` (0 for the stem/embedding, 1..num_layers for its blocks or stages,
  num_layers + 1 for anything after them, such as a final norm) has layer i learn at
  `lr * decay**(num_layers + 1 - i)`; the head (layer num_layers + 1) learns at `lr`.
  `path` is the tuple of attribute names and list indices, as strings, from the backbone to the
  parameter, e.g. `('blocks', '3', 'attn', 'qkv', 'kernel')`. Backbones without `layer_index`
  get no decay. It is applied as a per-parameter scale of the optimizer's update
  (`scale_by_layer`), which is exactly a per-parameter learning rate for AdamW, decoupled weight
  decay included.
* **Label smoothing**: cross-entropy against `(1 - a) * one_hot + a / num_classes`.
* **Pretrained weights.** The classifier's backbone is built by `jssl.models.get_backbone` from
  the run's `config.model`, as every method builds its encoder, and takes the values of the
  method's `backbone()` (the network `represent` runs), matched by path, whatever their variable
  type (DINO's teacher weights are `Teacher` variables; here they become trainable `Param`s).

References:
  He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022,
  https://arxiv.org/abs/2111.06377 (fine-tuning recipe, Appendix A.1)
  Bao et al., "BEiT: BERT Pre-Training of Image Transformers", ICLR 2022,
  https://arxiv.org/abs/2106.08254 (layer-wise learning-rate decay)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jssl.models import LinearClassifier

BACKBONE = "backbone"  # the classifier's attribute names: parameter paths start with these
HEAD = "head"


class Classifier(nnx.Module):
    """A backbone and a linear head on its pooled features: the network that is fine-tuned."""

    def __init__(self, backbone: nnx.Module, *, num_classes: int, rngs: nnx.Rngs):
        self.backbone = backbone
        # Zero-initialized: the first steps do not push random-head gradients into the backbone.
        self.head = LinearClassifier(backbone.feature_dim, num_classes, rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.head(self.backbone(images))


def key_path(path: tuple[Any, ...]) -> tuple[str, ...]:
    """A jax key path (DictKey, SequenceKey, GetAttrKey, ...) as strings, without a Variable's '.value'."""
    names = tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
    return names[:-1] if names and names[-1] == "value" else names


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


# ==================================================================================================
# Layer-wise learning-rate decay
# ==================================================================================================


def supports_layer_decay(backbone: Any) -> bool:
    return callable(getattr(backbone, "layer_index", None)) and isinstance(getattr(backbone, "num_layers", None), int)


def layer_scale_fn(
    backbone: Any, *, decay: float, prefix: str = BACKBONE
) -> Callable[[tuple[str, ...]], float]:
    """`path -> lr scale` for the parameters of a `Classifier` whose backbone is `backbone`.

    Paths under `prefix` are the backbone's: layer `i = backbone.layer_index(path[1:])`, in
    `[0, num_layers + 1]`, gets `decay**(num_layers + 1 - i)`. Everything else (the head) gets 1. Backbones without
    `layer_index`/`num_layers`, or `decay == 1`, give 1 everywhere.
    """
    if decay < 0:
        raise ValueError(f"finetune.layer_decay must be >= 0; got {decay}")
    if decay == 1.0 or not supports_layer_decay(backbone):
        return lambda path: 1.0
    num_layers = backbone.num_layers

    def scale(path: tuple[str, ...]) -> float:
        if not path or path[0] != prefix:
            return 1.0
        index = int(backbone.layer_index(tuple(path[1:])))
        if not 0 <= index <= num_layers + 1:
            raise ValueError(f"layer_index{tuple(path[1:])} = {index}, outside [0, num_layers + 1 = {num_layers + 1}]")
        return float(decay ** (num_layers + 1 - index))

    return scale


def layer_decay_scales(params: Any, *, backbone: Any, decay: float) -> Any:
    """The tree of `params` with each leaf replaced by its learning-rate scale (a float)."""
    scale = layer_scale_fn(backbone, decay=decay)
    return jax.tree_util.tree_map_with_path(lambda path, _: scale(key_path(path)), params)


def scale_by_layer(scale: Callable[[tuple[str, ...]], float]) -> optax.GradientTransformation:
    """Multiplies each update by `scale(path)`; stateless. Scales are Python floats fixed at trace time."""

    def update(updates, state, params=None):
        del params
        scaled = jax.tree_util.tree_map_with_path(
            lambda path, u: u if u is None else u * jnp.asarray(scale(key_path(path)), u.dtype), updates
        )
        return scaled, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


# ==================================================================================================
# Loss
# ==================================================================================================


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array, *, smoothing: float) -> jax.Array:
    """Mean cross-entropy of `logits [B, K]` against label-smoothed one-hot targets of `labels [B]`."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"finetune.label_smoothing must be in [0, 1); got {smoothing}")
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32), smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean()


# ==================================================================================================
# Pretrained weights
# ==================================================================================================


def variable_values(module: nnx.Module) -> dict[str, jax.Array]:
    """Every variable's value (weights, BatchNorm statistics, ...) by its '/'-joined path."""
    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(module), is_leaf=_is_variable)[0]
    return {"/".join(key_path(path)): variable.get_value() for path, variable in leaves}


def load_variable_values(module: nnx.Module, values: Mapping[str, jax.Array]) -> None:
    """Sets `module`'s variables from `variable_values` of a network of the same architecture.

    Raises:
      ValueError: naming the differing paths or the first differing shape, if the architectures differ.
    """
    state = nnx.state(module)
    leaves = jax.tree_util.tree_flatten_with_path(state, is_leaf=_is_variable)[0]
    target = {"/".join(key_path(path)): variable.get_value() for path, variable in leaves}
    if set(target) != set(values):
        missing, extra = sorted(set(target) - set(values)), sorted(set(values) - set(target))
        raise ValueError(
            f"the pretrained backbone does not match config.model: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for name, old in target.items():
        if values[name].shape != old.shape:
            shape = values[name].shape
            raise ValueError(f"the pretrained {name} has shape {shape} but config.model builds {old.shape}")

    def replace(path, variable):
        value, dtype = values["/".join(key_path(path))], variable.get_value().dtype
        # Same dtype (also PRNG keys of dropout streams): as is; else cast (bf16 <-> f32 weights).
        return variable.replace(value if value.dtype == dtype else jnp.asarray(value, dtype))

    nnx.update(module, jax.tree_util.tree_map_with_path(replace, state, is_leaf=_is_variable))
