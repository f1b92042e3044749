"""On-device twins of the host augmentations in :mod:`jssl.data.augment`, batched and jit-able.

Every random host op ``<op>`` is split, on both sides, into

* ``sample_<op>(key, *, ...) -> params`` -- one example's random parameters
  (``jax.random``; batch it with ``jax.vmap`` over per-example keys), and
* ``apply_<op>(images [B, H, W, C], params, *, ...) -> images`` -- the op for
  given parameters, whole batch at once (``vmap`` / broadcasting, never a
  Python loop over examples).

The parameter records (:class:`~jssl.data.augment.CropBox`,
:class:`~jssl.data.augment.JitterParams`, :class:`~jssl.data.augment.BlurParams`,
or a bool for the gated ops) are the host's, with a leading batch axis, so a
host draw can be replayed on device and vice versa; the tests use that to check
that each device apply reproduces the host apply for the same parameters.

Dtypes: ``apply_*`` takes ``uint8`` or float images. For ``uint8`` input the
result is ``uint8``, rounded after each op exactly where the host rounds (so a
chain of device ops tracks the host chain); for float input the result is
``float32`` in ``[0, 255]`` without the final rounding, except for the colour
jitter and grayscale, which are integer ops (:mod:`jssl.data.colour`) and round
whatever the input dtype. The composed
:func:`parse_device_augment` function maps ``uint8 [B, H, W, C]`` to
``uint8 [B, h, w, C]``; normalization stays with the caller.

Host and device draw from different generators, so the same seed does not give
the same view on both sides; the sampled parameters have the same
distribution (tested). On device, views are a pure function of
:func:`example_keys` (seed, step, global example index, view), whatever the
mesh and after a resume.
"""

from __future__ import annotations

import ast
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jssl.data import augment as host
from jssl.data import colour
from jssl.data import fixed_point_blur as FPB
from jssl.data.augment import BlurParams, CropBox, JitterParams

__all__ = [
    "DeviceAugment",
    "apply_center_crop",
    "apply_color_jitter",
    "apply_gaussian_blur",
    "apply_grayscale",
    "apply_hflip",
    "apply_random_resized_crop",
    "apply_resize",
    "apply_solarize",
    "example_keys",
    "parse_device_augment",
    "sample_color_jitter",
    "sample_gaussian_blur",
    "sample_grayscale",
    "sample_hflip",
    "sample_random_resized_crop",
    "sample_solarize",
]

#: ``augment(images uint8 [B, H, W, C], keys [B]) -> uint8 [B, h, w, C]``.
DeviceAugment = Callable[[jax.Array, jax.Array], jax.Array]

# Resize weights are contracted with dense matmuls; on GPU/TPU a float32 dot
# defaults to TF32/bf16 passes, which would cost several uint8 levels.
_HIGHEST = jax.lax.Precision.HIGHEST
_PIL_ONE = float(1 << 22)  # PIL's PRECISION_BITS = 32 - 8 - 2


def _check_batch(images: jax.Array) -> jax.Array:
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C]; got shape {images.shape}")
    return images


def _as_float(images: jax.Array) -> jax.Array:
    return _check_batch(images).astype(jnp.float32)


def _rint_u8(x: jax.Array) -> jax.Array:
    # The host's _to_uint8: np.rint rounds half to even, as jnp.round does.
    return jnp.clip(jnp.round(x), 0, 255)


def _pil_round_u8(x: jax.Array) -> jax.Array:
    # PIL's 8-bit resample / filter output rounds half up.
    return jnp.clip(jnp.floor(x + 0.5), 0, 255)


def _finish(x: jax.Array, like: jax.Array, rounding: Callable[[jax.Array], jax.Array] = _rint_u8) -> jax.Array:
    """uint8 in -> rounded uint8 out (where the host rounds); float in -> float32 in [0, 255]."""
    if like.dtype == jnp.uint8:
        return rounding(x).astype(jnp.uint8)
    return jnp.clip(x, 0, 255)


def _out_dtype(images: jax.Array) -> Any:
    return jnp.uint8 if images.dtype == jnp.uint8 else jnp.float32


def _batch_bool(flags: jax.Array) -> jax.Array:
    return jnp.asarray(flags, bool)[:, None, None, None]


# ----------------------------------------------------------------------------- geometry


