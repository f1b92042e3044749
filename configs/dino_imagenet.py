"""DINO, ResNet-50 on ImageNet: the official repository's ResNet-50 instructions.

Recipe: the README of https://github.com/facebookresearch/dino ("ResNet-50 and other convnets
trainings") runs `main_dino.py --arch resnet50 --optimizer sgd --lr 0.03 --weight_decay 1e-4
--weight_decay_end 1e-4 --global_crops_scale 0.14 1 --local_crops_scale 0.05 0.14` on 8 GPUs;
everything else is `main_dino.py`'s defaults: 64 images per GPU (batch 512), 100 epochs, 10
warm-up epochs, cosine decay to min lr 1e-6, lr scaled as lr x batch / 256, SGD momentum 0.9,
gradient clipping 3.0, out_dim 65536, no BatchNorm in the head, `norm_last_layer=True`,
teacher momentum 0.996 -> 1 (cosine), center momentum 0.9, student temperature 0.1, last
layer frozen for the first epoch. Paper: Caron et al., "Emerging Properties in
Self-Supervised Vision Transformers", ICCV 2021, https://arxiv.org/abs/2104.14294.

Deliberate choices where the defaults leave room (override to taste):
  * teacher temperature warmed up linearly 0.04 -> 0.07 over 30 epochs, the repository's
    recommended setting for its longer runs (`--warmup_teacher_temp 0.04 --teacher_temp 0.07
    --warmup_teacher_temp_epochs 30`); the bare defaults keep 0.04 throughout
    (`--config.method.teacher_temperature=0.04`);
  * 10 local crops of 96 px (the paper's best multi-crop setting, 2 x 224 + 10 x 96); the
    script default is 8 (`--config.method.num_local_crops=8` with matching `data.crops`);
  * gradient clipping here is by the global norm (the reference clips each parameter's
    gradient norm to 3.0).

Augmentations as in `DataAugmentationDINO`: both global crops get flips, color jitter
(0.4, 0.4, 0.2, 0.1) with p 0.8 and grayscale p 0.2; the first global crop is always blurred,
the second blurred with p 0.1 and solarized with p 0.2; local crops are blurred with p 0.5
(PIL radius 0.1-2).

Epochs are steps of `global_batch_size` over the 1,281,167 training images, the last partial
batch dropped as in the reference: 1,281,167 // 512 = 2502 steps per epoch (100 epochs =
250,200 steps).

Launch (TFDS ImageNet prepared under ~/tensorflow_datasets):
  jssl train --config configs/dino_imagenet.py --workdir runs/dino_in1k \
    --config.data.data_dir=~/tensorflow_datasets
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    if variant:
        raise ValueError(f"unknown variant {variant!r}; this config has none (shrink it by overrides)")
    config = common.base_config()
    common.imagenet(config)
    batch = 512
    steps_per_epoch = common.IMAGENET_TRAIN_IMAGES // batch  # 2502, the reference's drop-last epochs
    num_local_crops = 10
    config.global_batch_size = batch
    config.total_steps = 100 * steps_per_epoch

    common.dino_imagenet(
        config,
        steps_per_epoch=steps_per_epoch,
        global_scale=(0.14, 1.0),
        local_scale=(0.05, 0.14),
        num_local_crops=num_local_crops,
        norm_last_layer=True,
    )

    config.optimizer.name = "sgd"
    config.optimizer.base_learning_rate = 0.03  # x batch / 256 = 0.06 at batch 512
    config.optimizer.lr_scaling_batch = 256
    config.optimizer.min_learning_rate_ratio = 1e-6 / (0.03 * batch / 256)
    config.optimizer.warmup_steps = 10 * steps_per_epoch
    config.optimizer.weight_decay = 1e-4
    config.optimizer.momentum = 0.9
    config.optimizer.grad_clip_norm = 3.0

    config.eval.every_steps = 10 * steps_per_epoch
    config.checkpoint.every_steps = steps_per_epoch
    config.checkpoint.max_to_keep = 3
    return config
