"""The `jssl` command: `jssl train --config <name or file>[:variant] --workdir DIR [--config.a.b=v]`,
`jssl eval --workdir DIR [--config ...] [--config.a.b=v]`, `jssl configs`, `jssl --version`.

Configs are ml_collections files (`get_config(variant)`), found by a shipped config's name
(`simclr_mnist`, listed by `jssl configs`) or by path (`jssl.config_files`); every field can be
overridden on the command line, and a misspelled field is an error (the config is locked).
`jssl train --help` lists the fields with their defaults and docs. `jssl eval` reads the config
the run saved (`DIR/config.json`) unless `--config` names one.

Bad input (a missing or broken config file, an unknown variant or field, unreadable data, an
unwritable workdir, a workdir without checkpoints, a loss that became NaN) ends with one line on
stderr that says what to fix, exit code 2 (the command line) or 1 (the run); `--debug` or
`JSSL_DEBUG=1` shows the traceback instead. Any other exception is a bug and keeps its traceback.
`SystemExit` (e.g. the trainer's exit after saving on SIGTERM) passes through untouched.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
import textwrap

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from jssl import __version__, config_docs, config_files

# `JSSL_DEBUG=1` (any value but '' and '0') does what `--debug` does.
DEBUG_ENV = "JSSL_DEBUG"


def maybe_initialize_distributed(mode: str) -> None:
    """Starts jax.distributed for multi-process runs (SLURM, Kubernetes, `launch/multiprocess.sh`).

    'auto' initializes when a launcher announced several processes; 'true' always (jax then
    detects SLURM/Kubernetes/GKE itself); 'false' never.
    """
    import jax

    if mode not in ("auto", "true", "false"):
        raise ValueError(f"config.distributed must be 'auto', 'true' or 'false'; got {mode!r}")
    explicit = os.environ.get("JAX_COORDINATOR_ADDRESS")
    slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
    if mode == "false" or (mode == "auto" and not explicit and not slurm):
        return
    if explicit:
        # No cluster detection on top: in a Kubernetes pod jax would otherwise probe the API
        # (or warn that the `kubernetes` package is missing) for values the launcher already set.
        jax.distributed.initialize(
            coordinator_address=explicit,
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
            cluster_detection_method="deactivate",
        )
    else:
        jax.distributed.initialize()


def _train(config, workdir: str | None, extra: list[str]) -> None:
    if extra:
        raise app.UsageError(f"unexpected arguments: {extra}")
    if not workdir:
        raise app.UsageError("--workdir is required (rerunning with the same workdir resumes)")
    maybe_initialize_distributed(config.distributed)
    _setup_logging()

    from jssl.train import train  # Heavy imports after flag parsing: `jssl --help` stays fast.

    results = train(config, workdir)
    for line in summary_lines(results):
        print(line)
    print(f"results: {os.path.join(os.path.abspath(workdir), 'results.json')}")


def _label(key: str) -> str:
    if key == "knn":
        return "kNN"
    return key.replace("heldout/", "held-out ").replace("_", " ")


def _numbers(values: dict) -> str:
    names = ("knn", "linear_probe", "online_probe")
    keys = [k for k in names if k in values] + sorted(k for k in values if k.startswith("heldout/"))
    keys += sorted(k for k, v in values.items() if k not in keys and isinstance(v, float) and not k.startswith("frechet_ref"))
    return ", ".join(f"{_label(k)} {values[k]:.4g}" for k in keys)


def summary_lines(results: dict) -> list[str]:
    """The end-of-run summary: the SSL numbers and each baseline's, whatever the data kind measured."""
    lines = [f"final: {_numbers(results['ssl'])}"]
    baselines = [
        f"{name.replace('_', ' ')}: {_numbers(values)}"
        for name, values in results.items()
        if name not in ("step", "ssl", "eval") and isinstance(values, dict) and _numbers(values)
    ]
    if baselines:
        lines.append("baselines: " + "; ".join(baselines))
    return lines


def _setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("jssl").setLevel(logging.INFO)
    # A NaN metric is jssl's to report (one line naming the step, from the trainer), not once per
    # scalar written to TensorBoard.
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)


def _eval(config, workdir: str | None, extra: list[str]) -> None:
    if extra:
        raise app.UsageError(f"unexpected arguments: {extra}")
    maybe_initialize_distributed(config.distributed)
    _setup_logging()

    from jssl.train.evaluate import evaluate_run  # Heavy imports after flag parsing.

    results = evaluate_run(config, workdir)
    line = f"eval of step {results['pretrain_step']}: kNN {results['knn']:.4f}"
    line += f", linear probe {results['linear_probe']:.4f}"
    if "finetune" in results:
        line += f", fine-tune top-1 {results['finetune']['top1']:.4f}"
    if "finetune_random_init" in results:
        line += f" (random init {results['finetune_random_init']['top1']:.4f})"
    print(line)
    print(f"results: {os.path.join(os.path.abspath(workdir), 'eval_results.json')}")


