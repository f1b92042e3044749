"""Batch helpers shared by the data tests (tests/data has no package marker: its tiny TFDS builders
must stay top-level modules for tfds): read batches off an iterator, compare batch lists."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def take(it: Iterator, n: int) -> list[dict[str, np.ndarray]]:
    """The next `n` batches of `it`."""
    return [next(it) for _ in range(n)]


def assert_same(a: list[dict], b: list[dict]) -> None:
    """The two batch lists are equal key by key, array by array."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)
