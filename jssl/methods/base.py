"""What every SSL method provides to the trainer.

A method is one NNX module holding all its networks and buffers (online/target encoders,
predictor, prototypes, queue, center) so that sharding and checkpointing need no special
cases: trainable weights are `nnx.Param`s, everything else (BatchNorm statistics, `Teacher`
weights, `Buffer`s, see `jssl.methods.common`) is state the optimizer never sees. The trainer
asks a method exactly these things:

0. the kind of data it trains on, `inputs`: `'images'` (the default), `'tokens'` or
   `'waveforms'`; `jssl.data.inputs` builds batches of that kind, hands the constructor what
   it needs to know about the data (`in_channels`; `vocab_size` and special token ids) as
   keyword arguments, and turns each batch into the argument of `__call__` and `represent`
   (image methods: a list of normalized views / a batch of normalized images);
1. its networks and buffers: the module itself;
2. image methods: `num_views(config)`: how many augmented views the data pipeline must produce per example
   (multi-crop methods: global crops first, then local crops; each view may have its own
   augmentation string and size, see `config.data.crops`);
3. `__call__(views, step=, rngs=)`: the loss on a batch, as a `MethodOutput`; buffers that
   depend on this batch (queues, centers) are updated here, from stop-gradient values;
4. `after_step(step)`: the update after the optimizer step (EMA teachers, normalizing
   prototypes); default: none. `frozen_steps()`: parameters held fixed for the first steps
   (SwAV's prototypes, DINO's last layer); default: none;
5. `represent(images)`: the representation used for evaluation (kNN, probes), and
   `backbone()`: the network `represent` runs, whose weights fine-tuning starts from
   (default: `self.encoder`).

Optionally, `pictures(images, rngs=, to_pixels=)`: named picture grids made from a fixed
held-out batch (reconstructions, samples), which the trainer writes as PNGs and TensorBoard
images at eval steps and at the end; default: none. Optionally, `heldout_metrics(images,
rngs=)`: per-example measures on the held-out split (negative ELBO, denoising loss at fixed
noise levels), which the trainer averages over the split into `results.json`, and `summarize_heldout(means)`: the
numbers derived from those means (a perplexity from a mean negative log-likelihood); default:
none.
Generative methods also implement `generate(num, rngs=)`: new images (or token sequences) from
the model; the trainer scores images with a Fréchet distance in an SSL encoder's feature space
when `eval.frechet_encoder` names one, and logs decoded text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import ml_collections
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
    """Base class; subclasses implement `__call__`, `represent` and `feature_dim`."""

    # The kind of data (`jssl.data.inputs.INPUT_KINDS`): what a batch holds and what `__call__`
    # and `represent` receive.
    inputs: ClassVar[str] = "images"
    # Image methods: views per example when they do not depend on the config: 2 (two-view
    # methods), 1 for the single-view ones (MAE, the generative methods); multi-crop methods
    # override `num_views`.
    views_per_example: int = 2

    @classmethod
    def num_views(cls, config: ml_collections.ConfigDict) -> int:
        """Views per example the data pipeline must produce (default: `views_per_example`)."""
        del config
        return cls.views_per_example

    def __call__(self, views: Sequence[jax.Array] | Any, *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        """The loss on one batch: `views` is what the method's `inputs` kind makes of the batch."""
        raise NotImplementedError

    def represent(self, images: jax.Array | Any) -> jax.Array:
        """Features `[batch, feature_dim]` for kNN and the probes, from one evaluation chunk."""
        raise NotImplementedError

    def backbone(self) -> nnx.Module:
        """The network `represent` runs, built by `jssl.models.get_backbone(config.model.name, ...)`.

        `jssl eval` fine-tunes a fresh `get_backbone` network initialized with this module's
        values (matched by path, whatever their variable type), so override it when `represent`
        uses another network (DINO: the teacher).
        """
        encoder = getattr(self, "encoder", None)
        if not isinstance(encoder, nnx.Module):
            raise NotImplementedError(f"{type(self).__name__} has no `encoder`; override `backbone()`")
        return encoder

    def after_step(self, step: jax.Array) -> None:
        """Post-optimizer-step update of buffers; `step` is the step just taken (0-based)."""
        del step

    def frozen_steps(self) -> dict[str, int]:
        """`{submodule path: n}`: that submodule's parameters stay unchanged during steps 0..n-1.

        Paths are attribute paths inside the method, e.g. `'prototypes'` or `'head.last_layer'`.
        The trainer zeroes their gradients and updates during those steps (as the reference
        code sets the gradients to None), so weight decay and momentum do not move them either.
        """
        return {}

    def pictures(
        self, images: jax.Array, *, rngs: nnx.Rngs, to_pixels: Callable[[jax.Array], jax.Array]
    ) -> dict[str, jax.Array]:
        """Named pictures of `images` (normalized, as the method sees them) for the trainer to write.

        Each value is a grid `[rows, cols, h, w, c]` (or one row `[n, h, w, c]`) of floats in
        [0, 1]; `to_pixels` maps normalized images back to [0, 1] pixels. `rngs` is the same
        fixed key at every call, so successive pictures differ only by training. Default: none
        (an empty dict, which the trainer detects without running anything).
        """
        del images, rngs, to_pixels
        return {}

    def heldout_metrics(self, images: jax.Array, *, rngs: nnx.Rngs) -> dict[str, jax.Array]:
        """Per-example measures of held-out `images` (normalized, as the method sees them).

        Returns `{name: [batch] float32}`, one value per example, so that the trainer can
        average each exactly over the whole held-out split (dropping the padding of the last
        chunk). The trainer reports the means as `heldout/<name>` at every eval, in TensorBoard
        and in `results.json` (`ssl.heldout/<name>`). `rngs` depends only on the chunk's position
        in the split, so the same weights always give the same numbers (fixed noise draws).
        Default: none (an empty dict, detected by tracing, not running).
        """
        del images, rngs
        return {}

    @classmethod
    def summarize_heldout(cls, means: dict[str, float]) -> dict[str, float]:
        """Numbers derived from the held-out means of `heldout_metrics` (host side).

        E.g. a perplexity `exp(mean nll)`, or an accuracy `mean correct / mean count` when
        examples hold different numbers of predicted tokens. The trainer adds them beside the
        means (as `heldout/<name>`). Default: none.
        """
        del means
        return {}

    def generate(self, num: int, *, rngs: nnx.Rngs) -> jax.Array:
        """`num` new images `[num, h, w, c]` (normalized, as the method sees them) from the model.

        Samples from a VAE's prior, a diffusion sampler, ...; the trainer maps them to uint8
        pixels and scores them against held-out images (`jssl.train.frechet`). Methods that do not
        generate keep this default, which the trainer detects with `is_generative`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not generate images")

    @classmethod
    def is_generative(cls) -> bool:
        """Whether the method overrides `generate`."""
        return cls.generate is not Method.generate

    @property
    def feature_dim(self) -> int:
        raise NotImplementedError