def _split_config(args: list[str]) -> tuple[str | None, list[str]]:
    """Takes `--config=<spec>` / `--config <spec>` out of `args`: (the last spec or None, the rest)."""
    spec, rest, i = None, [], 0
    while i < len(args):
        match = re.match(r"^--?config(=(.*))?$", args[i])
        if not match:
            rest.append(args[i])
        elif match.group(1) is not None:
            spec = match.group(2)
        elif i + 1 < len(args):
            spec, i = args[i + 1], i + 1
        else:
            raise ValueError("--config needs a value: a shipped config's name (`jssl configs`) or a file")
        i += 1
    return spec, rest


def check_overrides(config: ml_collections.ConfigDict, args: list[str], command: str) -> None:
    """One-line `ValueError`s for `--config.<field>` overrides that name no field, or that give a
    group of fields (`--config.method=foo`) a plain value, before ml_collections' own messages."""
    for arg in args:
        match = re.match(r"^--?(?:no)?config\.([^=]+)(=(.*))?$", arg, re.DOTALL)
        if not match:
            continue
        path, value = match.group(1), match.group(3)
        node, walked = config, []
        for part in path.split("."):
            if not isinstance(node, ml_collections.ConfigDict):
                raise ValueError(f"--config.{'.'.join(walked)} is a single value, it has no field {part!r}")
            if part not in node:
                close = difflib.get_close_matches(path, [f for f, _ in config_docs.flatten(config)], n=3, cutoff=0.6)
                hint = f"did you mean {' or '.join(close)}? " if close else ""
                raise ValueError(f"no config field {path!r}; {hint}(`jssl {command} --help` lists the fields)")
            node, walked = node[part], [*walked, part]
        # A group takes a whole dict literal (`--config.model.kwargs="{'depth': 12}"`), nothing else.
        if isinstance(node, ml_collections.ConfigDict) and value is not None and not value.lstrip().startswith("{"):
            keys = list(node.keys())
            example = "name" if "name" in keys else keys[0]
            raise ValueError(
                f"--config.{path} is a group of fields ({', '.join(keys)}), not a value: "
                f"set one of them, e.g. --config.{path}.{example}={value}"
            )


def _run_config(args: list[str]) -> tuple[ml_collections.ConfigDict, str]:
    """`jssl eval` without `--config`: the config the run saved in `--workdir`."""
    pre = flags.FlagValues()
    workdir = flags.DEFINE_string("workdir", None, "The run's directory.", flag_values=pre)
    pre(["jssl eval", *args], known_only=True)
    if not workdir.value:
        raise ValueError("--workdir is required (the directory of a `jssl train` run)")
    from jssl.config import load_config

    path = os.path.join(os.path.abspath(os.path.expanduser(workdir.value)), "config.json")
    if not os.path.isdir(os.path.dirname(path)):
        raise ValueError(f"workdir {os.path.dirname(path)} does not exist")
    if not os.path.exists(path):
        raise ValueError(f"{path} does not exist: pass the run's config with --config=<name or file>[:variant]")
    config = load_config(path)
    config.lock()
    return config, path


def load_command_config(command: str, args: list[str]) -> tuple[ml_collections.ConfigDict, str, list[str]]:
    """(the config `--config` names, or the command's default; its file; args without `--config`)."""
    spec, rest = _split_config(args)
    if spec is None and command == "eval":
        return (*_run_config(rest), rest)
    config, path = config_files.load(config_files.DEFAULT if spec is None else spec)
    return config, path, rest


def apply_overrides(command: str, config: ml_collections.ConfigDict, args: list[str]):
    """(config with the `--config.*` overrides in `args` applied, workdir, remaining args)."""
    check_overrides(config, args, command)
    flag_values = flags.FlagValues()
    prog = f"jssl {command}"
    config_flag = config_flags.DEFINE_config_dict(
        "config", config, "The config.", flag_values=flag_values, lock_config=True, sys_argv=[prog, *args]
    )
    help_workdir = "The run's directory." if command == "eval" else "Directory for checkpoints, logs, results."
    workdir = flags.DEFINE_string("workdir", None, help_workdir, flag_values=flag_values)
    remaining = flag_values([prog, *args])
    return config_flag.value, workdir.value, remaining[1:]


HELP = {
    "train": (
        "usage: jssl train [--config=<name or file>[:variant]] --workdir=DIR [--config.<field>=<value> ...]\n\n"
        "Pretrains (and evaluates) a model. Rerunning with the same --workdir resumes.\n\n"
        "  --config   a shipped config's name (`jssl configs` lists them) or a config file, then optionally\n"
        f"             :variant (e.g. {config_files.DEFAULT}:smoke); default {config_files.DEFAULT}\n"
        "  --workdir  directory for checkpoints, TensorBoard logs, metrics.jsonl and results.json\n"
    ),
    "eval": (
        "usage: jssl eval --workdir=DIR [--config=<name or file>[:variant]] [--config.<field>=<value> ...]\n\n"
        "kNN, linear probe and fine-tuning of a run's latest checkpoint.\n\n"
        "  --workdir  the directory of a `jssl train` run\n"
        "  --config   default: the run's own config.json; a shipped config's name or a file otherwise\n"
    ),
}
COMMON_HELP = "  --debug    on an error, show the full traceback (also JSSL_DEBUG=1)\n"


