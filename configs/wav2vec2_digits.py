"""wav2vec 2.0 on the eSpeak NG spoken digits (CPU recipe; no download).

Data as every `configs/*_digits.py` (`jssl.config.spoken_digits`): ten digits in 16 synthesized
voices, 12 voices train (1,920 clips), 4 unseen voices held out (640); 0.5 s training crops
(25 frames of 20 ms).

Launch:
  python -m jssl.cli train --config configs/wav2vec2_digits.py --workdir runs/wav2vec2_digits
  python -m jssl.cli train --config configs/wav2vec2_digits.py:smoke --workdir /tmp/smoke   # seconds

Variants (after the colon): `smoke` (a few steps, tiny batch, for tests and CI).
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.spoken_digits(config)
    config.total_steps = 400
    config.global_batch_size = 64
    config.model.name = "wav2vec2_tiny"
    config.model.kwargs = ml_collections.ConfigDict()
    config.method.update(
        dict(
            name="wav2vec2", mask_prob=0.65, mask_length=5, min_masks=2, num_negatives=20, logit_temperature=0.1,
            codebook_groups=2, codebook_entries=32, codebook_dim=64, final_dim=64, diversity_weight=0.1,
            feature_penalty_weight=10.0, gumbel_temperature_start=2.0, gumbel_temperature_end=0.5,
            gumbel_temperature_decay=0.995,
        )
    )  # fmt: skip
    config.optimizer.name = "adamw"
    config.optimizer.base_learning_rate = 8e-3  # x batch / 256: 2e-3 at batch 64
    config.optimizer.lr_scaling_batch = 256
    config.optimizer.b2 = 0.98
    config.optimizer.weight_decay = 0.01
    config.optimizer.warmup_steps = 50
    config.eval.every_steps = 200

    if variant == "smoke":
        common.make_smoke(config)
        config.eval.batch_size = 64
        config.data.max_eval_examples = 64
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of wav2vec2_digits; known: 'smoke'")
    return config
