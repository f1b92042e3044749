"""Text for the trainer: packed token windows, held-out windows with a labelled task, baselines.

`TextInputs` is the `'tokens'` kind of the batch contract (`jssl.data.inputs`). From the corpus
named by `config.data.name` (`jssl.data.text_corpus.CORPORA`) and its cached tokenizer it builds:

* training batches `{'tokens': int32 [local_batch, seq_len]}`: the training split as one stream
  (`[BOS] doc [EOS] [BOS] doc [EOS] ...`), cut into consecutive windows of `data.seq_len`
  tokens (the last partial window dropped), shuffled, sharded by process and batched by Grain
  (`make_window_iterator`; the same construction as the image pipeline, so the iterator state
  is one position and an Orbax resume is exact). Windows run across document boundaries, so
  they carry no label (`has_train_labels` is False), and none is padded;
* the `EvalSet`: held-out windows of `seq_len` tokens, each inside one held-out document (for
  `pydoc`: every full window of one topic's held-out tail, tails shorter than a window left
  out; a TFDS set with `data.label_key`: each document's first window, padded), labelled by
  document class when the corpus has one (`pydoc`: the topic; topics without a held-out window
  are not classes), and as the kNN bank / probe training set the training windows of the same
  classes (at most `data.max_eval_examples` per split, drawn uniformly once with a fixed seed);
* baselines from the data alone: a unigram model of the training stream's token frequencies
  (add-one smoothing over the whole vocabulary) scored on every held-out token, as perplexity,
  and its most frequent token's accuracy; and bag-of-tokens features (each window's token
  frequencies) through the same kNN and linear probe as the learned features.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, ClassVar

import grain
import jax
import ml_collections
import numpy as np

from jssl.data.inputs import EvalSet, FeatureEvals, Inputs
from jssl.data.pipeline import _READ_BUFFER, _READ_THREADS, _derive_seed, _ensure_absl_flags_parsed, ignore_interrupts
from jssl.data.text_corpus import (
    BOS_ID,
    EOS_ID,
    MASK_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    Corpus,
    encode,
    get_corpus,
    load_or_build_stream,
    load_or_train_tokenizer,
    token_stream,
)

# Bag-of-tokens features have one dimension per token id up to this size; larger vocabularies
# fold ids modulo it (the hashing trick), so the baseline stays cheap for GPT-2's 50k tokens.
BAG_OF_TOKENS_DIMS = 8192
# Generated samples decoded into the log and results.json.
MAX_LOGGED_SAMPLES = 8


class WindowSource:
    """Random access to window `i` = `stream[i * seq_len : (i + 1) * seq_len]` as `{'tokens': int32 [seq_len]}`.

    Holds the path of the cached stream, not its contents, so it pickles into Grain worker
    processes cheaply; each process maps the file on first use.
    """

    def __init__(self, path: str, *, dtype: Any, seq_len: int) -> None:
        if seq_len < 2:
            raise ValueError(f"data.seq_len must be >= 2; got {seq_len}")
        self.path = path
        self.dtype = np.dtype(dtype)
        self.seq_len = int(seq_len)
        self._stream: np.ndarray | None = None
        size = os.path.getsize(path) // self.dtype.itemsize
        self.num_windows = size // self.seq_len
        if self.num_windows == 0:
            raise ValueError(f"the training split has {size} tokens, fewer than one window of data.seq_len={seq_len}")

    @property
    def stream(self) -> np.ndarray:
        if self._stream is None:
            self._stream = np.memmap(self.path, dtype=self.dtype, mode="r")
        return self._stream

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_stream": None}

    def __len__(self) -> int:
        return self.num_windows

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        start = int(index) * self.seq_len
        return {"tokens": np.asarray(self.stream[start : start + self.seq_len], dtype=np.int32)}

    def __repr__(self) -> str:
        return f"WindowSource({self.path!r}, windows={self.num_windows}, seq_len={self.seq_len})"


def make_window_iterator(
    source: WindowSource,
    *,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    num_workers: int = 0,
) -> grain.DatasetIterator:
    """Endless, checkpointable iterator of `{'tokens': int32 [global_batch_size // process_count, seq_len]}`.

    Each process reads the disjoint windows `source[process_index::process_count]`, reshuffled
    every epoch from `seed`; the last incomplete batch of an epoch is dropped. Batching happens
    before `to_iter_dataset`, so the iterator state is a batch position and the output is the
    same for any `num_workers` (see `jssl.data.pipeline`).
    """
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"need 0 <= process_index < process_count; got {process_index} of {process_count}")
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size ({global_batch_size}) must be a positive multiple of process_count ({process_count})"
        )
    local_batch = global_batch_size // process_count
    dataset = grain.MapDataset.source(source)[process_index::process_count]
    if local_batch > len(dataset):
        raise ValueError(
            f"local batch size {local_batch} exceeds the {len(dataset)} windows of {source.seq_len} tokens in this "
            "process's shard of the training split; lower the batch or data.seq_len, or use a larger corpus"
        )
    dataset = dataset.shuffle(seed=_derive_seed(seed, process_index))
    dataset = dataset.batch(local_batch, drop_remainder=True).repeat(None)
    iter_dataset = dataset.to_iter_dataset(
        grain.ReadOptions(num_threads=_READ_THREADS, prefetch_buffer_size=_READ_BUFFER)
    )
    if num_workers > 0:
        _ensure_absl_flags_parsed()
        iter_dataset = iter_dataset.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=2),
            worker_init_fn=ignore_interrupts,
        )
    return iter(iter_dataset)


def document_windows(ids: np.ndarray, *, seq_len: int) -> np.ndarray:
    """Consecutive full windows of one document's ids `[n]` -> int32 `[n // seq_len, seq_len]`."""
    n = len(ids) // seq_len
    return np.asarray(ids[: n * seq_len], np.int32).reshape(n, seq_len)


