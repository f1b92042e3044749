"""Text data: tokenizers, packing, the Grain window pipeline and its resume, eval set, baselines, errors.

The tiny TFDS text set is built here, in a module outside any package: TFDS looks for a
builder's code path, which fails for builders defined inside a package (`tests/text/`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from jssl.data import iterator_state_args, text_corpus
from jssl.data.text import (
    TextInputs,
    WindowSource,
    bag_of_tokens,
    document_windows,
    first_window,
    make_window_iterator,
    unigram_baseline,
)
from jssl.data.text_corpus import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, pydoc_corpus, train_tokenizer
from tests.text_helpers import text_config, tiny_topics


class JsslTinyText(tfds.core.GeneratorBasedBuilder):
    """20 train + 6 test short documents, labels index % 2 (each label has its own words)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(num_classes=2)}
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples("train"), "test": self._generate_examples("test")}

    def _generate_examples(self, split: str):
        for i in range(20 if split == "train" else 6):
            words = ("alpha beta " if i % 2 else "gamma delta ") * 30
            yield i, {"text": f"document {i} of {split}: {words}", "label": i % 2}


@dataclasses.dataclass(frozen=True)
class TinyText:
    data_dir: Path
    name: str = "jssl_tiny_text"


@pytest.fixture(scope="session")
def tiny_text_tfds(tmp_path_factory: pytest.TempPathFactory) -> TinyText:
    data_dir = tmp_path_factory.mktemp("tfds_text")
    JsslTinyText(data_dir=str(data_dir)).download_and_prepare(file_format="array_record")
    return TinyText(data_dir=data_dir)


@pytest.fixture
def tiny_pydoc(monkeypatch):
    """CPython's topics replaced by the tiny corpus for `TextInputs`."""
    topics = tiny_topics()
    monkeypatch.setattr(text_corpus, "pydoc_topics", lambda: topics)
    return topics


def _inputs(tmp_path, **overrides) -> TextInputs:
    return TextInputs(text_config(tmp_path, **overrides), method_class=object)


