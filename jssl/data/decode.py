"""Host decoding of encoded source images, at reduced size where the crops allow it.

A source may yield ``{'image': <encoded bytes>, 'label'}`` instead of a decoded
``uint8 [H, W, C]`` array (``TfdsSource(..., decode=False)``). The encoded form is
a 0-d ``object`` array holding ``bytes`` (:func:`encoded_image`): it pickles into
Grain workers and stacks into an ``object [B]`` array if a batch of raw records is
ever formed (``np.bytes_`` would drop trailing NUL bytes).

Decoding happens in the Grain worker that draws the views. PIL's ``Image.open``
only reads the header, so the image size is known before any pixel is decoded;
:func:`decode_views` uses it to draw every view's parameters first, then decodes
a JPEG once at the largest DCT reduction (1/2, 1/4, 1/8: ``Image.draft``) that no
view's crop needs more than (:func:`jpeg_draft_scale`). :func:`center_square`
is the cheap fixed-size host crop that lets variable-size data sets be augmented
on the device.

Channels follow the decoded-array path of the same data set: ``channels`` (the
TFDS feature's channel count) 3 makes grayscale images RGB by repeating the luma,
as ``tfds`` does; 1 makes every image grayscale; ``None`` keeps grayscale images
single-channel and converts everything else to RGB.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from jssl.data.augment import CropBox, Step, apply_random_resized_crop, apply_view, sample_view

__all__ = [
    "DRAFT_SCALES",
    "center_square",
    "decode_image",
    "decode_views",
    "encoded_bytes",
    "encoded_image",
    "is_encoded",
    "jpeg_draft_scale",
    "record_image_shape",
]

#: DCT-domain reductions libjpeg offers through PIL's ``Image.draft``, largest first.
DRAFT_SCALES = (8, 4, 2, 1)


def encoded_image(data: bytes) -> np.ndarray:
    """``data`` as the 0-d ``object`` array sources yield for an encoded image."""
    out = np.empty((), dtype=object)
    out[()] = bytes(data)
    return out


def is_encoded(image: Any) -> bool:
    """Whether a record's image is encoded bytes (0-d object array or ``bytes``) rather than pixels."""
    if isinstance(image, (bytes, bytearray)):
        return True
    return isinstance(image, np.ndarray) and image.dtype == object and image.ndim == 0


def encoded_bytes(image: Any) -> bytes:
    """The bytes inside an encoded record image."""
    value = image[()] if isinstance(image, np.ndarray) else image
    if not isinstance(value, (bytes, bytearray)):
        raise ValueError(f"encoded images must hold bytes; got {type(value).__name__}")
    return bytes(value)


def _mode(image: Image.Image, channels: int | None) -> str:
    if channels is None:
        return "L" if image.mode == "L" else "RGB"
    if channels == 1:
        return "L"
    if channels == 3:
        return "RGB"
    raise ValueError(f"encoded images decode to 1 or 3 channels; the data set has {channels}")


def _pixels(image: Image.Image, channels: int | None) -> np.ndarray:
    mode = _mode(image, channels)
    pixels = np.asarray(image if image.mode == mode else image.convert(mode))
    return pixels[..., None] if pixels.ndim == 2 else pixels


def decode_image(image: Any, *, channels: int | None = None) -> np.ndarray:
    """Encoded bytes -> ``uint8 [H, W, C]`` at full size (a pixel array is returned as is)."""
    if not is_encoded(image):
        return np.asarray(image, dtype=np.uint8)
    with Image.open(io.BytesIO(encoded_bytes(image))) as im:
        return _pixels(im, channels)


def jpeg_draft_scale(boxes: Sequence[CropBox | None], sizes: Sequence[tuple[int, int]]) -> int:
    """The largest ``s`` in (8, 4, 2, 1) with ``box.height >= s * out_h`` and ``box.width >= s * out_w`` for all.

    ``boxes[v]`` is the window of the full image that view ``v`` resamples to ``sizes[v] =
    (out_h, out_w)``; ``None`` (a view that does not start by resampling a window to a fixed
    size) forces ``s = 1``. Under this rule every window, reduced ``s`` times, still holds at
    least the output size, so each view is still a downscale (or 1:1) of the decoded pixels
    and no view is upsampled where the full image would not have been. A window exactly
    ``2 x`` the output allows ``s = 2``; a window smaller than the output gives ``s = 1``.
    """
    if len(boxes) != len(sizes):
        raise ValueError(f"need one output size per box; got {len(boxes)} boxes and {len(sizes)} sizes")
    if not boxes or any(box is None for box in boxes):
        return 1
    for s in DRAFT_SCALES:
        if all(box.height >= s * h and box.width >= s * w for box, (h, w) in zip(boxes, sizes)):
            return s
    return 1


