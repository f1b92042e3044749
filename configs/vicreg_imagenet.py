"""VICReg on ImageNet with a ResNet-50: the paper's recipe (Bardes et al., ICLR 2022).

Paper (https://arxiv.org/abs/2105.04906, Section 4.1 and Appendix C.1 / reference code
https://github.com/facebookresearch/vicreg, `main_vicreg.py` defaults):
  * ResNet-50 encoder (2048-d features), expander 8192-8192-8192 (Linear-BN-ReLU x2, Linear);
  * loss coefficients lambda = 25 (invariance), mu = 25 (variance), nu = 1 (covariance);
  * LARS, momentum 0.9, weight decay 1e-6 (biases and BN parameters excluded from weight decay
    and from the LARS adaptation, as here), lr = 0.2 x batch / 256, batch 2048, 1000 epochs,
    10 warm-up epochs then cosine decay to lr / 1000;
  * BYOL's augmentations, asymmetric between the two views: random resized crop to 224,
    horizontal flip, colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale p 0.2,
    Gaussian blur with p 1.0 / 0.1 and solarization with p 0.0 / 0.2 (view 1 / view 2).
    The reference code blurs with PIL's untruncated GaussianBlur(sigma ~ U(0.1, 2)), hence
    `kernel_frac=None`.

Epochs are steps of 2048 out of 1,281,167 training images: 1000 epochs = 625,570 steps,
10 warm-up epochs = 6,256 steps. Evaluation uses the first `data.max_eval_examples` images of
each split (kNN / linear probe on a subset; the paper's linear evaluation is a separate
100-epoch protocol). Needs `imagenet2012` prepared for TFDS as ArrayRecord in `data.data_dir`.

Launch (a TPU/GPU pod; every field can be overridden, e.g. to shrink the model for a test):
  jssl train --config configs/vicreg_imagenet.py --workdir gs://bucket/vicreg_in1k \
    --config.data.data_dir=~/tensorflow_datasets
  jssl train --config configs/vicreg_imagenet.py --workdir /tmp/x --config.total_steps=2 \
    --config.global_batch_size=8 --config.model.name=resnet_mini --config.method.projection_hidden_dim=32 \
    --config.method.projection_dim=32
"""

from __future__ import annotations

import ml_collections

from jssl import config as common

VIEW_1 = common.byol_augment(blur_p=1.0, solarize_p=0.0, kernel_frac=None)
VIEW_2 = common.byol_augment(blur_p=0.1, solarize_p=0.2, kernel_frac=None)


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    if variant:
        raise ValueError(f"unknown variant {variant!r} of vicreg_imagenet; it has none")
    config = common.base_config()
    common.imagenet(config)
    config.global_batch_size = 2048
    config.total_steps = common.steps_for_epochs(1000, config.global_batch_size)  # 625,570
    config.data.augment = VIEW_1  # unused while data.crops is set
    config.data.crops = ((1, VIEW_1), (1, VIEW_2))

    # Only this method's fields (no SimCLR temperature etc. from base_config).
    config.method = ml_collections.ConfigDict()
    config.method.name = "vicreg"
    config.method.projection_hidden_dim = 8192
    config.method.projection_dim = 8192
    config.method.projection_layers = 3
    config.method.invariance_weight = 25.0
    config.method.variance_weight = 25.0
    config.method.covariance_weight = 1.0

    config.optimizer.name = "lars"
    config.optimizer.base_learning_rate = 0.2  # x global_batch / 256 = 1.6
    config.optimizer.lr_scaling_batch = 256
    config.optimizer.weight_decay = 1e-6
    config.optimizer.momentum = 0.9
    config.optimizer.warmup_steps = common.steps_for_epochs(10, config.global_batch_size)  # 6,256
    config.optimizer.min_learning_rate_ratio = 1e-3

    config.probe.learning_rate = 0.1
    config.eval.every_steps = common.steps_for_epochs(100, config.global_batch_size)
    config.checkpoint.every_steps = 5000
    return config
