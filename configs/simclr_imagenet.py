"""SimCLR, ResNet-50 on ImageNet-1k: the paper's recipe (Chen et al. 2020).

Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020, arXiv:2002.05709: batch 4096, LARS with learning rate
0.3 x batch / 256 (4.8), weight decay 1e-6 (not on biases and BN), 10 warm-up epochs then
cosine decay, 1000 epochs (Table 6 / Appendix B.9), temperature 0.1, a 2-layer projection head
2048 -> 128 (v1), views: random resized crop (0.08-1) + flip + colour distortion of strength 1
(jitter 0.8/0.8/0.8/0.2 with p 0.8, grayscale p 0.2) + Gaussian blur (p 0.5, sigma 0.1-2,
kernel 10% of the side), both views alike.

Needs ImageNet prepared once as ArrayRecord (`tfds build imagenet2012 --file_format=array_record`
with the archives in the manual dir).

Launch:
  jssl train --config configs/simclr_imagenet.py --workdir runs/simclr_in1k \
    --config.data.data_dir=/data/tensorflow_datasets
  sbatch --nodes=4 launch/slurm.sbatch --config configs/simclr_imagenet.py --workdir /shared/runs/simclr
  # 100 epochs instead of 1000:
  jssl train --config configs/simclr_imagenet.py:100ep --workdir runs/simclr_in1k_100ep

Variants: `100ep` (the 100-epoch ablation setting of the paper).
"""

from __future__ import annotations

import ml_collections

from jssl import config as common

AUGMENT = (
    "random_resized_crop(224, scale=(0.08, 1.0))|hflip|color_jitter(0.8, 0.8, 0.8, 0.2, p=0.8)"
    "|grayscale(p=0.2)|gaussian_blur(p=0.5, sigma=(0.1, 2.0), kernel_frac=0.1)"
)


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.imagenet(config)
    epochs = {None: 1000, "100ep": 100}
    if variant not in epochs:
        raise ValueError(f"unknown variant {variant!r} of simclr_imagenet; known: '100ep'")
    config.global_batch_size = 4096
    config.total_steps = common.steps_for_epochs(epochs[variant], config.global_batch_size)
    config.data.augment = AUGMENT

    config.method.name = "simclr"
    config.method.temperature = 0.1
    config.method.projection_hidden_dim = 2048
    config.method.projection_dim = 128
    config.method.projection_layers = 2

    config.optimizer.name = "lars"
    config.optimizer.base_learning_rate = 0.3
    config.optimizer.lr_scaling_batch = 256
    config.optimizer.weight_decay = 1e-6
    config.optimizer.warmup_steps = common.steps_for_epochs(10, config.global_batch_size)
    config.eval.every_steps = common.steps_for_epochs(50, config.global_batch_size)
    return config
