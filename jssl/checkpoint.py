"""Checkpoints: train state and data-iterator state saved together, at one step, with Orbax.

Saving the Grain iterator's position beside the state is what makes resume exact: the resumed
run sees exactly the batches the uninterrupted run would have. Orbax writes each step to a
temporary directory and renames it when complete, so a run killed mid-save leaves the previous
checkpoint as the latest.

What this wrapper adds to Orbax, so that a run's storage troubles end in one clear line:

* `resume` restores the newest step that restores. A damaged newer step (a truncated or
  missing file) is logged with the reason and set aside, renamed `<step>.damaged` (never
  deleted), so that the rerun resumes from the step before it; if no step restores, nothing is
  touched and the run stops saying so. A config whose train state no longer matches the
  checkpoints (another model, another method) is refused with the config fields that differ,
  before Orbax's shape errors.
* A failed save (read-only or full disk) raises `CheckpointError` naming the step, the path and
  the OS error as soon as it is known: step directories are created synchronously, because an
  asynchronous creation that fails leaves Orbax waiting 5 minutes on a signal that never comes,
  and `check()` surfaces a background write's failure without waiting for the next save.
  Orbax's own tracebacks of the same error (several per failure, from its threads) go to the
  debug log.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from jssl.config import load_config
from jssl.data import iterator_state_args

log = logging.getLogger("jssl")

# Suffix of a step directory that failed to restore; Orbax only sees names that are a step
# number (or a temporary `<step>.orbax-checkpoint-tmp...`), so it neither lists nor prunes these.
SET_ASIDE_SUFFIX = ".damaged"


class CheckpointError(ValueError):
    """A checkpoint could not be saved or restored (one line: what, where, why, what to do)."""


class _OrbaxTracebacks(logging.Filter):
    """Moves Orbax's error records that carry a traceback to jssl's debug log.

    Orbax logs each failure of a background save from several threads, with a traceback each,
    and then raises it; `Checkpointer` turns the raised error into one line, so the copies
    would only bury it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.exc_info and f"{os.sep}orbax{os.sep}" in record.pathname:
            log.debug("orbax: %s", record.getMessage(), exc_info=record.exc_info)
            return False
        return True


_ORBAX_FILTER = _OrbaxTracebacks()


def _chain(error: BaseException) -> list[BaseException]:
    """`error`, its causes and contexts, and the members of exception groups among them."""
    seen: list[BaseException] = []
    todo = [error]
    while todo:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo.extend([e.__cause__, e.__context__, *getattr(e, "exceptions", ())])
    return seen


def _reason(error: BaseException, directory: str = "") -> str:
    """One short line for `error`: an OS error as it is, a tensorstore status without its spec."""
    chain = _chain(error)
    os_errors = [e for e in chain if isinstance(e, OSError) and e.errno is not None]
    text = str(os_errors[0]) if os_errors else _status_line(error)
    return text.replace(directory + os.sep, "") if directory else text


def _status_line(error: BaseException) -> str:
    message = error.args[0] if isinstance(error, KeyError) and error.args else error  # str(KeyError) is a repr
    text = str(message).strip()
    text = re.split(r"\s*\[tensorstore_spec", text)[0].strip()
    text = text.splitlines()[0] if text else type(error).__name__
    status = re.match(r"^([A-Z][A-Z_]+): ", text)
    if status and len(text) > 160:
        # 'OUT_OF_RANGE: Error opening ... local file "<f>": Requested byte range ...': the code,
        # the innermost message and the file are what a person can act on.
        files = re.findall(r'local file "([^"]+)"', text)
        last = text.rsplit(": ", 1)[-1]
        text = f"{status.group(1)}: {last}" + (f" (file {files[-1]})" if files and files[-1] not in last else "")
    return text


def _everywhere(ok: bool) -> bool:
    """Whether `ok` holds on every process (all processes must call this together)."""
    if jax.process_count() == 1:
        return ok
    return bool(np.all(multihost_utils.process_allgather(np.asarray(ok, np.int32))))


def _flat_shapes(tree: Any) -> dict[str, tuple[int, ...] | None]:
    """'params/method/encoder/.../value' -> shape, for a train state or Orbax's metadata of one.

    None for typed PRNG keys, whose shape () Orbax saves as their key data's, e.g. (2,).
    """
    shapes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if hasattr(leaf, "shape"):
            key = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
            dtype = getattr(leaf, "dtype", None)
            typed_key = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
            shapes[key] = None if typed_key else tuple(leaf.shape)
    return shapes


