"""GPT-2 small (124M) next-token pre-training on a TFDS text corpus: the nanoGPT-style recipe.

Model from Radford, Wu, Child, Luan, Amodei, Sutskever, "Language Models are Unsupervised
Multitask Learners" (2019): 12 layers, 768 wide, 12 heads, 1,024 positions, pre-norm blocks
with a final LayerNorm, a 50,257-entry byte-level BPE vocabulary and the output projection
tied to the token embedding: 124,439,808 parameters (`gpt2_small`, checked in the tests).

Optimization as nanoGPT's reproduction of GPT-2 small on OpenWebText (Karpathy,
github.com/karpathy/nanoGPT, `config/train_gpt2.py`), the paper giving no schedule: about
0.5M tokens a step (batch 480 x 1,024; here 512 x 1,024), 600,000 steps, AdamW lr 6e-4,
betas 0.9 / 0.95, weight decay 0.1, 2,000 warm-up steps, cosine decay to 6e-5, gradient
clipping at 1.0, bfloat16 computation.

Data: a TFDS text corpus in ArrayRecord (default `c4/en`, as OpenWebText is not in TFDS),
packed into 1,024-token windows with [BOS]/[EOS] around each document. The BPE is trained
here on the first 1,000,000 training documents with 50,257 entries (the paper's is trained on
WebText; jssl does not ship GPT-2's merges). No dropout (nanoGPT's pre-training default too).

Launch (C4 prepared as ArrayRecord under ~/tensorflow_datasets):
  python -m jssl.cli train --config configs/gpt2_small.py --workdir runs/gpt2_small \
    --config.data.data_dir=~/tensorflow_datasets
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    if variant:
        raise ValueError(f"unknown variant {variant!r} of gpt2_small; it has none (shrink by --config overrides)")
    config = common.base_config()
    common.text_data(config, name="tfds")
    config.data.tfds_name = "c4/en"
    config.data.data_dir = "~/tensorflow_datasets"
    config.data.text_key = "text"
    config.data.train_split = "train"
    config.data.eval_split = "validation"
    config.data.seq_len = 1024
    config.data.tokenizer = "bpe"
    config.data.vocab_size = 50257
    config.data.tokenizer_documents = 1_000_000
    config.data.max_eval_examples = 2_000
    config.data.num_workers = 8
    config.total_steps = 600_000
    config.global_batch_size = 512
    config.log_every_steps = 100

    config.model.name = "gpt2_small"
    config.model.dtype = "bfloat16"
    # Listed in full (the gpt2_small defaults) so that --config.model.kwargs.* overrides reach them.
    config.model.kwargs = ml_collections.ConfigDict(
        dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, max_len=1024, vocab_size=50257, drop_path=0.0)
    )
    config.method.name = "gpt"
    config.method.sample_temperature = 1.0
    config.method.sample_top_k = 200

    config.optimizer.name = "adamw"
    config.optimizer.base_learning_rate = 6e-4
    config.optimizer.lr_scaling_batch = 512
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.95
    config.optimizer.weight_decay = 0.1
    config.optimizer.warmup_steps = 2_000
    config.optimizer.min_learning_rate_ratio = 0.1
    config.optimizer.grad_clip_norm = 1.0

    config.eval.every_steps = 20_000
    config.eval.batch_size = 64
    config.checkpoint.every_steps = 5_000
    return config
