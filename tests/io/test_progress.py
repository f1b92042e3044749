"""The progress reporter: plain log lines in a batch job, a tqdm bar on a terminal."""

from __future__ import annotations

import io
import logging

import pytest

from jssl.progress import Progress, format_duration


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(progress: Progress) -> None:
    for step in range(101, 121):
        progress.advance()
        if step == 120:
            progress.logged(step, {"loss": 4.12341, "learning_rate": 0.1, "steps_per_second": 3.8})
    progress.checkpoint_saved(120, "/work/run/checkpoints")
    progress.evaluated(120, {"knn": 0.91234, "online_probe": 0.5})
    progress.close()


def test_a_batch_job_gets_plain_lines(caplog):
    stream = io.StringIO()  # a log file under SLURM: not a terminal
    with caplog.at_level(logging.INFO, logger="jssl"):
        _run(Progress(500, 100, stream=stream, async_checkpoints=True))
    assert stream.getvalue() == ""  # no bar, no carriage returns
    assert caplog.messages == [
        "step 120/500 loss 4.1234 3.8 steps/s ETA 1m40s",
        "step 120: checkpoint saved in /work/run/checkpoints (finishing in the background)",
        "step 120 eval: knn 0.9123, online_probe 0.5000",
    ]


def test_a_terminal_gets_the_bar_and_the_checkpoint_and_eval_lines(caplog):
    stream = Terminal()
    with caplog.at_level(logging.INFO, logger="jssl"):
        _run(Progress(500, 100, stream=stream))
    out = stream.getvalue()
    assert "120/500" in out and "loss=4.1234" in out and "\r" in out
    assert "step 120: checkpoint saved in /work/run/checkpoints\n" in out
    assert "step 120 eval: knn 0.9123, online_probe 0.5000\n" in out
    assert caplog.messages == []  # the step lines are the bar's, not the log's


def test_no_bar_when_switched_off_and_nothing_from_other_processes(caplog):
    stream = Terminal()
    with caplog.at_level(logging.INFO, logger="jssl"):
        _run(Progress(500, 100, stream=stream, progress_bar=False))
        _run(Progress(500, 100, stream=stream, enabled=False))
    assert stream.getvalue() == ""
    assert len(caplog.messages) == 3 and caplog.messages[0].startswith("step 120/500 loss")


@pytest.mark.parametrize(
    "seconds, text", [(0.4, "0s"), (58, "58s"), (118, "1m58s"), (7380, "2h03m"), (273600, "3d04h"), (float("inf"), "?")]
)
def test_durations_read_like_a_clock(seconds, text):
    assert format_duration(seconds) == text
