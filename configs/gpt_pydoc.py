"""GPT (next-token prediction) on CPython's embedded pydoc topics: the CPU text recipe.

Data (`jssl.data.text`, corpus `pydoc`): the 79 help topics of `pydoc_data.topics` (465,000
characters, shipped with Python; nothing downloaded); the last 20% of each topic is held out.
A byte-level BPE tokenizer of 1,024 entries is trained on the training text (cached under
`~/.cache/jssl/text`); the training split is 125,532 tokens, packed as `[BOS] topic [EOS] ...`
and cut into 980 windows of 128 tokens. Held out: 232 full 128-token windows inside 37
topics' tails (29,696 tokens; the labelled task: which topic a window comes from, for kNN and
the linear probe; the kNN bank / probe training set: 882 training windows of those topics).

Model `text_tiny` (128 wide, 2 causal blocks, 2 heads, tied embeddings; 0.56M parameters),
stochastic depth 0.1, AdamW (betas 0.9 / 0.95, weight decay 0.1, gradient clipping at 1.0, as
GPT-2/nanoGPT) at 3e-3 with 50 warm-up steps and cosine decay to 3e-4, batch 32 x 128 tokens,
500 steps (16 epochs). Samples at the end: temperature 0.8, top-k 40, from [BOS].

Measured (2026-12-01, `python -m jssl.cli train --config configs/gpt_pydoc.py --workdir
/tmp/gpt_run`; `results.json`):
  * held-out perplexity 61.2 (token NLL 4.114 nats, next-token accuracy 0.195) against the
    unigram model's 384.4 (add-one smoothed training frequencies) and the random init's
    1,039; evals: 191 at step 100, 99.6 at 200, 73.2 at 300, 64.3 at 400;
  * topic task (37 classes): kNN 0.250 / linear probe 0.203 of the mean-pooled hidden states,
    random init 0.172 / 0.177, bag-of-tokens features 0.280 / 0.241: a next-token model's
    pooled states are not a better topic representation than token counts here;
  * 3 min 47 s wall (`/usr/bin/time`; start-up, 500 steps, 5 evals, random-init baseline and
    64 samples), median step 0.28 s, 0.9 GB peak memory, on the 2-core machine with other jobs
    (load average 4-7); a rerun gave the same numbers and samples bit for bit. The first run,
    beside a BERT run at load average about 10, took 21 min (median step 2.1 s);
  * tuning: with 2,048 BPE entries and no stochastic depth the model overfit after 400 steps
    (held-out perplexity 137 at 400, 214 at 600, training perplexity 7.5; unigram 583);
  * the first sample (training text is reStructuredText-like help):
        The "as" identifier_stmt "e" ":" suite
                         ::=
                         | "e" ":" suite]" ":" suite ["f" suite] "as" ":" suite
    and another begins "A single function is not be used to in the object is not index".
    Grammar-shaped, not yet sensible.

Baselines (data only, `results.json`): `unigram` (perplexity of the training token
frequencies on the held-out tokens, and the most frequent token's accuracy) and
`bag_of_tokens` (each window's token frequencies under kNN / probe).

Launch:
  python -m jssl.cli train --config configs/gpt_pydoc.py --workdir /tmp/gpt_run
  python -m jssl.cli train --config configs/gpt_pydoc.py:smoke --workdir /tmp/smoke   # ~2 min, mostly compiling

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
    config.method.sample_temperature = 0.8  # softmax temperature of the generated samples
    config.method.sample_top_k = 40  # sample among the k likeliest tokens (0: all)

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
