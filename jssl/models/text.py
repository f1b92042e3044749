"""Text Transformers: BERT-style encoders and GPT-style decoders on the ViT's block family.

One class, `TextTransformer`, built from `jssl.models.transformer.Encoder` (pre-norm blocks,
final LayerNorm): token embedding + learned position embedding -> blocks (causal for GPT) ->
final norm, and a language-model head. The head is either tied to the token embedding
(`logits = h E^T`, GPT-2 and BERT) or an untied `[embed, vocab]` kernel; BERT variants add
BERT's transform (dense + GELU + LayerNorm) and an output bias before it.

Registered variants (`TEXT_MODELS`, built by `get_text_model(name, ...)`):

  | name        | width | depth | heads | positions | vocab        | head            |
  |-------------|-------|-------|-------|-----------|--------------|-----------------|
  | text_tiny   | 128   | 2     | 2     | 256       | the data's   | tied            |
  | text_small  | 256   | 4     | 4     | 512       | the data's   | tied            |
  | bert_base   | 768   | 12    | 12    | 512       | 30,522       | tied, transform |
  | gpt2_small  | 768   | 12    | 12    | 1,024     | 50,257       | tied (124M)     |

Whether attention is causal is the method's choice (GPT passes `causal=True`, BERT False),
not the variant's. `vocab_size=None` means "the tokenizer's size" (the method passes the data's); a variant with
a fixed vocabulary accepts any tokenizer at most that large (unused rows stay untrained),
and refuses a larger one. Any constructor argument can be overridden through
`config.model.kwargs`.

Sharding: the embedding is `[vocab, embed]`, positions `[positions, embed]`, an untied head
`[embed, vocab]`; with the default rules `vocab` -> `tensor`, so tensor parallelism splits the
embedding and the logits over the vocabulary. Logits come out in the compute dtype,
constrained to `[batch, tokens, vocab]` (vocab over the tensor axis), and the losses reduce
them shard by shard (`jssl.losses.token_nll`), so no device ever holds the full
`[batch, tokens, vocab]` array, let alone in float32.

References:
  Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
  Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
  Understanding", NAACL 2019 (BERT-Base: 12 layers, 768 wide, 12 heads, 512 positions).
  Radford et al., "Language Models are Unsupervised Multitask Learners", 2019 (GPT-2 small:
  12 layers, 768 wide, 1,024 positions, 50,257 tokens, tied embeddings, 124M parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jssl.models.partitioning import constrain, logical
from jssl.models.transformer import Encoder, LayerNorm

# GPT-2 and BERT initialize embeddings and positions with normal(0.02).
_EMBED_INIT = nnx.initializers.normal(0.02)
_DENSE_INIT = nnx.initializers.xavier_uniform()
_ZEROS = nnx.initializers.zeros_init()


def _param(init, axes: tuple[str | None, ...], shape: tuple[int, ...], rngs: nnx.Rngs) -> nnx.Param:
    return nnx.Param(logical(init, axes)(rngs.params(), shape, jnp.float32))


class TextTransformer(nnx.Module):
    """Token ids -> contextual features -> vocabulary logits.

    Args:
      vocab_size: rows of the token embedding (and logits).
      max_len: rows of the learned position table: the longest sequence the model takes.
      embed_dim, depth, num_heads, mlp_ratio: widths and depth of the block stack.
      causal: each position attends only to itself and earlier ones (GPT); False: all (BERT).
      tie_embeddings: logits use the token embedding transposed; else an untied kernel.
      head_transform: BERT's dense + GELU + LayerNorm before the output projection.
      head_bias: a `[vocab]` output bias (BERT: yes; GPT-2: no).
      pad_id: id treated as padding: no attention to it, not pooled.
      drop_path: stochastic depth of the last block (a regularizer for small corpora).
      remat: rematerialize blocks in the backward pass.
      dtype: compute dtype; parameters stay float32.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        max_len: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        causal: bool = False,
        tie_embeddings: bool = True,
        head_transform: bool = False,
        head_bias: bool = False,
        pad_id: int = 0,
        drop_path: float = 0.0,
        remat: bool = False,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        for name, value in (("vocab_size", vocab_size), ("max_len", max_len), ("embed_dim", embed_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"text model: {name} must be a positive int; got {value!r}")
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"text model: pad_id {pad_id} is outside the vocabulary [0, {vocab_size})")
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.embed_dim = embed_dim
        self.causal = bool(causal)
        self.pad_id = int(pad_id)
        self.dtype = dtype
        self.token_embed = _param(_EMBED_INIT, ("vocab", "embed"), (vocab_size, embed_dim), rngs)
        self.pos_embed = _param(_EMBED_INIT, (None, "embed"), (max_len, embed_dim), rngs)
        self.encoder = Encoder(
            depth=depth,
            embed_dim=embed_dim,
            num_heads=num_heads,
            mlp_dim=round(embed_dim * mlp_ratio),
            drop_path=drop_path,
            remat=remat,
            norm_epsilon=1e-5 if causal else 1e-12,  # GPT-2's / BERT's LayerNorm epsilons
            dtype=dtype,
            rngs=rngs,
        )
        if head_transform:
            self.transform_kernel = _param(_DENSE_INIT, ("embed", "mlp"), (embed_dim, embed_dim), rngs)
            self.transform_bias = _param(_ZEROS, ("mlp",), (embed_dim,), rngs)
            self.transform_norm = LayerNorm(embed_dim, epsilon=1e-12, dtype=dtype, rngs=rngs)
        else:
            self.transform_kernel = self.transform_bias = self.transform_norm = nnx.data(None)
        self.head_kernel = (
            nnx.data(None) if tie_embeddings else _param(_DENSE_INIT, ("embed", "vocab"), (embed_dim, vocab_size), rngs)
        )
        self.head_bias = _param(_ZEROS, ("vocab",), (vocab_size,), rngs) if head_bias else nnx.data(None)

    @property
    def feature_dim(self) -> int:
        return self.embed_dim

    def check_tokens(self, tokens: jax.Array) -> None:
        """Clear errors for inputs the model cannot take (trace time: shapes and dtype only)."""
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"text model: tokens must be int [batch, seq]; got {tokens.dtype} {tuple(tokens.shape)}")
        if tokens.shape[1] > self.max_len:
            raise ValueError(
                f"text model: sequences of {tokens.shape[1]} tokens exceed the {self.max_len}-row position table; "
                "lower data.seq_len or raise model.kwargs.max_len"
            )

    def encode(self, tokens: jax.Array) -> jax.Array:
        """tokens: [batch, seq] int -> hidden states [batch, seq, embed] float32 (final-normed)."""
        self.check_tokens(tokens)
        n = tokens.shape[1]
        x = jnp.take(self.token_embed.get_value(), tokens, axis=0) + self.pos_embed.get_value()[:n][None]
        x = constrain(x, ("batch", None, "embed"))
        key_mask = None if self.causal else tokens != self.pad_id
        return self.encoder(x, key_mask=key_mask, causal=self.causal)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """hidden: [batch, n, embed] -> logits [batch, n, vocab] in the compute dtype, vocab-sharded.

        `n` may be any subset of positions (BERT's masked ones, GPT's last one in sampling).
        """
        h = hidden.astype(self.dtype)
        if self.transform_kernel is not None:
            h = h @ self.transform_kernel.get_value().astype(self.dtype) + self.transform_bias.get_value().astype(
                self.dtype
            )
            h = self.transform_norm(nnx.gelu(h, approximate=False))
        if self.head_kernel is None:
            out = jnp.einsum("bnd,vd->bnv", h, self.token_embed.get_value().astype(self.dtype))
        else:
            out = h @ self.head_kernel.get_value().astype(self.dtype)
        if self.head_bias is not None:
            out = out + self.head_bias.get_value().astype(self.dtype)
        return constrain(out, ("batch", None, "vocab"))

    def pool(self, hidden: jax.Array, tokens: jax.Array) -> jax.Array:
        """hidden: [batch, seq, embed], tokens: [batch, seq] -> [batch, embed] float32 mean over non-pad tokens."""
        w = (tokens != self.pad_id).astype(jnp.float32)[..., None]
        return jnp.sum(hidden.astype(jnp.float32) * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """tokens: [batch, seq] -> pooled features [batch, embed] float32."""
        return self.pool(self.encode(tokens), tokens)


def _variant(**defaults: Any) -> Callable[..., TextTransformer]:
    def build(*, rngs: nnx.Rngs, vocab_size: int | None = None, **kwargs: Any) -> TextTransformer:
        fixed_vocab = defaults.get("vocab_size")
        vocab = fixed_vocab if vocab_size is None else vocab_size
        if vocab is None:
            raise ValueError("text model: this variant takes the tokenizer's vocabulary; pass vocab_size")
        unknown = (
            set(kwargs)
            - set(TextTransformer.__init__.__kwdefaults__ or {})
            - {"max_len", "embed_dim", "depth", "num_heads"}
        )
        if unknown:
            raise ValueError(f"text model: unknown options {sorted(unknown)}")
        return TextTransformer(rngs=rngs, **{**defaults, **kwargs, "vocab_size": vocab})

    build.defaults = dict(defaults)  # read by the methods (a variant's fixed vocabulary)
    return build


TEXT_MODELS: dict[str, Callable[..., TextTransformer]] = {
    "text_tiny": _variant(max_len=256, embed_dim=128, depth=2, num_heads=2, vocab_size=None),
    "text_small": _variant(max_len=512, embed_dim=256, depth=4, num_heads=4, vocab_size=None),
    "bert_base": _variant(
        max_len=512, embed_dim=768, depth=12, num_heads=12, vocab_size=30522, head_transform=True, head_bias=True
    ),
    "gpt2_small": _variant(max_len=1024, embed_dim=768, depth=12, num_heads=12, vocab_size=50257),
}


def text_model_defaults(name: str) -> dict[str, Any]:
    """The registered defaults of variant `name` (e.g. its fixed `vocab_size`, or None)."""
    if name not in TEXT_MODELS:
        raise ValueError(f"unknown text model {name!r}; known text models: {sorted(TEXT_MODELS)}")
    return dict(TEXT_MODELS[name].defaults)


def get_text_model(name: str, *, rngs: nnx.Rngs, **kwargs: Any) -> TextTransformer:
    """Builds the text model `name` (see the module docstring); `kwargs` override its defaults."""
    if name not in TEXT_MODELS:
        raise ValueError(f"unknown text model {name!r}; known text models: {sorted(TEXT_MODELS)}")
    return TEXT_MODELS[name](rngs=rngs, **kwargs)