def test_tokenizer_round_trip_special_ids_and_determinism():
    texts = list(tiny_topics().values()) + ['def f(x):\n    return x ** 2  # "quoted" été 日本']
    a = train_tokenizer(iter(texts), kind="bpe", vocab_size=300)
    b = train_tokenizer(iter(texts), kind="bpe", vocab_size=300)
    assert a.to_str() == b.to_str()  # the same file every time (tie-breaking must not vary)
    assert [a.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    for text in texts[-1:] + ["unseen ✓ characters\ttoo"]:
        ids = a.encode(text, add_special_tokens=False).ids
        assert a.decode(ids) == text  # byte-level: exact, even for characters never seen
        assert min(ids) >= len(SPECIAL_TOKENS)
    with pytest.raises(ValueError, match="unknown data.tokenizer 'wordpiece'"):
        train_tokenizer(iter(texts), kind="wordpiece", vocab_size=300)


def test_tokenizer_is_cached_by_corpus_and_settings(tmp_path, tiny_pydoc):
    del tiny_pydoc
    first = _inputs(tmp_path)
    path = first.tokenizer_path
    again = _inputs(tmp_path)
    assert again.tokenizer_path == path and again.tokenizer.get_vocab() == first.tokenizer.get_vocab()
    assert _inputs(tmp_path, **{"data.vocab_size": 320}).tokenizer_path != path
    with open(path) as f:
        assert json.load(f)["model"]["type"] == "BPE"


def test_pydoc_split_by_position_keeps_every_topic_in_both_splits():
    corpus = pydoc_corpus(text_config(Path("/unused")), topics=tiny_topics())
    train = list(corpus.train_texts())
    assert len(train) == len(corpus.heldout) == 6 and corpus.heldout_labels == list(range(6))
    for head, tail, original in zip(train, corpus.heldout, tiny_topics().values()):
        assert head + tail == original and 0.7 < len(head) / len(original) < 0.85
        assert tail[:1].isspace()  # cut at whitespace, never inside a word


def test_real_pydoc_eval_set_is_labelled_full_windows(tmp_path):
    inputs = _inputs(tmp_path, **{"data.vocab_size": 512, "data.seq_len": 64})
    ev = inputs.eval_set()
    assert ev.labelled and ev.num_classes >= 20 and "pydoc topic" in ev.task
    assert ev.test["tokens"].shape[1] == 64 and (ev.test["tokens"] != PAD_ID).all()  # all full windows
    assert set(np.unique(ev.test_labels)) == set(range(ev.num_classes))
    assert set(np.unique(ev.train_labels)) <= set(range(ev.num_classes))
    assert inputs.describe()["documents"] == 79


def test_packed_stream_and_windows(tmp_path, tiny_pydoc):
    inputs = _inputs(tmp_path)
    stream = np.asarray(inputs.train_stream)
    tok = inputs.tokenizer
    first_doc = tok.encode(next(pydoc_corpus(inputs.config, topics=tiny_pydoc).train_texts())).ids
    assert stream[0] == BOS_ID and list(stream[1 : 1 + len(first_doc)]) == first_doc
    assert stream[1 + len(first_doc)] == EOS_ID and stream[2 + len(first_doc)] == BOS_ID
    assert (stream == BOS_ID).sum() == (stream == EOS_ID).sum() == 6
    source = inputs.window_source
    assert len(source) == len(stream) // 16
    np.testing.assert_array_equal(source[3]["tokens"], stream[48:64])
    assert source[3]["tokens"].dtype == np.int32


def test_window_iterator_deterministic_sharded_and_resumable(tmp_path, tiny_pydoc):
    del tiny_pydoc
    source = _inputs(tmp_path).window_source

    def take(it, n):
        return [next(it)["tokens"] for _ in range(n)]

    a = take(make_window_iterator(source, global_batch_size=8, seed=3), 6)
    b = take(make_window_iterator(source, global_batch_size=8, seed=3), 6)
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    assert a[0].shape == (8, 16) and a[0].dtype == np.int32
    # Two processes: disjoint windows, half the batch each.
    p0 = next(make_window_iterator(source, global_batch_size=8, seed=3, process_index=0, process_count=2))["tokens"]
    p1 = next(make_window_iterator(source, global_batch_size=8, seed=3, process_index=1, process_count=2))["tokens"]
    assert p0.shape == (4, 16) and not {r.tobytes() for r in p0} & {r.tobytes() for r in p1}
    # Resume through Orbax: the state after 2 batches gives batches 3.. exactly.
    it = make_window_iterator(source, global_batch_size=8, seed=3)
    take(it, 2)
    with ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data",)) as mngr:
        mngr.save(2, args=ocp.args.Composite(data=iterator_state_args(it)))
        mngr.wait_until_finished()
        fresh = make_window_iterator(source, global_batch_size=8, seed=3)
        restored = mngr.restore(2, args=ocp.args.Composite(data=iterator_state_args(fresh, restore=True)))["data"]
    np.testing.assert_array_equal(np.stack(take(restored, 4)), np.stack(a[2:6]))


def test_train_iterator_and_model_kwargs(tmp_path, tiny_pydoc):
    del tiny_pydoc
    inputs = _inputs(tmp_path)
    batch = next(inputs.train_iterator(process_index=0, process_count=1))
    assert set(batch) == {"tokens"} and batch["tokens"].shape == (8, 16)  # no labels: packed text
    assert TextInputs.has_train_labels is False and TextInputs.kind == "tokens"
    kw = inputs.model_kwargs()
    assert kw["vocab_size"] == 300 and (kw["pad_id"], kw["mask_id"], kw["bos_id"], kw["eos_id"]) == (0, 1, 2, 3)
    assert inputs.to_method({"tokens": batch["tokens"]}, step=0)["tokens"] is batch["tokens"]


def test_tiny_eval_set_baselines_and_samples(tmp_path, tiny_pydoc):
    del tiny_pydoc
    inputs = _inputs(tmp_path)
    ev = inputs.eval_set()
    assert ev.labelled and ev.num_classes == 6 and len(ev.test["tokens"]) >= 6
    calls = []

    def feature_evals(train, test):
        calls.append((train.shape, test.shape))
        return {"knn": 0.5}

    out = inputs.baselines(ev, feature_evals)
    assert out["bag_of_tokens"] == {"knn": 0.5} and calls[0][0][1] == 300
    uni = out["unigram"]
    assert 1.0 < uni["perplexity"] < 300 and 0.0 < uni["most_frequent_token_accuracy"] < 1.0
    text = inputs.tokenizer.encode("alpha beta gamma").ids
    sample = np.asarray([[BOS_ID, *text, EOS_ID, *text]])
    assert inputs.log_samples(sample) == {"text": "[sample 0]\nalpha beta gamma"}


def test_unigram_and_bag_of_tokens_by_hand():
    counts = np.asarray([0, 0, 0, 0, 6, 2])  # vocab 6: token 4 most frequent
    out = unigram_baseline(counts, np.asarray([[4, 5, PAD_ID]]))
    p4, p5 = 7 / 14, 3 / 14  # add-one: (count + 1) / (8 + 6)
    assert out["nll"] == pytest.approx(-(np.log(p4) + np.log(p5)) / 2)
    assert out["perplexity"] == pytest.approx(np.exp(out["nll"])) and out["most_frequent_token_accuracy"] == 0.5
    bag = bag_of_tokens(np.asarray([[4, 4, 5, PAD_ID]]), vocab_size=6)
    np.testing.assert_allclose(bag, [[0, 0, 0, 0, 2 / 3, 1 / 3]])
    np.testing.assert_array_equal(document_windows(np.arange(10), seq_len=4), [[0, 1, 2, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(first_window(np.asarray([7, 8]), seq_len=4), [7, 8, PAD_ID, PAD_ID])


def test_tfds_text_corpus_without_tensorflow(tmp_path, tiny_text_tfds):
    inputs = _inputs(
        tmp_path,
        **{
            "data.name": "tfds",
            "data.tfds_name": tiny_text_tfds.name,
            "data.data_dir": str(tiny_text_tfds.data_dir),
            "data.train_split": "train",
            "data.eval_split": "test",
            "data.label_key": "label",
            "data.vocab_size": 280,
        },
    )
    batch = next(inputs.train_iterator(process_index=0, process_count=1))
    assert batch["tokens"].shape == (8, 16)
    ev = inputs.eval_set()
    assert ev.labelled and ev.num_classes == 2 and ev.test["tokens"].shape == (6, 16)
    assert "tensorflow" not in sys.modules


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"data.name": "wiki"}, r"unknown text corpus 'wiki'.*\['pydoc', 'tfds'\]"),
        ({"data.tokenizer": "wordpiece"}, "unknown data.tokenizer"),
        ({"data.vocab_size": 100}, "leaves no room"),
        ({"data.seq_len": 100_000}, "fewer than one window"),
        ({"data.name": "tfds"}, "needs data.tfds_name"),
    ],
)
def test_clear_errors(tmp_path, tiny_pydoc, overrides, message):
    del tiny_pydoc
    with pytest.raises(ValueError, match=message):
        inputs = _inputs(tmp_path, **overrides)
        next(inputs.train_iterator(process_index=0, process_count=1))