def command_help(command: str, args: list[str]) -> str:
    """`jssl <command> --help`: the flags, then every config field with its default and doc."""
    text = HELP[command] + COMMON_HELP
    try:
        config, path, _ = load_command_config(command, args)
    except ValueError as e:  # e.g. `jssl eval --help` without a workdir: fields of the default config
        if command != "eval":
            raise
        config, path = config_files.load(config_files.DEFAULT)
        text += f"\n(no run's config to show: {_one_line(e)}; the fields of {config_files.DEFAULT} follow)\n"
    docs = config_docs.config_field_docs(config, path, config_files.shipped().values())
    text += f"\nConfig fields of {path} (defaults shown; --config.<field>=<value> overrides):\n"
    for field, value in config_docs.flatten(config):
        text += f"  --config.{field}={value!r}\n"
        doc = docs.get(field)
        if doc:
            text += textwrap.fill(doc, width=100, initial_indent=" " * 6, subsequent_indent=" " * 6) + "\n"
    return text


def _configs(args: list[str]) -> str:
    """`jssl configs`: every shipped config with the first line of its docstring."""
    if args:
        raise app.UsageError(f"unexpected arguments: {args}")
    configs = config_files.shipped()
    width = max(map(len, configs), default=0)
    lines = [f"{len(configs)} shipped configs in {config_files.configs_dir()}:"]
    for name, path in configs.items():
        variants = "".join(f" :{v}" for v in config_files.variants(path))
        lines.append(f"  {name:<{width}}  {config_files.summary(path)}{variants and f' [variants{variants}]'}")
    lines.append("run one: jssl train --config <name>[:variant] --workdir DIR")
    return "\n".join(lines)


def _print(text: str) -> None:
    """Prints a listing; a reader that stops early (`jssl train --help | head`) is no error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


COMMANDS = {"train": _train, "eval": _eval}
HELP_FLAGS = ("-h", "--help", "-help", "--helpfull")

USAGE = f"""usage: jssl <command> [flags]

commands:
  train    pretrain (and evaluate) a model: jssl train --config {config_files.DEFAULT} --workdir runs/x
           (no --config: the embedded-MNIST SimCLR run; --config.<field>=<value> overrides;
           jssl train --help lists every field)
  eval     kNN, linear probe and fine-tuning of a run's latest checkpoint: jssl eval --workdir runs/x
           (the run's config.json; --config.finetune.<field>=<value> overrides evaluation fields)
  configs  list the shipped configs (--config <name>[:variant] runs one)

flags: --version; --debug (any command: show tracebacks; also {DEBUG_ENV}=1)
"""


def _one_line(error: BaseException) -> str:
    """The error's message on one line; a long multi-line message is cut (--debug shows it whole)."""
    text = str(error)
    if isinstance(error, KeyError):  # str() of a KeyError is the repr of its argument
        text = text.strip("'\"").replace("\\n", "\n").replace("\\'", "'")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 2:
        return f"{lines[0]} [{len(lines) - 1} more lines: rerun with --debug]"
    return " ".join(lines) or type(error).__name__


def _fail(command: str, error: BaseException, code: int, debug: bool):
    if debug:
        raise error
    print(f"jssl {command}: error: {_one_line(error)}", file=sys.stderr)
    sys.exit(code)


def _debug_requested(args: list[str]) -> bool:
    return "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    debug = _debug_requested(argv[1:])
    args = [a for a in argv[1:] if a != "--debug"]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        sys.exit(0 if args else 2)
    if args[0] in ("--version", "-V", "version"):
        print(f"jssl {__version__}")
        return
    command, args = args[0], args[1:]
    if command not in (*COMMANDS, "configs"):
        close = difflib.get_close_matches(command, [*COMMANDS, "configs"], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        print(f"jssl: unknown command {command!r}; {hint}commands: train, eval, configs (jssl --help)", file=sys.stderr)
        sys.exit(2)
    try:
        if command == "configs":
            _print(_configs(args))
            return
        if any(a in HELP_FLAGS for a in args):
            _print(command_help(command, [a for a in args if a not in HELP_FLAGS]))
            return
        # Running the config file: only its ValueErrors are bad input; anything else is a bug in it.
        config, _, args = load_command_config(command, args)
    except (flags.Error, app.UsageError, ValueError) as e:
        _fail(command, e, 2, debug)
    try:
        config, workdir, rest = apply_overrides(command, config, args)
    except (flags.Error, ValueError, AttributeError, KeyError, TypeError) as e:
        # ml_collections reports a bad override value as any of these types.
        _fail(command, e, 2, debug)
    try:
        COMMANDS[command](config, workdir, rest)
    except app.UsageError as e:
        _fail(command, e, 2, debug)
    except (ValueError, FloatingPointError) as e:  # bad input (jssl's convention); the NaN-loss stop
        _fail(command, e, 1, debug)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"jssl {command}: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
