"""DINO, ViT-S/16 on ImageNet: the official repository's "boosted" ViT-S/16 recipe (~76.1% linear).

Paper: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021,
https://arxiv.org/abs/2104.14294. Recipe: the README of https://github.com/facebookresearch/dino
("Boosting DINO performance": `--arch vit_small --epochs 300 --teacher_temp 0.07
--warmup_teacher_temp_epochs 30 --norm_last_layer false`, on 16 GPUs x 64 images = batch 1024),
everything else `main_dino.py`'s defaults:

* ViT-S/16 (`vit_s16`, 21.7M parameters), class token, learned position embeddings,
  stochastic depth 0.1 in the student (the teacher has none);
* AdamW (0.9, 0.999), lr 0.0005 x batch / 256 (= 0.002 at 1024) after 10 warm-up epochs,
  cosine to 1e-6; weight decay 0.04 -> 0.4 on a cosine (`optimizer.weight_decay_schedule`),
  not on biases and norms; gradient clipping 3.0;
* teacher temperature 0.04 -> 0.07 linearly over 30 epochs, student 0.1; teacher momentum
  0.996 -> 1 (cosine); center momentum 0.9; head 384 -> 2048 -> 2048 -> 256 -> 65536 without
  BatchNorm, last layer not weight-normalized to norm 1 (`norm_last_layer=False`) and frozen for
  the first epoch;
* multi-crop 2 x 224 + 10 x 96 (the paper's best setting; the script default is 8 local
  crops), global crops of area 0.4-1, local 0.05-0.4 (the script's defaults);
* 300 epochs of 1,281,167 // 1024 = 1251 steps (drop-last epochs, as the reference loader).

Differences from the reference, deliberate or forced:
  * bfloat16 compute with float32 parameters (the reference: float16 autocast + loss scaling);
  * gradients clipped by their global norm (the reference clips each parameter's to 3.0);
  * the position table is interpolated for 96 px crops with `jax.image.resize` (bicubic, no
    antialiasing), as the reference's `interpolate_pos_encoding` with `F.interpolate`.

Launch (TFDS ImageNet prepared under ~/tensorflow_datasets):
  jssl train --config configs/dino_vit_imagenet.py --workdir runs/dino_vits16_in1k \
    --config.data.data_dir=~/tensorflow_datasets
Tensor parallelism for bigger ViTs is a mesh change, e.g. `--config.mesh.tensor=2`.
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    if variant:
        raise ValueError(f"unknown variant {variant!r} of dino_vit_imagenet; it has none (shrink it by overrides)")
    config = common.base_config()
    common.imagenet(config)
    batch = 1024
    steps_per_epoch = common.IMAGENET_TRAIN_IMAGES // batch  # 1251, the reference's drop-last epochs
    num_local_crops = 10
    config.global_batch_size = batch
    config.total_steps = 300 * steps_per_epoch

    config.model.name = "vit_s16"
    config.model.kwargs = ml_collections.ConfigDict(dict(drop_path=0.1, pool="cls", pos_embed="learned"))

    common.dino_imagenet(
        config,
        steps_per_epoch=steps_per_epoch,
        global_scale=(0.4, 1.0),
        local_scale=(0.05, 0.4),
        num_local_crops=num_local_crops,
        norm_last_layer=False,
    )

    opt = config.optimizer
    opt.name = "adamw"
    opt.base_learning_rate = 0.0005  # x batch / 256 = 0.002 at batch 1024
    opt.lr_scaling_batch = 256
    opt.min_learning_rate_ratio = 1e-6 / (0.0005 * batch / 256)
    opt.warmup_steps = 10 * steps_per_epoch
    opt.b1 = 0.9
    opt.b2 = 0.999
    opt.weight_decay = 0.04
    opt.weight_decay_schedule = "cosine"
    opt.weight_decay_end = 0.4
    opt.grad_clip_norm = 3.0

    config.eval.every_steps = 10 * steps_per_epoch
    config.checkpoint.every_steps = steps_per_epoch
    config.checkpoint.max_to_keep = 3
    return config
