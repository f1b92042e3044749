"""SimSiam's ImageNet recipe: ResNet-50, SGD, batch 512, 100 epochs (the paper's default setting).

From Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021,
https://arxiv.org/abs/2011.10566, Sec. 3 (Baseline settings) and Appendix A; reference code
facebookresearch/simsiam (main_simsiam.py):
  * SGD, momentum 0.9, weight decay 1e-4, learning rate 0.05 x batch/256 (0.1 at batch 512),
    cosine decay, no warm-up (the paper warms up only with LARS at batch >= 1024);
  * projector: 3 layers of 2048 with BN on each, the output BN without affine parameters;
    predictor: 2048 -> 512 (BN, ReLU) -> 2048;
  * augmentations as MoCo v2, the same for both views: random-resized-crop 224
    (scale 0.2-1), colour jitter (0.4, 0.4, 0.4, 0.1; p 0.8), grayscale (p 0.2), Gaussian
    blur (sigma 0.1-2, p 0.5, PIL's untruncated kernel), horizontal flip.
100 epochs of the 1,281,167 ImageNet-1k training images at batch 512 = 250,228 steps
(rounded, `common.steps_for_epochs`; `epochs * num_examples // batch` gives 250,227).

Not reproduced: the paper's best run keeps the predictor's learning rate fixed (`--fix-pred-lr`,
Table 1: 68.1 vs 67.7 with decay); the jssl optimizer decays every parameter alike. Weight
decay is masked off biases and BN parameters (the reference decays everything).

Launch (TFDS imagenet2012 prepared under data_dir; bfloat16 compute, float32 weights):
  jssl train --config configs/simsiam_imagenet.py --workdir gs://bucket/simsiam_in1k \
    --config.data.data_dir=/path/to/tensorflow_datasets
  jssl train --config configs/simsiam_imagenet.py:smoke --workdir /tmp/simsiam_in_smoke \
    --config.data.data_dir=...   # a few steps, small batch

Evaluation uses at most `data.max_eval_examples` images of each split (kNN / linear probe on
frozen features); the paper's linear evaluation (LARS, 90 epochs, batch 4096) is separate.

Variants (after the colon): `smoke` (a few steps, tiny batch, for tests and CI).
"""

from __future__ import annotations

import ml_collections

from jssl import config as common

BATCH = 512
EPOCHS = 100

AUGMENT = (
    "random_resized_crop(224, scale=(0.2, 1.0), ratio=(0.75, 1.3333333))"
    "|color_jitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.8)"
    "|grayscale(p=0.2)"
    "|gaussian_blur(p=0.5, sigma=(0.1, 2.0), kernel_frac=None)"
    "|hflip(p=0.5)"
)


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.imagenet(config)
    config.global_batch_size = BATCH
    config.total_steps = common.steps_for_epochs(EPOCHS, BATCH)  # 250,228
    config.data.augment = AUGMENT

    config.method.name = "simsiam"
    config.method.projection_hidden_dim = 2048
    config.method.projection_dim = 2048
    config.method.projection_layers = 3
    config.method.predictor_hidden_dim = 512

    config.optimizer.name = "sgd"
    config.optimizer.base_learning_rate = 0.05  # x global_batch/256 = 0.1
    config.optimizer.lr_scaling_batch = 256
    config.optimizer.weight_decay = 1e-4
    config.optimizer.momentum = 0.9
    config.optimizer.warmup_steps = 0

    config.eval.every_steps = common.steps_for_epochs(10, BATCH)  # every 10 epochs

    if variant == "smoke":
        common.make_smoke(config)
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of simsiam_imagenet; known: 'smoke'")
    return config
