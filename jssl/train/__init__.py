"""The trainer: `train(config, workdir)`, `evaluate_run(config, workdir)` (`jssl eval`) and reusable pieces."""

from jssl.train.evaluate import evaluate_run
from jssl.train.trainer import Experiment, NonFiniteLossError, build_experiment, train

__all__ = ["Experiment", "NonFiniteLossError", "build_experiment", "evaluate_run", "train"]
