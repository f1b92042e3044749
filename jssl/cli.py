"""The `jssl` command: `jssl train --config configs/<name>.py[:variant] --workdir DIR [--config.a.b=v]`
and `jssl eval --workdir DIR [--config ...] [--config.a.b=v]`.

Configs are ml_collections files (`get_config(variant)`); every field can be overridden on
the command line, and a misspelled field is an error (the config is locked). `jssl eval` reads
the config the run saved (`DIR/config.json`) unless `--config` names a file. Bad input (unknown
names, unreadable data, an unwritable workdir, a workdir without checkpoints) ends with one
clear line, exit code 1 or 2.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from absl import app, flags
from ml_collections import config_flags

# The default config of `jssl train`: the embedded-MNIST SimCLR run, next to the package in a
# source checkout (`pip install -e .`).
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "simclr_mnist.py")


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


def _parse_eval(args: list[str]):
    """Like `_parse`, but without `--config` the config is the run's own `<workdir>/config.json`."""
    if any(re.match(r"^--?config(=|$)", a) for a in args):
        return _parse("eval", args)
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
        raise ValueError(f"{path} does not exist: pass the run's config with --config=<file>[:variant]")
    flag_values = flags.FlagValues()
    config_flag = config_flags.DEFINE_config_dict(
        "config", load_config(path), "The run's config.", flag_values=flag_values, lock_config=True
    )
    flags.DEFINE_string("workdir", None, "The run's directory.", flag_values=flag_values)
    rest = flag_values(["jssl eval", *args])
    return config_flag.value, workdir.value, rest[1:]


def _parse(command: str, args: list[str]):
    """Parses `--config`, its `--config.*` overrides and `--workdir` into (config, workdir, rest)."""
    flag_values = flags.FlagValues()
    config_flag = config_flags.DEFINE_config_file(
        "config", DEFAULT_CONFIG, "Config file, optionally with ':variant'.", flag_values=flag_values, lock_config=True
    )
    workdir = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, results.", flag_values=flag_values)
    rest = flag_values([f"jssl {command}", *args])
    config = config_flag.value
    config.keys()  # config files load lazily: surface a missing/broken file now
    return config, workdir.value, rest[1:]


COMMANDS = {"train": _train, "eval": _eval}
PARSERS = {"train": lambda args: _parse("train", args), "eval": _parse_eval}

USAGE = """usage: jssl <command> [flags]

commands:
  train   pretrain (and evaluate) a model: jssl train --config configs/simclr_mnist.py --workdir runs/x
          (no --config: the default embedded-MNIST SimCLR run; --config.<field>=<value> overrides)
  eval    kNN, linear probe and fine-tuning of a run's latest checkpoint: jssl eval --workdir runs/x
          (the run's config.json; --config.finetune.<field>=<value> overrides evaluation fields)
"""


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(USAGE)
        sys.exit(0 if len(argv) >= 2 else 2)
    command = argv[1]
    if command not in COMMANDS:
        print(f"jssl: unknown command {command!r}; known commands: {sorted(COMMANDS)}\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    try:
        # config_flags reads overrides from sys.argv when the flag is defined.
        sys.argv = [f"jssl {command}", *argv[2:]]
        config, workdir, rest = PARSERS[command](argv[2:])
    except (flags.Error, AttributeError, KeyError, ValueError, TypeError, OSError) as e:
        message = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
        print(f"jssl {command}: error: {message}", file=sys.stderr)
        sys.exit(2)
    try:
        COMMANDS[command](config, workdir, rest)
    except app.UsageError as e:
        print(f"jssl {command}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except ValueError as e:  # jssl's convention: bad input raises ValueError with a clear message
        print(f"jssl {command}: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
