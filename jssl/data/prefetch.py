"""Device prefetch: keep the next batches' host-to-device transfers in flight during a step.

``jax.make_array_from_process_local_data`` (and ``device_put``) return as soon as the copy is
enqueued, so placing batch ``n + 1`` (and ``n + 2``) before step ``n`` runs lets the transfer
overlap the step instead of preceding it. :class:`DevicePrefetch` wraps a Grain iterator and a
``place`` function (host batch -> device arrays) and keeps ``size`` placed batches queued.

Checkpoints: the wrapped iterator has read ``size`` batches the trainer has not consumed yet,
so saving *its* state would skip them on resume. The wrapper remembers the inner state taken
just before each queued batch was read and reports, as its own state, the one belonging to the
first unconsumed batch: a resume then yields exactly the batches a run without prefetch would.
State crosses Orbax as JSON bytes, the form Grain's checkpoint handler writes for iterators
that are not Grain ``DatasetIterator``s (the file on disk is the same JSON either way).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["DevicePrefetch"]


class DevicePrefetch:
    """Iterator of placed batches, ``size`` transfers ahead of the consumer.

    Args:
      iterator: a checkpointable Grain iterator of host batches (``get_state``/``set_state``).
      place: host batch -> device batch; it should only enqueue transfers, not wait for them.
      size: batches kept placed ahead; 0 places each batch only when it is asked for.
    """

    def __init__(self, iterator: Any, *, place: Callable[[Mapping[str, Any]], Any], size: int = 2) -> None:
        if size < 0:
            raise ValueError(f"device prefetch size must be >= 0; got {size}")
        for name in ("get_state", "set_state"):
            if not callable(getattr(iterator, name, None)):
                raise ValueError(f"DevicePrefetch needs a checkpointable iterator with {name}(); got {type(iterator).__name__}")
        self._iterator = iterator
        self._place = place
        self.size = size
        # (inner state before reading the batch, placed batch), oldest first.
        self._queue: collections.deque[tuple[Any, Any]] = collections.deque()

    def __iter__(self) -> Iterator[Any]:
        return self

    def _read_one(self) -> None:
        state = self._iterator.get_state()
        self._queue.append((state, self._place(next(self._iterator))))

    def __next__(self) -> Any:
        if not self._queue:
            self._read_one()
        _, batch = self._queue.popleft()
        while len(self._queue) < self.size:
            self._read_one()
        return batch

    # Grain's Orbax handler calls these three on iterators that are not DatasetIterators.
    def get_state(self) -> bytes:
        """The inner iterator's state before the first batch not yet handed out, as JSON bytes."""
        state = self._queue[0][0] if self._queue else self._iterator.get_state()
        return json.dumps(state, indent=4).encode()

    def set_state(self, state: bytes) -> None:
        """Drops the queued batches and moves the inner iterator to ``state`` (from :meth:`get_state`)."""
        self._queue.clear()
        self._iterator.set_state(json.loads(state))

    def start_prefetch(self) -> None:
        # The handler calls this after a restore; the queue refills on the next `next`.
        start = getattr(self._iterator, "start_prefetch", None)
        if callable(start):
            start()
