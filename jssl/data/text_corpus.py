"""Text corpora found by name, and the tokenizer trained on a corpus's training split.

A corpus (`CORPORA`, `get_corpus(name, config)`) is a `Corpus`: documents for training and
held-out documents for evaluation, each held-out document optionally labelled (the classes of
the kNN / linear-probe task). Two are registered:

* `pydoc`: the English text of CPython's `pydoc_data.topics` (79 help topics, about 465,000
  characters, shipped with every Python; nothing is downloaded). The split is by position
  inside each topic: the first `1 - data.heldout_fraction` of a topic's characters (cut at the
  next whitespace) is training text, the rest held out. Every topic is thus in both splits,
  which makes "which topic does a window come from" a labelled task for the probes.
* `tfds`: any TFDS text data set prepared as ArrayRecord (`data.tfds_name`, `data.data_dir`,
  `data.text_key`, `data.train_split`, `data.eval_split`, optional `data.label_key`), read with
  `tfds.data_source` (TensorFlow is never imported). Training documents are streamed, not held.

Tokenizers come from Hugging Face `tokenizers`: byte-level BPE as GPT-2's (`data.tokenizer =
'bpe'`; every string encodes, no unknown token, decoding is exact), trained on the training
split (its first `data.tokenizer_documents` documents when set: large corpora) with
`data.vocab_size` entries. Training is deterministic (the same file on every run and process,
tested), which a tokenizer must be when several hosts each train their own copy; WordPiece is
not offered because `tokenizers` trains it non-deterministically: its `WordPieceTrainer`, and
BPE with BERT's `##` continuation prefix, gave a different vocabulary on nearly every run on
pydoc (measured: 4 distinct vocabularies in 5 runs), from hash-map order in tie-breaking. The
result is cached as `<cache dir>/<key>/tokenizer.json`, the key a hash of the corpus identity
and the tokenizer settings, so later runs, evaluation and other processes find the same one
(the packed training stream is cached beside it). Special tokens have fixed ids: `[PAD]` 0,
`[MASK]` 1, `[BOS]` 2 (BERT's [CLS]), `[EOS]` 3 (BERT's [SEP], GPT-2's end of text).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ml_collections
import numpy as np

from jssl.data.checks import check_distinct_splits
from jssl.data.tfds_open import open_tfds

SPECIAL_TOKENS = ("[PAD]", "[MASK]", "[BOS]", "[EOS]")
PAD_ID, MASK_ID, BOS_ID, EOS_ID = range(4)
TOKENIZER_KINDS = ("bpe",)
# Under `$JSSL_CACHE` when set (as the spoken digits), else `~/.cache/jssl`.
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "jssl", "text")
# Bumped when tokenizer training or the token stream layout changes, so old caches are not reused.
_CACHE_VERSION = 1


@dataclasses.dataclass
class Corpus:
    """Training and held-out documents of one corpus.

    `train_texts()` yields the training documents (a fresh generator per call, always in the
    same order); `heldout` lists held-out documents, `heldout_labels` their class ids (or None
    for an unlabelled corpus) and `train_labels` the same classes for the training documents
    `labelled_train()` yields, for the probes' training set. `identity` names the data exactly
    (corpus, split rule, contents hash where cheap) for cache keys.
    """

    name: str
    train_texts: Callable[[], Iterator[str]]
    heldout: list[str]
    heldout_labels: list[int] | None
    labelled_train: Callable[[], Iterator[tuple[str, int]]] | None
    class_names: list[str]
    identity: str
    task: str
    windows_per_document: str = "all"  # labelled eval windows: 'all' full ones, or 'first' (padded)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


def split_at_whitespace(text: str, *, fraction: float) -> tuple[str, str]:
    """`text` cut at the first whitespace at or after `fraction` of its length: (head, tail)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"data.heldout_fraction must be in (0, 1); got {fraction}")
    cut = int(len(text) * fraction)
    while cut < len(text) and not text[cut].isspace():
        cut += 1
    return text[:cut], text[cut:]


def pydoc_topics() -> dict[str, str]:
    """CPython's help topics, `{name: English text}` (sorted by name)."""
    from pydoc_data.topics import topics

    return {name: topics[name] for name in sorted(topics)}


