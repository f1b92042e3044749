"""VICReg with a small ResNet on the embedded 5,000-image MNIST subset (CPU recipe).

The SimCLR MNIST recipe (configs/simclr_mnist.py: resnet_mini width 2 with a stride-2 stem,
crops of scale 0.3, 300 steps of batch 256, LARS) with VICReg's loss (coefficients 25/25/1,
as in the paper) on a 3-layer expander of modest width (1024: the paper's 8192 costs CPU
time for nothing on 28 px digits). Needs no download.

Measured (2-core CPU shared with 3 other jobs, so wall times are 2-4x a quiet machine's), held-out:
  300 steps: kNN 0.866, linear probe 0.922 (raw pixels 0.884), online probe 0.856; 9.7 min.
  150 steps (--config.total_steps=150): kNN 0.820, linear probe 0.915, online probe 0.743.
  (Base lr 0.5 gave kNN 0.834 / linear 0.928 at 300 steps and kNN 0.798 / linear 0.900 at 150.)

Launch:
  jssl train --config configs/vicreg_mnist.py --workdir runs/vicreg_mnist
  jssl train --config configs/vicreg_mnist.py --workdir runs/v150 --config.total_steps=150
  jssl train --config configs/vicreg_mnist.py:smoke --workdir /tmp/smoke     # seconds, CPU

Variants (after the colon): `smoke` (a few steps, tiny batch, for tests and CI).
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.mnist(config)

    config.method = ml_collections.ConfigDict()
    config.method.name = "vicreg"
    # Expander: Linear-BN-ReLU-Linear-BN-ReLU-Linear (the paper: 8192-8192-8192).
    config.method.projection_hidden_dim = 1024
    config.method.projection_dim = 1024
    config.method.projection_layers = 3
    config.method.invariance_weight = 25.0  # lambda
    config.method.variance_weight = 25.0  # mu
    config.method.covariance_weight = 1.0  # nu

    config.optimizer.base_learning_rate = 1.0  # x global_batch/256; 0.5 gave kNN 0.798 (vs 0.82) at 150 steps

    if variant == "smoke":
        common.make_smoke(config)
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of vicreg_mnist; known: 'smoke'")
    return config
