"""BYOL's ImageNet recipe: ResNet-50, LARS, batch 4096, 1000 epochs (the paper's headline run).

From Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020, https://arxiv.org/abs/2006.07733,
Sec. 3.3 and Appendices B (augmentations, Table 6), C (optimization) and J; reference code
deepmind-research/byol (configs/byol.py):
  * LARS, cosine decay without restarts over 1000 epochs after a 10-epoch warm-up, base
    learning rate 0.2 x batch/256 (3.2 at batch 4096), weight decay 1.5e-6, momentum 0.9;
    biases and BN parameters excluded from weight decay and LARS adaptation (the jssl
    optimizer's mask);
  * target momentum tau from 0.996 to 1 by the cosine schedule;
  * projector and predictor: Linear 4096 -> BN -> ReLU -> Linear 256;
  * asymmetric augmentations: both views random-resized-crop 224 (scale 0.08-1) + flip +
    colour jitter (0.4, 0.4, 0.2, 0.1; p 0.8) + grayscale (p 0.2); view 1 blur p 1.0 and no
    solarization, view 2 blur p 0.1 and solarize p 0.2 (blur sigma 0.1-2, kernel 23 px =
    10% of 224), via `data.crops`, which gives each view its own string.
Epochs as steps for the 1,281,167 ImageNet-1k training images, rounded
(`common.steps_for_epochs`): 1000 epochs = 312,785 steps, 10 epochs = 3,128 steps (the
reference code's `epochs * num_examples // batch` gives 3,127). The paper's 300-epoch run
instead uses lr 0.3, wd 1e-6 and tau 0.99:
  --config.total_steps=93835 --config.optimizer.base_learning_rate=0.3
  --config.optimizer.weight_decay=1e-6 --config.method.momentum_base=0.99

Launch (TFDS imagenet2012 prepared under data_dir; bfloat16 compute, float32 weights):
  jssl train --config configs/byol_imagenet.py --workdir gs://bucket/byol_in1k \
    --config.data.data_dir=/path/to/tensorflow_datasets
  jssl train --config configs/byol_imagenet.py:smoke --workdir /tmp/byol_in_smoke \
    --config.data.data_dir=...   # a few steps, small batch

Evaluation during and after training uses at most `data.max_eval_examples` images of each
split (kNN / linear probe on frozen features); the paper's linear evaluation protocol
(90 epochs of SGD on the full training set) is separate from this trainer.

Variants (after the colon): `smoke` (a few steps, tiny batch, for tests and CI).
"""

from __future__ import annotations

import ml_collections

from jssl import config as common

BATCH = 4096
EPOCHS = 1000
WARMUP_EPOCHS = 10

VIEW_1 = common.byol_augment(blur_p=1.0, solarize_p=0.0, kernel_frac=0.1)
VIEW_2 = common.byol_augment(blur_p=0.1, solarize_p=0.2, kernel_frac=0.1)


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.imagenet(config)
    config.global_batch_size = BATCH
    config.total_steps = common.steps_for_epochs(EPOCHS, BATCH)  # 312,785
    config.data.augment = VIEW_1  # unused while data.crops is set
    config.data.crops = ((1, VIEW_1), (1, VIEW_2))

    config.method.name = "byol"
    config.method.momentum_base = 0.996
    config.method.momentum_final = 1.0
    config.method.projection_hidden_dim = 4096
    config.method.projection_dim = 256
    config.method.predictor_hidden_dim = 4096

    config.optimizer.name = "lars"
    config.optimizer.base_learning_rate = 0.2  # x global_batch/256 = 3.2
    config.optimizer.lr_scaling_batch = 256
    config.optimizer.weight_decay = 1.5e-6
    config.optimizer.momentum = 0.9
    config.optimizer.warmup_steps = common.steps_for_epochs(WARMUP_EPOCHS, BATCH)  # 3,128

    config.eval.every_steps = common.steps_for_epochs(100, BATCH)  # every 100 epochs

    if variant == "smoke":
        common.make_smoke(config)
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of byol_imagenet; known: 'smoke'")
    return config
