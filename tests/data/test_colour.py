"""Tests for jssl.data.colour: each integer-exact op against an independent formulation, the
OpenCV fast paths on every input they can see, and the device twins bit for bit."""

from __future__ import annotations

import functools

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jssl.data import augment as A
from jssl.data import colour as C
from jssl.data import device_augment as D


@functools.lru_cache(maxsize=1)
def _all_triples() -> np.ndarray:
    """Every uint8 triple once, as a [4096, 4096, 3] image (rows a multiple of every SIMD width)."""
    n = np.arange(1 << 24, dtype=np.uint32)
    return np.stack([(n >> 16) & 255, (n >> 8) & 255, n & 255], -1).astype(np.uint8).reshape(4096, 4096, 3)


def _rgb_to_hsv_reference(rgb: np.ndarray) -> np.ndarray:
    """The integer RGB -> HSV of the module docstring, written from its definition in int32 (every product fits)."""
    r, g, b = (rgb[..., k].astype(np.int32) for k in range(3))
    v = np.maximum(np.maximum(r, g), b)
    diff = v - np.minimum(np.minimum(r, g), b)
    safe = np.maximum(diff, 1)
    sdiv = np.where(v > 0, np.rint((255 << 12) / np.maximum(v, 1)), 0).astype(np.int32)
    hdiv = np.where(diff > 0, np.rint((256 << 12) / (6.0 * safe)), 0).astype(np.int32)
    s = (diff * sdiv + 2048) >> 12
    h = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * hdiv + 2048) >> 12
    h = np.clip(np.where(h < 0, h + 256, h), 0, 255)
    return np.stack([h, s, v], -1).astype(np.uint8)


def _hsv_to_rgb_reference(hsv: np.ndarray) -> np.ndarray:
    """The integer HSV -> RGB of the module docstring with a plain per-sector table."""
    h, s, v = (hsv[..., k].astype(np.int32) for k in range(3))
    m = (s * ((6 * h) & 255) + 128) >> 8

    def scale(a):
        return (v * (255 - a) + 127) // 255

    by_sector = {  # (R, G, B) per sector, the textbook HSV hexcone
        0: (v, scale(s - m), scale(s)),
        1: (scale(m), v, scale(s)),
        2: (scale(s), v, scale(s - m)),
        3: (scale(s), scale(m), v),
        4: (scale(s - m), scale(s), v),
        5: (v, scale(s), scale(m)),
    }
    sector = (6 * h) >> 8
    out = np.zeros(hsv.shape, np.int32)
    for k, channels in by_sector.items():
        out = np.where((sector == k)[..., None], np.stack(channels, -1), out)
    return out.astype(np.uint8)


def test_opencv_rgb_to_hsv_is_the_integer_definition_on_all_colours() -> None:
    rgb = _all_triples()
    np.testing.assert_array_equal(C.rgb_to_hsv(rgb), _rgb_to_hsv_reference(rgb))
    # Narrow images take OpenCV's scalar tail instead of its SIMD body: the same integers.
    for width in (1, 5, 13, 31, 33):
        part = np.ascontiguousarray(rgb[:64, 1000 : 1000 + width])
        np.testing.assert_array_equal(C.rgb_to_hsv(part), _rgb_to_hsv_reference(part))


def test_hsv_to_rgb_is_the_integer_definition_on_all_triples() -> None:
    hsv = _all_triples()
    np.testing.assert_array_equal(C.hsv_to_rgb(hsv), _hsv_to_rgb_reference(hsv))