def sample_random_resized_crop(
    key: jax.Array,
    *,
    height: int,
    width: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> CropBox:
    """One example's crop window, distributed as :func:`jssl.data.augment.sample_random_resized_crop`.

    The host's rejection loop becomes ``attempts`` candidates drawn at once;
    the first valid one wins, else the same central fallback (static, since the
    image size is).
    """
    u = jax.random.uniform(key, (attempts, 4))
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    target = height * width * (scale[0] + (scale[1] - scale[0]) * u[:, 0])
    aspect = jnp.exp(log_r[0] + (log_r[1] - log_r[0]) * u[:, 1])
    # jnp.round rounds half to even, like the host's Python round().
    cw = jnp.round(jnp.sqrt(target * aspect)).astype(jnp.int32)
    ch = jnp.round(jnp.sqrt(target / aspect)).astype(jnp.int32)
    ok = (cw > 0) & (cw <= width) & (ch > 0) & (ch <= height)
    first = jnp.argmax(ok)
    cw, ch = cw[first], ch[first]
    top = jnp.floor(u[first, 2] * (height - ch + 1)).astype(jnp.int32)
    left = jnp.floor(u[first, 3] * (width - cw + 1)).astype(jnp.int32)
    fb = host.sample_random_resized_crop(
        np.random.default_rng(0), height=height, width=width, scale=scale, ratio=ratio, attempts=0
    )
    found = ok[first]
    pick = lambda a, b: jnp.where(found, a, jnp.int32(b))  # noqa: E731
    return CropBox(pick(top, fb.top), pick(left, fb.left), pick(ch, fb.height), pick(cw, fb.width))


def _pil_weights(start: jax.Array, length: jax.Array, in_size: int, out_size: int) -> jax.Array:
    """``[out_size, in_size]`` bilinear weights in PIL's convention for window ``[start, start + length)``.

    As PIL's ``resize(..., BILINEAR, box=...)``: output pixel ``o`` is centred at
    ``start + (o + 0.5) * scale`` and, when shrinking, the triangle filter is
    widened by ``scale`` (antialiasing); taps outside the image are dropped and
    the rest renormalized.
    """
    start = jnp.asarray(start, jnp.float32)
    scale = jnp.asarray(length, jnp.float32) / out_size
    support = jnp.maximum(scale, 1.0)
    center = start + (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * scale
    lo = jnp.maximum(jnp.floor(center - support + 0.5), 0.0)[:, None]
    hi = jnp.minimum(jnp.floor(center + support + 0.5), in_size)[:, None]
    x = jnp.arange(in_size, dtype=jnp.float32)[None, :]
    w = jnp.maximum(0.0, 1.0 - jnp.abs((x - center[:, None] + 0.5) / support))
    w = jnp.where((x >= lo) & (x < hi), w, 0.0)
    total = jnp.sum(w, axis=1, keepdims=True)
    w = w / jnp.where(total == 0, 1.0, total)
    # PIL's 8-bit path uses weights in 22-bit fixed point; quantizing alike
    # removes most of the remaining off-by-one pixels.
    return jnp.round(w * _PIL_ONE) / _PIL_ONE


def apply_random_resized_crop(images: jax.Array, boxes: CropBox, *, size: host.Size) -> jax.Array:
    """Crops each example's ``boxes`` window and resizes it to ``size``: ONE interpolation per example.

    Separable, like PIL: a horizontal pass then a vertical pass, each a dense
    weight matrix (static shapes, so it jits once for any crop). For uint8 input
    the horizontal result is rounded to uint8 in between, as PIL stores it.
    """
    images = jnp.asarray(images)
    out_h, out_w = host._size_hw(size)
    x = _as_float(images)
    in_h, in_w = x.shape[1:3]

    def one(image: jax.Array, box: CropBox) -> jax.Array:
        wx = _pil_weights(box.left, box.width, in_w, out_w)
        wy = _pil_weights(box.top, box.height, in_h, out_h)
        rows = jnp.einsum("ow,hwc->hoc", wx, image, precision=_HIGHEST)
        if images.dtype == jnp.uint8:
            rows = _pil_round_u8(rows)
        return jnp.einsum("ph,hoc->poc", wy, rows, precision=_HIGHEST)

    boxes = CropBox(*(jnp.broadcast_to(jnp.asarray(v, jnp.int32), x.shape[:1]) for v in boxes))
    return _finish(jax.vmap(one)(x, boxes), images, _pil_round_u8)


def apply_resize(images: jax.Array, *, size: host.Size) -> jax.Array:
    """Bilinear resize of the whole image to ``size`` (PIL convention; identity when already that size)."""
    out_h, out_w = host._size_hw(size)
    h, w = images.shape[1:3]
    if (h, w) == (out_h, out_w):
        return images
    return apply_random_resized_crop(images, CropBox(0, 0, h, w), size=(out_h, out_w))


def _shorter_size(h: int, w: int, size: int) -> tuple[int, int]:
    # The host's resize_shorter arithmetic, on static shapes.
    scale = size / min(h, w)
    return max(size, round(h * scale)), max(size, round(w * scale))


def apply_center_crop(images: jax.Array, *, size: host.Size) -> jax.Array:
    """Central ``size`` crop (static slice); the images must be at least that large."""
    images = jnp.asarray(images)
    height, width = host._size_hw(size)
    h, w = images.shape[1:3]
    if h < height or w < width:
        raise ValueError(f"center_crop({height}, {width}) on a smaller {h}x{w} image")
    top, left = (h - height) // 2, (w - width) // 2
    return images[:, top : top + height, left : left + width]


def sample_hflip(key: jax.Array, *, p: float) -> jax.Array:
    """Whether to mirror this example (probability ``p``)."""
    return jax.random.uniform(key) < p


def apply_hflip(images: jax.Array, flip: jax.Array) -> jax.Array:
    """Mirrors left-right the examples whose ``flip [B]`` is set."""
    images = jnp.asarray(images)
    return jnp.where(_batch_bool(flip), images[:, :, ::-1], images)


# ----------------------------------------------------------------------------- photometric


def _luma(x: jax.Array) -> jax.Array:
    """:func:`jssl.data.colour.luma` of [..., 3] integer values (any dtype) as int32 [..., 1]."""
    rgb = x.astype(jnp.int32)
    wr, wg, wb = colour.LUMA_WEIGHTS
    total = wr * rgb[..., 0] + wg * rgb[..., 1] + wb * rgb[..., 2]
    return ((total + (1 << (colour.LUMA_SHIFT - 1))) >> colour.LUMA_SHIFT)[..., None]


def sample_grayscale(key: jax.Array, *, p: float) -> jax.Array:
    """Whether to convert this example to grayscale (probability ``p``)."""
    return jax.random.uniform(key) < p


def apply_grayscale(images: jax.Array, on: jax.Array) -> jax.Array:
    """Integer luma in all three channels for the examples with ``on [B]`` set; a no-op unless RGB."""
    images = jnp.asarray(images)
    if images.shape[-1] != 3:
        return images
    gray = jnp.broadcast_to(_luma(images), images.shape).astype(_out_dtype(images))
    return jnp.where(_batch_bool(on), gray, images.astype(gray.dtype))


def sample_solarize(key: jax.Array, *, p: float) -> jax.Array:
    """Whether to solarize this example (probability ``p``)."""
    return jax.random.uniform(key) < p


def apply_solarize(images: jax.Array, on: jax.Array, *, threshold: int = 128) -> jax.Array:
    """Inverts pixels ``>= threshold`` in the examples with ``on [B]`` set."""
    images = jnp.asarray(images)
    inverted = jnp.asarray(255, images.dtype) - images
    return jnp.where(_batch_bool(on) & (images >= threshold), inverted, images)


def sample_color_jitter(
    key: jax.Array, *, p: float, brightness: float, contrast: float, saturation: float, hue: float
) -> JitterParams:
    """One example's jitter draw, distributed as :func:`jssl.data.augment.sample_color_jitter`."""
    k_gate, k_u = jax.random.split(key)
    u = jax.random.uniform(k_u, (8,))
    low = jnp.asarray([max(0.0, 1.0 - s) for s in (brightness, contrast, saturation)])
    high = jnp.asarray([1.0 + s for s in (brightness, contrast, saturation)])
    return JitterParams(
        apply=jax.random.uniform(k_gate) < p,
        order=jnp.argsort(u[:4]).astype(jnp.int32),  # argsort of iid uniforms: a uniform random order
        factors=low + (high - low) * u[4:7],
        hue_shift=hue * (2.0 * u[7] - 1.0),
    )


def _rgb_to_hsv(rgb: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """OpenCV's full-range 8-bit RGB -> HSV (:func:`jssl.data.colour.rgb_to_hsv`) on int32 [..., 3]."""
    tables = colour.hsv_tables()
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = jnp.maximum(r, jnp.maximum(g, b))
    diff = v - jnp.minimum(r, jnp.minimum(g, b))
    s = (diff * jnp.asarray(tables["sdiv"])[v] + 2048) >> 12
    h = jnp.where(v == r, g - b, jnp.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * jnp.asarray(tables["hdiv"])[diff] + 2048) >> 12  # arithmetic shift: floor, as in C
    h = jnp.clip(jnp.where(h < 0, h + 256, h), 0, 255)
    return h, s, v


def _hsv_to_rgb(h: jax.Array, s: jax.Array, v: jax.Array) -> jax.Array:
    """:func:`jssl.data.colour.hsv_to_rgb` on int32 planes, as int32 [..., 3]."""
    sector = (6 * h) >> 8
    m = (s * ((6 * h) & 255) + 128) >> 8

    def scale(a: jax.Array) -> jax.Array:
        return (v * (255 - a) + 127) // 255

    candidates = jnp.stack([v, scale(s), scale(m), scale(s - m)], -1)
    return jnp.take_along_axis(candidates, jnp.asarray(colour.SECTOR_CHANNELS)[sector], axis=-1)


def _shift_hue(x: jax.Array, shift: jax.Array) -> jax.Array:
    """The host's :func:`jssl.data.colour.shift_hue` on one [H, W, 3] image of integer values, as float32."""
    h, s, v = _rgb_to_hsv(x.astype(jnp.int32))
    steps = jnp.round(jnp.asarray(shift, jnp.float32) * 256.0).astype(jnp.int32)
    return _hsv_to_rgb(jnp.mod(h + steps, 256), s, v).astype(jnp.float32)


def _jitter_one(x: jax.Array, params: JitterParams, active: Sequence[bool]) -> jax.Array:
    """One example's jitter, op ``params.order[i]`` at position ``i``, on float [H, W, C] integer values.

    Every op rounds at its end, as :mod:`jssl.data.colour`'s host ops do; all float arithmetic is
    the host's float32 expressions of one or two integer values.
    """
    is_rgb = x.shape[-1] == 3
    f_b, f_c, f_s = (jnp.asarray(params.factors[i], jnp.float32) for i in range(3))
    order = params.order
    hue_on = active[3] and is_rgb
    # A per-example order cannot pick code at trace time, so each position computes every
    # cheap op and selects. Hue runs once, between the positions before it and after:
    # computed at all four positions, as the cheap ops are, it would cost four times as much.
    hue_position = jnp.argmax(order == 3) if hue_on else 4

    def cheap_ops(x: jax.Array, run: Callable[[int], jax.Array]) -> jax.Array:
        for position in range(4):
            k = order[position]
            choices = [x, x, x]
            if active[0]:
                choices[0] = _rint_u8(x * f_b)
            if active[1]:
                gray = _luma(x) if is_rgb else x.astype(jnp.int32)
                mean = jnp.sum(gray).astype(jnp.float32) / jnp.float32(gray.size)
                choices[1] = _rint_u8(f_c * x + (1.0 - f_c) * mean)
            if active[2] and is_rgb:
                choices[2] = _rint_u8(f_s * x + (1.0 - f_s) * _luma(x).astype(jnp.float32))
            x = jnp.where(run(position), jnp.select([k == i for i in range(3)], choices, x), x)
        return x

    x = cheap_ops(x, lambda position: position < hue_position)
    if not hue_on:
        return x
    x = _shift_hue(x, params.hue_shift)
    return cheap_ops(x, lambda position: position > hue_position)


def apply_color_jitter(
    images: jax.Array, params: JitterParams, *, active: Sequence[bool] = (True, True, True, True)
) -> jax.Array:
    """torchvision-style jitter per example; ``active[k]``: op ``k`` is configured (strength > 0).

    Ops run in each example's ``params.order``; saturation and hue are skipped
    on non-RGB images, as on the host.
    """
    images = jnp.asarray(images)
    active = tuple(bool(a) for a in active)
    x = _as_float(images)
    jittered = jax.vmap(lambda im, pr: _jitter_one(im, pr, active))(x, params)
    return jnp.where(_batch_bool(params.apply), _finish(jittered, images), images.astype(_out_dtype(images)))


def sample_gaussian_blur(key: jax.Array, *, p: float, sigma: Sequence[float]) -> BlurParams:
    """One example's blur draw: gate with probability ``p``, ``sigma ~ U(sigma)``."""
    k_gate, k_sigma = jax.random.split(key)
    return BlurParams(
        apply=jax.random.uniform(k_gate) < p,
        sigma=jax.random.uniform(k_sigma, minval=sigma[0], maxval=sigma[1]),
    )


def _symmetric_taps(x: jax.Array, weights: jax.Array, radius: int, size: int, axis: int) -> jax.Array:
    """``sum_i weights[:, i] * x[..., i : i + size, ...]`` along ``axis`` of padded ``x``; taps symmetric.

    Shifted slices, multiplies and adds (never a convolution or a matmul, which
    a GPU may run in TF32); mirrored taps share one product.
    """

    def window(i: int) -> jax.Array:
        return jax.lax.slice_in_dim(x, i, i + size, axis=axis)

    w = weights[:, :, None, None, None]
    acc = w[:, radius] * window(radius)
    for k in range(1, radius + 1):
        acc = acc + w[:, radius + k] * (window(radius - k) + window(radius + k))
    return acc


def apply_gaussian_blur(images: jax.Array, params: BlurParams, *, kernel_frac: float = 0.1) -> jax.Array:
    """The host's truncated Gaussian blur (``kernel_frac`` not None), per-example ``params.sigma``.

    For ``uint8`` images the host's integer definition (see
    :func:`jssl.data.augment.apply_gaussian_blur`) in int32: the taps of
    :func:`jssl.data.fixed_point_blur.integer_taps` (the very code the host runs,
    per example), reflect-101 borders, an H pass rounded to four fractional bits,
    a W pass rounded to uint8. Every value is an exact integer, so the result
    equals the host's bit for bit on any backend. Float images get the same
    filter in float32 (taps / 4096) without the two roundings.
    """
    images = _check_batch(jnp.asarray(images))
    n, h, w = images.shape[:3]
    radius = host.blur_radius(h, w, kernel_frac)
    weights = FPB.integer_taps(jnp.asarray(params.sigma, jnp.float32).reshape(n), radius, xp=jnp)  # [B, 2r + 1]
    # Reflect-pad both axes up front (the H pass then also runs over the W margin, which is the same
    # as reflecting its result): on XLA:CPU 2-4x faster than gathering the W margin between the passes.
    rows_idx = FPB.reflect_index(h, radius)
    cols_idx = FPB.reflect_index(w, radius)
    if images.dtype == jnp.uint8:
        padded = images.astype(jnp.int32)[:, rows_idx][:, :, cols_idx]
        t = (_symmetric_taps(padded, weights, radius, h, axis=1) + 128) >> 8  # s1 < 2^20; t <= 4080
        s2 = _symmetric_taps(t, weights, radius, w, axis=2)  # < 2^24
        blurred = ((s2 + 32768) >> 16).astype(jnp.uint8)
    else:
        scaled = weights.astype(jnp.float32) / FPB.TAPS_SUM
        rows = _symmetric_taps(_as_float(images)[:, rows_idx][:, :, cols_idx], scaled, radius, h, axis=1)
        blurred = jnp.clip(_symmetric_taps(rows, scaled, radius, w, axis=2), 0, 255)
    return jnp.where(_batch_bool(params.apply), blurred, images.astype(blurred.dtype))


# ----------------------------------------------------------------------------- keys and parsing


def example_keys(*, seed: int, step: int | jax.Array, example_index: jax.Array, view: int = 0) -> jax.Array:
    """Per-example keys ``[B]`` from (seed, step, global example index, view).

    Only global quantities enter, so a view does not depend on how the batch is
    sharded or on which host drew it, and a resumed run at the same step
    redraws the same views.
    """
    index = jnp.asarray(example_index, jnp.uint32)
    if index.ndim != 1:
        raise ValueError(f"example_index must be 1-D [B]; got shape {index.shape}")
    # The view is folded in before the example index, i.e. the keys are
    # `jax.random.split(view_key, B)[example_index]` (partitionable threefry: the same keys).
    # Folding the index first, then the view, is an equally valid construction on paper, yet
    # on the SimCLR MNIST recipe it trained to a held-out kNN 0.854 (seeds 0-3) against 0.871
    # with host augmentation; this order gave 0.87-0.88 (benchmarks/RESULTS.md). Not understood.
    view_key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), jnp.asarray(step, jnp.uint32)), view)
    return jax.vmap(lambda i: jax.random.fold_in(view_key, i))(index)


