"""BYOL with a small ResNet on the embedded 5,000-image MNIST subset (CPU, no download).

Same data, backbone, augmentations and batch as `simclr_mnist.py`. BYOL also runs the target
network on both views, so a step costs about 1.5x SimCLR's.

Measured (held-out 1,000 images; raw-pixel probe 0.884): at 300 steps this recipe gave kNN
0.813, linear probe 0.893 on 2026-11-25, but only 0.787 / 0.877 with the code of 2026-11-30
(the same config; the trainer and models changed in between: ViT work, teacher handling, eval),
short of the bar; its kNN was flat from step 200 (0.781) as the cosine schedules ran out, so
the recipe now runs 600 steps (the schedules stretch with it), like SwAV's. Tuning (300 steps,
kNN / linear, 2026-11-25): batch 128 lr 1.0 tau 0.99: 0.672 / 0.797; lr 2.0 tau 0.97: 0.755 /
0.825; lr 4.0 tau 0.95: 0.764 / 0.879; batch 256 lr 2.0 tau 0.95: 0.787 / 0.892; batch 256 lr
2.0 tau 0.9: 0.813 / 0.893. On short runs the paper's 0.996 averages over more steps than the
run has; the target must follow faster.
The README results table holds this recipe's quiet-machine wall time and its 150-step run.

Launch:
  jssl train --config configs/byol_mnist.py --workdir runs/byol_mnist
  jssl train --config configs/byol_mnist.py --workdir runs/byol150 --config.total_steps=150
  jssl train --config configs/byol_mnist.py:smoke --workdir /tmp/byol_smoke    # seconds, CPU

Variants (after the colon): `smoke` (a few steps, tiny batch, for tests and CI).
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.mnist(config)

    config.total_steps = 600  # 300 stopped at kNN 0.787 (see above)

    config.method.name = "byol"
    # tau: cosine from 0.9 to 1 over the run (the paper: 0.996 over ~1000 epochs; a short
    # run needs a faster-moving target: 0.99 and 0.97 learned slower).
    config.method.momentum_base = 0.9
    config.method.momentum_final = 1.0
    config.method.projection_hidden_dim = 256
    config.method.projection_dim = 64
    config.method.predictor_hidden_dim = 256  # hidden width of the online network's predictor MLP

    config.optimizer.base_learning_rate = 2.0  # x global_batch/256; 1.0 learned slower

    if variant == "smoke":
        common.make_smoke(config)
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of byol_mnist; known: 'smoke'")
    return config
