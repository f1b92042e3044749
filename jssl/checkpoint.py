"""Checkpoints: train state and data-iterator state saved together, at one step, with Orbax.

Saving the Grain iterator's position beside the state is what makes resume exact: the resumed
run sees exactly the batches the uninterrupted run would have. Orbax writes each step to a
temporary directory and renames it when complete, so a run killed mid-save leaves the previous
checkpoint as the latest.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import orbax.checkpoint as ocp

from jssl.data import iterator_state_args


class Checkpointer:
    """A thin, explicit wrapper over `ocp.CheckpointManager` with items 'state' and 'data'."""

    def __init__(
        self,
        directory: str,
        *,
        every_steps: int,
        max_to_keep: int | None,
        async_save: bool = True,
        read_only: bool = False,
    ):
        # read_only: for reading another run's checkpoints (`jssl eval`), which must never be
        # created, pruned or written to (then every_steps=0 and max_to_keep=None, as Orbax wants).
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=0 if read_only else max(1, every_steps),
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            create=not read_only,
            read_only=read_only,
        )
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler()},
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, data_iterator: Any, *, force: bool = False) -> bool:
        """Saves if `step` is on the interval (or `force`); returns whether a save started."""
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=iterator_state_args(data_iterator),
        )
        return self._manager.save(step, args=args, force=force)

    def restore(self, step: int, abstract_state: Any, data_iterator: Any) -> Any:
        """Restores into the shardings of `abstract_state` and rewinds `data_iterator` in place."""
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=iterator_state_args(data_iterator, restore=True),
            ),
        )
        return restored["state"]

    def restore_state(self, step: int, abstract_state: Any) -> Any:
        """Restores the state alone, into the shardings of `abstract_state` (no data iterator)."""
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        )
        return restored["state"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
