"""Benchmark entries built from a method's ImageNet recipe (the `gpu-methods` suite)."""

from __future__ import annotations

import os

import pytest

from benchmarks.step import count_flops, entry_config, view_shapes
from benchmarks.suites import RECIPE_METHODS, StepEntry, get_suite
from jssl.train.trainer import view_augmentations
from tests.train.helpers import REPO


def test_gpu_methods_suite_has_one_entry_per_method():
    names = [e.method for e in get_suite("gpu-methods").steps]
    assert names == list(RECIPE_METHODS)


@pytest.mark.parametrize("method", RECIPE_METHODS)
def test_recipe_entry_views_take_the_recipe_crop_sizes(method):
    if not os.path.exists(os.path.join(REPO, "configs", f"{method}_imagenet.py")):
        pytest.fail(f"configs/{method}_imagenet.py is missing")
    entry = StepEntry(name="x", method=method, recipe=f"{method}_imagenet", model="resnet50", resolution=256, batch=4)
    config = entry_config(entry)
    assert config.model.name == "resnet50" and config.global_batch_size == 4
    shapes = view_shapes(entry, view_augmentations(config))
    assert shapes[0] == (224, 224, 3) and all(s[-1] == 3 for s in shapes)
    assert len(shapes) == len(view_augmentations(config))


def test_recipe_entry_flops_come_from_xla():
    entry = StepEntry(name="x", recipe="simclr_imagenet", model="resnet_mini", resolution=64, batch=8)
    counts = count_flops(entry)
    assert counts["xla_flops"] > 0
