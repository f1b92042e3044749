"""Every method's ImageNet recipe (and the ViT ImageNet recipes) runs two steps end to end.

On a tiny ImageNet-structured TFDS data set built locally, with the model shrunk
(`tiny_overrides`): the recipe's data, augmentation and optimizer paths all run.
"""

from __future__ import annotations

import os

import pytest

from jssl.train import train
from tests.methods.helpers import (
    IMAGENET_METHODS,
    VIT_RECIPES,
    apply,
    tiny_overrides,
)
from tests.train.helpers import load_config


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize("name", IMAGENET_METHODS)
def test_imagenet_recipe_runs_two_steps_on_tiny_imagenet(name, tiny_imagenet, tmp_path):
    _run_imagenet_recipe(f"{name}_imagenet", tiny_imagenet, tmp_path)


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize("recipe", VIT_RECIPES)
def test_vit_imagenet_recipe_runs_two_steps_on_tiny_imagenet(recipe, tiny_imagenet, tmp_path):
    assert load_config(None, name=recipe).model.name.startswith("vit_")
    _run_imagenet_recipe(recipe, tiny_imagenet, tmp_path)


def _run_imagenet_recipe(recipe: str, tiny_imagenet, tmp_path) -> None:
    tfds_name, data_dir = tiny_imagenet
    config = load_config(None, name=recipe)
    apply(config, tiny_overrides(config))
    apply(
        config,
        {
            "data.tfds_name": tfds_name,
            "data.data_dir": data_dir,
            "total_steps": 2,
            "global_batch_size": 8,
            "log_every_steps": 1,
            "checkpoint.every_steps": 1,
            "eval.linear_probe_steps": 5,
            "eval.batch_size": 8,
            "data.max_eval_examples": 16,
            "progress_bar": False,
            # bf16 convolutions are slow on CPU and the recipe's dtype is not what is tested here;
            # 16 data worker processes would cost more than the two steps.
            "model.dtype": "float32",
            "data.num_workers": 0,
        },
    )
    results = train(config, str(tmp_path / "run"))
    assert results["step"] == 2
    assert results["eval"]["num_train"] == 16 and results["eval"]["num_test"] == 16
    assert 0.0 <= results["ssl"]["knn"] <= 1.0
    assert os.path.isdir(tmp_path / "run" / "checkpoints" / "2")
