"""BERT-Base pre-training (masked LM) on a TFDS text corpus: the paper's recipe.

From Devlin, Chang, Lee, Toutanova, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding" (NAACL 2019, arXiv:1810.04805), Sec. 3.1 and Appendix A.2:

* BERT-Base: 12 layers, 768 wide, 12 heads, MLP 3,072, 512 positions, GELU, tied output
  embedding with BERT's transform (dense + GELU + LayerNorm) and output bias (`bert_base`,
  110M parameters with a 30,522-entry WordPiece vocabulary);
* masked LM: 15% of the positions (`max_predictions_per_seq` = 20 of 128), 80% [MASK] / 10%
  random / 10% kept; the loss only at those positions;
* batch 256 sequences of 128 tokens (the paper's first 90% of steps; its last 10% use 512),
  1,000,000 steps; Adam, lr 1e-4, betas 0.9 / 0.999, weight decay 0.01, 10,000 warm-up steps.

What differs here, deliberately or for want of the pieces: the data is whatever TFDS text
corpus is prepared (default English Wikipedia, `wikipedia/20230601.en`; the paper adds
BooksCorpus, which TFDS does not ship), packed into 128-token windows of consecutive text
with [BOS]/[EOS] between documents, without BERT's next-sentence prediction (dropped by
RoBERTa, Liu et al. 2019, without loss); the vocabulary is a byte-level BPE of the same
30,522 entries (as RoBERTa's, not WordPiece: `tokenizers` trains WordPiece
non-deterministically, see `jssl.data.text_corpus`) learned on the first 1,000,000 training
documents; decay is cosine to 0 instead of linear; no dropout (the
paper's 0.1); parameters float32, computation bfloat16. The 512-token phase is a second run
with `--config.data.seq_len=512` from this one's weights.

Launch (Wikipedia prepared as ArrayRecord under ~/tensorflow_datasets):
  python -m jssl.cli train --config configs/bert_base.py --workdir runs/bert_base \
    --config.data.data_dir=~/tensorflow_datasets
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    if variant:
        raise ValueError(f"unknown variant {variant!r} of bert_base; it has none (shrink by --config overrides)")
    config = common.base_config()
    common.text_data(config, name="tfds")
    config.data.tfds_name = "wikipedia/20230601.en"
    config.data.data_dir = "~/tensorflow_datasets"
    config.data.text_key = "text"
    config.data.train_split = "train[:99%]"
    config.data.eval_split = "train[99%:]"  # Wikipedia has one split: its last 1% held out
    config.data.seq_len = 128
    config.data.tokenizer = "bpe"
    config.data.vocab_size = 30522
    config.data.tokenizer_documents = 1_000_000
    config.data.max_eval_examples = 10_000
    config.data.num_workers = 8
    config.total_steps = 1_000_000
    config.global_batch_size = 256
    config.log_every_steps = 100

    config.model.name = "bert_base"
    config.model.dtype = "bfloat16"
    # Listed in full (the bert_base defaults) so that --config.model.kwargs.* overrides reach them.
    config.model.kwargs = ml_collections.ConfigDict(
        dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, max_len=512, vocab_size=30522, drop_path=0.0)
    )
    config.method.name = "bert"
    config.method.mask_rate = 0.15
    config.method.mask_token_rate = 0.8
    config.method.random_token_rate = 0.1

    config.optimizer.name = "adamw"
    config.optimizer.base_learning_rate = 1e-4
    config.optimizer.lr_scaling_batch = 256
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.weight_decay = 0.01
    config.optimizer.warmup_steps = 10_000
    config.optimizer.min_learning_rate_ratio = 0.0
    config.optimizer.grad_clip_norm = 1.0  # the reference code clips at global norm 1.0

    config.eval.every_steps = 50_000
    config.eval.batch_size = 1000
    config.checkpoint.every_steps = 10_000
    return config
