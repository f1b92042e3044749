"""SimSiam: a siamese encoder + projector, a bottleneck predictor, and a stop-gradient; no target network.

Both views go through the same encoder `f` and projector (3 layers, BN on every layer
including the output, whose BN has no affine parameters as in the reference code) giving
`z_1, z_2`; a 2-layer bottleneck predictor `h` gives `p_i = h(z_i)`. The loss is the
symmetrized negative cosine with a stop-gradient on the target branch (paper Eq. 1-2,
Algorithm 1):

    L = D(p_1, stopgrad(z_2)) / 2 + D(p_2, stopgrad(z_1)) / 2,   D(p, z) = -cos(p, z),

so it lies in [-1, 1] (-1 is the optimum). Without the stop-gradient SimSiam collapses (Sec. 4.1);
`embedding_std` / `embedding_spread` of z_1 are logged to watch for that (the paper's Fig. 2
monitors the same per-channel std of the normalized output, ~1/sqrt(dim) when healthy).

Each view goes through the network on its own (BatchNorm statistics per view, as in the
reference code); under `jax.jit` with the batch sharded over the mesh they are global (the
paper uses SyncBN). Evaluation uses the encoder.

Left to the optimizer config: the paper's best setting keeps the predictor's learning rate
fixed (not decayed, Sec. 4.2 / `--fix-pred-lr`); the trainer decays every parameter alike.

Config (`config.method`): `projection_hidden_dim` (2048), `projection_dim` (2048),
`projection_layers` (3), `predictor_hidden_dim` (512).

References:
  Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021,
  https://arxiv.org/abs/2011.10566; reference code https://github.com/facebookresearch/simsiam
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import ml_collections
from flax import nnx

from jssl import losses
from jssl.methods import common
from jssl.methods.base import Method, MethodOutput
from jssl.models import MLPHead, get_backbone


class SimSiam(Method):
    def __init__(self, config: ml_collections.ConfigDict, *, in_channels: int, dtype, rngs: nnx.Rngs):
        hp = config.method
        proj_hidden = int(hp.get("projection_hidden_dim", 2048))
        proj_dim = int(hp.get("projection_dim", 2048))
        proj_layers = int(hp.get("projection_layers", 3))
        pred_hidden = int(hp.get("predictor_hidden_dim", 512))
        common.check_positive("method.projection_hidden_dim", proj_hidden)
        common.check_positive("method.projection_dim", proj_dim)
        common.check_positive("method.projection_layers", proj_layers)
        common.check_positive("method.predictor_hidden_dim", pred_hidden)

        self.encoder = get_backbone(
            config.model.name, in_channels=in_channels, dtype=dtype, rngs=rngs, **config.model.kwargs
        )
        self.projector = MLPHead(
            self.encoder.feature_dim,
            proj_hidden,
            proj_dim,
            num_layers=proj_layers,
            last_batch_norm=True,
            dtype=dtype,
            rngs=rngs,
        )
        self.predictor = MLPHead(proj_dim, pred_hidden, proj_dim, num_layers=2, dtype=dtype, rngs=rngs)

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    def __call__(self, views: Sequence[jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        del step, rngs
        features = [self.encoder(view) for view in views[:2]]
        z = [self.projector(f) for f in features]
        loss, p = self.loss_from_projections(z)
        metrics = {
            "cosine_similarity": jax.lax.stop_gradient(-loss),
            **common.embedding_diagnostics(z[0]),
            **{f"prediction_{k}": v for k, v in common.embedding_diagnostics(p[0]).items()},
        }
        return MethodOutput(loss=loss, metrics=metrics, features=features[0])

    def loss_from_projections(self, z: Sequence[jax.Array]) -> tuple[jax.Array, list[jax.Array]]:
        """The symmetrized loss from the two views' projector outputs `z`, and the predictions `p`.

        `negative_cosine` stops the gradient on its second argument, the z branch: the loss
        reaches `z_i` only through `p_i = h(z_i)`.
        """
        p = [self.predictor(z_i) for z_i in z]
        d12, _ = losses.negative_cosine(p[0], z[1])
        d21, _ = losses.negative_cosine(p[1], z[0])
        return 0.5 * (d12 + d21), p

    def represent(self, images: jax.Array) -> jax.Array:
        return self.encoder(images)
