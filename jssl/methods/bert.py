"""BERT: masked-language-model pre-training of a bidirectional text Transformer.

Per sequence a fixed number of positions, `round(mask_rate * seq_len)` (BERT's
`max_predictions_per_seq`, 15% of a full window), is drawn uniformly (padding last), and at
each drawn position the input becomes `[MASK]` with probability 0.8, a random ordinary token
with probability 0.1, and stays itself otherwise; the loss is the cross-entropy of the original
tokens at exactly those positions. The model's logits are computed only there, `[batch,
predictions, vocab]` instead of `[batch, seq, vocab]`, and in the compute dtype, split over the
vocabulary under tensor parallelism (`jssl.losses.token_nll`).

Draws come from the step's `rngs` for the global batch, so they are a pure function of the
seed and step, the same on any mesh and after a resume. Held-out: the masked-token accuracy and
perplexity with masks drawn from the evaluation's fixed key.

References:
  Devlin, Chang, Lee, Toutanova, "BERT: Pre-training of Deep Bidirectional Transformers for
  Language Understanding", NAACL 2019, https://arxiv.org/abs/1810.04805 (Sec. 3.1, Task #1,
  and Appendix A.1: 15% of positions, 80/10/10).
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


def num_predictions(*, seq_len: int, mask_rate: float) -> int:
    """Positions predicted per sequence: `round(mask_rate * seq_len)`, at least 1."""
    return max(1, round(mask_rate * seq_len))


def mlm_corrupt(
    key: jax.Array,
    tokens: jax.Array,
    *,
    num_predict: int,
    mask_id: int,
    pad_id: int,
    random_low: int,
    random_high: int,
    mask_token_rate: float = 0.8,
    random_token_rate: float = 0.1,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """BERT's corruption of `tokens: [batch, seq]`.

    `num_predict` positions per row are drawn uniformly without replacement (padding only
    when a row has too few real tokens). Of them, a `mask_token_rate` share (in expectation)
    becomes `mask_id`, a `random_token_rate` share a token uniform in `[random_low,
    random_high)`, the rest stay as they are.

    Returns:
      `(corrupted [batch, seq], positions [batch, num_predict] int32, weights [batch,
      num_predict] float32)`: weights are 0 where a drawn position is padding.

    References:
      Devlin et al., NAACL 2019, Sec. 3.1 and Appendix A.1.
    """
    b, n = tokens.shape
    if not 1 <= num_predict <= n:
        raise ValueError(f"mlm_corrupt: num_predict must be in [1, {n}]; got {num_predict}")
    if not (0.0 <= mask_token_rate and 0.0 <= random_token_rate and mask_token_rate + random_token_rate <= 1.0):
        raise ValueError(f"mlm_corrupt: bad rates mask={mask_token_rate}, random={random_token_rate}")
    k_pos, k_kind, k_random = jax.random.split(key, 3)
    # Padding sorts after every real token (noise in [0, 1) + 2), so it is drawn last.
    noise = jax.random.uniform(k_pos, (b, n)) + 2.0 * (tokens == pad_id)
    positions = jnp.argsort(noise, axis=1)[:, :num_predict].astype(jnp.int32)
    original = jnp.take_along_axis(tokens, positions, axis=1)
    u = jax.random.uniform(k_kind, (b, num_predict))
    random_tokens = jax.random.randint(k_random, (b, num_predict), random_low, random_high, dtype=tokens.dtype)
    replacement = jnp.where(
        u < mask_token_rate,
        jnp.asarray(mask_id, tokens.dtype),
        jnp.where(u < mask_token_rate + random_token_rate, random_tokens, original),
    )
    corrupted = tokens.at[jnp.arange(b)[:, None], positions].set(replacement)
    return corrupted, positions, (original != pad_id).astype(jnp.float32)


class BERT(LanguageModel):
    """Masked language model on a bidirectional `TextTransformer`.

    Config fields (`config.method`): `mask_rate` (0.15), `mask_token_rate` (0.8),
    `random_token_rate` (0.1).
    """

    causal = False

    def __init__(self, config: ml_collections.ConfigDict, *, dtype: Any, rngs: nnx.Rngs, **data_kwargs: Any):
        super().__init__(config, dtype=dtype, rngs=rngs, **data_kwargs)
        hp = config.method
        self.mask_rate = float(hp.mask_rate)
        if not 0.0 < self.mask_rate < 1.0:
            raise ValueError(f"method.mask_rate must be in (0, 1); got {hp.mask_rate}")
        self.mask_token_rate = float(hp.mask_token_rate)
        self.random_token_rate = float(hp.random_token_rate)
        if self.mask_token_rate < 0 or self.random_token_rate < 0 or self.mask_token_rate + self.random_token_rate > 1:
            raise ValueError(
                f"method.mask_token_rate ({hp.mask_token_rate}) and method.random_token_rate ({hp.random_token_rate}) "
                "must be >= 0 and add up to at most 1"
            )

    @property
    def max_predictions(self) -> int:
        """Positions predicted per `data.seq_len`-token sequence (BERT's `max_predictions_per_seq`)."""
        return num_predictions(seq_len=self.seq_len, mask_rate=self.mask_rate)

    def corrupt(self, key: jax.Array, tokens: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """tokens: [batch, seq] -> (corrupted [batch, seq], positions [batch, p], weights [batch, p])."""
        return mlm_corrupt(
            key,
            tokens,
            num_predict=num_predictions(seq_len=tokens.shape[1], mask_rate=self.mask_rate),
            mask_id=self.mask_id,
            pad_id=self.pad_id,
            random_low=self.num_special_tokens,
            random_high=self.data_vocab_size,
            mask_token_rate=self.mask_token_rate,
            random_token_rate=self.random_token_rate,
        )

    def _predict(self, key: jax.Array, tokens: jax.Array):
        corrupted, positions, weights = self.corrupt(key, tokens)
        hidden = self.model.encode(corrupted)
        # Only the predicted positions reach the vocabulary projection: [b, p, vocab] logits.
        logits = self.model.logits(jnp.take_along_axis(hidden, positions[..., None], axis=1))
        labels = jnp.take_along_axis(tokens, positions, axis=1)
        return hidden, corrupted, logits, labels, weights

    def __call__(self, inputs: dict[str, jax.Array], *, step: jax.Array, rngs: nnx.Rngs | None = None) -> MethodOutput:
        tokens = _tokens(inputs, "BERT")
        hidden, corrupted, logits, labels, weights = self._predict(self._key(rngs, step), tokens)
        loss, metrics = losses.masked_lm(logits, labels, weights)
        # Online-probe features of the corrupted input: no second, clean forward in training.
        features = self.model.pool(hidden, corrupted)
        return MethodOutput(loss=loss, metrics=metrics, features=features)

    def heldout_metrics(self, inputs: dict[str, jax.Array], *, rngs: nnx.Rngs) -> dict[str, jax.Array]:
        """Per example: `masked_correct`, `masked_count` (predicted tokens) and `masked_nll_sum` at fixed masks.

        Returned as sums so that `summarize_heldout` divides totals by totals: the accuracy and
        perplexity per masked token of the whole split.
        """
        tokens = _tokens(inputs, "BERT.heldout_metrics")
        _, _, logits, labels, weights = self._predict(rngs.default(), tokens)
        nll = losses.token_nll(logits, labels)
        correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
        return {
            "masked_correct": jnp.sum(correct * weights, axis=1),
            "masked_count": jnp.sum(weights, axis=1),
            "masked_nll_sum": jnp.sum(nll * weights, axis=1),
        }

    @classmethod
    def summarize_heldout(cls, means: dict[str, float]) -> dict[str, float]:
        """Masked-token `masked_accuracy`, `masked_nll` (nats per masked token) and `masked_perplexity`."""
        count = means.get("masked_count", 0.0)
        if not count:
            return {}
        nll = means["masked_nll_sum"] / count
        return {
            "masked_accuracy": means["masked_correct"] / count,
            "masked_nll": nll,
            "masked_perplexity": math.exp(nll),
        }
