"""The trainer: `train(config, workdir)` and the pieces tests and benchmarks reuse."""

from jssl.train.trainer import Experiment, NonFiniteLossError, build_experiment, train

__all__ = ["Experiment", "NonFiniteLossError", "build_experiment", "train"]
