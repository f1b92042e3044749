"""Every registered method, its configs, and the shrinking that makes its step compile in seconds."""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from jssl import data, methods, sharding
from tests.train.helpers import REPO, load_config

# The image methods; the text and audio methods have their own tests (tests/methods/test_*_methods.py).
METHOD_NAMES = sorted(n for n, cls in methods.METHODS.items() if cls.inputs == "images")
TINY_DIM = 16
TINY_QUEUE = 64  # a multiple of every test batch (8, 16, 32) and of MoCo v2's two pushed key batches
TINY_VIT = dict(embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0)
# ImageNet recipes with a ViT backbone: `configs/<name>.py`, beside each method's `<method>_imagenet.py`.
VIT_RECIPES = ["dino_vit_imagenet", "moco_v3_vit_imagenet"]
# Each method's large recipe beside its CPU one is `configs/<name>_imagenet.py` (the ResNet and
# ViT papers' recipes) unless listed here: the generative methods' papers train on CIFAR-10
# (DDPM) or only on small images (None: the MNIST recipe is the only one).
LARGE_RECIPE_EXCEPTIONS: dict[str, str | None] = {"dae": None, "vae": None, "ddpm": "ddpm_cifar10"}


def large_recipe(name: str) -> str | None:
    """The method's large (GPU) recipe, e.g. 'simclr_imagenet', or None if it has none."""
    return LARGE_RECIPE_EXCEPTIONS.get(name, f"{name}_imagenet")


IMAGENET_METHODS = [n for n in METHOD_NAMES if large_recipe(n) == f"{n}_imagenet"]


def config_path(name: str, kind: str = "mnist") -> str:
    return os.path.join(REPO, "configs", f"{name}_{kind}.py")


def tiny_overrides(config) -> dict[str, Any]:
    """Field -> value that shrink any method's config to a seconds-long compile.

    Widths are found by name (`*_dim`, prototype counts), depths by `*_depth`, head counts by
    `*_num_heads` and queues by `queue` in the name, so a new method's fields are shrunk without
    listing them here. ViT backbones stay ViTs (shrunk to one 16-wide block), others become a
    quarter-width `resnet_mini`; other backbones keep their smoke variant's size.
    """
    out: dict[str, Any] = {"eval.baselines": False, "eval.every_steps": 0}
    if config.model.name.startswith("vit"):
        # Keep the recipe's ViT (its patch size, position embeddings, pooling), one narrow block;
        # ViT configs list these kwargs, so command-line overrides reach them too.
        out.update({f"model.kwargs.{k}": v for k, v in TINY_VIT.items()})
    elif config.model.name.startswith("resnet"):
        out.update({"model.name": "resnet_mini", "model.kwargs.width_multiplier": 0.25})
    # Other backbones (the generative methods' U-Net and convolutional autoencoders) keep what
    # their config's `smoke` variant sets: it is already small.
    for key, value in config.method.items():
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        if key.endswith("_depth"):  # decoder blocks (MAE)
            out[f"method.{key}"] = 1
        elif key.endswith("_num_heads"):  # must divide TINY_DIM
            out[f"method.{key}"] = 2
        elif key.endswith("_dim") or key in ("num_prototypes",):
            out[f"method.{key}"] = TINY_DIM
        elif "queue" in key and key.endswith(("size", "length")) and value > 0:
            out[f"method.{key}"] = TINY_QUEUE
    return out


def apply(config, overrides: dict[str, Any]):
    for key, value in overrides.items():
        target = config
        *path, last = key.split(".")
        for p in path:
            target = target[p]
        target[last] = value
    return config


def tiny_config(name: str, **overrides):
    """The method's smoke config, shrunk, batch 16, plus `overrides` ('a.b': value)."""
    config = load_config("smoke", name=f"{name}_mnist")
    apply(config, tiny_overrides(config))
    config.global_batch_size = 16
    return apply(config, overrides)


def as_cli(overrides: dict[str, Any]) -> list[str]:
    return [f"--config.{k}={v}" for k, v in overrides.items()]


def view_batch(augmentations: list[str], global_batch: int, *, seed: int = 0, size: int = 28) -> dict[str, np.ndarray]:
    """A batch of the method's views (sizes from its augmentation strings) made from random images."""
    rng = np.random.default_rng(seed)
    transform = data.MultiViewTransform(augmentations)
    records = [
        transform.random_map(
            {"image": rng.integers(0, 256, (size, size, 1), dtype=np.uint8), "label": rng.integers(0, 10)}, rng
        )
        for _ in range(global_batch)
    ]
    return {k: np.stack([r[k] for r in records]) for k in records[0]}


def run_steps(config, mesh, num_steps: int, *, image_shape=(28, 28, 1), wrap_step=None):
    """`num_steps` train steps of `config` on `mesh` from a fresh state, on fixed view batches.

    Returns `(experiment, params before, state after the first step, metrics of every step)`,
    on the host: what the sharded-equality and compile-once tests compare.
    """
    from jssl.train import build_experiment  # the trainer, only for tests that step

    exp = build_experiment(config, image_shape=image_shape, mesh=mesh, wrap_step=wrap_step)
    state = exp.init_state()
    before = jax.device_get(state.params)
    metrics = []
    for step in range(num_steps):
        batch = view_batch(exp.view_augmentations, config.global_batch_size, seed=step)
        state, m = exp.train_step(state, sharding.host_batch_to_global(batch, mesh))
        metrics.append(jax.device_get(m))
        if step == 0:
            after_first = jax.device_get(state)
    return exp, before, after_first, metrics