_Op = Callable[[jax.Array, jax.Array], jax.Array]


def _gated(sample: Callable[..., Any], apply: Callable[..., jax.Array], **apply_kw: Any) -> Callable[..., _Op]:
    def build(**sample_kw: Any) -> _Op:
        def op(images: jax.Array, keys: jax.Array) -> jax.Array:
            return apply(images, jax.vmap(lambda k: sample(k, **sample_kw))(keys), **apply_kw)

        return op

    return build


def _device_op(name: str, a: dict[str, Any]) -> _Op:
    """The device twin of host op ``name`` with the host factory's bound arguments ``a``."""
    if name == "identity":
        return lambda images, keys: images
    if name == "resize":
        return lambda images, keys: apply_resize(images, size=a["size"])
    if name == "resize_shorter":
        return lambda images, keys: apply_resize(images, size=_shorter_size(*images.shape[1:3], a["size"]))
    if name == "center_crop":
        return lambda images, keys: apply_center_crop(images, size=a["size"])
    if name == "random_resized_crop":

        def crop(images: jax.Array, keys: jax.Array) -> jax.Array:
            h, w = images.shape[1:3]
            kw = dict(height=h, width=w, scale=a["scale"], ratio=a["ratio"], attempts=a["attempts"])
            boxes = jax.vmap(lambda k: sample_random_resized_crop(k, **kw))(keys)
            return apply_random_resized_crop(images, boxes, size=a["size"])

        return crop
    if name == "hflip":
        return _gated(sample_hflip, apply_hflip)(p=a["p"])
    if name == "grayscale":
        return _gated(sample_grayscale, apply_grayscale)(p=a["p"])
    if name == "solarize":
        return _gated(sample_solarize, apply_solarize, threshold=int(a["threshold"]))(p=a["p"])
    if name == "color_jitter":
        strengths = {k: float(a[k]) for k in ("brightness", "contrast", "saturation", "hue")}
        active = tuple(v > 0 for v in strengths.values())
        return _gated(sample_color_jitter, apply_color_jitter, active=active)(p=a["p"], **strengths)
    if name == "gaussian_blur":
        if a["kernel_frac"] is None:
            raise ValueError("gaussian_blur(kernel_frac=None) (PIL's untruncated GaussianBlur) has no device twin")
        blur = _gated(sample_gaussian_blur, apply_gaussian_blur, kernel_frac=float(a["kernel_frac"]))
        return blur(p=a["p"], sigma=tuple(a["sigma"]))
    raise ValueError(f"augmentation {name!r} has no device twin")


