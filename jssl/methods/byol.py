"""BYOL: an online network (encoder, projector, predictor) regresses an EMA target network's projection.

The target network (encoder + projector) is a `Teacher` copy of the online one: its weights
are never trained by gradients, only moved by `after_step` as
`xi <- tau_k xi + (1 - tau_k) theta`, with the cosine schedule
`tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2` from `tau_base` up to `tau_final` (1 in
the paper) at the last step K (`common.cosine_momentum`). The target's forward uses its own
BatchNorm in train mode (batch statistics), as the reference implementation does.

Loss (paper Eq. 2 and the symmetrized total): for normalized online prediction `q` and target
projection `z'`, `L = ||q - z'||^2 = 2 - 2 cos(q, z')`; the two views are swapped and the two
terms *summed*, `L_total = L(q_1, z'_2) + L(q_2, z'_1)` in [0, 8], each a batch mean, exactly
as in the reference code (`byol_experiment.py`: `loss_fn(view1, view2) + loss_fn(view2, view1)`
with `regression_loss = 2 - 2 cos`). Written with `losses.negative_cosine` as
`4 + 2 (D(q_1, z'_2) + D(q_2, z'_1))`, the same value and gradients.

Each view goes through the networks on its own (BatchNorm statistics per view, as in the
reference code, which matters with BYOL's asymmetric augmentations). Under `jax.jit` with the
batch sharded over the mesh, those statistics are global (synchronized BN, as in the paper).

Evaluation uses the online encoder.

Config (`config.method`): `momentum_base` (tau_base, 0.996 in the paper), `momentum_final` (1.0),
`projection_hidden_dim` (4096), `projection_dim` (256), `predictor_hidden_dim` (4096).

References:
  Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
  NeurIPS 2020, https://arxiv.org/abs/2006.07733 (Sec. 3, Eq. 1-2, Appendix A/J);
  reference code https://github.com/deepmind/deepmind-research/tree/master/byol
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


class BYOL(Method):
    def __init__(self, config: ml_collections.ConfigDict, *, in_channels: int, dtype, rngs: nnx.Rngs):
        hp = config.method
        self.momentum_base = float(hp.get("momentum_base", 0.996))
        self.momentum_final = float(hp.get("momentum_final", 1.0))
        common.check_momentum("method.momentum_base", self.momentum_base)
        common.check_momentum("method.momentum_final", self.momentum_final)
        if self.momentum_final < self.momentum_base:
            raise ValueError(
                f"method.momentum_final ({self.momentum_final}) must be >= method.momentum_base ({self.momentum_base})"
            )
        proj_hidden = int(hp.get("projection_hidden_dim", 4096))
        proj_dim = int(hp.get("projection_dim", 256))
        pred_hidden = int(hp.get("predictor_hidden_dim", 4096))
        common.check_positive("method.projection_hidden_dim", proj_hidden)
        common.check_positive("method.projection_dim", proj_dim)
        common.check_positive("method.predictor_hidden_dim", pred_hidden)
        common.check_positive("total_steps", config.total_steps)
        self.total_steps = int(config.total_steps)

        self.encoder = get_backbone(
            config.model.name, in_channels=in_channels, dtype=dtype, rngs=rngs, **config.model.kwargs
        )
        self.projector = MLPHead(self.encoder.feature_dim, proj_hidden, proj_dim, num_layers=2, dtype=dtype, rngs=rngs)
        self.predictor = MLPHead(proj_dim, pred_hidden, proj_dim, num_layers=2, dtype=dtype, rngs=rngs)
        # The target starts equal to the online network (xi = theta at initialization).
        self.target_encoder = common.teacher_copy(self.encoder)
        self.target_projector = common.teacher_copy(self.projector)

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    def momentum(self, step: jax.Array) -> jax.Array:
        """tau_k at step k (0-based, the step just taken)."""
        return common.cosine_momentum(self.momentum_base, self.momentum_final, self.total_steps)(step)

    def __call__(self, views: Sequence[jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        del rngs
        features, q, z = [], [], []
        for view in views[:2]:
            f = self.encoder(view)
            z_online = self.projector(f)
            features.append(f)
            z.append(z_online)
            q.append(self.predictor(z_online))
        # The target has no Params, so no gradient can reach it; stop_gradient makes it explicit.
        targets = [jax.lax.stop_gradient(self.target_projector(self.target_encoder(view))) for view in views[:2]]
        d12, _ = losses.negative_cosine(q[0], targets[1])
        d21, _ = losses.negative_cosine(q[1], targets[0])
        # (2 - 2 cos) per direction, summed over the two directions: 4 + 2 (D12 + D21).
        loss = 4.0 + 2.0 * (d12 + d21)
        metrics = {
            "cosine_similarity": jax.lax.stop_gradient(-(d12 + d21) / 2),
            "momentum": self.momentum(step),
            **common.embedding_diagnostics(z[0]),
            **{f"target_{k}": v for k, v in common.embedding_diagnostics(targets[0]).items()},
        }
        return MethodOutput(loss=loss, metrics=metrics, features=features[0])

    def after_step(self, step: jax.Array) -> None:
        tau = self.momentum(step)
        common.ema_update(self.target_encoder, self.encoder, tau)
        common.ema_update(self.target_projector, self.projector, tau)

    def represent(self, images: jax.Array) -> jax.Array:
        return self.encoder(images)
