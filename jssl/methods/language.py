"""What BERT and GPT share: a text Transformer built against the data's tokenizer, and evaluation.

`LanguageModel` is the base of `jssl.methods.bert.BERT` and `jssl.methods.gpt.GPT`. It
declares `inputs = 'tokens'` (the trainer then feeds `{'tokens': int32 [batch, seq]}` from
`jssl.data.text.TextInputs`), builds `config.model.name` from `jssl.models.TEXT_MODELS` with
the tokenizer's vocabulary and special ids (`TextInputs.model_kwargs()`), and refuses what
the model cannot take: a tokenizer larger than a fixed-vocabulary variant's table, or
`data.seq_len` longer than its position table. `represent` is the mean of the final hidden
states over non-padding tokens (no class token: packed windows have none).
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import ml_collections
from flax import nnx

from jssl.methods.base import Method
from jssl.models.text import TextTransformer, get_text_model, text_model_defaults


def _tokens(inputs: Any, fn: str) -> jax.Array:
    if not isinstance(inputs, dict) or "tokens" not in inputs:
        raise ValueError(
            f"{fn}: expects {{'tokens': int32 [batch, seq]}} (TextInputs.to_method); got {type(inputs).__name__}"
        )
    return inputs["tokens"]


class LanguageModel(Method):
    """Base class: `self.model` (a `TextTransformer`), token checks, pooled representation."""

    inputs: ClassVar[str] = "tokens"
    views_per_example = 1
    causal: ClassVar[bool] = False

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        *,
        dtype: Any,
        rngs: nnx.Rngs,
        vocab_size: int,
        pad_id: int = 0,
        mask_id: int = 1,
        bos_id: int = 2,
        eos_id: int = 3,
        num_special_tokens: int = 4,
    ):
        name = config.model.name
        kwargs = dict(config.model.get("kwargs", None) or {})
        fixed = kwargs.pop("vocab_size", None) or text_model_defaults(name).get("vocab_size")
        if fixed is not None and vocab_size > fixed:
            raise ValueError(
                f"the tokenizer has {vocab_size} tokens but model {name!r} a {fixed}-row vocabulary; lower "
                "data.vocab_size or raise model.kwargs.vocab_size"
            )
        self.model: TextTransformer = get_text_model(
            name, rngs=rngs, vocab_size=fixed or vocab_size, causal=self.causal, pad_id=pad_id, dtype=dtype, **kwargs
        )
        seq_len = int(config.data.seq_len)
        if seq_len > self.model.max_len:
            raise ValueError(
                f"data.seq_len={seq_len} exceeds model {name!r}'s {self.model.max_len} positions; lower data.seq_len "
                "or raise model.kwargs.max_len"
            )
        self.seq_len = seq_len
        self.data_vocab_size = int(vocab_size)
        self.pad_id, self.mask_id, self.bos_id, self.eos_id = int(pad_id), int(mask_id), int(bos_id), int(eos_id)
        self.num_special_tokens = int(num_special_tokens)
        if not 0 < self.num_special_tokens < self.data_vocab_size:
            raise ValueError(
                f"num_special_tokens {num_special_tokens} must be in (0, vocab_size={vocab_size}): the random "
                "tokens BERT draws and GPT samples are the ordinary ones"
            )

    @property
    def feature_dim(self) -> int:
        return self.model.feature_dim

    def represent(self, inputs: dict[str, jax.Array]) -> jax.Array:
        """inputs: {'tokens': [batch, seq]} -> [batch, embed] float32 mean of the hidden states."""
        return self.model(_tokens(inputs, f"{type(self).__name__}.represent"))

    def backbone(self) -> nnx.Module:
        raise NotImplementedError(
            f"{type(self).__name__}: fine-tuning text models is not supported (jssl eval fine-tunes image "
            "backbones); set config.finetune.enabled = False"
        )

    @staticmethod
    def _key(rngs: nnx.Rngs | None, step: jax.Array) -> jax.Array:
        if rngs is not None:
            return rngs.default()
        # Direct calls without rngs (tests, notebooks): still a pure function of the step.
        return jax.random.fold_in(jax.random.PRNGKey(0), jax.numpy.asarray(step, jax.numpy.int32))
