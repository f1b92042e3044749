"""Tests for encoded sources and jssl.data.decode: reduced JPEG decoding, the device-path square crop."""

from __future__ import annotations

import io
import pickle
import sys

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from jssl import data
from jssl.data.augment import CropBox, apply_view, parse_view, sample_view
from tests.batch_helpers import assert_same, take

SPEC = "random_resized_crop(16, scale=(0.5, 1.0))|hflip|color_jitter(0.4, 0.4, p=0.8)"


def _jpeg_source(tiny_jpegs, **options):
    return data.get_source("tfds", "train", tfds_name=tiny_jpegs.name, data_dir=str(tiny_jpegs.data_dir), **options)


def _full_decode(encoded: bytes, channels: int = 3) -> np.ndarray:
    with Image.open(io.BytesIO(encoded)) as im:
        return np.asarray(im.convert("RGB" if channels == 3 else "L"))


@pytest.fixture
def drafts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The sizes PIL's JPEG draft is asked for, in order."""
    requested: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        requested.append((self.size, size))
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return requested


def test_encoded_tfds_source_yields_bytes_without_tensorflow(tiny_jpegs) -> None:
    encoded = _jpeg_source(tiny_jpegs, decode=False)
    decoded = _jpeg_source(tiny_jpegs)
    assert encoded.channels == 3 and "decode=False" in repr(encoded)
    # tfds stores records shuffled: find each stored JPEG's generation index by its bytes.
    index_of = {tiny_jpegs.jpeg(i): i for i in range(tiny_jpegs.size)}
    found = []
    for r in range(len(encoded)):
        image = encoded[r]["image"]
        assert data.is_encoded(image) and image.shape == () and image.dtype == object
        i = index_of[image[()]]
        found.append(i)
        assert encoded[r]["label"] == i % 3 == decoded[r]["label"]
        # Decoded with the source's channels, it is what the decoding source yields: the
        # grayscale JPEG (index 0) gets its luma repeated into 3 channels, as tfds does.
        pixels = data.decode_image(image, channels=encoded.channels)
        assert pixels.shape == (*tiny_jpegs.hw(i), 3)
        np.testing.assert_array_equal(pixels, decoded[r]["image"])
        if i == 0:
            assert data.decode_image(image).shape == (*tiny_jpegs.hw(0), 1)  # channels unknown: as stored
            np.testing.assert_array_equal(pixels[..., 0], pixels[..., 2])
    assert sorted(found) == list(range(tiny_jpegs.size))
    assert data.record_image_shape(encoded) == data.decode_image(encoded[0]["image"], channels=3).shape
    batch = encoded.__getitems__([1, 2])
    assert [r["image"][()] for r in batch] == [encoded[1]["image"][()], encoded[2]["image"][()]]
    clone = pickle.loads(pickle.dumps(encoded))
    assert clone[5]["image"][()] == encoded[5]["image"][()]
    assert np.stack([encoded[0]["image"], encoded[1]["image"]]).shape == (2,)  # batchable
    with pytest.raises(ValueError, match=r"does not take options \['decode'\]"):
        data.get_source("digits", "train", decode=False)
    assert "tensorflow" not in sys.modules


