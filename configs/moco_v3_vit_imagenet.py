"""MoCo v3, ViT-B/16 on ImageNet: the reference 300-epoch recipe (76.7% linear top-1).

Paper: Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision Transformers",
ICCV 2021, https://arxiv.org/abs/2104.02057. Recipe: the reference code's CONFIG.md
(https://github.com/facebookresearch/moco-v3, "ViT-Base, 300-epoch pre-training":
`-a vit_base --optimizer=adamw --lr=1.5e-4 --weight-decay=.1 --epochs=300 --warmup-epochs=40
--stop-grad-conv1 --moco-m-cos --moco-t=.2`, batch 4096) and `main_moco.py`'s defaults:

* ViT-B/16 (`vit_b16`), class token (features: its output), fixed 2-D sin-cos position
  embeddings, no stochastic depth; the patch projection is frozen at its random
  initialization (`frozen_patch_embed`, the paper's "random patch projection", Sec. 4.2),
  which the paper found to stabilize training;
* AdamW (0.9, 0.999), lr 1.5e-4 x batch / 256 (= 2.4e-3 at 4096), 40 warm-up epochs then
  cosine to 0, weight decay 0.1;
* momentum encoder: m from 0.99 to 1 on a cosine (`--moco-m-cos`); temperature 0.2; loss
  `2T (ctr(q1, k2) + ctr(q2, k1))`;
* projector 3 layers 768 -> 4096 -> 4096 -> 256 (BN + ReLU between, BN without affine at the
  end), predictor 256 -> 4096 -> 256;
* BYOL's asymmetric augmentations with crops of area 0.08-1 (the ViT default `--crop-min`),
  blur p 1.0 / 0.1, solarization p 0 / 0.2;
* 300 epochs of 1,281,167 images at batch 4096 = 93,834 steps (`common.steps_for_epochs`).

Differences from the reference, deliberate or forced:
  * weight decay skips biases and norm parameters (the reference decays every parameter);
  * bfloat16 compute with float32 parameters (the reference: float16 autocast);
  * the class token starts from N(0, 0.02) (the reference: N(0, 1e-6)).

Launch (TFDS ImageNet prepared under ~/tensorflow_datasets):
  jssl train --config configs/moco_v3_vit_imagenet.py --workdir runs/moco_v3_vitb16_in1k \
    --config.data.data_dir=~/tensorflow_datasets
Tensor parallelism is a mesh change, e.g. `--config.mesh.tensor=4`.
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def view_augmentation(blur_p: float, solarize_p: float) -> str:
    """BYOL's view augmentation with MoCo v3's ViT crops (`--crop-min=0.08`) and PIL's blur."""
    return common.byol_augment(blur_p=blur_p, solarize_p=solarize_p, scale=(0.08, 1.0), kernel_frac=None)


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    if variant:
        raise ValueError(f"unknown variant {variant!r} of moco_v3_vit_imagenet; it has none (shrink by overrides)")
    config = common.base_config()
    common.imagenet(config)
    config.global_batch_size = 4096
    config.total_steps = common.steps_for_epochs(300, config.global_batch_size)  # 93,834

    config.model.name = "vit_b16"
    config.model.kwargs = ml_collections.ConfigDict(
        dict(pool="cls", pos_embed="sincos", frozen_patch_embed=True, drop_path=0.0)
    )

    config.data.augment = view_augmentation(blur_p=1.0, solarize_p=0.0)  # unused while data.crops is set
    config.data.crops = (
        (1, view_augmentation(blur_p=1.0, solarize_p=0.0)),
        (1, view_augmentation(blur_p=0.1, solarize_p=0.2)),
    )

    m = config.method
    m.name = "moco_v3"
    m.temperature = 0.2
    m.momentum_base = 0.99
    m.momentum_final = 1.0
    m.projection_layers = 3
    m.projection_hidden_dim = 4096
    m.projection_dim = 256
    m.predictor_hidden_dim = 4096

    opt = config.optimizer
    opt.name = "adamw"
    opt.base_learning_rate = 1.5e-4
    opt.lr_scaling_batch = 256
    opt.warmup_steps = common.steps_for_epochs(40, config.global_batch_size)  # 12,511
    opt.b1 = 0.9
    opt.b2 = 0.999
    opt.weight_decay = 0.1

    config.eval.every_steps = 0
    return config
