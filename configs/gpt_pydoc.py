"""GPT (next-token prediction) on CPython's embedded pydoc topics: the CPU text recipe.

Data (`jssl.data.text`, corpus `pydoc`): the 79 help topics of `pydoc_data.topics` (465,000
characters, shipped with Python; nothing downloaded); the last 20% of each topic is held out.
A byte-level BPE tokenizer of 2,048 entries is trained on the training text (cached under
`~/.cache/jssl/text`); the training split is about 101,000 tokens, packed as `[BOS] topic
[EOS] ...` and cut into 791 windows of 128 tokens. Held out: 182 full 128-token windows inside
32 topics' tails (the labelled task: which topic a window comes from, for kNN and the probes).

Model `text_tiny` (128 wide, 2 causal blocks, 2 heads, tied embeddings; 0.66M parameters),
AdamW (betas 0.9 / 0.95, weight decay 0.1, gradient clipping at 1.0 as GPT-2/nanoGPT), batch
32 x 128 tokens, warm-up then cosine decay. Samples: temperature 0.8, top-k 40, from [BOS].

Baselines (data only, `results.json` `baselines`): a unigram model of the training tokens
(add-one smoothing) on the held-out tokens, and bag-of-tokens features under kNN / probe.

Launch:
  python -m jssl.cli train --config configs/gpt_pydoc.py --workdir /tmp/gpt_run
  python -m jssl.cli train --config configs/gpt_pydoc.py:smoke --workdir /tmp/smoke   # seconds

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
    config.total_steps = 500
    config.global_batch_size = 32
    config.log_every_steps = 20

    config.model.name = "text_tiny"
    # Listed in full so that --config.model.kwargs.* overrides reach every field.
    config.model.kwargs = ml_collections.ConfigDict(
        dict(embed_dim=128, depth=2, num_heads=2, mlp_ratio=4.0, max_len=256, drop_path=0.1)
    )
    config.method.name = "gpt"
    config.method.sample_temperature = 0.8
    config.method.sample_top_k = 40

    config.optimizer.name = "adamw"
    config.optimizer.base_learning_rate = 3e-3
    config.optimizer.lr_scaling_batch = 32  # the rate above is for this config's batch
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.95
    config.optimizer.weight_decay = 0.1
    config.optimizer.warmup_steps = 50
    config.optimizer.min_learning_rate_ratio = 0.1
    config.optimizer.grad_clip_norm = 1.0

    config.eval.every_steps = 100
    # Also the number of samples the trainer draws at the end (the log shows the first 8):
    # each costs seq_len forwards, so fewer than the 182 held-out windows.
    config.eval.batch_size = 64
    config.checkpoint.every_steps = 100

    if variant == "smoke":
        common.make_smoke(config)
        config.global_batch_size = 16
        config.data.seq_len = 32
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of gpt_pydoc; known: 'smoke'")
    return config
