"""SwAV, ResNet-50 on ImageNet: the paper's 800-epoch, batch-4096 multi-crop recipe.

Recipe (Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", NeurIPS 2020, https://arxiv.org/abs/2006.09882, Appendix A, and the official
script `scripts/swav_800ep_pretrain.sh` of https://github.com/facebookresearch/swav):
  * batch 4096 (64 GPUs x 64), 800 epochs; LARS, base lr 4.8 with cosine decay to 0.0048,
    10 warm-up epochs (the reference warms up from 0.3, here from 0), weight decay 1e-6;
  * multi-crop 2 x 224 px (scale 0.14-1) + 6 x 96 px (scale 0.05-0.14), color distortion of
    strength 1 (jitter 0.8/0.8/0.8/0.2 with p 0.8, grayscale 0.2), PIL Gaussian blur p 0.5
    with radius 0.1-2, horizontal flips;
  * projection MLP 2048 -> 128, 3000 prototypes, temperature 0.1, Sinkhorn epsilon 0.05 with
    3 iterations, codes from the two 224 px crops, prototypes frozen for the first 313 iterations.
  * Queue: the script asks for a 3840-long queue from epoch 15, but the reference code rounds
    the queue length down to a multiple of the global batch (`queue_length -= queue_length %
    (batch_size * world_size)`), which at batch 4096 is 0: the batch-4096 run uses no queue,
    and neither does this config (`method.queue_length = 0`). The queue is for small batches,
    e.g. the batch-256 recipe (`swav_200ep_bs256_pretrain.sh`): `--config.global_batch_size=256
    --config.method.queue_length=3840 --config.method.queue_start_step=<15 epochs in steps>`.

Epochs are steps of `global_batch_size` over the 1,281,167 training images, the last partial
batch dropped as in the reference: 1,281,167 // 4096 = 312 steps per epoch (800 epochs =
249,600 steps). For 400 or 200 epochs, override `total_steps` (124,800 / 62,400).

Launch (TFDS ImageNet prepared under ~/tensorflow_datasets):
  jssl train --config configs/swav_imagenet.py --workdir runs/swav_in1k \
    --config.data.data_dir=~/tensorflow_datasets
"""

from __future__ import annotations

import ml_collections

from jssl import config as common

# Color distortion of strength 1 and PIL's (untruncated) Gaussian blur, as in the reference.
_COLOR = "hflip|color_jitter(0.8, 0.8, 0.8, 0.2, p=0.8)|grayscale(p=0.2)|gaussian_blur(p=0.5, sigma=(0.1, 2.0), kernel_frac=None)"
GLOBAL = f"random_resized_crop(224, scale=(0.14, 1.0))|{_COLOR}"
LOCAL = f"random_resized_crop(96, scale=(0.05, 0.14))|{_COLOR}"


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    if variant:
        raise ValueError(f"unknown variant {variant!r}; this config has none (shrink it by overrides)")
    config = common.base_config()
    common.imagenet(config)
    batch = 4096
    steps_per_epoch = common.IMAGENET_TRAIN_IMAGES // batch  # 312, the reference's drop-last epochs
    config.global_batch_size = batch
    config.total_steps = 800 * steps_per_epoch

    config.data.augment = GLOBAL  # unused while data.crops is set
    config.data.crops = ((2, GLOBAL), (6, LOCAL))
    config.data.num_workers = 32  # 8 crops per image are CPU-heavy

    m = config.method
    m.name = "swav"
    m.num_global_crops = 2
    m.num_local_crops = 6
    m.projection_hidden_dim = 2048
    m.projection_dim = 128
    m.projection_layers = 2
    m.num_prototypes = 3000
    m.temperature = 0.1
    m.epsilon = 0.05
    m.sinkhorn_iters = 3
    m.freeze_prototypes_steps = 313
    m.queue_length = 0  # see the docstring: 3840 rounds down to 0 at batch 4096 in the reference
    m.queue_start_step = 15 * steps_per_epoch

    config.optimizer.name = "lars"
    config.optimizer.base_learning_rate = 4.8
    config.optimizer.lr_scaling_batch = 4096  # 4.8 at batch 4096
    config.optimizer.min_learning_rate_ratio = 0.0048 / 4.8
    config.optimizer.warmup_steps = 10 * steps_per_epoch
    config.optimizer.weight_decay = 1e-6
    config.optimizer.momentum = 0.9

    config.eval.every_steps = 10 * steps_per_epoch
    config.checkpoint.every_steps = 2 * steps_per_epoch
    config.checkpoint.max_to_keep = 3
    return config
