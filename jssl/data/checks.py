"""Checks that keep bad inputs from silently giving wrong numbers.

* **Labels against the class count.** Every labelled path (the training batches the online
  probe learns from, the kNN bank and probe training set, the held-out split, fine-tuning)
  needs class ids in `[0, num_classes)`: a label past the end makes the probe's cross-entropy
  NaN and the kNN vote for nothing, and nothing else fails. Sources whose labels are in memory
  (`ArraySource`, `WaveformSource`) are checked whole before training; TFDS sources by the class
  count their `ClassLabel` feature declares; records of any other source one by one as the
  pipeline reads them (`checked_label`).
* **Held-out data that is held out.** Image evaluation counts held-out examples whose exact
  bytes are also in the kNN bank / probe training set (`heldout_in_bank`): a few are logged and
  recorded in `results.json`, a large share (a split used twice, an `.npz` whose test arrays
  are its training arrays) is an error, because kNN then finds each query itself.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np

log = logging.getLogger("jssl")

# Above this share of held-out examples found verbatim in the bank, evaluation refuses to run:
# real data sets have a few cross-split duplicates (recorded), never this many.
MAX_HELDOUT_IN_BANK = 0.1


def check_num_classes(num_classes: Any, *, setting: str = "data.num_classes") -> int:
    """`num_classes` as an int, or a ValueError unless it is a positive integer."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"{setting} must be a positive integer (the number of classes); got {num_classes!r}")
    return int(num_classes)


def check_labels(labels: Any, num_classes: int, *, split: str, setting: str = "data.num_classes") -> None:
    """Raises a ValueError unless every label is a class id in `[0, num_classes)`."""
    labels = np.asarray(labels)
    num_classes = check_num_classes(num_classes, setting=setting)
    if labels.size == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    where = f"labels of split {split!r}" if split else "labels"
    if low < 0:
        raise ValueError(f"{where} include {low}; labels must be class ids in [0, {setting}): remap them to 0, 1, ...")
    if high >= num_classes:
        raise ValueError(f"{where} reach {high} but {setting}={num_classes}: set {setting}={high + 1}")


def checked_label(label: Any, num_classes: int | None) -> np.int32:
    """One record's label as int32, checked against `num_classes` when given (pipeline workers)."""
    value = np.int32(label)
    if num_classes is not None and not 0 <= value < num_classes:
        if value < 0:
            check_labels(np.asarray([value]), num_classes, split="")
        # One record shows only a lower bound on the number of classes.
        raise ValueError(
            f"a training label is {value} but data.num_classes={num_classes}: set data.num_classes to the number "
            f"of classes (at least {value + 1})"
        )
    return value


def declared_num_classes(source: Any) -> int | None:
    """The class count a TFDS source's label feature declares (`ClassLabel`), else None."""
    tfds_source = getattr(source, "_source", None)
    label_key = getattr(source, "label_key", None)
    info = getattr(tfds_source, "dataset_info", None)
    if info is None or label_key is None:
        return None
    try:
        count = getattr(info.features[label_key], "num_classes", None)
    except (KeyError, TypeError):
        return None
    return int(count) if isinstance(count, (int, np.integer)) else None


def check_source_labels(source: Any, num_classes: int, *, split: str, setting: str = "data.num_classes") -> None:
    """Checks a whole source's labels before training, where that is cheap.

    In-memory labels (a `labels` array) are checked whole; a TFDS source's declared class count
    must not exceed `num_classes`. Other sources are checked record by record as they are read.
    """
    num_classes = check_num_classes(num_classes, setting=setting)
    labels = getattr(source, "labels", None)
    if isinstance(labels, np.ndarray):
        check_labels(labels, num_classes, split=split, setting=setting)
        return
    declared = declared_num_classes(source)
    if declared is not None and declared > num_classes:
        name = getattr(source, "name", "the data set")
        raise ValueError(
            f"TFDS {name!r} label feature {source.label_key!r} of split {split!r} has {declared} classes but "
            f"{setting}={num_classes}: set {setting}={declared}"
        )


def _digests(images: np.ndarray) -> list[bytes]:
    rows = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.blake2b(row.data, digest_size=16).digest() for row in rows]


def heldout_in_bank(bank: np.ndarray, queries: np.ndarray) -> int:
    """How many of `queries` are byte for byte equal to some example of `bank` (both `[n, ...]`)."""
    if bank.shape[1:] != queries.shape[1:] or bank.dtype != queries.dtype:
        return 0
    seen = set(_digests(bank))
    return sum(digest in seen for digest in _digests(queries))


def check_heldout(bank: np.ndarray, queries: np.ndarray, *, train_split: str, eval_split: str) -> int:
    """`heldout_in_bank`, logged when non-zero; a ValueError above `MAX_HELDOUT_IN_BANK` of the queries."""
    count = heldout_in_bank(bank, queries)
    if count > MAX_HELDOUT_IN_BANK * len(queries):
        raise ValueError(
            f"{count} of the {len(queries)} held-out examples of split {eval_split!r} are also in the training "
            f"split {train_split!r}: kNN would find each query itself. Use a held-out split that shares no "
            "examples with the training split"
        )
    if count:
        log.warning(
            "%d of %d held-out examples of split %r also occur in the training split %r (exact duplicates); "
            "recorded in results.json as eval.heldout_in_bank",
            count,
            len(queries),
            eval_split,
            train_split,
        )
    return count


def check_distinct_splits(train_split: str, eval_split: str) -> None:
    """A ValueError when the held-out split is the training split (the bank would hold the queries)."""
    if train_split == eval_split:
        raise ValueError(
            f"data.eval_split is the training split {train_split!r}: evaluation would measure training examples; "
            "set data.eval_split to a held-out split"
        )
