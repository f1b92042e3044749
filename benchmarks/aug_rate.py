"""Two-view SimCLR augmentation rate from JPEG bytes, side by side: jssl's host path, jssl's
device path (`jssl.data.device_augment`, jit'd; on whatever device jax has, the CPU here),
lightly's `SimCLRTransform` and torchvision's v2 transforms.

Every implementation gets the same synthetic JPEGs (`data_bench.make_jpegs`) and does the
whole job per source image: decode, then two augmented views at `resolution`. Each runs in
its own worker process pinned to `threads` cores (`benchmarks.worker.pin_cores`), so rates
per core compare like with like. Rates count source images per second (two views each).

What each side does (the work a training input pipeline does per image):
  jssl-host       `MultiViewTransform` on the encoded record, as the Grain pipeline runs it: PIL
                  decode (at a reduced JPEG size where the crops allow; never at 224 px
                  sources), PIL crop from the decoded image, OpenCV colour ops and blur,
                  uint8 views.
  jssl-device     PIL decode of a batch on the host; both views drawn by one jit'd function of
                  (uint8 batch, per-example keys) on the device, uint8 views (normalisation
                  happens in the train step, as in training).
  lightly         PIL decode; `SimCLRTransform(input_size)` (torchvision v1 PIL ops, then
                  ToTensor + Normalize, as lightly ships it).
  torchvision-v2  `torchvision.io.decode_jpeg` (libjpeg-turbo) to a uint8 tensor; the SimCLR
                  recipe in `transforms.v2` on tensors, uint8 views.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks.data_bench import decode_jpeg, make_jpegs
from benchmarks.suites import SIMCLR_AUGMENT

IMPLS = ("jssl-host", "jssl-device", "lightly", "torchvision-v2")


def _timed(per_image, jpegs: list[bytes]) -> float:
    per_image(jpegs[0])  # warm-up: imports, lazy tables
    t0 = time.perf_counter()
    for j in jpegs:
        per_image(j)
    return time.perf_counter() - t0


def jssl_host(jpegs: list[bytes], resolution: int, seed: int, **_) -> dict[str, Any]:
    from jssl.data import MultiViewTransform
    from jssl.data.decode import encoded_image

    transform = MultiViewTransform([SIMCLR_AUGMENT.format(res=resolution)] * 2)
    rng = np.random.default_rng(seed)

    def per_image(data: bytes):
        out = transform.random_map({"image": encoded_image(data), "label": 0}, rng)
        assert out["view_1"].shape == (resolution, resolution, 3)

    return {"decoder": "PIL", "elapsed_s": _timed(per_image, jpegs)}


def jssl_device(jpegs: list[bytes], resolution: int, seed: int, batch: int, **_) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    from jssl.data.device_augment import example_keys, parse_device_augment

    augment = parse_device_augment(SIMCLR_AUGMENT.format(res=resolution))

    @jax.jit
    def two_views(images: jax.Array, step: jax.Array):
        index = jnp.arange(images.shape[0])
        return tuple(augment(images, example_keys(seed=seed, step=step, example_index=index, view=v)) for v in range(2))

    if len(jpegs) % batch:
        raise ValueError(f"images ({len(jpegs)}) must be a multiple of the batch ({batch})")

    def per_batch(step: int, chunk: list[bytes]):
        images = np.stack([decode_jpeg(j) for j in chunk])
        views = two_views(jax.device_put(images), jnp.uint32(step))
        jax.block_until_ready(views)
        assert views[1].shape == (len(chunk), resolution, resolution, 3) and views[1].dtype == jnp.uint8

    chunks = [jpegs[i:i + batch] for i in range(0, len(jpegs), batch)]
    t0 = time.perf_counter()
    per_batch(0, chunks[0])
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for step, chunk in enumerate(chunks, start=1):
        per_batch(step, chunk)
    device = jax.devices()[0]
    return {"decoder": "PIL", "elapsed_s": time.perf_counter() - t0, "compile_s": compile_s, "batch": batch,
            "device": f"{device.platform}:{device.device_kind}"}


def lightly_simclr(jpegs: list[bytes], resolution: int, seed: int, **_) -> dict[str, Any]:
    import torch
    from lightly.transforms import SimCLRTransform
    from PIL import Image

    torch.manual_seed(seed)
    transform = SimCLRTransform(input_size=resolution)

    def per_image(data: bytes):
        import io

        with Image.open(io.BytesIO(data)) as im:
            views = transform(im.convert("RGB"))
        assert len(views) == 2 and tuple(views[0].shape) == (3, resolution, resolution)

    return {"decoder": "PIL", "elapsed_s": _timed(per_image, jpegs), "torch_threads": torch.get_num_threads()}


def torchvision_v2(jpegs: list[bytes], resolution: int, seed: int, **_) -> dict[str, Any]:
    import torch
    from torchvision.io import decode_jpeg as tv_decode
    from torchvision.transforms import v2

    torch.manual_seed(seed)
    # jssl's SIMCLR_AUGMENT parameters (color_jitter defaults, blur kernel ~10% of the side, odd).
    kernel = int(0.1 * resolution) // 2 * 2 + 1
    transform = v2.Compose([
        v2.RandomResizedCrop(resolution, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
    ])

    def per_image(data: bytes):
        image = tv_decode(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        views = (transform(image), transform(image))
        assert tuple(views[1].shape) == (3, resolution, resolution) and views[1].dtype == torch.uint8

    return {"decoder": "torchvision.io (libjpeg-turbo)", "elapsed_s": _timed(per_image, jpegs),
            "torch_threads": torch.get_num_threads()}


_RUN = {"jssl-host": jssl_host, "jssl-device": jssl_device, "lightly": lightly_simclr, "torchvision-v2": torchvision_v2}


def run_aug_rate(impl: str, *, resolution: int, images: int, batch: int, threads: int, seed: int = 0) -> dict[str, Any]:
    """One implementation's rate on `images` JPEGs; the worker has pinned it to `threads` cores."""
    if impl not in _RUN:
        raise ValueError(f"unknown augmentation implementation {impl!r}; known: {IMPLS}")
    jpegs = make_jpegs(images, resolution, seed)
    res = _RUN[impl](jpegs, resolution=resolution, seed=seed, batch=batch)
    rate = images / res["elapsed_s"]
    return {"kind": "aug-rate", "impl": impl, "resolution": resolution, "images": images, "threads": threads,
            **res, "images_per_s": rate, "images_per_s_per_core": rate / max(threads, 1)}