def first_window(ids: np.ndarray, *, seq_len: int) -> np.ndarray:
    """A document's first `seq_len` ids, padded with `[PAD]` when shorter -> int32 `[seq_len]`."""
    out = np.full((seq_len,), PAD_ID, np.int32)
    out[: min(len(ids), seq_len)] = ids[:seq_len]
    return out


def unigram_baseline(counts: np.ndarray, tokens: np.ndarray) -> dict[str, float]:
    """A unigram model of training `counts [vocab]` scored on held-out `tokens` (any shape; `[PAD]` skipped).

    Probabilities `(count + 1) / (total + vocab)` (add-one smoothing, so unseen tokens cost
    finite nats). Returns `nll` (nats per token), `perplexity` and `most_frequent_token_accuracy`
    (how often the training set's most frequent token is the held-out token).
    """
    counts = np.asarray(counts, np.float64)
    flat = np.asarray(tokens).reshape(-1)
    flat = flat[flat != PAD_ID]
    if flat.size == 0:
        raise ValueError("unigram baseline: no held-out tokens")
    logp = np.log(counts + 1.0) - np.log(counts.sum() + counts.size)
    nll = float(-np.mean(logp[flat]))
    return {
        "nll": nll,
        "perplexity": math.exp(nll),
        "most_frequent_token_accuracy": float(np.mean(flat == int(np.argmax(counts)))),
    }


def bag_of_tokens(tokens: np.ndarray, *, vocab_size: int) -> np.ndarray:
    """tokens: [n, seq] -> float32 [n, min(vocab, BAG_OF_TOKENS_DIMS)] token frequencies (`[PAD]` skipped)."""
    dims = min(vocab_size, BAG_OF_TOKENS_DIMS)
    tokens = np.asarray(tokens)
    out = np.zeros((tokens.shape[0], dims), np.float32)
    rows = np.repeat(np.arange(tokens.shape[0]), tokens.shape[1])
    flat = tokens.reshape(-1)
    keep = flat != PAD_ID
    np.add.at(out, (rows[keep], flat[keep] % dims), 1.0)
    return out / np.maximum(out.sum(axis=1, keepdims=True), 1.0)


def _subsample(n: int, limit: int) -> np.ndarray:
    """Indices of at most `limit` of `n` items (0: all), drawn once with a fixed seed, in order."""
    if limit <= 0 or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, limit, replace=False))


