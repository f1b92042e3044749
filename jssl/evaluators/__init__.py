"""Evaluation of representations: kNN, offline linear probe (the online probe lives in the trainer's step)."""

from jssl.evaluators.knn import knn_accuracy
from jssl.evaluators.linear import linear_probe_accuracy

EVALUATORS = {"knn": knn_accuracy, "linear_probe": linear_probe_accuracy}

__all__ = ["EVALUATORS", "knn_accuracy", "linear_probe_accuracy"]
