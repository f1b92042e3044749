"""Evaluation of representations: kNN, offline linear probe, fine-tuning's pieces.

The online probe lives in the trainer's step; the fine-tuning loop (`jssl eval`) lives in
`jssl.train.finetune`, which uses the trainer's machinery and the pieces in `finetune`.
"""

from jssl.evaluators.knn import knn_accuracy
from jssl.evaluators.linear import linear_probe_accuracy

EVALUATORS = {"knn": knn_accuracy, "linear_probe": linear_probe_accuracy}

__all__ = ["EVALUATORS", "knn_accuracy", "linear_probe_accuracy"]