def _flat_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """'a.b' -> value, as JSON reads it back (tuples as lists), for comparing configs."""
    out: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{prefix}.{k}" if prefix else k)
        else:
            out[prefix] = value

    walk(json.loads(config.to_json_best_effort()), "")
    return out


_ABSENT = object()

# Fields that decide what the train state is; listed first when configs differ.
_STATE_FIELDS = ("model.", "method.", "probe.", "optimizer.", "data.num_classes", "data.crops", "data.augment")


def config_differences(saved: ml_collections.ConfigDict, now: ml_collections.ConfigDict) -> list[str]:
    """'model.name: resnet18 (saved) vs resnet_mini (now)' for each field that differs, state-defining first."""
    a, b = _flat_config(saved), _flat_config(now)
    keys = sorted(set(a) | set(b), key=lambda k: (not k.startswith(_STATE_FIELDS), k))

    def show(v: Any) -> str:
        return "<absent>" if v is _ABSENT else v if isinstance(v, str) else json.dumps(v)

    return [f"{k}: {show(a.get(k, _ABSENT))} (saved) vs {show(b.get(k, _ABSENT))} (now)"
            for k in keys if a.get(k, _ABSENT) != b.get(k, _ABSENT)]  # fmt: skip


def load_saved_config(path: str) -> ml_collections.ConfigDict | None:
    """The config a run saved at `path` (`jssl.config.save_config`), or None if there is none to read."""
    if not os.path.exists(path):
        return None
    try:
        return load_config(path)
    except ValueError as e:
        log.warning("%s; this config is not compared with it", e)
        return None


