"""Helpers of the text tests: a tiny pydoc-like corpus and text configs with a private cache.

The tiny corpus keeps tokenizer training and packing in milliseconds; the real embedded pydoc
corpus is used only where its size matters (the eval set's topics, the recipes).
"""

from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np

from jssl.config import base_config, text_data

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def tiny_topics(num: int = 6, words: int = 400, seed: int = 0) -> dict[str, str]:
    """`num` topics of `words` words each; topic i prefers its own two words (a learnable label)."""
    rng = np.random.default_rng(seed)
    topics = {}
    for i in range(num):
        favourite = [WORDS[(2 * i) % len(WORDS)], WORDS[(2 * i + 1) % len(WORDS)]]
        pool = favourite * 4 + WORDS
        topics[f"topic{i}"] = " ".join(rng.choice(pool, words)) + ".\n"
    return topics


def text_config(tmp_path: Path, **overrides) -> ml_collections.ConfigDict:
    """A text config with a private cache dir, small vocabulary and windows, `overrides` ('a.b': v)."""
    c = base_config()
    text_data(c)
    c.data.cache_dir = str(tmp_path / "cache")
    c.data.vocab_size = 300
    c.data.seq_len = 16
    c.global_batch_size = 8
    for key, value in overrides.items():
        target = c
        *path, last = key.split(".")
        for p in path:
            target = target[p]
        target[last] = value
    return c


# A model that compiles in about a second: one 16-wide block.
TINY_TEXT_MODEL = dict(embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0, max_len=32, drop_path=0.0)
TINY_VOCAB = 64


def tiny_method_config(method: str, **overrides) -> ml_collections.ConfigDict:
    """The `configs/<method>_pydoc.py` smoke config with the model shrunk (`TINY_TEXT_MODEL`)."""
    from tests.train.helpers import load_config

    c = load_config("smoke", name=f"{method}_pydoc")
    c.model.kwargs = ml_collections.ConfigDict(dict(TINY_TEXT_MODEL))
    c.data.seq_len = 16
    c.global_batch_size = 8
    for key, value in overrides.items():
        target = c
        *path, last = key.split(".")
        for p in path:
            target = target[p]
        target[last] = value
    return c


def random_tokens(batch: int, seq: int, *, seed: int = 0, vocab: int = TINY_VOCAB) -> np.ndarray:
    """int32 [batch, seq] ordinary tokens (ids 4..vocab-1) with [BOS] at the start of each row."""
    tokens = np.random.default_rng(seed).integers(4, vocab, (batch, seq), dtype=np.int32)
    tokens[:, 0] = 2
    return tokens
