"""A user's mistakes end in one line that names the fix; `--debug` shows the traceback; bugs keep theirs.

The cases run the real command (`python -m jssl.cli`) in subprocesses started together, so the
suite waits about as long as the slowest one (the NaN-loss run, which compiles a tiny step).
stderr is counted whole: whatever absl, jax or TFDS print at import counts too.
"""

from __future__ import annotations

import os
import sys

import pytest

from jssl import cli
from jssl.train import NonFiniteLossError
from tests.cli.helpers import start

# A small real run (tiny ResNet, batch 16): seconds to compile.
TINY = [
    "--config=simclr_mnist:smoke",
    "--config.model.kwargs.width_multiplier=0.5",
    "--config.method.projection_hidden_dim=32",
    "--config.method.projection_dim=16",
    "--config.global_batch_size=16",
    "--config.eval.baselines=false",
    "--config.log_every_steps=1",
]


def _write_configs(tmp: str) -> None:
    with open(os.path.join(tmp, "broken.py"), "w") as f:
        f.write('"""A config with a syntax error."""\n\ndef get_config(variant=None:\n    pass\n')
    with open(os.path.join(tmp, "buggy.py"), "w") as f:
        f.write('"""A config with a bug: not bad input."""\n\ndef get_config(variant=None):\n    return 1 / 0\n')


def test_user_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    tmp = str(tmp_path)
    _write_configs(tmp)
    work = f"--workdir={tmp}/run"
    broken = ["train", "--config", "broken.py", work]
    # Name -> (arguments, exit code, what stderr must say).
    cases = {
        "syntax error": (broken, 2, ["broken.py, line 3", "SyntaxError", "fix the config file"]),
        "missing npz": (["train", work, "--config.data.name=npz", "--config.data.path=nowhere.npz"], 1,
                        ["nowhere.npz", "set --config.data.path"]),
        "tfds typo": (["train", work, "--config.data.name=tfds", "--config.data.tfds_name=mnistt",
                       f"--config.data.data_dir={tmp}"], 1, ["'mnistt'", "did you mean 'mnist'"]),
        "unknown variant": (["train", "--config=simclr_mnist:smok", work], 2, ["unknown variant 'smok'", "known: 'smoke'"]),
        "nan loss": (["train", *TINY, "--config.optimizer.base_learning_rate=1e400", "--config.total_steps=3",
                      f"--workdir={tmp}/nan"], 1,
                     ["loss became non-finite (NaN or inf) at step", "Lower optimizer.base_learning_rate"]),
        "--debug": ([*broken, "--debug"], 1, ["Traceback (most recent call last)", "SyntaxError"]),
    }  # fmt: skip
    procs = {name: start(*args, cwd=tmp) for name, (args, _, _) in cases.items()}
    failures = []
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        _, code, needles = cases[name]
        lines = err.strip().splitlines()
        problems = [f"exit code {proc.returncode}, not {code}"] if proc.returncode != code else []
        problems += [f"no {needle!r}" for needle in needles if needle not in err]
        if name != "--debug":
            problems += [f"{len(lines)} lines on stderr"] if len(lines) > 3 else []
            problems += ["a traceback"] if "Traceback" in err else []
            problems += [] if lines and lines[-1].startswith("jssl train: error: ") else ["no 'jssl train: error:' line"]
        if problems:
            failures.append(f"{name}: {'; '.join(problems)}\n{err[-2000:]}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--config.method=foo"], ["--config.method is a group of fields", "--config.method.name=foo"]),
        (["--config.optimizer.warmup_step=3"], ["no config field 'optimizer.warmup_step'", "optimizer.warmup_steps"]),
        (["--config=simclr_mnst"], ["no shipped config 'simclr_mnst'", "did you mean simclr_mnist", "jssl configs"]),
        (["--config.total_steps=many"], ["--config.total_steps=many", "invalid literal"]),
        (["--config"], ["--config needs a value"]),
    ],
)
def test_command_line_mistakes_are_one_line(args, needles, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["jssl", "train", f"--workdir={tmp_path}", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("jssl train: error: "), err
    assert all(needle in err for needle in needles), err


def test_a_bug_in_a_config_and_debug_mode_raise(tmp_path, monkeypatch):
    _write_configs(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(ZeroDivisionError):  # not bad input: the exception and its traceback reach the user
        cli.main(["jssl", "train", "--config=buggy.py", "--workdir=run"])
    monkeypatch.setenv("JSSL_DEBUG", "1")
    with pytest.raises(ValueError, match="SyntaxError"):
        cli.main(["jssl", "train", "--config=broken.py", "--workdir=run"])


def _main(monkeypatch, capsys, error: BaseException) -> tuple[int | None, str]:
    """Runs `jssl train` in this process with the run itself replaced by one raising `error`."""

    def run(config, workdir, rest):
        raise error

    monkeypatch.setitem(cli.COMMANDS, "train", run)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["jssl", "train", "--workdir=x"])
    return exit_info.value.code, capsys.readouterr().err


def test_exit_codes_of_a_run_and_system_exit_passes_through(monkeypatch, capsys):
    code, err = _main(monkeypatch, capsys, NonFiniteLossError("the training loss became non-finite at step 3"))
    assert code == 1 and err == "jssl train: error: the training loss became non-finite at step 3\n"
    code, err = _main(monkeypatch, capsys, KeyboardInterrupt())
    assert code == 130 and err == "jssl train: interrupted\n"
    # The trainer's own exit after saving on SIGTERM/SIGINT keeps its code and prints nothing here.
    code, err = _main(monkeypatch, capsys, SystemExit(143))
    assert code == 143 and err == ""
    code, err = _main(monkeypatch, capsys, ValueError("a\nb\nc\nd"))
    assert code == 1 and err == "jssl train: error: a [3 more lines: rerun with --debug]\n"


def test_a_group_takes_a_dict_literal():
    from jssl import config_files

    config, _ = config_files.load("simclr_mnist")
    literal = "{'width_multiplier': 0.5, 'small_image_stem': True, 'stem_stride': 1}"
    config, workdir, rest = cli.apply_overrides("train", config, [f"--config.model.kwargs={literal}", "--workdir=w"])
    assert config.model.kwargs.to_dict() == {"width_multiplier": 0.5, "small_image_stem": True, "stem_stride": 1}
    assert (workdir, rest) == ("w", [])
    with pytest.raises(ValueError, match=r"--config.total_steps is a single value, it has no field 'x'"):
        cli.check_overrides(config, ["--config.total_steps.x=1"], "train")
