"""MoCo v2 on ImageNet-1k with a ResNet-50: the paper's 200-epoch recipe (67.5% linear top-1).

From Chen, Fan, Girshick, He, "Improved Baselines with Momentum Contrastive Learning"
(arXiv:2003.04297, Table 1/2) and the reference code (github.com/facebookresearch/moco,
`main_moco.py --mlp --moco-t 0.2 --aug-plus --cos`):

* batch 256 (8 GPUs), SGD momentum 0.9, lr 0.03 for batch 256 (scaled linearly with the
  batch, `optimizer.lr_scaling_batch`), weight decay 1e-4, cosine schedule, no warmup;
* 200 epochs of the 1,281,167 training images at batch 256 = 1,000,912 steps
  (`common.steps_for_epochs`; the reference loader drops each epoch's last partial batch,
  200 x 5,004 = 1,000,800 steps); the 800-epoch run (71.1%) is
  `--config.total_steps=4003647`;
* queue of 65,536 keys, key momentum 0.999 (constant), temperature 0.2, MLP head
  2048 -> ReLU -> 128 (no BatchNorm);
* "aug+": random resized crop 224 of scale 0.2-1, color jitter (0.4, 0.4, 0.4, 0.1) with
  p=0.8, grayscale p=0.2, Gaussian blur sigma 0.1-2 with p=0.5 (PIL's untruncated blur, as
  the reference), horizontal flip; ImageNet mean/std.

Differences from the reference: weight decay is not applied to biases and BatchNorm
parameters (jssl's optimizers mask them), BatchNorm is synchronized over the global batch
instead of MoCo's per-GPU BN with Shuffle-BN (see `jssl/methods/moco_v2.py`).

Launch (TFDS ImageNet prepared under ~/tensorflow_datasets):
  jssl train --config configs/moco_v2_imagenet.py --workdir runs/moco_v2_in1k \
    --config.data.data_dir=~/tensorflow_datasets
"""

from __future__ import annotations

import ml_collections

from jssl import config as common

AUGMENT = (
    "random_resized_crop(224, scale=(0.2, 1.0))"
    "|color_jitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.8)"
    "|grayscale(p=0.2)"
    "|gaussian_blur(p=0.5, sigma=(0.1, 2.0), kernel_frac=None)"
    "|hflip"
)


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    if variant:
        raise ValueError(f"unknown variant {variant!r} of moco_v2_imagenet; it has none (shrink by --config overrides)")
    config = common.base_config()
    common.imagenet(config)
    config.global_batch_size = 256
    config.total_steps = common.steps_for_epochs(200, config.global_batch_size)  # 1,000,912
    config.data.augment = AUGMENT

    config.method.name = "moco_v2"
    config.method.temperature = 0.2
    config.method.queue_size = 65_536
    config.method.momentum_base = 0.999
    config.method.momentum_final = 0.999  # constant
    config.method.projection_hidden_dim = 2048
    config.method.projection_dim = 128
    config.method.projection_batch_norm = False
    config.method.symmetric = False

    config.optimizer.name = "sgd"
    config.optimizer.base_learning_rate = 0.03
    config.optimizer.lr_scaling_batch = 256
    config.optimizer.warmup_steps = 0
    config.optimizer.weight_decay = 1e-4
    config.optimizer.momentum = 0.9

    config.eval.every_steps = 0
    config.checkpoint.every_steps = 5000
    return config
