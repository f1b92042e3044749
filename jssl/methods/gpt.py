"""GPT: next-token prediction with a causal text Transformer, and sampling from it.

Every position of a packed window predicts the next token (`jssl.losses.next_token`, which
shifts); attention is causal (`is_causal` in `jax.nn.dot_product_attention`), so position t
sees tokens 0..t only. Logits `[batch, seq, vocab]` stay in the compute dtype and, under tensor
parallelism, split over the vocabulary; the loss reduces them shard by shard
(`jssl.losses.token_nll`).

Held-out: per window the summed negative log-likelihood of its predicted tokens, their count
and the correctly predicted ones; `summarize_heldout` turns the totals into nats per token,
perplexity and accuracy over the whole split (`nll`, the per-window mean, averages to the same
number when all windows are full, as `pydoc`'s are).

`generate(num)` samples `num` sequences of `data.seq_len` tokens starting from `[BOS]`, with
`method.sample_temperature` and `method.sample_top_k` (0: the whole vocabulary), in a
`lax.fori_loop` over a fixed `[num, seq_len]` buffer: step t runs the model on the buffer
(positions after t cannot influence position t) and writes the token drawn at t + 1. That costs
`seq_len` full forwards (no key/value cache), fine for evaluation-time samples. Special tokens
other than `[EOS]` are never sampled.

References:
  Radford, Narasimhan, Salimans, Sutskever, "Improving Language Understanding by Generative
  Pre-Training", 2018 (Eq. 1); Radford, Wu, Child, Luan, Amodei, Sutskever, "Language Models are
  Unsupervised Multitask Learners", 2019 (GPT-2); Fan, Lewis, Dauphin, "Hierarchical Neural Story
  Generation", ACL 2018 (top-k sampling).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jssl import losses
from jssl.methods.base import MethodOutput
from jssl.methods.language import LanguageModel, _tokens


def filter_top_k(logits: jax.Array, *, k: int) -> jax.Array:
    """logits: [batch, vocab] -> the same with all but the `k` largest per row set to -inf (k=0: unchanged)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = jax.lax.top_k(logits, k)[0][:, -1:]
    return jnp.where(logits < kth, -jnp.inf, logits)


class GPT(LanguageModel):
    """Autoregressive language model on a causal `TextTransformer`.

    Config fields (`config.method`): `sample_temperature` (1.0), `sample_top_k` (0: none).
    """

    causal = True

    def __init__(self, config: ml_collections.ConfigDict, *, dtype: Any, rngs: nnx.Rngs, **data_kwargs: Any):
        super().__init__(config, dtype=dtype, rngs=rngs, **data_kwargs)
        hp = config.method
        self.temperature = float(hp.sample_temperature)
        self.top_k = int(hp.sample_top_k)
        if self.temperature <= 0:
            raise ValueError(f"method.sample_temperature must be > 0; got {hp.sample_temperature}")
        if self.top_k < 0:
            raise ValueError(f"method.sample_top_k must be >= 0 (0: no filter); got {hp.sample_top_k}")

    def __call__(self, inputs: dict[str, jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        del step, rngs  # deterministic objective; drop path draws from the model's own stream
        tokens = _tokens(inputs, "GPT")
        hidden = self.model.encode(tokens)
        loss, metrics = losses.next_token(self.model.logits(hidden), tokens, mask=tokens != self.pad_id)
        return MethodOutput(loss=loss, metrics=metrics, features=self.model.pool(hidden, tokens))

    def heldout_metrics(self, inputs: dict[str, jax.Array], *, rngs: nnx.Rngs) -> dict[str, jax.Array]:
        """Per window: `nll` (mean over its predicted tokens), `nll_sum`, `num_predicted`, `correct`."""
        del rngs
        tokens = _tokens(inputs, "GPT.heldout_metrics")
        logits = self.model.logits(self.model.encode(tokens))[:, :-1]
        targets = tokens[:, 1:]
        w = (targets != self.pad_id).astype(jnp.float32)
        nll = losses.token_nll(logits, targets) * w
        count = jnp.sum(w, axis=1)
        correct = jnp.sum((jnp.argmax(logits, axis=-1) == targets) * w, axis=1)
        return {
            "nll": jnp.sum(nll, axis=1) / jnp.maximum(count, 1.0),
            "nll_sum": jnp.sum(nll, axis=1),
            "num_predicted": count,
            "correct": correct,
        }

    @classmethod
    def summarize_heldout(cls, means: dict[str, float]) -> dict[str, float]:
        """`token_nll` (nats per predicted token over the split), `perplexity` and `accuracy`."""
        count = means.get("num_predicted", 0.0)
        if not count:
            return {}
        nll = means["nll_sum"] / count
        return {"token_nll": nll, "perplexity": math.exp(nll), "accuracy": means["correct"] / count}

    def generate(self, num: int, *, rngs: nnx.Rngs, length: int | None = None) -> jax.Array:
        """`num` samples: int32 token ids `[num, length]` (default `data.seq_len`), each starting with `[BOS]`."""
        length = self.seq_len if length is None else int(length)
        if not 2 <= length <= self.model.max_len:
            raise ValueError(f"GPT.generate: length must be in [2, {self.model.max_len}]; got {length}")
        key = rngs.default()
        buffer = jnp.full((num, length), self.pad_id, jnp.int32).at[:, 0].set(self.bos_id)
        vocab = jnp.arange(self.model.vocab_size)
        # Never sample padding, [MASK], [BOS], other special tokens or the rows past the tokenizer.
        banned = ((vocab < self.num_special_tokens) & (vocab != self.eos_id)) | (vocab >= self.data_vocab_size)

        def body(t, buffer):
            hidden = self.model.encode(buffer)
            h = jax.lax.dynamic_slice_in_dim(hidden, t, 1, axis=1)
            logits = self.model.logits(h)[:, 0].astype(jnp.float32) / self.temperature
            logits = filter_top_k(jnp.where(banned, -jnp.inf, logits), k=self.top_k)
            token = jax.random.categorical(jax.random.fold_in(key, t), logits, axis=-1).astype(jnp.int32)
            return jax.lax.dynamic_update_slice_in_dim(buffer, token[:, None], t + 1, axis=1)

        return jax.lax.fori_loop(0, length - 1, body, buffer)
