"""MoCo v3 on ImageNet-1k with a ResNet-50: the reference 100-epoch recipe (68.9% linear top-1).

From Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision Transformers"
(ICCV 2021, arXiv:2104.02057) and the reference code (github.com/facebookresearch/moco-v3,
`main_moco.py` defaults and CONFIG.md, "ResNet-50, 100-epoch pre-training":
`--moco-m-cos --crop-min=.2`):

* batch 4096, LARS (momentum 0.9, no decay or trust ratio on biases and BN), lr 0.6 per 256
  images (x 4096/256 = 9.6), weight decay 1e-6, 10 warmup epochs then cosine decay;
* 100 epochs of the 1,281,167 training images = 31,278 steps, warmup 3,128
  (`common.steps_for_epochs`; the reference loader drops each epoch's last partial batch,
  100 x 312 = 31,200 and 3,120). The 300-epoch recipe (72.8%) is lr 0.3; the 1000-epoch
  one (74.6%) lr 0.3, wd 1.5e-6, momentum 0.996;
* momentum encoder: m from 0.99 to 1 on a cosine (`--moco-m-cos`); temperature 1.0 (the
  ResNet default; ViTs use 0.2); loss `2T (ctr(q1, k2) + ctr(q2, k1))`;
* projector: the reference ResNet-50 code builds a 2-layer MLP 2048 -> 4096 -> 256 (BN + ReLU
  in between, BN without affine at the end); the paper's ViT projector has 3 layers
  (`--config.method.projection_layers=3`); predictor 256 -> 4096 -> 256;
* asymmetric augmentations (BYOL's): random resized crop 224 of scale 0.2-1, color jitter
  (0.4, 0.4, 0.2, 0.1) p=0.8, grayscale p=0.2, Gaussian blur sigma 0.1-2 (PIL, untruncated)
  with p=1.0 on view 1 and p=0.1 on view 2, solarization p=0.2 on view 2 only, horizontal
  flip; ImageNet mean/std.

Launch (TFDS ImageNet prepared under ~/tensorflow_datasets):
  jssl train --config configs/moco_v3_imagenet.py --workdir runs/moco_v3_in1k \
    --config.data.data_dir=~/tensorflow_datasets
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def view_augmentation(blur_p: float, solarize_p: float) -> str:
    """BYOL's view augmentation with MoCo v3's `--crop-min=.2` and PIL's untruncated blur."""
    return common.byol_augment(blur_p=blur_p, solarize_p=solarize_p, scale=(0.2, 1.0), kernel_frac=None)


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    if variant:
        raise ValueError(f"unknown variant {variant!r} of moco_v3_imagenet; it has none (shrink by --config overrides)")
    config = common.base_config()
    common.imagenet(config)
    config.global_batch_size = 4096
    config.total_steps = common.steps_for_epochs(100, config.global_batch_size)  # 31,278
    # data.augment is unused while data.crops is set (kept equal to view 1 for reference).
    config.data.augment = view_augmentation(blur_p=1.0, solarize_p=0.0)
    config.data.crops = (
        (1, view_augmentation(blur_p=1.0, solarize_p=0.0)),
        (1, view_augmentation(blur_p=0.1, solarize_p=0.2)),
    )

    config.method.name = "moco_v3"
    config.method.temperature = 1.0
    config.method.momentum_base = 0.99
    config.method.momentum_final = 1.0
    config.method.projection_layers = 2
    config.method.projection_hidden_dim = 4096
    config.method.projection_dim = 256
    config.method.predictor_hidden_dim = 4096

    config.optimizer.name = "lars"
    config.optimizer.base_learning_rate = 0.6
    config.optimizer.lr_scaling_batch = 256
    config.optimizer.warmup_steps = common.steps_for_epochs(10, config.global_batch_size)  # 3,128
    config.optimizer.weight_decay = 1e-6
    config.optimizer.momentum = 0.9

    config.eval.every_steps = 0
    return config
