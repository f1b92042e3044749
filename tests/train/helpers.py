"""Small configs and batches shared by the trainer tests."""

from __future__ import annotations

import importlib.util
import os

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config(variant: str | None = "smoke", name: str = "simclr_mnist"):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def tiny_config(**overrides):
    """A config whose step compiles in seconds: a 1-block ResNet on 16 px images."""
    config = load_config("smoke")
    config.model.name = "resnet_mini"
    config.model.kwargs.width_multiplier = 0.5
    config.method.projection_hidden_dim = 32
    config.method.projection_dim = 16
    config.global_batch_size = 16
    for key, value in overrides.items():
        target = config
        *path, last = key.split(".")
        for p in path:
            target = target[p]
        target[last] = value
    return config


def random_batch(global_batch: int, *, size: int = 16, channels: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "view_0": rng.integers(0, 256, (global_batch, size, size, channels), dtype=np.uint8),
        "view_1": rng.integers(0, 256, (global_batch, size, size, channels), dtype=np.uint8),
        "label": rng.integers(0, 10, (global_batch,)).astype(np.int32),
    }
