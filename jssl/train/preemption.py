"""Stopping a run cleanly on SIGTERM (preemption, `scancel`, a SLURM time limit) or SIGINT (Ctrl-C).

The signal handler only records the signal; the training loop asks `StopSignals.requested(step)`
after each step, and when it says so the trainer saves a checkpoint at that step, logs one line
and raises `Interrupted`, a `SystemExit` with status 128 + the signal's number (143 for SIGTERM,
130 for SIGINT, as a shell reports a process killed by it), so a requeueing job script can tell
a preemption from a failure and the rerun of the same command resumes at that step. A second
signal acts as it would without jssl (SIGTERM ends the process at once, SIGINT raises
KeyboardInterrupt), for a person who does not want to wait for the save.

Multi-host, every process must stop at the same step (a checkpoint is written by all
together). When jax.distributed runs its preemption service (the default), JAX already catches
SIGTERM and agrees on a step with the other processes
(`multihost_utils.reached_preemption_sync_point`, called every step), so jssl leaves SIGTERM to
it. SIGINT, and SIGTERM when that service is off, are agreed on by an all-gather of the
recorded signal every `agree_every` steps (the log interval): a process that got a signal stops
with the others at the next such step.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

log = logging.getLogger("jssl")


class Interrupted(SystemExit):
    """The run stopped on a signal after saving a checkpoint; exits with status 128 + the signal's number.

    The CLI lets it through (it is no error); Python then exits with that status and prints
    nothing, the one line having been logged already.
    """

    def __init__(self, signum: int, step: int, message: str):
        super().__init__(128 + signum)
        self.signum = signum
        self.step = step
        self.message = message


class StopSignals:
    """Records SIGTERM/SIGINT while installed; `requested(step)` says when the run should stop.

    Usage: `stop = StopSignals(agree_every=n).install()` before the loop, `stop.requested(step)`
    after every step (on every process), `stop.uninstall()` in a `finally`.
    """

    def __init__(self, *, agree_every: int):
        self.agree_every = max(1, agree_every)
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        # JAX's preemption service catches SIGTERM itself in multi-process runs (see the module docstring).
        self._sync_point = jax.process_count() > 1 and bool(getattr(jax.config, "jax_enable_preemption_service", True))

    def install(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # Python delivers signals to the main thread only; nothing to install elsewhere
        for signum in (signal.SIGINT,) if self._sync_point else (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._record)
        return self

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _record(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        # A second signal does what it did before jssl caught the first one.
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def requested(self, step: int) -> int | None:
        """The signal to stop on after `step` (the same on every process), or None to go on."""
        if jax.process_count() == 1:
            return self.signum
        if self._sync_point:
            try:
                if multihost_utils.reached_preemption_sync_point(step):
                    return signal.SIGTERM
            except RuntimeError:  # the service did not start: agree on SIGTERM like on SIGINT
                self._sync_point = False
                if signal.SIGTERM not in self._previous and threading.current_thread() is threading.main_thread():
                    self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._record)
        if step % self.agree_every:
            return None
        received = multihost_utils.process_allgather(np.asarray(self.signum or 0, np.int32))
        return int(np.max(received)) or None


def stop(signum: int, step: int, *, checkpointer: Any, state: Any, data_iterator: Any) -> None:
    """Saves the checkpoint of `step` (unless it is saved already), waits for it, says so and raises `Interrupted`."""
    if step not in checkpointer.all_steps():
        checkpointer.save(step, state, data_iterator, force=True)
    checkpointer.wait()
    name = signal.Signals(signum).name
    message = (
        f"received {name} at step {step}: saved checkpoint {step} in {checkpointer.directory}; "
        "rerun the same command to resume"
    )
    if jax.process_index() == 0:
        log.warning("%s", message)
    raise Interrupted(signum, step, message)
