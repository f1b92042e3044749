"""DevicePrefetch: same batches as the bare iterator, placed ahead, and a checkpoint state that
points at the first batch the consumer has not seen (so a resume skips nothing)."""

from __future__ import annotations

import json

import numpy as np
import orbax.checkpoint as ocp
import pytest

from jssl import data


def _iterator(seed: int = 0):
    images = np.random.default_rng(0).integers(0, 256, (40, 6, 6, 1), dtype=np.uint8)
    source = data.ArraySource(images, np.arange(40) % 4)
    return data.make_train_iterator(source, global_batch_size=4, num_views=2, augment="random_resized_crop(4)|hflip", seed=seed)


def _equal(a, b) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))


@pytest.mark.parametrize("size", [0, 1, 2, 3])
def test_same_batches_and_placed_ahead(size: int) -> None:
    placed = []

    def place(batch):
        placed.append(batch)
        return dict(batch)

    bare = _iterator()
    wrapped = data.DevicePrefetch(_iterator(), place=place, size=size)
    for step in range(1, 7):
        _equal(next(wrapped), next(bare))
        assert len(placed) == step + size  # `size` batches already placed beyond the one handed out


@pytest.mark.parametrize("consumed", [0, 1, 5])
def test_state_is_that_of_the_first_unconsumed_batch(consumed: int) -> None:
    bare = _iterator()
    wrapped = data.DevicePrefetch(_iterator(), place=dict, size=2)
    for _ in range(consumed):
        next(bare), next(wrapped)
    assert json.loads(wrapped.get_state()) == bare.get_state()

    resumed = data.DevicePrefetch(_iterator(), place=dict, size=2)
    next(resumed)  # queued batches from the old position must be dropped by set_state
    resumed.set_state(wrapped.get_state())
    for _ in range(4):
        _equal(next(resumed), next(bare))


def test_orbax_round_trip(tmp_path) -> None:
    wrapped = data.DevicePrefetch(_iterator(), place=dict, size=2)
    for _ in range(3):
        next(wrapped)
    expected = [next(_skip(_iterator(), 3 + i)) for i in range(3)]
    with ocp.CheckpointManager(tmp_path) as manager:
        manager.save(3, args=ocp.args.Composite(data=data.iterator_state_args(wrapped)))
        manager.wait_until_finished()
        restored = data.DevicePrefetch(_iterator(), place=dict, size=2)
        manager.restore(3, args=ocp.args.Composite(data=data.iterator_state_args(restored, restore=True)))
    for batch in expected:
        _equal(next(restored), batch)


def _skip(iterator, n: int):
    for _ in range(n):
        next(iterator)
    return iterator


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="prefetch size must be >= 0"):
        data.DevicePrefetch(_iterator(), place=dict, size=-1)
    with pytest.raises(ValueError, match="checkpointable iterator"):
        data.DevicePrefetch(iter([{}]), place=dict)