def parse_device_augment(spec: str) -> DeviceAugment:
    """Parses the same spec strings as :func:`jssl.data.augment.parse_augment` into a device function.

    Returns a pure ``augment(images uint8 [B, H, W, C], keys [B]) -> uint8
    [B, h, w, C]``; output sizes are static, so under ``jax.jit`` it compiles
    once per input shape. Op ``j`` draws from ``fold_in(keys[b], j)``. Raises
    ``ValueError`` for anything ``parse_augment`` rejects and for ops without a
    device twin.
    """
    host.parse_augment(spec)  # same syntax, names and argument checks as the host
    stripped = spec.strip()
    nodes = host._flatten_pipe(ast.parse(stripped, mode="eval").body) if stripped else []
    ops: list[_Op] = []
    for node in nodes:
        if isinstance(node, ast.Name):
            name, args, kwargs = node.id, [], {}
        else:
            name = node.func.id
            args = [host._literal(v, stripped) for v in node.args]
            kwargs = {k.arg: host._literal(k.value, stripped) for k in node.keywords}
        bound = inspect.signature(host.AUGMENTATIONS[name]).bind(*args, **kwargs)
        bound.apply_defaults()
        ops.append(_device_op(name, dict(bound.arguments)))

    def augment(images: jax.Array, keys: jax.Array) -> jax.Array:
        if images.ndim != 4 or images.dtype != jnp.uint8:
            raise ValueError(f"images must be uint8 [B, H, W, C]; got {images.dtype} {images.shape}")
        if keys.shape != images.shape[:1]:
            raise ValueError(f"keys must be [B] = {images.shape[:1]}; got shape {keys.shape}")
        for j, op in enumerate(ops):
            images = op(images, jax.vmap(lambda k, j=j: jax.random.fold_in(k, j))(keys))
        return images

    return augment
