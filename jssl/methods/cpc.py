"""CPC: predict the encoder's latents k = 1..K frames ahead from an autoregressive context.

A strided conv encoder maps the waveform to latents z_t (10 ms frames at 16 kHz), a GRU
summarizes z_1..z_t into the context c_t, and for each k a linear map W_k scores candidates
z with `z . W_k c_t`; InfoNCE picks the true z_{t+k} among the latents of the other clips of
the global batch at the same frame (`jssl.losses.cpc`, all-gathered over devices, padding
frames excluded). The paper predicts K = 12 steps with 512-channel convs and a 256-wide GRU.

Representation (`represent`): the context vectors c_t averaged over the real frames; the online
probe reads the same from the training forward (stop-gradient).

References:
  van den Oord, Li, Vinyals, "Representation Learning with Contrastive Predictive Coding",
  arXiv:1807.03748, 2018 (Sec. 2 and 3.1).
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jssl import losses
from jssl.methods.base import Method, MethodOutput
from jssl.methods.common import embedding_diagnostics
from jssl.models.audio import CPCModel, _masked_mean, get_audio_model
from jssl.models.partitioning import logical


class CPC(Method):
    """CPC on a `CPCModel` (`model.name` 'cpc_paper', 'cpc_tiny').

    Config fields (`config.method`): `prediction_steps` (K, 12), `temperature` (1.0: the
    paper's plain bilinear score).
    """

    inputs: ClassVar[str] = "waveforms"
    views_per_example = 1

    def __init__(self, config: ml_collections.ConfigDict, *, dtype: Any, rngs: nnx.Rngs, **model_kwargs: Any):
        del model_kwargs  # audio needs nothing from the data
        hp = config.method
        self.model = get_audio_model(config.model.name, rngs=rngs, dtype=dtype, **config.model.get("kwargs", {}))
        if not isinstance(self.model, CPCModel):
            raise ValueError(f"cpc needs a CPC model (e.g. 'cpc_paper'); got {config.model.name!r}")
        self.steps = int(hp.prediction_steps)
        if self.steps < 1:
            raise ValueError(f"method.prediction_steps must be >= 1; got {hp.prediction_steps}")
        self.temperature = float(hp.temperature)
        shape = (self.steps, self.model.context_dim, self.model.encoder.dim)
        init = nnx.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=1, out_axis=2)
        self.predictors = nnx.Param(logical(init, (None, None, "conv_out"))(rngs.params(), shape, jnp.float32))

    @property
    def feature_dim(self) -> int:
        return self.model.feature_dim

    def __call__(self, inputs: dict[str, jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        del step, rngs  # CPC draws nothing at random
        z, c, frames = self.model.context(inputs["waveform"], inputs["mask"])
        if self.steps >= z.shape[1]:
            raise ValueError(
                f"cpc: {self.steps} prediction steps need more than {z.shape[1]} frames; "
                "use longer crops (data.crop_samples) or fewer method.prediction_steps"
            )
        loss, metrics = losses.cpc(c, z, self.predictors.get_value(), mask=frames, temperature=self.temperature)
        features = jax.lax.stop_gradient(_masked_mean(c, frames))
        return MethodOutput(loss=loss, metrics={**metrics, **embedding_diagnostics(features)}, features=features)

    def represent(self, inputs: dict[str, jax.Array]) -> jax.Array:
        return self.model(inputs["waveform"], inputs["mask"]).astype(jnp.float32)

    def backbone(self) -> nnx.Module:
        raise NotImplementedError(
            "cpc: `jssl eval` fine-tuning is for image backbones; audio configs set finetune.enabled = False"
        )
