"""BERT (masked language model) on CPython's embedded pydoc topics: the CPU text recipe.

Data as `configs/gpt_pydoc.py` (`jssl.data.text`, corpus `pydoc`: the 79 help topics of
`pydoc_data.topics`, the last 20% of each held out; byte-level BPE of 2,048 entries trained on
the rest; 128-token packed windows; held-out task: which of 32 topics a window comes from).

Masking as BERT: 19 of the 128 positions of every window (15%, `max_predictions_per_seq`),
80% of them replaced by [MASK], 10% by a random token, 10% kept; the loss and the logits only
at those 19 positions. Model `text_tiny` (128 wide, 2 bidirectional blocks, 2 heads, tied
embeddings), AdamW (betas 0.9 / 0.98, weight decay 0.01 as BERT), batch 32 x 128 tokens.

Baselines (data only): the most frequent training token's accuracy on held-out tokens (what a
model that always predicts it scores on masked positions, in expectation), the unigram model's
perplexity, bag-of-tokens features under kNN / probe.

Launch:
  python -m jssl.cli train --config configs/bert_pydoc.py --workdir /tmp/bert_run
  python -m jssl.cli train --config configs/bert_pydoc.py:smoke --workdir /tmp/smoke   # seconds

Variants (after the colon): `smoke` (a few steps, tiny batch, for tests and CI).
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.text_data(config, name="pydoc")
    config.data.seq_len = 128
    config.data.vocab_size = 1024
    config.total_steps = 800
    config.global_batch_size = 32
    config.log_every_steps = 20

    config.model.name = "text_tiny"
    # Listed in full so that --config.model.kwargs.* overrides reach every field.
    config.model.kwargs = ml_collections.ConfigDict(
        dict(embed_dim=128, depth=2, num_heads=2, mlp_ratio=4.0, max_len=256, drop_path=0.1)
    )
    config.method.name = "bert"
    config.method.mask_rate = 0.15
    config.method.mask_token_rate = 0.8
    config.method.random_token_rate = 0.1

    config.optimizer.name = "adamw"
    config.optimizer.base_learning_rate = 2e-3
    config.optimizer.lr_scaling_batch = 32  # the rate above is for this config's batch
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.98
    config.optimizer.weight_decay = 0.01
    config.optimizer.warmup_steps = 50
    config.optimizer.min_learning_rate_ratio = 0.1
    config.optimizer.grad_clip_norm = 1.0

    config.eval.every_steps = 200
    config.eval.batch_size = 200
    config.checkpoint.every_steps = 200

    if variant == "smoke":
        common.make_smoke(config)
        config.global_batch_size = 16
        config.data.seq_len = 32
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of bert_pydoc; known: 'smoke'")
    return config
