"""MAE with a small ViT on the embedded 5,000-image MNIST subset (CPU recipe).

Placeholder docstring: numbers filled in after the measured run.
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.mnist(config)
    config.model.name = "vit_ti4_28"
    config.model.kwargs = ml_collections.ConfigDict(
        dict(embed_dim=192, depth=6, num_heads=3, pos_embed="sincos", pool="cls")
    )
    config.data.augment = "random_resized_crop(28, scale=(0.4, 1.0), ratio=(0.75, 1.333))"

    config.method.name = "mae"
    config.method.mask_ratio = 0.75
    config.method.decoder_embed_dim = 128
    config.method.decoder_depth = 2
    config.method.decoder_num_heads = 4
    config.method.decoder_mlp_ratio = 4.0
    config.method.decoder_pos_embed = "sincos"
    config.method.norm_pix_loss = True

    config.optimizer.name = "adamw"
    config.optimizer.base_learning_rate = 1e-3
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.95
    config.optimizer.weight_decay = 0.05

    if variant == "smoke":
        common.make_smoke(config)
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of mae_mnist; known: 'smoke'")
    return config