@pytest.mark.parametrize(
    ("boxes", "sizes", "expected"),
    [
        ([CropBox(0, 0, 32, 32)], [(16, 16)], 2),  # exactly 2x the output: half size is 1:1
        ([CropBox(0, 0, 31, 32)], [(16, 16)], 1),  # one row short of 2x in height
        ([CropBox(0, 0, 32, 31)], [(16, 16)], 1),  # and in width
        ([CropBox(5, 7, 64, 64)], [(16, 16)], 4),
        ([CropBox(0, 0, 127, 128)], [(16, 16)], 4),  # 7.9x: not yet 8
        ([CropBox(0, 0, 128, 128)], [(16, 16)], 8),
        ([CropBox(0, 0, 4096, 4096)], [(16, 16)], 8),  # 8 is the largest DCT reduction
        ([CropBox(0, 0, 48, 100)], [(12, 50)], 2),  # non-square output, width limits
        ([CropBox(0, 0, 10, 10)], [(16, 16)], 1),  # upsampled view: full size
        ([CropBox(0, 0, 128, 128), CropBox(0, 0, 40, 40)], [(16, 16), (16, 16)], 2),  # smallest window rules
        ([CropBox(0, 0, 128, 128), CropBox(0, 0, 128, 128)], [(16, 16), (32, 32)], 4),  # largest output rules
        ([CropBox(0, 0, 128, 128), None], [(16, 16), (16, 16)], 1),  # a view without a window
        ([], [], 1),
    ],
)
def test_jpeg_draft_scale(boxes, sizes, expected) -> None:
    assert data.jpeg_draft_scale(boxes, sizes) == expected


def test_jpeg_draft_scale_needs_one_size_per_box() -> None:
    with pytest.raises(ValueError, match="one output size per box"):
        data.jpeg_draft_scale([CropBox(0, 0, 8, 8)], [])