def pydoc_corpus(config: ml_collections.ConfigDict, *, topics: dict[str, str] | None = None) -> Corpus:
    """The `pydoc` corpus: each topic's head is training text, its tail held out.

    `topics` replaces CPython's topics (tests). The labelled task is "which topic": every
    topic is a class; held-out windows are labelled with their topic.
    """
    topics = pydoc_topics() if topics is None else topics
    texts = {k: v for k, v in topics.items() if v.strip()}
    if not texts:
        raise ValueError("corpus 'pydoc' is empty: no topic has any text")
    fraction = float(config.data.heldout_fraction)
    names = sorted(texts)
    heads, tails = {}, {}
    for name in names:
        heads[name], tails[name] = split_at_whitespace(texts[name], fraction=1.0 - fraction)
    digest = hashlib.sha256("\0".join(f"{n}\0{texts[n]}" for n in names).encode()).hexdigest()[:16]
    return Corpus(
        name="pydoc",
        train_texts=lambda: iter([heads[n] for n in names]),
        heldout=[tails[n] for n in names],
        heldout_labels=list(range(len(names))),
        labelled_train=lambda: iter([(heads[n], i) for i, n in enumerate(names)]),
        class_names=names,
        identity=f"pydoc:{digest}:heldout={fraction}",
        task="pydoc topic of a window",
        info={"documents": len(names), "characters": sum(len(t) for t in texts.values()), "split": "by position"},
    )


def _tfds_open(config: ml_collections.ConfigDict, split: str):
    d = config.data
    if not d.tfds_name:
        raise ValueError("corpus 'tfds' needs data.tfds_name (e.g. 'wikipedia/20230601.en')")
    source = open_tfds(d.tfds_name, split, d.data_dir or None)
    if len(source) == 0:
        raise ValueError(f"corpus 'tfds': {d.tfds_name!r} split {split!r} is empty")
    first = source[0]
    for key in [d.text_key] + ([d.label_key] if d.label_key else []):
        if key not in first:
            raise ValueError(f"TFDS data set {d.tfds_name!r} has features {sorted(first)}; no {key!r}")
    return source


def _as_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _tfds_records(source, key: str, limit: int, *, block: int = 1024) -> Iterator[Any]:
    n = len(source) if limit <= 0 else min(limit, len(source))
    for start in range(0, n, block):
        # ArrayRecord reads a block of keys in one call, far faster than one call per record.
        yield from source.__getitems__(list(range(start, min(start + block, n))))


def tfds_corpus(config: ml_collections.ConfigDict) -> Corpus:
    """A TFDS text data set: `data.train_split` for training, `data.eval_split` held out.

    Held out: the first `data.max_eval_examples` documents of the eval split (all when 0),
    labelled by `data.label_key` when set; training documents are read lazily, at most
    `data.max_train_documents` of them (0: all).
    """
    d = config.data
    check_distinct_splits(d.train_split, d.eval_split)  # else held-out windows are training windows
    train = _tfds_open(config, d.train_split)
    heldout_source = _tfds_open(config, d.eval_split)
    limit = int(d.max_train_documents)
    records = list(_tfds_records(heldout_source, d.text_key, int(d.max_eval_examples)))
    heldout = [_as_text(r[d.text_key]) for r in records]
    labels = [int(r[d.label_key]) for r in records] if d.label_key else None
    if labels and min(labels) < 0:
        raise ValueError(
            f"labels {d.label_key!r} of split {d.eval_split!r} include {min(labels)}; labels must be class ids >= 0"
        )

    def train_texts() -> Iterator[str]:
        for r in _tfds_records(train, d.text_key, limit):
            yield _as_text(r[d.text_key])

    labelled_train = None
    num_classes = 0
    if d.label_key:
        bank = int(d.max_eval_examples) or len(train)

        def labelled_train() -> Iterator[tuple[str, int]]:
            for r in _tfds_records(train, d.text_key, bank):
                yield _as_text(r[d.text_key]), int(r[d.label_key])

        num_classes = max(labels) + 1 if labels else 0
    return Corpus(
        name="tfds",
        train_texts=train_texts,
        heldout=heldout,
        heldout_labels=labels,
        labelled_train=labelled_train,
        class_names=[str(i) for i in range(num_classes)],
        identity=f"tfds:{d.tfds_name}:{os.path.abspath(os.path.expanduser(d.data_dir)) if d.data_dir else ''}:"
        f"{d.train_split}:{len(train)}:{d.text_key}:limit={limit}",
        task=f"{d.label_key} of a document's first window" if d.label_key else "",
        windows_per_document="first",
        info={"tfds_name": d.tfds_name, "train_documents": len(train) if limit <= 0 else min(limit, len(train))},
    )


CORPORA: dict[str, Callable[[ml_collections.ConfigDict], Corpus]] = {"pydoc": pydoc_corpus, "tfds": tfds_corpus}


def get_corpus(config: ml_collections.ConfigDict) -> Corpus:
    """The corpus named by `config.data.name` (see `CORPORA`)."""
    name = config.data.name
    if name not in CORPORA:
        raise ValueError(f"unknown text corpus {name!r}; known text corpora: {sorted(CORPORA)}")
    return CORPORA[name](config)


# ==================================================================================================
# Tokenizer
# ==================================================================================================