class TextInputs(Inputs):
    """The `'tokens'` kind: packed windows for training, held-out windows and baselines for evaluation.

    Config fields (`config.data`, set by `jssl.config.text_data`): `name` (`'pydoc'` or
    `'tfds'`), `seq_len`, `tokenizer` (`'bpe'`), `vocab_size`,
    `heldout_fraction` (pydoc), `cache_dir` (tokenizer and token stream; empty:
    `~/.cache/jssl/text`), `tfds_name`, `data_dir`, `text_key`, `label_key`, `train_split`,
    `eval_split`, `max_train_documents`, `max_eval_examples`, `num_workers`.
    """

    kind: ClassVar[str] = "tokens"
    has_train_labels: ClassVar[bool] = False

    def __init__(self, config: ml_collections.ConfigDict, *, method_class: type):
        super().__init__(config, method_class=method_class)
        self.seq_len = int(config.data.seq_len)
        if self.seq_len < 2:
            raise ValueError(f"data.seq_len must be >= 2; got {config.data.seq_len}")

    # ---- lazily built, once -------------------------------------------------------------------
    @functools.cached_property
    def corpus(self) -> Corpus:
        return get_corpus(self.config)

    @functools.cached_property
    def _tokenizer_and_path(self):
        return load_or_train_tokenizer(self.config, self.corpus)

    @property
    def tokenizer(self):
        return self._tokenizer_and_path[0]

    @property
    def tokenizer_path(self) -> str:
        return self._tokenizer_and_path[1]

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    @functools.cached_property
    def train_stream(self) -> np.ndarray:
        """The training split's packed token stream (a read-only memory map)."""
        return load_or_build_stream(self.config, self.corpus, self.tokenizer)

    @functools.cached_property
    def window_source(self) -> WindowSource:
        stream = self.train_stream
        return WindowSource(stream.filename, dtype=stream.dtype, seq_len=self.seq_len)

    @functools.cached_property
    def train_counts(self) -> np.ndarray:
        """Token frequencies of the training stream, int64 `[vocab]`."""
        counts = np.zeros((self.vocab_size,), np.int64)
        stream = self.train_stream
        for start in range(0, len(stream), 1 << 24):  # bounded memory on large corpora
            counts += np.bincount(np.asarray(stream[start : start + (1 << 24)]), minlength=self.vocab_size)
        return counts

    # ---- host side ----------------------------------------------------------------------------
    def model_kwargs(self) -> dict[str, Any]:
        """Vocabulary size and special token ids for the method's constructor."""
        return {
            "vocab_size": self.vocab_size,
            "pad_id": PAD_ID,
            "mask_id": MASK_ID,
            "bos_id": BOS_ID,
            "eos_id": EOS_ID,
            "num_special_tokens": len(SPECIAL_TOKENS),
        }

    def train_iterator(self, *, process_index: int, process_count: int) -> grain.DatasetIterator:
        return make_window_iterator(
            self.window_source,
            global_batch_size=int(self.config.global_batch_size),
            seed=int(self.config.seed),
            process_index=process_index,
            process_count=process_count,
            num_workers=int(self.config.data.num_workers),
        )

    def _labelled_windows(self, pairs: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Windows `[n, seq_len]` of each labelled document, with each window's label `[n]`.

        `Corpus.windows_per_document`: `'all'` full windows of each document (`pydoc`'s long
        topics) or `'first'`, one first window per document, padded (TFDS classification sets
        of short documents).
        """
        ids = encode(self.tokenizer, [text for text, _ in pairs])
        windows, labels = [], []
        for doc, (_, label) in zip(ids, pairs):
            if self.corpus.windows_per_document == "all":
                w = document_windows(doc, seq_len=self.seq_len)
            else:
                w = first_window(doc, seq_len=self.seq_len)[None]
            windows.append(w)
            labels.append(np.full((len(w),), label, np.int32))
        if not windows:
            return np.zeros((0, self.seq_len), np.int32), np.zeros((0,), np.int32)
        return np.concatenate(windows), np.concatenate(labels)

    @functools.cached_property
    def _eval_set(self) -> EvalSet:
        corpus, limit = self.corpus, int(self.config.data.max_eval_examples)
        if corpus.heldout_labels is None:
            # Unlabelled corpus: held-out documents packed like the training stream; the bank
            # is training windows (no probe runs without labels, but represent still can).
            heldout = np.concatenate(list(token_stream(self.tokenizer, corpus.heldout)))
            test = document_windows(heldout, seq_len=self.seq_len)[: limit or None]
            train = np.stack(
                [self.window_source[i]["tokens"] for i in _subsample(len(self.window_source), limit or len(test))]
            )
            if len(test) == 0:
                raise ValueError(f"the held-out split has fewer than {self.seq_len} tokens: no evaluation window")
            return EvalSet(
                {"tokens": train}, {"tokens": test}, None, None, 0, "", self._eval_info(len(train), len(test))
            )
        test, test_labels = self._labelled_windows(list(zip(corpus.heldout, corpus.heldout_labels)))
        if len(test) == 0:
            raise ValueError(
                f"no held-out document of {corpus.name!r} has {self.seq_len} tokens: no evaluation window; lower "
                "data.seq_len or raise data.heldout_fraction"
            )
        pick = _subsample(len(test), limit)
        test, test_labels = test[pick], test_labels[pick]
        train, train_labels = self._labelled_windows(list(corpus.labelled_train()))
        # Classes: those with a held-out window (renumbered densely); bank windows of other
        # classes could never be a right answer, so they are left out.
        classes = np.unique(test_labels)
        keep = np.isin(train_labels, classes)
        train, train_labels = train[keep], np.searchsorted(classes, train_labels[keep]).astype(np.int32)
        test_labels = np.searchsorted(classes, test_labels).astype(np.int32)
        pick = _subsample(len(train), limit)
        train, train_labels = train[pick], train_labels[pick]
        info = self._eval_info(len(train), len(test))
        info["classes"] = [corpus.class_names[int(c)] for c in classes]
        task = f"{corpus.task} ({len(classes)} classes, {self.seq_len}-token windows)"
        return EvalSet({"tokens": train}, {"tokens": test}, train_labels, test_labels, len(classes), task, info)

    def _eval_info(self, train: int, test: int) -> dict[str, Any]:
        del train  # the trainer reports both sizes
        return {"heldout_tokens": test * self.seq_len}

    def eval_set(self) -> EvalSet:
        return self._eval_set

    def baselines(self, eval_set: EvalSet, feature_evals: FeatureEvals) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {"unigram": unigram_baseline(self.train_counts, eval_set.test["tokens"])}
        if eval_set.labelled:
            train = bag_of_tokens(eval_set.train["tokens"], vocab_size=self.vocab_size)
            test = bag_of_tokens(eval_set.test["tokens"], vocab_size=self.vocab_size)
            out["bag_of_tokens"] = dict(feature_evals(train, test))
        return out

    def decode(self, tokens: np.ndarray) -> str:
        """One sequence of ids -> text: up to its first `[EOS]` after the start, specials dropped."""
        ids = [int(t) for t in np.asarray(tokens).reshape(-1)]
        if EOS_ID in ids[1:]:
            ids = ids[: ids.index(EOS_ID, 1)]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def log_samples(self, samples: np.ndarray) -> dict[str, Any]:
        """Generated ids `[n, L]` -> `{'text': one string}` of the first `MAX_LOGGED_SAMPLES`, decoded.

        One string (samples headed `[sample i]`), as the trainer writes strings to the log,
        TensorBoard and `<workdir>/samples/`.
        """
        samples = np.asarray(samples)
        if samples.ndim != 2:
            raise ValueError(f"text samples must be token ids [num, length]; got shape {samples.shape}")
        texts = [self.decode(s) for s in samples[:MAX_LOGGED_SAMPLES]]
        return {"text": "\n\n".join(f"[sample {i}]\n{t}" for i, t in enumerate(texts))}

    def describe(self) -> dict[str, Any]:
        return {
            "corpus": self.corpus.name,
            **self.corpus.info,
            "tokenizer": self.config.data.tokenizer,
            "tokenizer_path": self.tokenizer_path,
            "vocab_size": self.vocab_size,
            "seq_len": self.seq_len,
            "train_split_tokens": len(self.train_stream),
            "train_split_windows": len(self.window_source),
        }

    # ---- device side --------------------------------------------------------------------------
    def to_method(self, batch: dict[str, jax.Array], *, step: jax.Array) -> dict[str, jax.Array]:
        del step
        return {"tokens": batch["tokens"]}

    def to_represent(self, inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return {"tokens": inputs["tokens"]}