def _listing(items: list[str], most: int = 6) -> str:
    return "; ".join(items[:most]) + (f"; and {len(items) - most} more" if len(items) > most else "")


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
            async_options=ocp.AsyncOptions(create_directories_asynchronously=False),
        )
        self.directory = os.path.abspath(directory)
        if _ORBAX_FILTER not in logging.getLogger("absl").filters:
            logging.getLogger("absl").addFilter(_ORBAX_FILTER)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler()},
        )
        self._pending: int | None = None  # the step of an asynchronous save not yet known to be complete
        self._failed = False

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    # ----------------------------------------------------------------------------------------------
    # Saving
    # ----------------------------------------------------------------------------------------------

    def _save_error(self, step: int, error: BaseException) -> CheckpointError:
        self._failed = True
        # Orbax names the step's temporary directory; the step directory is what a person knows.
        reason = re.sub(r"\.orbax-checkpoint-tmp[^/'\"]*", "", _reason(error))
        kept = [s for s in self.all_steps() if s != step]
        return CheckpointError(
            f"could not save checkpoint {step} in {self.directory}: {reason}. "
            + (f"The checkpoints before it are intact (latest: step {max(kept)}); " if kept else "")
            + "make the directory writable (or free space) and rerun the same command to resume"
        )

    def _finish_pending(self) -> None:
        """Waits for the asynchronous save in flight, if any; raises `CheckpointError` if it failed."""
        step, self._pending = self._pending, None
        if step is None:
            return
        try:
            self._manager.wait_until_finished()
        except Exception as e:
            raise self._save_error(step, e) from e

    def save(self, step: int, state: Any, data_iterator: Any, *, force: bool = False) -> bool:
        """Saves if `step` is on the interval (or `force`); returns whether a save started.

        Raises `CheckpointError` if this save, or the asynchronous one before it, failed.
        """
        self._finish_pending()
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=iterator_state_args(data_iterator),
        )
        try:
            started = self._manager.save(step, args=args, force=force)
        except Exception as e:
            raise self._save_error(step, e) from e
        if started:
            self._pending = step
        return started

    def check(self) -> None:
        """Raises `CheckpointError` if an asynchronous save has failed; never waits for one."""
        if self._pending is not None and not self._manager.is_saving_in_progress():
            self._finish_pending()

    def wait(self) -> None:
        """Waits for the save in flight; raises `CheckpointError` if it failed."""
        self._finish_pending()

    def close(self) -> None:
        try:
            self._finish_pending()
        finally:
            try:
                self._manager.close()
            except Exception:
                # After a failed save, Orbax's clean-up may fail the same way: that error was raised.
                if not self._failed:
                    raise

    # ----------------------------------------------------------------------------------------------
    # Restoring
    # ----------------------------------------------------------------------------------------------

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

    def _shape_mismatch(self, step: int, abstract_state: Any) -> list[str]:
        """How the train state saved at `step` differs from `abstract_state` ([] if alike or unreadable)."""
        try:
            saved = _flat_shapes(self._manager.item_metadata(step)["state"])
        except Exception:
            return []  # damaged metadata: the restore attempt will tell
        now = _flat_shapes(abstract_state)
        if not saved:
            return []
        return [
            f"{k}: {saved.get(k, '<absent>')} (saved) vs {now.get(k, '<absent>')} (now)"
            for k in sorted(set(saved) | set(now))
            if k not in saved or k not in now or None not in (saved[k], now[k]) and saved[k] != now[k]
        ]

    def _refuse(self, what: str, fields: list[str], arrays: list[str]) -> ValueError:
        shown = "; ".join(
            ([f"config fields that differ: {_listing(fields)}"] if fields else [])
            + ([f"arrays that differ: {_listing(arrays, 2)}"] if arrays else [])
        )
        return ValueError(
            f"the checkpoints in {self.directory} were written {what} ({shown}). "
            "Rerun with the run's own settings (its config.json) to resume it, or use another --workdir"
        )

    def _set_aside(self, step: int) -> str:
        """Renames step `step`'s directory so that Orbax no longer sees it; returns the new name."""
        name = f"{step}{SET_ASIDE_SUFFIX}"
        if jax.process_index() == 0:
            n = 1
            while os.path.exists(os.path.join(self.directory, name)):
                n += 1
                name = f"{step}{SET_ASIDE_SUFFIX}-{n}"
            try:
                os.rename(os.path.join(self.directory, str(step)), os.path.join(self.directory, name))
            except OSError as e:
                raise CheckpointError(f"cannot set aside the damaged checkpoint {step} in {self.directory}: {e}") from e
        return name

    def resume(
        self, abstract_state: Any, data_iterator: Any, *, config=None, saved_config=None
    ) -> tuple[Any, int | None]:
        """(state, step) of the newest checkpoint that restores, or (None, None) if there is none.

        Newer steps that fail to restore are set aside (`<step>.damaged`) with one log line each;
        if none restores, raises `CheckpointError` and changes nothing. `config`/`saved_config`
        (the config of this run and the one that wrote the checkpoints, if known) name the fields
        that differ when the saved train state does not match `abstract_state` or the method
        changed: that raises ValueError, as it is not damage.
        """
        steps = sorted(self.all_steps(), reverse=True)
        if not steps:
            return None, None
        fields = config_differences(saved_config, config) if saved_config is not None and config is not None else []
        if saved_config is not None and config is not None and saved_config.method.name != config.method.name:
            raise self._refuse(f"by another method, {saved_config.method.name}", fields, [])
        failures: list[tuple[int, str]] = []
        for step in steps:
            arrays = self._shape_mismatch(step, abstract_state)
            if arrays:
                raise self._refuse("with another train state than this config builds", fields, arrays)
            try:
                state, reason = self.restore(step, abstract_state, data_iterator), ""
            except Exception as e:
                state, reason = None, _reason(e, self.directory)
            if not _everywhere(not reason):
                failures.append((step, reason or "it failed to restore on another process"))
                continue
            for bad, why in failures:
                name = self._set_aside(bad)
                if jax.process_index() == 0:
                    log.warning(
                        "checkpoint %d in %s does not restore (%s): set aside as %s; resuming from step %d",
                        bad, self.directory, why, name, step,
                    )  # fmt: skip
            if failures:
                if jax.process_count() > 1:
                    multihost_utils.sync_global_devices("jssl checkpoints set aside")
                self._manager.reload()
            log.info("resumed from step %d in %s", step, self.directory)
            if fields:
                log.info("config changes since the checkpoints were written: %s", _listing(fields))
            return state, step
        raise CheckpointError(
            f"no checkpoint in {self.directory} restores ("
            + "; ".join(f"step {s}: {why}" for s, why in failures)
            + "); nothing was changed. Move that directory away to start over, or restore its files"
        )
