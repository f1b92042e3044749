"""Fréchet distance of a generative run's samples, in the features of another jssl run's encoder.

The Inception FID needs Inception-v3 weights, which this project never downloads, and Inception
features are a poor metric for 28 px digits anyway. Instead `eval.frechet_encoder` names the
workdir of a finished jssl SSL run on the same data (e.g. `configs/simclr_mnist.py`'s): its
latest checkpoint is restored with the config it saved, and its `represent` features of
`eval.frechet_samples` generated images are compared with those of as many held-out images.

Two numbers make it readable: the distance of the samples to the held-out images, and the
distance of that many *training* images to the held-out images (what a perfect generator would
score with this sample size, since the estimate is biased upward for finite sets). Both are
written to `results.json` with a label that says which encoder produced them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jssl import sharding
from jssl.checkpoint import Checkpointer
from jssl.evaluators.frechet import frechet_distance

log = logging.getLogger("jssl")


def load_frozen_encoder(
    workdir: str, *, image_shape: tuple[int, ...], mesh: jax.sharding.Mesh
) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """`(features(uint8 images [n, h, w, c]) -> [n, d], description)` of a finished run's encoder.

    The run's own config (its `config.json`) builds the network and normalizes the images, so
    the encoder sees pixels as it saw them in training. Raises a clear `ValueError` when the
    workdir holds no finished run.
    """
    # The trainer imports this module; its pieces are imported here to keep the import acyclic.
    from jssl.train.evaluate import load_run_config
    from jssl.train.trainer import build_experiment, map_in_chunks

    workdir = os.path.abspath(os.path.expanduser(workdir))
    checkpoints = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(checkpoints):
        raise ValueError(
            f"eval.frechet_encoder={workdir!r} holds no checkpoints/: name the workdir of a finished "
            "`jssl train` run on the same data (e.g. configs/simclr_mnist.py's)"
        )
    config = load_run_config(workdir)
    reader = Checkpointer(checkpoints, every_steps=0, max_to_keep=None, read_only=True)
    step = reader.latest_step()
    if step is None:
        reader.close()
        raise ValueError(f"eval.frechet_encoder={workdir!r}: no checkpoint in {checkpoints}")
    # Only `represent` is used: the run's batch size just has to fit this mesh.
    config.global_batch_size = sharding.batch_size_per_shard(mesh) * jax.process_count()
    exp = build_experiment(config, image_shape=image_shape, mesh=mesh)
    state = reader.restore_state(step, exp.abstract_state)
    reader.close()
    ways = sharding.batch_size_per_shard(mesh)

    def features(images: np.ndarray) -> np.ndarray:
        fn = lambda x: exp.represent(state.params, state.buffers, x, False)  # noqa: E731
        return map_in_chunks({"image": images}, fn, chunk=config.eval.batch_size, ways=ways, mesh=mesh)[0]

    description = (
        f"{config.method.name} / {config.model.name} at step {step} from {workdir}: a jssl SSL encoder, "
        "not Inception-v3, so the numbers are not comparable with published FIDs"
    )
    return features, description


def check_setup(exp: Any) -> None:
    """Fails fast (before training) when `eval.frechet_encoder` cannot work for this run."""
    c = exp.config
    if exp.generate is None:
        raise ValueError(
            f"eval.frechet_encoder is set but method {c.method.name!r} does not generate images; "
            "leave it empty (only generative methods such as vae and ddpm have samples to score)"
        )
    workdir = os.path.abspath(os.path.expanduser(c.eval.frechet_encoder))
    for name in ("checkpoints", "config.json"):
        if not os.path.exists(os.path.join(workdir, name)):
            raise ValueError(
                f"eval.frechet_encoder={c.eval.frechet_encoder!r} has no {name}: name the workdir of a finished "
                "`jssl train` run on the same data (e.g. configs/simclr_mnist.py's)"
            )
    if int(c.eval.frechet_samples) < 2:
        raise ValueError(f"eval.frechet_samples must be at least 2; got {c.eval.frechet_samples}")


def generate_images(exp: Any, state: Any, num: int, *, seed: int) -> np.ndarray:
    """`num` uint8 images from the method's `generate`, in chunks of `eval.batch_size`.

    Chunk i draws from `fold_in(key(seed), i)`: the same weights always give the same samples.
    """
    if exp.generate is None:
        raise ValueError(f"method {exp.config.method.name!r} does not generate images")
    key = jax.random.PRNGKey(seed)
    chunks = [
        np.asarray(jax.device_get(exp.generate(state.params, state.buffers, jax.random.fold_in(key, i))))
        for i in range(-(-num // exp.config.eval.batch_size))
    ]
    return np.concatenate(chunks)[:num]


def frechet_evaluation(exp: Any, state: Any, eval_data: Any) -> dict[str, Any]:
    """`{'frechet_distance': ..., 'frechet_reference_train_vs_heldout': ..., 'frechet_setup': ...}`.

    Uses `min(eval.frechet_samples, held-out size, training size)` images per set.
    """
    c = exp.config
    if isinstance(eval_data, dict):  # `load_eval_data`'s arrays
        test, train = eval_data["test_images"], eval_data["train_images"]
    else:  # an EvalSet of images
        test, train = eval_data.test["image"], eval_data.train["image"]
    num = min(int(c.eval.frechet_samples), len(test), len(train))
    if num < 2:
        raise ValueError(f"eval.frechet_samples={c.eval.frechet_samples} leaves {num} images: need at least 2")
    features, description = load_frozen_encoder(c.eval.frechet_encoder, image_shape=test.shape[1:], mesh=exp.mesh)
    samples = generate_images(exp, state, num, seed=c.seed + 4)
    if samples.shape[1:] != test.shape[1:]:
        raise ValueError(f"the method generates {samples.shape[1:]} images but held-out images are {test.shape[1:]}")
    heldout_features = features(test[:num])
    distance = frechet_distance(features(samples), heldout_features)
    reference = frechet_distance(features(train[:num]), heldout_features)
    log.info("Fréchet distance (%s): samples %.4g, training images %.4g", description, distance, reference)
    return {
        "frechet_distance": distance,
        "frechet_reference_train_vs_heldout": reference,
        "frechet_setup": f"{num} generated vs {num} held-out images; features of {description}",
    }