def _first_window(steps: Sequence[Step], params: Sequence[Any], height: int, width: int) -> CropBox | None:
    """The window of the input the view's first step resamples to ``steps[0].size``, if it does."""
    if not steps or steps[0].size is None:
        return None
    if steps[0].name == "random_resized_crop":
        return params[0]
    return CropBox(0, 0, height, width)  # resize: the whole image


def _open_reduced(im: Image.Image, scale: int) -> float:
    """Asks libjpeg for a ``1/scale`` decode; returns the factor from full-image to decoded coordinates."""
    if scale == 1 or im.format != "JPEG":
        return 1.0
    width, height = im.size
    # draft picks the largest s in (8, 4, 2, 1) with s <= min(W // w, H // h); W // (W // s) is in
    # [s, 2s), so requesting (W // s, H // s) gets exactly s.
    drafted = im.draft("RGB", (width // scale, height // scale))
    if drafted is None:  # multi-tile JPEG: PIL decodes it at full size
        return 1.0
    return width / drafted[1][2]


def _scale_box(box: CropBox, factor: float) -> CropBox:
    return CropBox(*(float(v) / factor for v in box))


def decode_views(
    data: bytes, views: Sequence[Sequence[Step]], rng: np.random.Generator, *, channels: int | None = None
) -> list[np.ndarray]:
    """Decodes ``data`` once and draws one augmented view per entry of ``views``.

    Every view's parameters are drawn first, view after view, from the header's image size:
    the same random stream as augmenting the decoded array view after view, so a losslessly
    encoded image gives exactly the views of its decoded array. A JPEG is then decoded at the
    reduction :func:`jpeg_draft_scale` allows for the views' first windows (every view must
    start with ``random_resized_crop`` or ``resize``, else it is decoded at full size), the
    windows are mapped onto the reduced pixels and the views applied. Other formats decode at
    full size.
    """
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        params = [sample_view(steps, rng, height=height, width=width) for steps in views]
        windows = [_first_window(steps, p, height, width) for steps, p in zip(views, params)]
        scale = 1
        if im.format == "JPEG":
            scale = jpeg_draft_scale(windows, [steps[0].size if steps else (0, 0) for steps in views])
        factor = _open_reduced(im, scale)
        if any(window is None for window in windows):
            pixels = _pixels(im, channels)
            return [apply_view(pixels, steps, p) for steps, p in zip(views, params)]
        # Every view starts by resampling a window: crop straight from the decoded PIL image,
        # without copying it into an array and back (0.2 ms a view at 224 px).
        mode = _mode(im, channels)
        decoded = im if im.mode == mode else im.convert(mode)
        out = []
        for steps, p, window in zip(views, params, windows):
            first = apply_random_resized_crop(decoded, _scale_box(window, factor), size=steps[0].size)
            out.append(apply_view(first, steps[1:], p[1:]))
        return out


def center_square(image: Any, *, size: int, channels: int | None = None) -> np.ndarray:
    """``uint8 [size, size, C]``: the central square of ``image``, bilinearly resized to ``size``.

    The same as resizing the shorter side to ``size`` and cropping the centre. ``image`` is
    pixels or encoded bytes; a JPEG at least twice as large as needed (shorter side ``>= 2 *
    size``) is decoded at the reduction :func:`jpeg_draft_scale` allows for the square.
    """
    if is_encoded(image):
        with Image.open(io.BytesIO(encoded_bytes(image))) as im:
            width, height = im.size
            box = _square(height, width)
            factor = _open_reduced(im, jpeg_draft_scale([box], [(size, size)]))
            pixels = _pixels(im, channels)
        box = _scale_box(box, factor)
    else:
        pixels = np.asarray(image, dtype=np.uint8)
        box = _square(*pixels.shape[:2])
    if pixels.shape[:2] == (size, size):
        return pixels
    return apply_random_resized_crop(pixels, box, size=size)


def _square(height: int, width: int) -> CropBox:
    side = min(height, width)
    return CropBox((height - side) / 2, (width - side) / 2, side, side)


def record_image_shape(source: Any) -> tuple[int, ...]:
    """The shape of ``source[0]``'s image, decoded if the source yields encoded bytes."""
    return tuple(decode_image(source[0]["image"], channels=getattr(source, "channels", None)).shape)
