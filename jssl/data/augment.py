"""Self-supervised view augmentations on single ``uint8 [H, W, C]`` images.

Every op is built by a factory in :data:`AUGMENTATIONS` and has the signature
``op(image: uint8 [H, W, C], rng: np.random.Generator) -> uint8 [H', W', C]``.
All randomness comes from ``rng``; ops never touch global random state, which
is what makes the pipeline's views a pure function of (seed, stream position).

:func:`parse_augment` turns a big_vision-style spec string such as::

    "random_resized_crop(28, scale=(0.3, 1.0))|hflip|color_jitter(0.4, 0.4, p=0.8)"

into one composed op. The string is parsed with :mod:`ast` and only literal
arguments are accepted, so a config string can never execute code.

Every factory returns a :class:`Step`: the op split into ``sample(rng, height,
width) -> params``, which draws all its randomness knowing only the input size,
and a deterministic ``apply(image, params)``. :func:`parse_view` returns a
spec's steps, so a caller can draw a whole view before it has the image (see
:mod:`jssl.data.decode`, which picks a reduced JPEG decode size from the crops).

Crops and resizes use PIL (C code, releases the GIL), flips OpenCV. Colour jitter and grayscale are
:mod:`jssl.data.colour`'s integer-exact uint8 ops (lookup tables and OpenCV's
SIMD colour conversion; each op rounds once, like PIL's and torchvision's uint8
ops). The truncated Gaussian blur is defined in fixed point (integer taps
summing to 4096, an integer H pass rounded to 1/16, an integer W pass rounded
to uint8; see :func:`apply_gaussian_blur`) and runs as two OpenCV filters,
about 0.4 ms on a 224 px RGB image on one core. Both are defined so that their
device twins in :mod:`jssl.data.device_augment` agree bit for bit on any
backend; ``cv2`` is imported lazily (:mod:`jssl.data.opencv`), so the device path
does not need it.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageFilter

from jssl.data import colour, fixed_point_blur, opencv

__all__ = [
    "AUGMENTATIONS",
    "Augment",
    "BlurParams",
    "CropBox",
    "JitterParams",
    "Step",
    "apply_color_jitter",
    "apply_gaussian_blur",
    "apply_grayscale",
    "apply_hflip",
    "apply_random_resized_crop",
    "apply_solarize",
    "apply_view",
    "blur_radius",
    "center_crop",
    "color_jitter",
    "compose",
    "gaussian_blur",
    "grayscale",
    "hflip",
    "identity",
    "parse_augment",
    "parse_view",
    "random_resized_crop",
    "resize",
    "resize_shorter",
    "sample_color_jitter",
    "sample_gaussian_blur",
    "sample_grayscale",
    "sample_hflip",
    "sample_random_resized_crop",
    "sample_solarize",
    "sample_view",
    "solarize",
]

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]
Size = int | Sequence[int]


# Parameter records shared with the on-device twins (jssl.data.device_augment):
# here they hold Python / numpy scalars for one image, there arrays with a
# leading batch axis. Random ops are split into sample_<op>(rng, ...) -> params
# and apply_<op>(image, params, ...), so a test can feed one side's parameters
# to the other side's apply.
class CropBox(NamedTuple):
    """Crop window in input pixels: rows [top, top + height), columns [left, left + width)."""

    top: Any
    left: Any
    height: Any
    width: Any


class JitterParams(NamedTuple):
    """One colour-jitter draw: ``order`` lists op ids (0 brightness, 1 contrast, 2 saturation, 3 hue)."""

    apply: Any
    order: Any
    factors: Any  # (brightness, contrast, saturation) multipliers
    hue_shift: Any  # fraction of the colour circle, in [-hue, hue]


class BlurParams(NamedTuple):
    """One Gaussian-blur draw: whether to blur and the standard deviation in pixels."""

    apply: Any
    sigma: Any


def _size_hw(size: Size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        hw = (int(size), int(size))
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        hw = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"size must be an int or (height, width); got {size!r}")
    if min(hw) <= 0:
        raise ValueError(f"size must be positive; got {size!r}")
    return hw


def _check_p(p: float) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"probability p must be in [0, 1]; got {p!r}")
    return float(p)


def _check_range(name: str, value: Sequence[float], low: float = 0.0) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a (min, max) pair; got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not low <= a <= b:
        raise ValueError(f"{name} must satisfy {low} <= min <= max; got {value!r}")
    return a, b


def _apply_pil(image: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """Runs a PIL transform on 1-, 3- or any-channel uint8 images."""
    channels = image.shape[-1]
    if channels == 1:
        return np.asarray(fn(Image.fromarray(image[..., 0], mode="L")))[..., None]
    if channels == 3:
        return np.asarray(fn(Image.fromarray(image, mode="RGB")))
    # PIL has no generic multi-channel mode; process channels independently.
    return np.stack(
        [np.asarray(fn(Image.fromarray(np.ascontiguousarray(image[..., c]), mode="L"))) for c in range(channels)],
        axis=-1,
    )


def _no_params(rng: np.random.Generator, height: int, width: int) -> None:
    del rng, height, width


def _same_hw(height: int, width: int) -> tuple[int, int]:
    return height, width


@dataclasses.dataclass(frozen=True, eq=False)
class Step:
    """One augmentation op as ``sample(rng, height, width) -> params`` then ``apply(image, params)``.

    ``sample`` makes every random draw of the op from the input size alone; ``apply`` draws
    nothing. Calling a step runs both, so a step is an :data:`Augment`, with the same random
    stream as before the split. ``out_hw(height, width)`` is the output size, so later steps of
    a view can be sampled without an image. ``size`` is set for the ops that resample a window
    of the input to a fixed ``(height, width)`` (``random_resized_crop``, ``resize``).
    """

    name: str
    sample: Callable[[np.random.Generator, int, int], Any]
    apply: Callable[[np.ndarray, Any], np.ndarray]
    out_hw: Callable[[int, int], tuple[int, int]] = _same_hw
    size: tuple[int, int] | None = None

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(image, self.sample(rng, image.shape[0], image.shape[1]))


def identity() -> Step:
    """No-op; the meaning of an empty spec."""
    return Step("identity", _no_params, lambda image, params: image)


def resize(size: Size) -> Step:
    """Bilinear resize to ``size`` (int = square)."""
    height, width = _size_hw(size)

    def apply(image: np.ndarray, params: None) -> np.ndarray:
        if image.shape[:2] == (height, width):
            return image
        return _apply_pil(image, lambda im: im.resize((width, height), Image.BILINEAR))

    return Step("resize", _no_params, apply, lambda h, w: (height, width), size=(height, width))


def resize_shorter(size: int) -> Step:
    """Bilinear resize so the shorter side is ``size``, keeping the aspect ratio (ImageNet eval)."""
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int; got {size!r}")

    def out_hw(h: int, w: int) -> tuple[int, int]:
        scale = size / min(h, w)
        return max(size, round(h * scale)), max(size, round(w * scale))

    def apply(image: np.ndarray, params: None) -> np.ndarray:
        height, width = out_hw(*image.shape[:2])
        if (height, width) == image.shape[:2]:
            return image
        return _apply_pil(image, lambda im: im.resize((width, height), Image.BILINEAR))

    return Step("resize_shorter", _no_params, apply, out_hw)


def center_crop(size: Size) -> Step:
    """Central ``size`` crop; the image must be at least that large."""
    height, width = _size_hw(size)

    def apply(image: np.ndarray, params: None) -> np.ndarray:
        h, w = image.shape[:2]
        if h < height or w < width:
            raise ValueError(f"center_crop({height}, {width}) on a smaller {h}x{w} image")
        top, left = (h - height) // 2, (w - width) // 2
        return image[top : top + height, left : left + width]

    return Step("center_crop", _no_params, apply, lambda h, w: (height, width))


def sample_random_resized_crop(
    rng: np.random.Generator,
    *,
    height: int,
    width: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> CropBox:
    """Draws the crop window of :func:`random_resized_crop` for a ``height x width`` image.

    torchvision's ``RandomResizedCrop`` sampling: up to ``attempts``
    rejection-sampling tries of (area, log-aspect), then a central crop
    clamped to ``ratio``.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        # One draw per attempt: generator calls dominate the cost on small images.
        u_area, u_ratio, u_top, u_left = rng.random(4)
        target = area * (scale[0] + (scale[1] - scale[0]) * u_area)
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u_ratio)
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= width and 0 < ch <= height:
            return CropBox(int(u_top * (height - ch + 1)), int(u_left * (width - cw + 1)), ch, cw)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        cw, ch = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = height, int(round(height * ratio[1]))
    else:
        cw, ch = width, height
    return CropBox((height - ch) // 2, (width - cw) // 2, ch, cw)


def apply_random_resized_crop(image: np.ndarray | Image.Image, box: CropBox, *, size: Size) -> np.ndarray:
    """Crops ``box`` and bilinearly resizes it to ``size`` in one PIL call (``box=``).

    The box may have fractional coordinates (a crop window mapped onto a reduced decode).
    ``image`` may also be a decoded PIL image in mode ``L`` or ``RGB``, which saves copying it
    into an array and back (:func:`jssl.data.decode.decode_views`).
    """
    height, width = _size_hw(size)
    top, left, ch, cw = (float(v) for v in box)
    pil_box = (left, top, left + cw, top + ch)

    def crop(im: Image.Image) -> Image.Image:
        return im.resize((width, height), Image.BILINEAR, box=pil_box)

    if isinstance(image, Image.Image):
        if image.mode not in ("L", "RGB"):
            raise ValueError(f"PIL images must be in mode L or RGB; got {image.mode}")
        out = np.asarray(crop(image))
        return out[..., None] if out.ndim == 2 else out
    return _apply_pil(image, crop)


def random_resized_crop(
    size: Size,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> Step:
    """Inception-style crop of random area and aspect ratio, resized to ``size``.

    Crop sampling follows torchvision's ``RandomResizedCrop``
    (:func:`sample_random_resized_crop`); crop and bilinear resize are a
    single PIL call (:func:`apply_random_resized_crop`).
    """
    _size_hw(size)
    scale = _check_range("scale", scale)
    ratio = _check_range("ratio", ratio, low=1e-6)
    if scale[1] > 1.0 or scale[0] <= 0.0:
        raise ValueError(f"scale must lie in (0, 1]; got {scale!r}")

    def sample(rng: np.random.Generator, height: int, width: int) -> CropBox:
        return sample_random_resized_crop(rng, height=height, width=width, scale=scale, ratio=ratio, attempts=attempts)

    out = _size_hw(size)
    return Step(
        "random_resized_crop",
        sample,
        lambda image, box: apply_random_resized_crop(image, box, size=out),
        lambda h, w: out,
        size=out,
    )


def sample_hflip(rng: np.random.Generator, *, p: float) -> bool:
    """Whether :func:`hflip` mirrors this image."""
    return bool(rng.random() < p)


def apply_hflip(image: np.ndarray, flip: bool) -> np.ndarray:
    """Mirrors left-right when ``flip``; returns ``image`` itself otherwise."""
    if not flip:
        return image
    if image.shape[-1] <= 4:
        # OpenCV's SIMD flip: 0.02 ms on a 224 px RGB image, against 0.1 ms for a PIL round
        # trip and 0.5 ms for numpy's strided copy of 3-byte pixels.
        return opencv.cv2().flip(np.ascontiguousarray(image), 1).reshape(image.shape)
    return np.ascontiguousarray(image[:, ::-1])


def hflip(p: float = 0.5) -> Step:
    """Mirrors left-right with probability ``p``."""
    p = _check_p(p)
    return Step("hflip", lambda rng, h, w: sample_hflip(rng, p=p), apply_hflip)


def _check_jitter(brightness: float, contrast: float, saturation: float, hue: float) -> tuple[float, ...]:
    for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        if float(value) < 0:
            raise ValueError(f"{name} must be >= 0; got {value!r}")
    if not 0.0 <= float(hue) <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5]; got {hue!r}")
    return float(brightness), float(contrast), float(saturation), float(hue)


def sample_color_jitter(
    rng: np.random.Generator, *, p: float, brightness: float, contrast: float, saturation: float, hue: float
) -> JitterParams:
    """Draws :func:`color_jitter`'s gate, order, factors and hue shift.

    Factors come from ``[max(0, 1 - x), 1 + x]``, the hue shift from
    ``[-hue, hue]``. When the gate is closed nothing more is drawn (neutral
    parameters are returned), as before the sample/apply split.
    """
    if rng.random() >= p:
        return JitterParams(False, (0, 1, 2, 3), (1.0, 1.0, 1.0), 0.0)
    # Draw every parameter in one call, in a fixed layout, so the random
    # stream does not depend on which jitters are active; argsort of iid
    # uniforms is a uniformly random order.
    u = rng.random(8)
    order = tuple(int(k) for k in np.argsort(u[:4]))
    strengths = (brightness, contrast, saturation)
    factors = tuple(max(0.0, 1.0 - s) + (1.0 + s - max(0.0, 1.0 - s)) * v for s, v in zip(strengths, u[4:7]))
    return JitterParams(True, order, factors, hue * (2.0 * u[7] - 1.0))


def apply_color_jitter(
    image: np.ndarray, params: JitterParams, *, active: Sequence[bool] = (True, True, True, True)
) -> np.ndarray:
    """Applies one jitter draw; ``active[k]`` says whether op ``k`` is configured (strength > 0).

    Each op is :mod:`jssl.data.colour`'s integer-exact uint8 op (rounded at its end, like PIL's
    and torchvision's uint8 ops). Saturation and hue need colour, so they are skipped on
    non-RGB images.
    """
    if not params.apply:
        return image
    is_rgb = image.shape[-1] == 3
    factors = params.factors
    for k in params.order:
        if k == 0 and active[0]:
            image = colour.adjust_brightness(image, factors[0])
        elif k == 1 and active[1]:
            image = colour.adjust_contrast(image, factors[1])
        elif k == 2 and active[2] and is_rgb:
            image = colour.adjust_saturation(image, factors[2])
        elif k == 3 and active[3] and is_rgb:
            image = colour.shift_hue(image, params.hue_shift)
    return image


def color_jitter(
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    hue: float = 0.1,
    p: float = 0.8,
) -> Step:
    """torchvision ``ColorJitter`` applied with probability ``p``, random order.

    Factors are drawn from ``[max(0, 1 - x), 1 + x]`` (hue shift from
    ``[-hue, hue]`` of the colour circle). Saturation and hue need colour, so
    they are skipped on single-channel images.
    """
    p = _check_p(p)
    b, c, s, h = _check_jitter(brightness, contrast, saturation, hue)
    active = (b > 0, c > 0, s > 0, h > 0)

    return Step(
        "color_jitter",
        lambda rng, height, width: sample_color_jitter(rng, p=p, brightness=b, contrast=c, saturation=s, hue=h),
        lambda image, params: apply_color_jitter(image, params, active=active),
    )


def sample_grayscale(rng: np.random.Generator, *, p: float) -> bool:
    """Whether :func:`grayscale` converts this image."""
    return bool(rng.random() < p)


def apply_grayscale(image: np.ndarray, on: bool) -> np.ndarray:
    """Integer luma (:func:`jssl.data.colour.luma`) in all three channels when ``on`` and the image is RGB."""
    if not on or image.shape[-1] != 3:
        return image
    luma = colour.luma(image)
    # Three strided copies beat np.repeat (and a broadcasting assignment) about 2x.
    out = np.empty(image.shape, np.uint8)
    out[..., 0] = luma
    out[..., 1] = luma
    out[..., 2] = luma
    return out


def grayscale(p: float = 0.2) -> Step:
    """With probability ``p``, replaces RGB by its luma in all three channels."""
    p = _check_p(p)
    return Step("grayscale", lambda rng, h, w: sample_grayscale(rng, p=p), apply_grayscale)


def blur_radius(height: int, width: int, kernel_frac: float) -> int:
    """Half-width of the truncated kernel: odd size of about ``kernel_frac * min(H, W)``, at least 3."""
    return max(1, int(kernel_frac * min(height, width)) // 2)


def sample_gaussian_blur(rng: np.random.Generator, *, p: float, sigma: Sequence[float]) -> BlurParams:
    """Draws :func:`gaussian_blur`'s gate and ``sigma ~ U(sigma)`` (nothing more when the gate is closed)."""
    if rng.random() >= p:
        return BlurParams(False, float(sigma[0]))
    return BlurParams(True, float(rng.uniform(sigma[0], sigma[1])))


def apply_gaussian_blur(image: np.ndarray, params: BlurParams, *, kernel_frac: float | None = 0.1) -> np.ndarray:
    """Blurs with ``params.sigma`` when ``params.apply``; see :func:`gaussian_blur` for ``kernel_frac``.

    The truncated blur (``kernel_frac`` not None) is defined in integers, for
    ``w = fixed_point_blur.integer_taps(float32(sigma), radius)`` (sum 4096; the device
    twin computes them with the same code) and reflect-101
    borders (``np.pad`` mode "reflect", OpenCV's ``BORDER_REFLECT_101``):

    1. along H: ``s1[y, x] = sum_i w[i] * image[y + i - radius, x]`` (< 2^20),
    2. ``t = (s1 + 128) >> 8`` (<= 4080: four fractional bits kept),
    3. along W: ``s2[y, x] = sum_j w[j] * t[y, x + j - radius]`` (< 2^24),
    4. ``out = (s2 + 32768) >> 16``, uint8.

    The device twin computes exactly that in int32. Here OpenCV's separable
    filters run it in float32 with the taps scaled by 2^-8 (pass 1) and 2^-16
    (pass 2) and an added 1/2: every product and partial sum is then a
    multiple of 2^-8 below 2^12, or of 2^-16 below 2^8, which float32 holds
    exactly in any summation order (SIMD, FMA), so ``floor`` of pass 1 is
    ``t`` and the truncating cast of pass 2 is ``out``. About 0.4 ms on a
    224 px RGB image on one core (the float32 numpy convolution it replaces:
    2.5 ms).
    """
    if not params.apply:
        return image
    s = float(params.sigma)
    if kernel_frac is None:
        return _apply_pil(image, lambda im: im.filter(ImageFilter.GaussianBlur(s)))
    radius = blur_radius(image.shape[0], image.shape[1], kernel_frac)
    return fixed_point_blur.filter_image(image, s, radius)


def gaussian_blur(
    p: float = 0.5,
    sigma: Sequence[float] = (0.1, 2.0),
    kernel_frac: float | None = 0.1,
) -> Step:
    """Gaussian blur with ``sigma ~ U(sigma)`` pixels, applied with probability ``p``.

    ``kernel_frac`` reproduces SimCLR/BYOL: the kernel is truncated to an odd
    size of about ``kernel_frac * min(H, W)`` pixels (at least 3), which on
    small images caps how blurry a view can get. The truncated blur is a
    separable fixed-point filter with reflected borders (exact integer
    arithmetic, the same bits as the device twin; see
    :func:`apply_gaussian_blur`); ``kernel_frac=None`` uses PIL's untruncated
    ``GaussianBlur`` (host only).
    """
    p = _check_p(p)
    low, high = _check_range("sigma", sigma)
    if low <= 0:
        raise ValueError(f"sigma must be positive; got {sigma!r}")
    if kernel_frac is not None and not 0.0 < float(kernel_frac) <= 1.0:
        raise ValueError(f"kernel_frac must be in (0, 1] or None; got {kernel_frac!r}")

    return Step(
        "gaussian_blur",
        lambda rng, h, w: sample_gaussian_blur(rng, p=p, sigma=(low, high)),
        lambda image, params: apply_gaussian_blur(image, params, kernel_frac=kernel_frac),
    )


def sample_solarize(rng: np.random.Generator, *, p: float) -> bool:
    """Whether :func:`solarize` inverts this image."""
    return bool(rng.random() < p)


def apply_solarize(image: np.ndarray, on: bool, *, threshold: int = 128) -> np.ndarray:
    """Inverts pixels ``>= threshold`` when ``on``; returns ``image`` itself otherwise."""
    if not on:
        return image
    return np.where(image >= threshold, 255 - image, image).astype(np.uint8)


def solarize(p: float = 0.0, threshold: int = 128) -> Step:
    """With probability ``p``, inverts pixels ``>= threshold`` (as PIL/BYOL)."""
    p = _check_p(p)
    if not 0 <= int(threshold) <= 256:
        raise ValueError(f"threshold must be in [0, 256]; got {threshold!r}")
    threshold = int(threshold)
    return Step(
        "solarize",
        lambda rng, h, w: sample_solarize(rng, p=p),
        lambda image, on: apply_solarize(image, on, threshold=threshold),
    )


def compose(ops: Sequence[Augment]) -> Augment:
    """Applies ``ops`` left to right, all drawing from the same ``rng``."""
    ops = tuple(ops)

    def op(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for fn in ops:
            image = fn(image, rng)
        return image

    return op


#: Op name -> factory; factories take the op's configuration and return a :class:`Step`.
AUGMENTATIONS: dict[str, Callable[..., Step]] = {
    "identity": identity,
    "resize": resize,
    "resize_shorter": resize_shorter,
    "center_crop": center_crop,
    "random_resized_crop": random_resized_crop,
    "hflip": hflip,
    "color_jitter": color_jitter,
    "grayscale": grayscale,
    "gaussian_blur": gaussian_blur,
    "solarize": solarize,
}


def _flatten_pipe(node: ast.expr) -> list[ast.expr]:
    # `a|b|c` is valid Python (left-nested BitOr), so ast does the splitting and
    # `|` inside string literals or brackets can never be mistaken for a separator.
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _flatten_pipe(node.left) + _flatten_pipe(node.right)
    return [node]


def _literal(node: ast.expr, spec: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError as error:
        raise ValueError(f"augment arguments must be literals; got {ast.get_source_segment(spec, node)!r}") from error


def _build_op(node: ast.expr, spec: str) -> Step:
    if isinstance(node, ast.Name):
        name, args, kwargs = node.id, [], {}
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise ValueError(f"*args / **kwargs are not allowed in augment spec {spec!r}")
        args = [_literal(a, spec) for a in node.args]
        kwargs = {k.arg: _literal(k.value, spec) for k in node.keywords}
    else:
        raise ValueError(
            f"cannot parse {ast.get_source_segment(spec, node)!r} in augment spec {spec!r}; expected name or name(args)"
        )
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; known: {sorted(AUGMENTATIONS)}")
    factory = AUGMENTATIONS[name]
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as error:
        raise ValueError(f"bad arguments for {name}{inspect.signature(factory)}: {error}") from error
    try:
        return factory(*args, **kwargs)
    except (TypeError, ValueError) as error:
        raise ValueError(f"bad arguments for augmentation {name!r}: {error}") from error


def parse_view(spec: str) -> tuple[Step, ...]:
    """Parses ``"op1(args)|op2|..."`` into its steps, in order (an empty spec has none).

    A bare name uses the op's defaults. Raises ``ValueError`` for syntax errors,
    unknown ops, non-literal or bad arguments.
    """
    if not isinstance(spec, str):
        raise ValueError(f"augment spec must be a string; got {type(spec).__name__}")
    if not spec.strip():
        return ()
    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError as error:
        raise ValueError(f"cannot parse augment spec {spec!r}: {error.msg}") from error
    stripped = spec.strip()
    return tuple(_build_op(node, stripped) for node in _flatten_pipe(tree.body))


def sample_view(steps: Sequence[Step], rng: np.random.Generator, *, height: int, width: int) -> list[Any]:
    """Every step's parameters for a ``height x width`` input, drawn in order as the composed op draws them."""
    params = []
    for step in steps:
        params.append(step.sample(rng, height, width))
        height, width = step.out_hw(height, width)
    return params


def apply_view(image: np.ndarray, steps: Sequence[Step], params: Sequence[Any]) -> np.ndarray:
    """Applies ``steps`` with the parameters :func:`sample_view` drew."""
    for step, p in zip(steps, params, strict=True):
        image = step.apply(image, p)
    return image


def parse_augment(spec: str) -> Augment:
    """Parses ``"op1(args)|op2|..."`` into one op ``aug(image, rng) -> image``.

    A bare name uses the op's defaults; an empty spec is the identity.
    Raises ``ValueError`` for syntax errors, unknown ops, non-literal or bad
    arguments.
    """
    steps = parse_view(spec)
    return compose(steps) if steps else identity()