def _smooth_jpeg(tiny_jpegs, height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(tiny_jpegs.smooth(height, width, 0)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize("spec", [SPEC, "resize(24)|grayscale(p=0.5)"])
def test_reduced_decode_views_match_full_decode(spec: str, drafts, tiny_jpegs) -> None:
    views = [parse_view(spec)] * 2
    encoded = _smooth_jpeg(tiny_jpegs, 200, 240)
    scales = []
    for seed in range(6):
        out = data.decode_views(encoded, views, np.random.default_rng(seed), channels=3)
        # The same draws on the fully decoded array: the reference views.
        rng = np.random.default_rng(seed)
        params = [sample_view(steps, rng, height=200, width=240) for steps in views]
        full = _full_decode(encoded)
        boxes = [
            p[0] if steps[0].name == "random_resized_crop" else CropBox(0, 0, 200, 240)
            for steps, p in zip(views, params)
        ]
        scales.append(data.jpeg_draft_scale(boxes, [steps[0].size for steps in views]))
        for steps, p, view in zip(views, params, out):
            reference = apply_view(full, steps, p)
            assert view.shape == reference.shape == (*steps[0].size, 3) and view.dtype == np.uint8
            # Only the anti-aliasing differs (DCT block averages, then a shorter bilinear filter).
            assert np.abs(view.astype(int) - reference.astype(int)).mean() < 2
    # Every reduced decode asked PIL for exactly the chosen scale.
    reduced = [s for s in scales if s > 1]
    assert reduced and len(drafts) == len(reduced)
    for (full_size, requested), s in zip(drafts, reduced):
        assert full_size == (240, 200) and requested == (240 // s, 200 // s)


def test_views_without_a_leading_window_decode_at_full_size(drafts, tiny_jpegs) -> None:
    encoded = _smooth_jpeg(tiny_jpegs, 200, 240)
    views = [parse_view("random_resized_crop(16)"), parse_view("hflip|random_resized_crop(16)")]
    rng = np.random.default_rng(0)
    out = data.decode_views(encoded, views, rng, channels=3)
    rng = np.random.default_rng(0)
    params = [sample_view(steps, rng, height=200, width=240) for steps in views]
    full = _full_decode(encoded)
    for steps, p, view in zip(views, params, out):
        np.testing.assert_array_equal(view, apply_view(full, steps, p))
    assert drafts == []


def test_encoded_png_pipeline_equals_decoded_pipeline(tiny_tfds) -> None:
    """Drawing all views' parameters first keeps the random stream: a lossless encoded
    source gives exactly the batches of the decoded one."""

    def batches(decode: bool) -> list[dict]:
        source = data.get_source(
            "tfds", "train", tfds_name=tiny_tfds.name, data_dir=str(tiny_tfds.data_dir), decode=decode
        )
        spec = "random_resized_crop(6)|hflip|color_jitter|grayscale|gaussian_blur(p=1.0)|solarize(p=0.5)"
        it = data.make_train_iterator(source, global_batch_size=8, num_views=2, augment=spec, seed=1)
        return take(it, 4)

    assert_same(batches(False), batches(True))
    assert "tensorflow" not in sys.modules


def test_encoded_jpeg_pipeline_shapes_and_workers(tiny_jpegs) -> None:
    source = _jpeg_source(tiny_jpegs, decode=False)
    crops = ["random_resized_crop(16, scale=(0.5, 1.0))|hflip", "random_resized_crop(8)|grayscale"]

    def iterator(workers: int):
        return data.make_train_iterator(
            source, global_batch_size=4, num_views=2, augment=crops, seed=5, num_workers=workers
        )

    reference = take(iterator(0), 5)
    assert reference[0]["view_0"].shape == (4, 16, 16, 3) and reference[0]["view_1"].shape == (4, 8, 8, 3)
    assert reference[0]["view_0"].dtype == np.uint8 and reference[0]["label"].dtype == np.int32
    it = iterator(2)
    try:
        assert_same(take(it, 5), reference)
    finally:
        it.close()
    assert "tensorflow" not in sys.modules


def test_center_square_decoded_and_encoded(drafts, tiny_jpegs) -> None:
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 6:34] = 200  # uniform over the central 20x20 square and the bilinear filter's reach
    square = data.center_square(wide, size=10)
    assert square.shape == (10, 10, 3) and (square == 200).all()
    same = np.ones((10, 10, 1), np.uint8)
    assert data.center_square(same, size=10) is same

    encoded = data.encoded_image(_smooth_jpeg(tiny_jpegs, 100, 150))
    full = _full_decode(encoded[()])
    reference = data.center_square(full, size=24)
    reduced = data.center_square(encoded, size=24, channels=3)  # shorter side 100 >= 4 * 24
    assert reduced.shape == (24, 24, 3)
    assert drafts == [((150, 100), (150 // 4, 100 // 4))]
    assert np.abs(reduced.astype(int) - reference.astype(int)).mean() < 2
    gray = data.center_square(encoded, size=60, channels=1)  # 100 < 2 * 60: full size
    assert gray.shape == (60, 60, 1) and len(drafts) == 1


def test_device_source_size_on_variable_size_images(tiny_jpegs) -> None:
    for decode in (False, True):
        source = _jpeg_source(tiny_jpegs, decode=decode)
        it = data.make_train_iterator(
            source,
            global_batch_size=4,
            num_views=2,
            augment="random_resized_crop(16)",
            seed=0,
            augment_on="device",
            device_source_size=32,
        )
        batches = take(it, 4)
        assert set(batches[0]) == {"image", "label"}
        assert batches[0]["image"].shape == (4, 32, 32, 3) and batches[0]["image"].dtype == np.uint8


def test_device_path_errors_name_device_source_size(tiny_jpegs) -> None:
    source = _jpeg_source(tiny_jpegs, decode=False)
    it = data.make_train_iterator(
        source, global_batch_size=12, num_views=2, augment="random_resized_crop(16)", seed=0, augment_on="device"
    )
    with pytest.raises(ValueError, match="equally sized.*Set data.device_source_size"):
        next(it)
    with pytest.raises(ValueError, match="only applies with data.augment_on='device'"):
        data.make_train_iterator(source, global_batch_size=4, num_views=1, augment="", seed=0, device_source_size=8)
    with pytest.raises(ValueError, match="positive int"):
        data.make_train_iterator(
            source, global_batch_size=4, num_views=1, augment="", seed=0, augment_on="device", device_source_size=0
        )


def test_encoded_image_errors() -> None:
    with pytest.raises(ValueError, match="must hold bytes"):
        data.decode_image(np.array("not bytes", dtype=object))
    png = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png, format="PNG")
    with pytest.raises(ValueError, match="1 or 3 channels; the data set has 4"):
        data.decode_image(png.getvalue(), channels=4)
    assert data.decode_image(png.getvalue()).shape == (4, 4, 3)
