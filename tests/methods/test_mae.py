"""MAE: its masking, its masked-only loss (against an independent numpy formulation), its option
checks, its pictures, and the trainer's picture writer (PNG + TensorBoard image) on a smoke run.

The generic checks every method passes (sharded step equality, one trace, SIGKILL resume, the
ImageNet recipe on tiny TFDS) live in `test_all_methods.py`, `test_all_recipes.py` and `test_all_resume.py`.
"""

from __future__ import annotations

import glob
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from jssl import losses, sharding
from jssl.metrics import picture_grid
from jssl.methods import MAE, build_method
from jssl.methods.mae import num_visible, random_masking
from jssl.train import build_experiment, train
from jssl.train.trainer import picture_batch
from tests.methods.helpers import tiny_config

IMAGE_SHAPE = (28, 28, 1)


def _method(**overrides) -> MAE:
    config = tiny_config("mae", **overrides)
    return build_method(config, in_channels=1, dtype=jnp.float32, rngs=nnx.Rngs(0))


def _images(n: int = 4, seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(seed), (n, *IMAGE_SHAPE))


# ==================================================================================================
# Masking
# ==================================================================================================


def test_masking_keeps_the_requested_tokens_per_example_and_differs_between_examples():
    b, n = 16, 49
    keep = num_visible(num_patches=n, mask_ratio=0.75)
    assert keep == 12  # int(49 * 0.25), the reference code's rounding
    ids_keep, mask, ids_restore = random_masking(jax.random.PRNGKey(3), batch=b, num_patches=n, keep=keep)
    ids_keep, mask, ids_restore = map(np.asarray, (ids_keep, mask, ids_restore))
    assert ids_keep.shape == (b, keep) and mask.shape == (b, n)
    np.testing.assert_array_equal(mask.sum(1), n - keep)  # exactly n - keep removed, per example
    for i in range(b):
        assert len(set(ids_keep[i])) == keep  # no token kept twice
        np.testing.assert_array_equal(mask[i, ids_keep[i]], 0.0)  # the kept ones are the visible ones
        # ids_restore un-shuffles [kept, removed] back to patch order.
        shuffled = np.concatenate([ids_keep[i], np.flatnonzero(mask[i])[np.argsort(ids_restore[i][mask[i] > 0])]])
        np.testing.assert_array_equal(shuffled[ids_restore[i]], np.arange(n))
    assert len({tuple(np.flatnonzero(m)) for m in mask}) == b  # a different mask for each example
    # A pure function of the key (so of seed and step).
    again = random_masking(jax.random.PRNGKey(3), batch=b, num_patches=n, keep=keep)[1]
    np.testing.assert_array_equal(np.asarray(again), mask)


def test_method_masks_and_losses_are_deterministic_given_the_key():
    method = _method()
    x = _images()
    a = method([x], step=jnp.int32(0), rngs=nnx.Rngs(5))
    b = method([x], step=jnp.int32(0), rngs=nnx.Rngs(5))
    c = method([x], step=jnp.int32(0), rngs=nnx.Rngs(6))
    assert float(a.loss) == float(b.loss) and float(a.loss) != float(c.loss)
    assert float(a.metrics["mask_ratio"]) == pytest.approx(1 - method.keep / method.num_patches)
    assert a.features.shape == (4, method.feature_dim)


# ==================================================================================================
# Loss: masked patches only
# ==================================================================================================


