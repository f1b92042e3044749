"""The truncated Gaussian blur in fixed point: integer taps, the host filter, shared with the device twin.

:func:`jssl.data.augment.apply_gaussian_blur` documents the definition; this module holds its
integer taps (:func:`integer_taps`, one code for numpy and ``jax.numpy``), a per-exponent cache of
them for the host, the reflect-101 indices the device twin gathers with, and the host's OpenCV
filter (:func:`filter_image`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from jssl.data import opencv

__all__ = ["TAPS_SUM", "cached_taps", "filter_image", "integer_taps", "reflect_index"]

# The truncated Gaussian blur is a fixed-point separable filter, defined in
# integers so that the host (OpenCV) and the device twin (int32 shifted adds)
# agree bit for bit on every backend; see apply_gaussian_blur. Its integer taps
# come from integer_taps, which uses only operations that IEEE arithmetic
# rounds the same everywhere: no exp (numpy's and XLA's float32 exp differ in
# the last bit for about a third of the arguments, enough to move an integer tap
# in one draw of 10^4), no float division (XLA rewrites a quotient by a
# broadcast into a product with the reciprocal, and on GPUs lowers f32 division
# to PTX div.full, which is not correctly rounded) and no float sums (a GPU
# fuses a product and a sum into one FMA).
TAPS_SUM = 4096  # the integer taps sum to 2^12
# Sigma is clipped to [2^-20, 2^20] (a point and a box at any radius), its mantissa rounded to
# _SIGMA_BITS bits: 1 / (2 sigma^2) is a table entry times a power of two.
_SIGMA_BITS = 14
_SIGMA_RANGE = (2.0**-20, 2.0**20)
_HALF_INV_SQUARE = (0.5 / (1 + (np.arange(1 << _SIGMA_BITS) + 0.5) / (1 << _SIGMA_BITS)) ** 2).astype(np.float32)
# exp(-x) for x = q / 2^16 (q an integer, at most 2^20) is _EXP_HI[q >> 11] * _EXP_LO[q & 2047]; beyond
# x = 16, exp(-x) * 2^18 rounds to 0 anyway.
_EXP_LIMIT = 16.0
_EXP_HI = np.exp(-np.arange((16 << 5) + 1) / 32.0).astype(np.float32)  # exp(-k / 2^5), k <= 512
_EXP_LO = np.exp(-np.arange(1 << 11) / 65536.0).astype(np.float32)  # exp(-k / 2^16), k < 2^11
# Below this many taps OpenCV's filter2D convolves directly; from 50 taps (8-bit input, or any input
# without SSE3; 130 for float input with SSE3) it switches to a DFT, which is not exact. The W pass
# uses filter2D under the bound (3x faster than sepFilter2D for a row kernel) and sepFilter2D, which
# never takes a DFT, from it on.
_CV_FILTER2D_MAX_TAPS = 49


@functools.lru_cache(maxsize=64)
def reflect_index(n: int, radius: int) -> np.ndarray:
    return np.pad(np.arange(n), radius, mode="reflect")


def integer_taps(sigma: Any, radius: int, xp: Any = np) -> Any:
    """Integer Gaussian taps ``int32 [..., 2 * radius + 1]`` summing to 4096, for float32 ``sigma [...]``.

    ``xp`` is numpy (the host) or ``jax.numpy`` (the device twin, per
    example): the same code, made only of integer arithmetic, table lookups and
    float32 products, ``floor`` and ``rint`` (which IEEE rounds identically on
    every backend), so both sides get the same integers for every sigma.

    Tap ``t`` is ``round(4096 * e_t / sum(e))`` (half up) for
    ``e_t ~= exp(-t^2 / (2 sigma^2))``, with sigma's mantissa quantised to 14
    bits (the table holds each step's midpoint) and ``t^2 / (2 sigma^2)`` in
    16-bit fixed point, e_t itself to 2^-18; the centre tap then takes the
    rounding remainder, so the taps sum to 4096 exactly (the side taps round
    down instead where rounding half up would leave it negative, which takes
    sigma >> radius >= ~150). Every side tap is within one unit of
    ``rint(4096 * g)`` for the float Gaussian ``g``; the centre absorbs the
    others' rounding.
    """
    s = xp.clip(xp.asarray(sigma, xp.float32), xp.float32(_SIGMA_RANGE[0]), xp.float32(_SIGMA_RANGE[1]))
    bits = s.view(xp.int32)  # s = 2^exponent * (1 + mantissa / 2^23), s > 0
    exponent = (bits >> 23) - 127
    # 1 / (2 s^2) = _HALF_INV_SQUARE[top mantissa bits] * 2^(-2 exponent); the power of two built from its bits.
    scale = ((127 - 2 * exponent) << 23).view(xp.float32)
    a = xp.asarray(_HALF_INV_SQUARE)[(bits >> (23 - _SIGMA_BITS)) & ((1 << _SIGMA_BITS) - 1)] * scale
    t = xp.arange(1, radius + 1, dtype=xp.float32)  # one side; the taps are symmetric
    x = xp.minimum((t * t) * a[..., None], xp.float32(_EXP_LIMIT))  # t^2 / (2 s^2)
    q = xp.floor(x * xp.float32(1 << 16)).astype(xp.int32)  # <= 2^20
    e = xp.asarray(_EXP_HI)[q >> 11] * xp.asarray(_EXP_LO)[q & 2047]
    big = xp.rint(e * xp.float32(1 << 18)).astype(xp.int32)  # the centre's is exp(0) * 2^18
    # At most 2^18 (2 radius + 1); the rounding below stays in int32 while radius < 4096.
    total = 2 * big.sum(axis=-1, keepdims=True, dtype=xp.int32) + (1 << 18)
    side = (big * TAPS_SUM + total // 2) // total  # round half up; big * 4096 <= 2^30
    # Rounded up, many near-equal taps (sigma >> radius, from radius ~150 on) can leave the centre
    # negative; rounded down they cannot. Non-negative taps keep every sum in the bounds that make
    # the float32 host path exact.
    floored = (big * TAPS_SUM) // total
    side = xp.where(2 * side.sum(axis=-1, keepdims=True, dtype=xp.int32) > TAPS_SUM, floored, side)
    centre = TAPS_SUM - 2 * side.sum(axis=-1, keepdims=True, dtype=xp.int32)
    return xp.concatenate([side[..., ::-1], centre, side], axis=-1)


# The host looks its taps up in blocks of integer_taps over all the mantissas of one exponent
# (which is all they depend on): 50-80 us of small numpy operations per call become a few us; a
# block costs 11 ms and 0.75 MB at radius 11. Larger radii compute their taps each call.
_BLOCK_MAX_RADIUS = 32


@functools.lru_cache(maxsize=16)
def _taps_block(exponent_bits: int, radius: int) -> np.ndarray:
    mantissas = np.arange(1 << _SIGMA_BITS, dtype=np.int32) << (23 - _SIGMA_BITS)
    block = integer_taps(((exponent_bits << 23) | mantissas).view(np.float32), radius).astype(np.int16)
    block.flags.writeable = False
    return block


def cached_taps(sigma: float, radius: int) -> np.ndarray:
    """``integer_taps(float32(sigma), radius)`` as float32, from a cached block where the radius allows."""
    s = np.float32(sigma)
    if radius > _BLOCK_MAX_RADIUS or not _SIGMA_RANGE[0] <= s <= _SIGMA_RANGE[1]:
        return integer_taps(s, radius).astype(np.float32)
    bits = int(s.view(np.int32))
    block = _taps_block(bits >> 23, radius)
    return block[(bits >> (23 - _SIGMA_BITS)) & ((1 << _SIGMA_BITS) - 1)].astype(np.float32)


def filter_image(image: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    """The host's fixed-point blur of ``uint8 [H, W, C]`` (see ``apply_gaussian_blur`` for the definition)."""
    cv2 = opencv.cv2()
    taps = cached_taps(sigma, radius)
    border = cv2.BORDER_REFLECT_101
    one = np.ones((1, 1), np.float32)
    # Pass 1 along H: s1 / 256 + 1/2, floored in place to t. (OpenCV's reflect-101 border agrees with
    # np.pad's "reflect" also where the kernel reaches past the far edge: reflected repeatedly.)
    x = cv2.sepFilter2D(image, cv2.CV_32F, one, (taps / 256)[:, None], delta=0.5, borderType=border)
    np.floor(x, out=x)
    # Pass 2 along W: s2 / 65536 + 1/2, truncated to uint8 (it is positive).
    row = (taps / 65536)[None, :]
    if row.size <= _CV_FILTER2D_MAX_TAPS:
        x = cv2.filter2D(x, cv2.CV_32F, row, delta=0.5, borderType=border)
    else:
        x = cv2.sepFilter2D(x, cv2.CV_32F, row, one, delta=0.5, borderType=border)
    return x.astype(np.uint8).reshape(image.shape)
