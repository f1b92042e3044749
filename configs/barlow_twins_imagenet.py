"""Barlow Twins on ImageNet with a ResNet-50: the paper's recipe (Zbontar et al., ICML 2021).

Paper (https://arxiv.org/abs/2103.03230, Section 2 "Implementation details" / reference code
https://github.com/facebookresearch/barlowtwins, `main.py` defaults):
  * ResNet-50 encoder (2048-d features), projector 8192-8192-8192 (Linear-BN-ReLU x2, Linear),
    followed in the paper by an affine-free BatchNorm that `losses.barlow_twins` performs
    itself (per-dimension standardization over the global batch);
  * lambda = 5e-3 (off-diagonal weight);
  * LARS, momentum 0.9, weight decay 1.5e-6 (biases and BN parameters excluded from weight
    decay and from the LARS adaptation, as here), batch 2048, 1000 epochs, 10 warm-up epochs
    then cosine decay to 1/1000 of the peak; lr 0.2 x batch / 256 for the weights.
    NOT reproduced: the paper's separate learning rate 0.0048 x batch / 256 for biases and
    BatchNorm parameters; jssl's optimizer has one learning rate for all parameters, so here
    they get the weights' 0.2 (they are outside the LARS adaptation and weight decay, though).
  * BYOL's augmentations, asymmetric between the two views: random resized crop to 224,
    horizontal flip, colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale p 0.2,
    Gaussian blur with p 1.0 / 0.1 and solarization with p 0.0 / 0.2 (view 1 / view 2),
    with PIL's untruncated blur as in the reference code (`kernel_frac=None`).

Epochs are steps of 2048 out of 1,281,167 training images: 1000 epochs = 625,570 steps,
10 warm-up epochs = 6,256 steps. Evaluation uses the first `data.max_eval_examples` images of
each split. Needs `imagenet2012` prepared for TFDS as ArrayRecord in `data.data_dir`.

Launch (a TPU/GPU pod; every field can be overridden, e.g. to shrink the model for a test):
  jssl train --config configs/barlow_twins_imagenet.py --workdir gs://bucket/bt_in1k \
    --config.data.data_dir=~/tensorflow_datasets
  jssl train --config configs/barlow_twins_imagenet.py --workdir /tmp/x --config.total_steps=2 \
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
        raise ValueError(f"unknown variant {variant!r} of barlow_twins_imagenet; it has none")
    config = common.base_config()
    common.imagenet(config)
    config.global_batch_size = 2048
    config.total_steps = common.steps_for_epochs(1000, config.global_batch_size)  # 625,570
    config.data.augment = VIEW_1  # unused while data.crops is set
    config.data.crops = ((1, VIEW_1), (1, VIEW_2))

    # Only this method's fields (no SimCLR temperature etc. from base_config).
    config.method = ml_collections.ConfigDict()
    config.method.name = "barlow_twins"
    config.method.projection_hidden_dim = 8192
    config.method.projection_dim = 8192
    config.method.projection_layers = 3
    config.method.lambda_ = 5e-3

    config.optimizer.name = "lars"
    config.optimizer.base_learning_rate = 0.2  # x global_batch / 256 = 1.6 (weights; see above for biases)
    config.optimizer.lr_scaling_batch = 256
    config.optimizer.weight_decay = 1.5e-6
    config.optimizer.momentum = 0.9
    config.optimizer.warmup_steps = common.steps_for_epochs(10, config.global_batch_size)  # 6,256
    config.optimizer.min_learning_rate_ratio = 1e-3

    config.probe.learning_rate = 0.1
    config.eval.every_steps = common.steps_for_epochs(100, config.global_batch_size)
    config.checkpoint.every_steps = 5000
    return config