def _numpy_mae_loss(pred: np.ndarray, images: np.ndarray, mask: np.ndarray, p: int, norm_pix: bool) -> float:
    """The loss written out patch by patch, without `jssl.losses`."""
    b, h, w, c = images.shape
    total, count = 0.0, 0
    for i in range(b):
        for k in range(n := (h // p) * (w // p)):
            if not mask[i, k]:
                continue
            r, col = divmod(k, w // p)
            t = images[i, r * p : (r + 1) * p, col * p : (col + 1) * p, :].reshape(-1).astype(np.float64)
            if norm_pix:
                t = (t - t.mean()) / np.sqrt(t.var(ddof=1) + 1e-6)
            total += np.mean((pred[i, k].astype(np.float64) - t) ** 2)
            count += 1
    assert n == pred.shape[1]
    return total / count


@pytest.mark.parametrize("norm_pix", [True, False])
def test_loss_counts_masked_patches_only_and_matches_numpy(norm_pix):
    method = _method(**{"method.norm_pix_loss": norm_pix})
    x = _images()
    key = nnx.Rngs(7).default()  # what the method draws from nnx.Rngs(7)
    encoded, mask, ids_restore = method.encode_visible(x, key)
    pred = method.decode(encoded, ids_restore)
    out = method([x], step=jnp.int32(0), rngs=nnx.Rngs(7))
    p = method.patch_size
    expected = _numpy_mae_loss(np.asarray(pred), np.asarray(x), np.asarray(mask) > 0, p, norm_pix)
    np.testing.assert_allclose(float(out.loss), expected, rtol=1e-5)

    # Any change of the prediction on visible patches leaves the loss unchanged...
    target = losses.patchify(x, p)
    visible = (1.0 - mask)[..., None]
    noise = 100.0 * jax.random.normal(jax.random.PRNGKey(1), pred.shape)
    base = losses.mae(pred, target, mask, norm_pix=norm_pix)[0]
    moved = losses.mae(pred + noise * visible, target, mask, norm_pix=norm_pix)[0]
    assert float(moved) == float(base)
    # ... and on one masked patch, changes it.
    i, k = np.argwhere(np.asarray(mask) > 0)[0]
    assert float(losses.mae(pred.at[i, k].add(1.0), target, mask, norm_pix=norm_pix)[0]) != float(base)
    # So no gradient reaches the predictions of visible patches.
    grad = jax.grad(lambda q: losses.mae(q, target, mask, norm_pix=norm_pix)[0])(pred)
    assert float(jnp.max(jnp.abs(grad * visible))) == 0.0
    assert float(jnp.max(jnp.abs(grad))) > 0.0


def test_represent_sees_the_full_image_and_ignores_masking():
    method = _method()
    x = _images()
    features = method.represent(x)
    np.testing.assert_allclose(np.asarray(features), np.asarray(method.encoder(x)))
    assert features.shape == (4, method.feature_dim)


# ==================================================================================================
# Option checks
# ==================================================================================================


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"method.mask_ratio": 0.0}, "mask_ratio must be in"),
        ({"method.mask_ratio": 1.0}, "mask_ratio must be in"),
        ({"method.mask_ratio": 0.99}, "no visible token"),
        ({"method.decoder_embed_dim": 18, "method.decoder_num_heads": 4}, "not divisible by"),
        ({"method.decoder_embed_dim": 18, "method.decoder_num_heads": 2}, "divisible by 4"),
        ({"method.decoder_pos_embed": "rope"}, "unknown method.decoder_pos_embed"),
        ({"method.decoder_depth": 0}, "must be >= 1"),
        ({"model.kwargs.image_size": 30}, "not divisible by the patch size"),
        ({"model.name": "resnet_mini", "model.kwargs": {"width_multiplier": 0.25}}, "needs a ViT backbone"),
    ],
)
def test_bad_options_raise_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        _method(**overrides)


def test_images_of_another_size_than_the_model_are_refused():
    method = _method()
    side = 28 + method.patch_size  # divisible by the patch, but another grid
    with pytest.raises(ValueError, match="was built for 28 px"):
        method([jnp.zeros((2, side, side, 1))], step=jnp.int32(0), rngs=nnx.Rngs(0))


# ==================================================================================================
# Pictures
# ==================================================================================================