def _tokenizer_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
    d = config.data
    if d.tokenizer not in TOKENIZER_KINDS:
        raise ValueError(f"unknown data.tokenizer {d.tokenizer!r}; known: {list(TOKENIZER_KINDS)}")
    floor = len(SPECIAL_TOKENS) + 256  # byte-level BPE starts from the 256 byte symbols
    if int(d.vocab_size) <= floor:
        raise ValueError(f"data.vocab_size {d.vocab_size} leaves no room for merges; use more than {floor}")
    settings = {"kind": d.tokenizer, "vocab_size": int(d.vocab_size), "version": _CACHE_VERSION}
    if int(d.get("tokenizer_documents", 0)):
        settings["documents"] = int(d.tokenizer_documents)
    return settings


def cache_dir(config: ml_collections.ConfigDict, corpus: Corpus) -> str:
    """`<data.cache_dir or ~/.cache/jssl/text>/<hash of corpus identity and tokenizer settings>`."""
    key = json.dumps({"corpus": corpus.identity, **_tokenizer_settings(config)}, sort_keys=True)
    default = os.path.join(os.environ["JSSL_CACHE"], "text") if os.environ.get("JSSL_CACHE") else DEFAULT_CACHE_DIR
    root = os.path.expanduser(config.data.cache_dir or default)
    return os.path.join(root, hashlib.sha256(key.encode()).hexdigest()[:16])


def train_tokenizer(texts: Iterable[str], *, kind: str, vocab_size: int):
    """A `tokenizers.Tokenizer` trained on `texts` with the special tokens first (fixed ids)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    else:
        raise ValueError(f"unknown data.tokenizer {kind!r}; known: {list(TOKENIZER_KINDS)}")
    tok.train_from_iterator(texts, trainer=trainer)
    for i, token in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(token) != i:
            raise ValueError(f"tokenizer: special token {token} got id {tok.token_to_id(token)}, expected {i}")
    return tok


def load_or_train_tokenizer(config: ml_collections.ConfigDict, corpus: Corpus):
    """The cached tokenizer of this corpus and settings, trained (and saved) on first use.

    Returns `(tokenizer, path of tokenizer.json)`.
    """
    from tokenizers import Tokenizer

    settings = _tokenizer_settings(config)
    directory = cache_dir(config, corpus)
    path = os.path.join(directory, "tokenizer.json")
    if os.path.exists(path):
        return Tokenizer.from_file(path), path
    count = [0]

    limit = int(config.data.get("tokenizer_documents", 0))

    def counted() -> Iterator[str]:
        for text in corpus.train_texts():
            if limit and count[0] >= limit:
                return
            count[0] += 1
            yield text

    tok = train_tokenizer(counted(), kind=settings["kind"], vocab_size=settings["vocab_size"])
    if count[0] == 0:
        raise ValueError(f"corpus {corpus.name!r} has no training documents")
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    tok.save(tmp)
    os.replace(tmp, path)  # atomic: concurrent processes write identical files
    return Tokenizer.from_file(path), path


def encode(tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Token ids (int32 `[n_i]`) of each text, without special tokens."""
    return [np.asarray(e.ids, np.int32) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def token_stream(tokenizer, texts: Iterable[str], *, block: int = 256) -> Iterator[np.ndarray]:
    """`[BOS] doc [EOS]` token ids of each document, concatenated, in blocks (int32 arrays)."""
    batch: list[str] = []

    def flush() -> np.ndarray:
        parts = []
        for ids in encode(tokenizer, batch):
            parts += [np.asarray([BOS_ID], np.int32), ids, np.asarray([EOS_ID], np.int32)]
        batch.clear()
        return np.concatenate(parts)

    for text in texts:
        batch.append(text)
        if len(batch) == block:
            yield flush()
    if batch:
        yield flush()


def load_or_build_stream(config: ml_collections.ConfigDict, corpus: Corpus, tokenizer) -> np.ndarray:
    """The training split as one packed token stream, cached beside the tokenizer.

    Stored as `train_tokens.bin` (uint16 when the vocabulary fits, else uint32) and opened as
    a read-only memory map, so corpora larger than memory work (written once, block by block).
    """
    dtype = np.uint16 if tokenizer.get_vocab_size() <= np.iinfo(np.uint16).max + 1 else np.uint32
    directory = cache_dir(config, corpus)
    path = os.path.join(directory, f"train_tokens.{np.dtype(dtype).name}.bin")
    if not os.path.exists(path):
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.writelines(block.astype(dtype).tobytes() for block in token_stream(tokenizer, corpus.train_texts()))
        os.replace(tmp, path)
    if os.path.getsize(path) == 0:
        raise ValueError(f"corpus {corpus.name!r}: the training split has no tokens")
    return np.memmap(path, dtype=dtype, mode="r")