def test_empty_corpus_and_no_heldout_window(tmp_path, monkeypatch):
    monkeypatch.setattr(text_corpus, "pydoc_topics", lambda: {"a": "  ", "b": ""})
    with pytest.raises(ValueError, match="corpus 'pydoc' is empty"):
        _inputs(tmp_path).model_kwargs()
    monkeypatch.setattr(text_corpus, "pydoc_topics", lambda: tiny_topics(words=15))
    with pytest.raises(ValueError, match="no held-out document .* has 16 tokens"):
        _inputs(tmp_path).eval_set()
    with pytest.raises(ValueError, match="seq_len must be >= 2"):
        _inputs(tmp_path, **{"data.seq_len": 1})
    with pytest.raises(ValueError, match="exceeds the .* windows"):
        source = WindowSource(str(_inputs(tmp_path).train_stream.filename), dtype=np.uint16, seq_len=16)
        make_window_iterator(source, global_batch_size=10_000, seed=0)


def test_worker_processes_give_the_same_batches(tmp_path, tiny_pydoc):
    """The window source pickles into Grain's worker processes (path only) and reads the same windows."""
    del tiny_pydoc
    source = _inputs(tmp_path).window_source
    plain = make_window_iterator(source, global_batch_size=8, seed=1)
    workers = make_window_iterator(source, global_batch_size=8, seed=1, num_workers=1)
    for _ in range(3):
        np.testing.assert_array_equal(next(plain)["tokens"], next(workers)["tokens"])
