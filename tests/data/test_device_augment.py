"""Tests for jssl.data.device_augment: device apply == host apply, sampling distributions, jit, sharding, errors."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jssl.data import augment as A
from jssl.data import fixed_point_blur as FPB
from jssl.data import device_augment as D

B = 6


def _images(channels: int, h: int = 20, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng([seed, channels]).integers(0, 256, (B, h, w, channels), dtype=np.uint8)


def _stack(records: list) -> object:
    """Host per-image parameter records -> one record of arrays with a leading batch axis."""
    return type(records[0])(*(np.asarray(field) for field in zip(*records)))


def _assert_close(host: np.ndarray, device: jax.Array, max_diff: int = 0, min_exact: float = 1.0) -> None:
    device = np.asarray(device)
    assert device.dtype == np.uint8 and device.shape == host.shape
    diff = np.abs(host.astype(int) - device.astype(int))
    assert diff.max() <= max_diff, diff.max()
    assert (diff == 0).mean() >= min_exact, (diff == 0).mean()


# ----------------------------------------------------------------------------- (a) apply: device == host


@pytest.mark.parametrize("channels", [1, 3])
def test_exact_ops_match_host(channels: int) -> None:
    x = _images(channels)
    on = np.arange(B) % 2 == 0
    checks = {
        "hflip": (lambda im, b: A.apply_hflip(im, on[b]), D.apply_hflip(x, on)),
        "grayscale": (lambda im, b: A.apply_grayscale(im, on[b]), D.apply_grayscale(x, on)),
        "solarize": (lambda im, b: A.apply_solarize(im, on[b], threshold=100), D.apply_solarize(x, on, threshold=100)),
        "center_crop": (lambda im, b: A.center_crop((7, 9))(im, None), D.apply_center_crop(x, size=(7, 9))),
        "resize_shorter": (
            lambda im, b: A.resize_shorter(10)(im, None),
            D.apply_resize(x, size=D._shorter_size(20, 24, 10)),
        ),
    }
    for name, (host_fn, device) in checks.items():
        host = np.stack([host_fn(x[b], b) for b in range(B)])
        _assert_close(host, device)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    ("h", "w", "kernel_frac"),
    [
        (20, 24, 0.1),  # radius 1
        (20, 24, 0.25),  # radius 2
        (20, 24, 0.5),  # radius 5
        (64, 72, 0.35),  # radius 11, as at 224 px with kernel_frac 0.1
        (64, 72, 0.85),  # radius 27: 55 taps, the host's sepFilter2D W pass
        (5, 7, 3.0),  # radius 7 > H: reflected more than once
    ],
)
def test_gaussian_blur_matches_host_exactly(channels: int, h: int, w: int, kernel_frac: float) -> None:
    x = _images(channels, h=h, w=w)
    params = [A.BlurParams(b % 3 != 0, 0.1 + 0.4 * b) for b in range(B)]  # gate closed for b = 0, 3
    host = np.stack([A.apply_gaussian_blur(x[b], params[b], kernel_frac=kernel_frac) for b in range(B)])
    stacked = A.BlurParams(np.asarray([p.apply for p in params]), np.asarray([p.sigma for p in params], np.float32))
    # Integer arithmetic on both sides (OpenCV's float32 on the host is exact there): bit-identical.
    device = jax.jit(lambda x, p: D.apply_gaussian_blur(x, p, kernel_frac=kernel_frac))(x, stacked)
    _assert_close(host, device)
    np.testing.assert_array_equal(host[0], x[0])  # gate closed: unchanged
    assert not np.array_equal(host[1], x[1])


def test_gaussian_blur_weights_match_host_exactly() -> None:
    f32 = np.float32
    edges = [0.1, 2.0, np.nextafter(f32(0.1), f32(0)), np.nextafter(f32(0.1), f32(1)), np.nextafter(f32(2), f32(3))]
    edges += [np.nextafter(f32(2), f32(0)), 1e-3, 1e3]
    edges += [1e-30, 2.0**-20, 2.0**-20 * 0.99, 2.0**20, 2.0**20 * 1.01, 1e30]  # clipped to [2^-20, 2^20]
    sigmas = np.concatenate([np.random.default_rng(0).uniform(0.1, 2.0, 10_000), edges]).astype(np.float32)
    for radius in (1, 2, 5, 11, 27, 40):
        host = FPB.integer_taps(sigmas, radius)
        # One scalar sigma at a time, and apply_gaussian_blur's cached lookup: the same integers.
        np.testing.assert_array_equal(np.stack([FPB.integer_taps(f32(s), radius) for s in sigmas[::50]]), host[::50])
        np.testing.assert_array_equal(np.stack([FPB.cached_taps(float(s), radius) for s in sigmas[::7]]), host[::7])
        device = jax.jit(lambda s: FPB.integer_taps(s, radius, xp=jnp))(sigmas)
        assert device.dtype == jnp.int32 and host.dtype == np.int32
        np.testing.assert_array_equal(np.asarray(device), host)
        assert np.all(host.sum(axis=1) == 4096) and host.min() >= 0
        np.testing.assert_array_equal(host, host[:, ::-1])  # symmetric
        # Close to the float Gaussian: every side tap within one unit of rint(4096 g).
        taps = np.arange(-radius, radius + 1)
        g = np.exp(-0.5 * (taps / sigmas[:10_000, None].astype(np.float64)) ** 2)
        g = np.rint(4096 * g / g.sum(axis=1, keepdims=True))
        side = np.abs(host[:10_000] - g)
        side[:, radius] = 0
        assert side.max() <= 1 and (side == 0).mean() > 0.99
    np.testing.assert_array_equal(FPB.integer_taps(f32(1e-3), 2), [0, 0, 4096, 0, 0])  # identity
    assert np.ptp(FPB.integer_taps(f32(1e30), 2)) <= 1  # a box


@pytest.mark.parametrize("channels", [1, 3])
def test_color_jitter_matches_host_exactly(channels: int) -> None:
    x = _images(channels, seed=1)
    rng = np.random.default_rng(3)
    params = [
        A.sample_color_jitter(rng, p=0.9, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.3) for _ in range(3 * B)
    ]
    for chunk in range(3):
        ps = params[chunk * B : (chunk + 1) * B]
        host = np.stack([A.apply_color_jitter(x[b], ps[b]) for b in range(B)])
        stacked = A.JitterParams(
            np.asarray([p.apply for p in ps]),
            np.asarray([p.order for p in ps], np.int32),
            np.asarray([p.factors for p in ps], np.float32),
            np.asarray([p.hue_shift for p in ps], np.float32),
        )
        _assert_close(host, D.apply_color_jitter(x, stacked))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(12, 12), (30, 17)])  # downscale (antialiased) and upscale
def test_resized_crop_matches_host_within_one_level(channels: int, size: tuple[int, int]) -> None:
    x = _images(channels, seed=2)
    rng = np.random.default_rng(1)
    boxes = [A.sample_random_resized_crop(rng, height=20, width=24, scale=(0.05, 1.0)) for _ in range(B)]
    host = np.stack([A.apply_random_resized_crop(x[b], boxes[b], size=size) for b in range(B)])
    # Same PIL convention (pixel centres, triangle widened when shrinking, 22-bit
    # weights, horizontal pass rounded to uint8 first). PIL derives the weights in
    # float64; here they are float32, and where PIL's horizontal pass lands on an
    # exact half level the last weight bit decides the rounding: <= 1 level, rare.
    _assert_close(host, D.apply_random_resized_crop(x, _stack(boxes), size=size), max_diff=1, min_exact=0.9)
    whole = np.stack([A.resize(9)(x[b], None) for b in range(B)])
    _assert_close(whole, D.apply_resize(x, size=9), max_diff=1, min_exact=0.98)


# ----------------------------------------------------------------------------- (b) sampling distributions

N = 4000


def _device_draws(sample, **kw):
    keys = jax.random.split(jax.random.key(123), N)
    return jax.tree.map(np.asarray, jax.jit(jax.vmap(lambda k: sample(k, **kw)))(keys))


def _host_draws(sample, **kw):
    rng = np.random.default_rng(321)
    return [sample(rng, **kw) for _ in range(N)]


def _hist_distance(a: np.ndarray, b: np.ndarray, bins: np.ndarray) -> float:
    """Total-variation distance between two empirical histograms."""
    ha = np.histogram(a, bins)[0] / len(a)
    hb = np.histogram(b, bins)[0] / len(b)
    return 0.5 * float(np.abs(ha - hb).sum())


@pytest.mark.parametrize(
    ("height", "width", "scale", "ratio"),
    [(32, 48, (0.08, 1.0), (3 / 4, 4 / 3)), (20, 20, (0.3, 1.0), (0.2, 5.0))],  # the second often falls back
)
def test_crop_distribution_matches_host(height, width, scale, ratio) -> None:
    kw = dict(height=height, width=width, scale=scale, ratio=ratio)
    host = _host_draws(A.sample_random_resized_crop, **kw)
    dev = _device_draws(D.sample_random_resized_crop, **kw)
    off = _device_draws(D.sample_random_resized_crop, **{**kw, "scale": (scale[0] + 0.1, 1.0)})

    def stats(top, left, h, w):
        top, left, h, w = (np.asarray(v, float) for v in (top, left, h, w))
        assert np.all((h >= 1) & (w >= 1) & (top >= 0) & (left >= 0) & (top + h <= height) & (left + w <= width))
        return h * w / (height * width), np.log(w / h), (top + h / 2) / height

    h_area, h_logr, h_cy = stats(*zip(*host))
    d_area, d_logr, d_cy = stats(*dev)
    o_area, _, _ = stats(*off)
    area_bins, logr_bins = np.linspace(0, 1, 11), np.linspace(-1.7, 1.7, 11)
    assert abs(h_area.mean() - d_area.mean()) < 0.02
    assert abs(h_logr.mean() - d_logr.mean()) < 0.03
    assert abs(h_cy.mean() - d_cy.mean()) < 0.02
    assert _hist_distance(h_area, d_area, area_bins) < 0.05
    assert _hist_distance(h_logr, d_logr, logr_bins) < 0.05
    # Not trivially passing: a slightly different scale range is clearly detected.
    assert _hist_distance(h_area, o_area, area_bins) > 0.08


def test_gate_jitter_and_blur_distributions_match_host() -> None:
    for name in ("hflip", "grayscale", "solarize"):
        host = np.mean(_host_draws(getattr(A, f"sample_{name}"), p=0.3))
        dev = _device_draws(getattr(D, f"sample_{name}"), p=0.3).mean()
        assert abs(host - 0.3) < 0.03 and abs(dev - 0.3) < 0.03, (name, host, dev)
    kw = dict(p=0.8, brightness=0.4, contrast=0.8, saturation=1.5, hue=0.2)
    host = [p for p in _host_draws(A.sample_color_jitter, **kw) if p.apply]
    dev = _device_draws(D.sample_color_jitter, **kw)
    assert abs(len(host) / N - 0.8) < 0.03 and abs(dev.apply.mean() - 0.8) < 0.03
    h_factors = np.asarray([p.factors for p in host])
    d_factors = dev.factors[dev.apply]
    # Uniform on [max(0, 1 - s), 1 + s]: means 1.0, 1.0, 1.25.
    np.testing.assert_allclose(h_factors.mean(0), [1.0, 1.0, 1.25], atol=0.04)
    np.testing.assert_allclose(d_factors.mean(0), [1.0, 1.0, 1.25], atol=0.04)
    np.testing.assert_allclose(d_factors.min(0), [0.6, 0.2, 0.0], atol=0.01)
    for shifts in (np.asarray([p.hue_shift for p in host]), dev.hue_shift[dev.apply]):
        assert abs(shifts.mean()) < 0.01 and abs(shifts.std() - 0.2 / np.sqrt(3)) < 0.01
    # Every op is equally likely at every position (a uniformly random order).
    for orders in (np.asarray([p.order for p in host]), dev.order[dev.apply]):
        assert sorted(orders[0]) == [0, 1, 2, 3]
        freq = np.stack([(orders == k).mean(0) for k in range(4)])
        np.testing.assert_allclose(freq, 0.25, atol=0.04)
    host = _host_draws(A.sample_gaussian_blur, p=0.5, sigma=(0.1, 2.0))
    dev = _device_draws(D.sample_gaussian_blur, p=0.5, sigma=(0.1, 2.0))
    h_sigma = np.asarray([p.sigma for p in host if p.apply])
    assert abs(len(h_sigma) / N - 0.5) < 0.03 and abs(dev.apply.mean() - 0.5) < 0.03
    assert abs(h_sigma.mean() - 1.05) < 0.04 and abs(dev.sigma[dev.apply].mean() - 1.05) < 0.04


# ----------------------------------------------------------------------------- (c, d) jit once, sharding

SPEC = (
    "random_resized_crop(12, scale=(0.3, 1.0), ratio=(0.75, 1.333))|color_jitter(brightness=0.4, contrast=0.4, p=0.8)"
    "|hflip|grayscale|gaussian_blur|solarize(p=0.2)"
)


def test_full_spec_compiles_once_and_is_pure() -> None:
    augment = D.parse_device_augment(SPEC)
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(images, keys):
        return augment(images, keys)

    outs = []
    for step in range(4):
        images = np.random.default_rng(step).integers(0, 256, (8, 20, 24, 3), dtype=np.uint8)
        keys = D.example_keys(seed=0, step=step, example_index=np.arange(8) + 8 * step)
        out = run(images, keys)
        assert out.dtype == jnp.uint8 and out.shape == (8, 12, 12, 3)
        outs.append(out)
    images = np.random.default_rng(3).integers(0, 256, (8, 20, 24, 3), dtype=np.uint8)
    again = run(images, D.example_keys(seed=0, step=3, example_index=np.arange(8) + 24))
    np.testing.assert_array_equal(again, outs[3])  # a resume at step 3 redraws the same views
    other_view = run(images, D.example_keys(seed=0, step=3, example_index=np.arange(8) + 24, view=1))
    assert not np.array_equal(other_view, outs[3])


def test_sharded_batch_gives_the_same_views() -> None:
    devices = np.asarray(jax.devices())
    assert devices.size == 8, "conftest sets 8 fake CPU devices"
    augment = jax.jit(D.parse_device_augment(SPEC))
    images = np.random.default_rng(0).integers(0, 256, (16, 20, 24, 3), dtype=np.uint8)
    index = np.arange(16) + 160
    single = augment(jax.device_put(images, devices[0]), D.example_keys(seed=5, step=10, example_index=index))
    sharding = NamedSharding(Mesh(devices, ("data",)), PartitionSpec("data"))
    keys = jax.device_put(D.example_keys(seed=5, step=10, example_index=index), sharding)
    sharded = augment(jax.device_put(images, sharding), keys)
    np.testing.assert_array_equal(np.asarray(sharded), np.asarray(single))
    # Each example's view depends only on its own key: the second half alone gives the same views.
    half = augment(images[8:], D.example_keys(seed=5, step=10, example_index=index[8:]))
    np.testing.assert_array_equal(np.asarray(half), np.asarray(single)[8:])


# ----------------------------------------------------------------------------- (e) errors


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown augmentation 'nope'"),
        ("hflip|blur(3)", "unknown augmentation 'blur'"),
        ("hflip(", "cannot parse"),
        ("hflip(p=2.0)", "probability"),
        ("gaussian_blur(kernel_frac=None)", "gaussian_blur.*no device twin"),
    ],
)
def test_parse_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        D.parse_device_augment(spec)


def test_host_op_without_twin_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(A.AUGMENTATIONS, "posterize", lambda bits=4: A.identity())
    A.parse_augment("hflip|posterize(3)")  # fine on the host
    with pytest.raises(ValueError, match="'posterize' has no device twin"):
        D.parse_device_augment("hflip|posterize(3)")


def test_augment_rejects_bad_inputs() -> None:
    augment = D.parse_device_augment("hflip")
    keys = D.example_keys(seed=0, step=0, example_index=np.arange(2))
    with pytest.raises(ValueError, match="uint8"):
        augment(jnp.zeros((2, 4, 4, 3), jnp.float32), keys)
    with pytest.raises(ValueError, match="keys must be"):
        augment(jnp.zeros((3, 4, 4, 3), jnp.uint8), keys)
    assert D.parse_device_augment("")(jnp.zeros((2, 4, 4, 3), jnp.uint8), keys).shape == (2, 4, 4, 3)


def test_example_keys_fold_the_view_before_the_index() -> None:
    # The measured construction (see example_keys): the keys of one (step, view) are one split of
    # the view's key, indexed by global position, so any sub-range of positions (a device's shard)
    # gets the same keys as the whole batch.
    view_key = jax.random.fold_in(jax.random.fold_in(jax.random.key(7), 3), 1)
    keys = D.example_keys(seed=7, step=3, example_index=np.arange(12), view=1)
    np.testing.assert_array_equal(jax.random.key_data(keys), jax.random.key_data(jax.random.split(view_key, 12)))
    part = D.example_keys(seed=7, step=3, example_index=np.arange(4, 8), view=1)
    np.testing.assert_array_equal(jax.random.key_data(part), jax.random.key_data(keys[4:8]))