def test_pictures_rows_are_original_masked_and_reconstruction_in_unit_range():
    method = _method()
    pixels = jax.random.uniform(jax.random.PRNGKey(2), (5, *IMAGE_SHAPE))
    mean, std = 0.1307, 0.3081
    out = method.pictures((pixels - mean) / std, rngs=nnx.Rngs(0), to_pixels=lambda y: y * std + mean)
    grid = np.asarray(out["reconstruction"])
    assert grid.shape == (3, 5, *IMAGE_SHAPE)
    assert grid.min() >= 0.0 and grid.max() <= 1.0
    np.testing.assert_allclose(grid[0], np.asarray(pixels), atol=1e-5)  # the original
    # The same mask as the loss would draw from this key; visible patches are pasted back.
    _, mask, _ = method.encode_visible((pixels - mean) / std, nnx.Rngs(0).default())
    visible = np.asarray(mask)[..., None] == 0
    p = method.patch_size
    patches = [np.asarray(losses.patchify(jnp.asarray(grid[r]), p)) for r in range(3)]
    original = np.asarray(losses.patchify(pixels, p))
    np.testing.assert_allclose(np.where(visible, patches[1], 0), np.where(visible, original, 0), atol=1e-5)
    np.testing.assert_allclose(np.where(visible, patches[2], 0), np.where(visible, original, 0), atol=1e-5)
    assert np.all(patches[1][~np.broadcast_to(visible, patches[1].shape)] == 0.5)  # masked: gray


def test_picture_grid_tiles_rows_and_columns():
    grid = picture_grid(np.ones((3, 5, 28, 28, 1)) * 0.5, pad=2, min_side=0)
    assert grid.shape == (3 * 30 + 2, 5 * 30 + 2, 1) and grid.dtype == np.uint8
    assert np.all(grid[2:30, 2:30] == 128) and np.all(grid[:2] == 255)  # pictures, white padding
    assert picture_grid(np.zeros((4, 8, 8, 3)), min_side=0).shape == (12, 42, 3)  # [n, h, w, c]: one row
    # Small pictures are enlarged by an integer factor: 28 px -> 84 px for min_side=64.
    assert picture_grid(np.zeros((2, 28, 28, 1)), pad=2).shape == (88, 2 * 86 + 2, 1)
    with pytest.raises(ValueError, match="pictures must be"):
        picture_grid(np.zeros((8, 8)))


def test_methods_without_pictures_get_no_picture_batch():
    config = tiny_config("simclr")
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    exp = build_experiment(config, image_shape=IMAGE_SHAPE, mesh=mesh)
    state = jax.eval_shape(exp.init_state)  # tracing only: nothing compiles or runs
    images, labels = np.zeros((8, *IMAGE_SHAPE), np.uint8), np.zeros(8, np.int32)
    eval_data = {"train_images": images, "train_labels": labels, "test_images": images, "test_labels": labels}
    assert picture_batch(exp, state, eval_data) is None


def _tensorboard_image_tags(directory: str) -> set[str]:
    """Image summary tags in TensorBoard event files, read as TFRecords (no TensorFlow needed)."""
    from tensorboardX.proto import event_pb2

    tags = set()
    for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        with open(path, "rb") as f:
            data = f.read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            tags.update(v.tag for v in event.summary.value if v.HasField("image"))
    return tags


def test_smoke_run_writes_reconstruction_png_and_tensorboard_image(tmp_path):
    config = tiny_config("mae", **{"total_steps": 2, "checkpoint.every_steps": 2, "eval.num_pictures": 6})
    config.data.max_eval_examples = 64
    workdir = str(tmp_path / "run")
    train(config, workdir)
    pictures = os.path.join(workdir, "pictures")
    assert sorted(os.listdir(pictures)) == ["reconstruction.png", "reconstruction_step2.png"]
    image = np.asarray(Image.open(os.path.join(pictures, "reconstruction.png")))
    # 3 rows x 6 columns of 28 px digits shown at 84 px, grayscale.
    assert image.shape == (3 * 86 + 2, 6 * 86 + 2) and image.dtype == np.uint8
    assert "pictures/reconstruction" in _tensorboard_image_tags(os.path.join(workdir, "tensorboard"))