def test_hue_shift_direction_and_identity() -> None:
    red = np.array([[[255, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(C.shift_hue(red, 1 / 3), [[[2, 255, 0]]])  # a third of the circle: green
    np.testing.assert_array_equal(C.shift_hue(red, -1 / 3), [[[2, 0, 255]]])  # the other way: blue (171/256 of the circle)
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    # The 8-bit HSV round trip quantizes hue and saturation; it stays within a few levels.
    diff = np.abs(C.shift_hue(rgb, 0.0).astype(int) - rgb)
    assert diff.max() <= 6 and diff.mean() < 0.5
    # The same operation as PIL's HSV round trip (hue 0..255 there too), up to quantization.
    pil_hsv = np.array(Image.fromarray(rgb).convert("HSV"))
    pil_hsv[..., 0] += np.uint8(round(0.1 * 255))
    pil = np.asarray(Image.fromarray(pil_hsv, mode="HSV").convert("RGB"))
    assert np.abs(C.shift_hue(rgb, 0.1).astype(int) - pil).mean() < 1.5


def _luma_reference(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., k].astype(np.int32) for k in range(3))
    return ((9798 * r + 19235 * g + 3735 * b + 16384) >> 15).astype(np.uint8)


def test_opencv_luma_is_the_integer_definition_on_all_colours() -> None:
    rgb = _all_triples()
    np.testing.assert_array_equal(C.luma(rgb), _luma_reference(rgb))
    for width in (1, 5, 13, 31, 33):  # OpenCV's scalar tails
        part = rgb[:64, 2000 : 2000 + width]  # not contiguous: luma copies it
        np.testing.assert_array_equal(C.luma(part), _luma_reference(part))


def test_opencv_products_are_the_rounded_hsv_scale_on_every_pair() -> None:
    v, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    product = cv2.multiply(v.astype(np.uint8), (255 - a).astype(np.uint8), scale=1.0 / 255.0)
    np.testing.assert_array_equal(product, (v * (255 - a) + 127) // 255)


def test_luma_and_tables_match_their_formulas() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    r, g, b = (rgb[..., k].astype(np.int64) for k in range(3))
    np.testing.assert_array_equal(C.luma(rgb), _luma_reference(rgb))
    # Within half a level (plus the 15-bit weights' rounding) of ITU-R 601-2 luma.
    assert np.abs(C.luma(rgb) - (0.299 * r + 0.587 * g + 0.114 * b)).max() <= 0.51
    for f in (0.0, 0.61, 1.0, 1.37):
        f32 = np.float32(f)
        x = rgb.astype(np.float32)
        np.testing.assert_array_equal(C.adjust_brightness(rgb, f), np.clip(np.rint(x * f32), 0, 255))
        mean = np.float32(C.luma(rgb).astype(np.int64).sum()) / np.float32(40 * 50)
        np.testing.assert_array_equal(
            C.adjust_contrast(rgb, f), np.clip(np.rint(f32 * x + (np.float32(1) - f32) * mean), 0, 255)
        )
        y = C.luma(rgb).astype(np.float32)[..., None]
        np.testing.assert_array_equal(
            C.adjust_saturation(rgb, f), np.clip(np.rint(f32 * x + (np.float32(1) - f32) * y), 0, 255)
        )
    np.testing.assert_array_equal(C.adjust_saturation(rgb, 0.0), np.repeat(C.luma(rgb)[..., None], 3, -1))


def test_device_hue_luma_and_grayscale_are_bit_identical_to_the_host() -> None:
    colours = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    shift_hue = jax.jit(D._shift_hue)
    for shift in (-0.5, -0.37, 0.0, 0.11, 0.3, 0.5):
        device = np.asarray(shift_hue(jnp.asarray(colours, jnp.float32), jnp.float32(shift)))
        np.testing.assert_array_equal(device.astype(np.uint8), C.shift_hue(colours, shift))
    np.testing.assert_array_equal(np.asarray(D._luma(jnp.asarray(colours)))[..., 0], C.luma(colours))
    batch = colours.reshape(4, 128, 512, 3)
    on = np.array([True, False, True, True])
    host = np.stack([A.apply_grayscale(im, o) for im, o in zip(batch, on)])
    np.testing.assert_array_equal(np.asarray(D.apply_grayscale(jnp.asarray(batch), jnp.asarray(on))), host)


@pytest.mark.parametrize("factor", [0.0, 0.6, 1.0, 1.4])
def test_device_cheap_ops_equal_the_host_tables_on_every_value(factor: float) -> None:
    # One image holding every (luma, value) pair the saturation table can see is too large; a
    # gradient image with every value in every channel covers the per-value tables.
    levels = np.arange(256, dtype=np.uint8)
    image = np.stack([levels, levels[::-1], np.roll(levels, 77)], -1).reshape(16, 16, 3)
    params = A.JitterParams(True, (0, 1, 2, 3), (factor, factor, factor), 0.0)
    for active in ((True, False, False, False), (False, True, False, False), (False, False, True, False)):
        host = A.apply_color_jitter(image, params, active=active)
        stacked = A.JitterParams(
            np.asarray([True]), np.asarray([params.order], np.int32), np.asarray([params.factors], np.float32),
            np.asarray([0.0], np.float32),
        )
        device = D.apply_color_jitter(jnp.asarray(image[None]), stacked, active=active)
        np.testing.assert_array_equal(np.asarray(device)[0], host)


def test_opencv_saturation_equals_its_table_on_every_pair() -> None:
    # The table is the definition (checked on all 65,536 pairs against the float32 formula); the
    # host's OpenCV arithmetic must equal it pixel for pixel, for 50 random factors.
    levels = np.arange(256, dtype=np.float32)
    for f in np.random.default_rng(0).uniform(0, 2, 50).astype(np.float32):
        table = C.saturation_table(f).reshape(256, 256)
        np.testing.assert_array_equal(
            table, np.clip(np.rint(f * levels[None, :] + (np.float32(1) - f) * levels[:, None]), 0, 255)
        )
        rgb = np.random.default_rng(int(f * 1000)).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        index = (C.luma(rgb).astype(np.int64) * 256)[..., None] + rgb
        np.testing.assert_array_equal(C.adjust_saturation(rgb, f), table.ravel()[index])
