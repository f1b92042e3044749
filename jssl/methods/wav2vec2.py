"""wav2vec 2.0: mask spans of the latent speech frames, identify their quantized originals.

The conv feature encoder turns the waveform into frames (20 ms at 16 kHz); a random set of spans
(`mask_prob` 0.65, `mask_length` 10 in base; drawn per example from the step's rng for the
global batch, so identical on any mesh) is replaced by a learned mask embedding before the
Transformer. The same frames, unmasked, go through the Gumbel product quantizer; at every
masked frame the Transformer's output (projected to `final_dim`) must pick the true quantized
frame among `num_negatives` distractors from other masked frames of the same clip (cosine
similarity / `logit_temperature`), `jssl.losses.wav2vec2`. Added to it: the diversity term
(weight 0.1; codebook usage averaged over the masked frames, as fairseq) and the feature penalty
(the mean square of the conv features, weight 10). The Gumbel temperature decays from 2 by
0.999995 a step to at least 0.5 (base), a pure function of the step.

Left out of fairseq's base recipe: dropout on the features and inputs (0.1 each) and
LayerDrop (this Transformer offers per-example stochastic depth instead, `model.kwargs.drop_path`),
and the gradient scaling of the feature encoder by 0.1.

Representation (`represent`, kNN and probes): the Transformer's output on the *unmasked* input,
averaged over the real frames. The online probe reads the masked forward's output (pooled the
same way, stop-gradient), saving a second forward pass during training.

References:
  Baevski, Zhou, Mohamed, Auli, "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
  Representations", NeurIPS 2020, https://arxiv.org/abs/2006.11477 (Sec. 2-4, Appendix B);
  fairseq's `wav2vec2.py` (`compute_mask_indices`, `GumbelVectorQuantizer`).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jssl import losses
from jssl.methods.base import Method, MethodOutput
from jssl.methods.common import embedding_diagnostics
from jssl.models.audio import GumbelQuantizer, Wav2Vec2Encoder, _masked_mean, dense, get_audio_model, span_mask


def gumbel_temperature(step: jax.Array, *, start: float, end: float, decay: float) -> jax.Array:
    """`max(start * decay**step, end)`: fairseq's `latent_temp = (2, 0.5, 0.999995)` schedule.

    As `exp(step * log(decay))` with the log taken in float64 on the host: float32 rounds 0.999995
    itself by 6e-8, an error that `decay**step` would grow to 0.3% by step 100k.
    """
    return jnp.maximum(start * jnp.exp(jnp.asarray(step, jnp.float32) * math.log(decay)), end)


def _key(rngs: nnx.Rngs | None, step: jax.Array) -> jax.Array:
    if rngs is not None:
        return rngs.default()
    # Direct calls without rngs (tests, notebooks): still a pure function of the step.
    return jax.random.fold_in(jax.random.PRNGKey(0), jnp.asarray(step, jnp.int32))


class Wav2Vec2(Method):
    """wav2vec 2.0 on a `Wav2Vec2Encoder` (`model.name` 'wav2vec2_base', 'wav2vec2_tiny', ...).

    Config fields (`config.method`): `mask_prob` (0.65), `mask_length` (10), `min_masks` (2),
    `num_negatives` (100), `logit_temperature` (0.1), `codebook_groups` (2), `codebook_entries`
    (320), `codebook_dim` (256), `final_dim` (256), `diversity_weight` (0.1),
    `feature_penalty_weight` (10), `gumbel_temperature_start` / `_end` / `_decay` (2, 0.5,
    0.999995).
    """

    inputs: ClassVar[str] = "waveforms"
    views_per_example = 1

    def __init__(self, config: ml_collections.ConfigDict, *, dtype: Any, rngs: nnx.Rngs, **model_kwargs: Any):
        del model_kwargs  # audio needs nothing from the data
        hp = config.method
        self.encoder = get_audio_model(config.model.name, rngs=rngs, dtype=dtype, **config.model.get("kwargs", {}))
        if not isinstance(self.encoder, Wav2Vec2Encoder):
            raise ValueError(f"wav2vec2 needs a wav2vec 2.0 model (e.g. 'wav2vec2_base'); got {config.model.name!r}")
        self.mask_prob, self.mask_length, self.min_masks = float(hp.mask_prob), int(hp.mask_length), int(hp.min_masks)
        if not 0.0 < self.mask_prob <= 1.0 or self.mask_length < 1:
            raise ValueError(f"method.mask_prob must be in (0, 1] and mask_length >= 1; got {hp.mask_prob}, {hp.mask_length}")
        if self.min_masks < 1:
            raise ValueError(f"method.min_masks must be >= 1 (the loss needs 2 masked frames a clip); got {hp.min_masks}")
        self.num_negatives = int(hp.num_negatives)
        self.logit_temperature = float(hp.logit_temperature)
        self.diversity_weight = float(hp.diversity_weight)
        self.feature_penalty_weight = float(hp.feature_penalty_weight)
        self.temp = (float(hp.gumbel_temperature_start), float(hp.gumbel_temperature_end),
                     float(hp.gumbel_temperature_decay))  # fmt: skip
        if not 0.0 < self.temp[1] <= self.temp[0] or not 0.0 < self.temp[2] <= 1.0:
            raise ValueError(f"method.gumbel_temperature_*: need 0 < end <= start and 0 < decay <= 1; got {self.temp}")
        final = int(hp.final_dim)
        self.quantizer = GumbelQuantizer(self.encoder.conv_dim, groups=int(hp.codebook_groups),
                                         entries=int(hp.codebook_entries), dim=int(hp.codebook_dim), rngs=rngs)  # fmt: skip
        self.project_q = dense(int(hp.codebook_dim), final, (None, None), rngs=rngs)
        self.final_proj = dense(self.encoder.embed_dim, final, ("embed", None), rngs=rngs)

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    def gumbel_temperature(self, step: jax.Array) -> jax.Array:
        return gumbel_temperature(step, start=self.temp[0], end=self.temp[1], decay=self.temp[2])

    def time_mask(self, key: jax.Array, frames: jax.Array) -> jax.Array:
        """bool `[b, L]`: the frames to mask, from the real-frame mask `frames: [b, L]`."""
        lengths = jnp.sum(frames.astype(jnp.int32), axis=1)
        return span_mask(key, lengths=lengths, frames=frames.shape[1], mask_prob=self.mask_prob,
                         span=self.mask_length, min_spans=self.min_masks)  # fmt: skip

    def __call__(self, inputs: dict[str, jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        waveform, mask = inputs["waveform"], inputs["mask"]
        k_mask, k_gumbel, k_negatives = jax.random.split(_key(rngs, step), 3)
        raw, normalized, frames = self.encoder.encode_features(waveform, mask)
        real = frames.astype(jnp.float32)
        penalty = jnp.sum(jnp.mean(jnp.square(raw), axis=-1) * real) / jnp.maximum(jnp.sum(real), 1.0)
        time_mask = self.time_mask(k_mask, frames)
        context = self.encoder.contextualize(normalized, frames, time_mask=time_mask)
        temperature = self.gumbel_temperature(step)
        quantized, probs = self.quantizer(normalized, rng=k_gumbel, temperature=temperature)
        loss, metrics = losses.wav2vec2(
            self.final_proj(context), self.project_q(quantized), time_mask, rng=k_negatives, codebook_probs=probs,
            num_negatives=self.num_negatives, temperature=self.logit_temperature,
            diversity_weight=self.diversity_weight,
        )  # fmt: skip
        loss = loss + self.feature_penalty_weight * penalty
        features = jax.lax.stop_gradient(_masked_mean(context, frames))
        metrics = {
            **metrics, "feature_penalty": jax.lax.stop_gradient(penalty), "gumbel_temperature": temperature,
            "masked_fraction": jnp.sum(time_mask * real) / jnp.maximum(jnp.sum(real), 1.0),
            **embedding_diagnostics(features),
        }  # fmt: skip
        return MethodOutput(loss=loss, metrics=metrics, features=features)

    def represent(self, inputs: dict[str, jax.Array]) -> jax.Array:
        return self.encoder(inputs["waveform"], inputs["mask"]).astype(jnp.float32)

    def heldout_metrics(self, inputs: dict[str, jax.Array], *, rngs: nnx.Rngs) -> dict[str, jax.Array]:
        """Per clip: the contrastive accuracy at the masked frames at the final Gumbel temperature.

        Masks, Gumbel noise and distractors come from `rngs` (fixed per chunk by the trainer).
        """
        waveform, mask = inputs["waveform"], inputs["mask"]
        k_mask, k_gumbel, k_negatives = jax.random.split(rngs.default(), 3)
        _, normalized, frames = self.encoder.encode_features(waveform, mask)
        time_mask = self.time_mask(k_mask, frames)
        context = self.final_proj(self.encoder.contextualize(normalized, frames, time_mask=time_mask))
        quantized = self.project_q(self.quantizer(normalized, rng=k_gumbel, temperature=self.temp[1])[0])
        c = losses.l2_normalize(context.astype(jnp.float32))
        q = losses.l2_normalize(quantized.astype(jnp.float32))
        idx = losses.sample_distractors(time_mask, rng=k_negatives, num_negatives=self.num_negatives)
        neg = jax.vmap(lambda qb, ib: qb[ib])(q, idx)
        pos = jnp.sum(c * q, -1)
        best_neg = jnp.max(jnp.einsum("btd,btkd->btk", c, neg), axis=-1)
        m = time_mask.astype(jnp.float32)
        return {"contrastive_accuracy": jnp.sum((pos > best_neg) * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)}

    def backbone(self) -> nnx.Module:
        raise NotImplementedError(
            "wav2vec2: `jssl eval` fine-tuning is for image backbones; audio configs set finetune.enabled = False"
        )
