"""Tests for jssl.data.pipeline: determinism, workers, sharding, checkpoints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from jssl import data
from tests.batch_helpers import assert_same, take

SPEC = "random_resized_crop(8, scale=(0.3, 1.0))|hflip|color_jitter(0.4, 0.4, p=0.8)|solarize(p=0.3)"


def _source(n: int = 30, size: int = 10) -> data.ArraySource:
    images = np.random.default_rng(0).integers(0, 256, (n, size, size, 1), dtype=np.uint8)
    return data.ArraySource(images, np.arange(n))


def _iterator(source=None, **overrides):
    kwargs = dict(global_batch_size=4, num_views=2, augment=SPEC, seed=3)
    kwargs.update(overrides)
    return data.make_train_iterator(source if source is not None else _source(), **kwargs)


def test_batch_structure_and_epochs() -> None:
    batches = take(_iterator(), 16)  # 30 records / 4 = 7 batches per epoch
    first = batches[0]
    assert set(first) == {"view_0", "view_1", "label"}
    assert first["view_0"].shape == (4, 8, 8, 1) and first["view_0"].dtype == np.uint8
    assert first["label"].shape == (4,) and first["label"].dtype == np.int32
    epoch0 = np.concatenate([b["label"] for b in batches[:7]])
    epoch1 = np.concatenate([b["label"] for b in batches[7:14]])
    assert len(set(epoch0)) == 28 and len(set(epoch1)) == 28  # drop_remainder, no repeats
    assert not np.array_equal(epoch0, epoch1)  # reshuffled every epoch
    # Views differ from each other: independent augmentation per view.
    assert not np.array_equal(first["view_0"], first["view_1"])


def test_same_seed_same_batches_other_seed_differs() -> None:
    assert_same(take(_iterator(), 9), take(_iterator(), 9))
    other = take(_iterator(seed=4), 1)[0]
    assert not np.array_equal(other["view_0"], take(_iterator(), 1)[0]["view_0"])


def test_views_are_a_function_of_seed_and_position() -> None:
    """Identical records at different positions get different views; the same
    record at the same position always gets the same ones."""
    constant = data.ArraySource(
        np.full((12, 10, 10, 1), 200, np.uint8) + np.arange(10, dtype=np.uint8)[None, None, :, None], np.zeros(12, int)
    )
    batch = take(_iterator(constant, augment="random_resized_crop(8)"), 1)[0]
    assert len({v.tobytes() for v in batch["view_0"]}) > 1
    again = take(_iterator(constant, augment="random_resized_crop(8)"), 1)[0]
    np.testing.assert_array_equal(batch["view_0"], again["view_0"])


def test_per_view_specs() -> None:
    batch = take(_iterator(num_views=3, augment=["resize(6)", "hflip(p=1.0)|resize(5)", ""]), 1)[0]
    assert batch["view_0"].shape[1:3] == (6, 6)
    assert batch["view_1"].shape[1:3] == (5, 5)
    assert batch["view_2"].shape[1:3] == (10, 10)
    with pytest.raises(ValueError, match="one per view"):
        _iterator(num_views=3, augment=["hflip", "hflip"])
    with pytest.raises(ValueError, match="unknown augmentation"):
        _iterator(augment="flip")


def test_process_sharding_is_disjoint_and_complete() -> None:
    source = _source(n=24)
    per_process = []
    for index in range(3):
        it = _iterator(source, global_batch_size=6, process_index=index, process_count=3)
        batches = take(it, 4)  # 8 records per shard, local batch 2: one epoch
        assert batches[0]["label"].shape == (2,)
        per_process.append({int(x) for b in batches for x in b["label"]})
    assert all(len(s) == 8 for s in per_process)
    assert set().union(*per_process) == set(range(24))
    assert not (per_process[0] & per_process[1] or per_process[1] & per_process[2] or per_process[0] & per_process[2])


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="multiple of process_count"):
        _iterator(global_batch_size=5, process_count=2)
    with pytest.raises(ValueError, match="exceeds the 15 records"):
        _iterator(global_batch_size=32, process_count=2)
    with pytest.raises(ValueError, match="is empty"):
        data.make_train_iterator([], global_batch_size=1, num_views=1, augment="", seed=0)
    with pytest.raises(ValueError, match="process_index"):
        _iterator(process_index=2, process_count=2)
    with pytest.raises(ValueError, match="seed"):
        _iterator(seed=-1)


def test_state_restore_single_process() -> None:
    reference = take(_iterator(), 12)
    it = _iterator()
    take(it, 5)
    state = it.get_state()
    assert json.loads(json.dumps(state)) == state  # small and JSON-serializable
    resumed = _iterator()
    resumed.set_state(state)
    assert_same(take(resumed, 7), reference[5:12])


def test_workers_match_in_process_and_restore_exactly() -> None:
    reference = take(_iterator(), 10)
    it = _iterator(num_workers=2)
    try:
        head = take(it, 4)
        assert_same(head, reference[:4])  # 0 vs 2 workers: identical batches
        state = it.get_state()
        assert len(json.dumps(state)) < 2000
        assert_same(take(it, 6), reference[4:10])
    finally:
        it.close()
    resumed = _iterator(num_workers=2)
    try:
        resumed.set_state(json.loads(json.dumps(state)))
        assert_same(take(resumed, 6), reference[4:10])
    finally:
        resumed.close()


def test_worker_init_ignores_ctrl_c_and_runs_opencv_single_threaded() -> None:
    # In a child process: both are process-wide settings this test process must keep.
    import subprocess

    code = (
        "import signal, cv2; cv2.setNumThreads(2); from jssl.data import pipeline; pipeline.init_worker(0, 2); "
        "print(cv2.getNumThreads(), signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "True"]


def test_orbax_checkpoint_manager_round_trip(tmp_path: Path) -> None:
    ocp = pytest.importorskip("orbax.checkpoint")
    reference = take(_iterator(), 8)
    it = _iterator()
    take(it, 3)
    params = {"w": np.arange(4.0)}
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.save(3, args=ocp.args.Composite(state=ocp.args.StandardSave(params), data=data.iterator_state_args(it)))
        manager.wait_until_finished()
    take(it, 2)  # moving on must not affect the saved state
    fresh = _iterator()
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        restored = manager.restore(
            manager.latest_step(),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(params), data=data.iterator_state_args(fresh, restore=True)
            ),
        )
    assert restored["data"] is fresh
    np.testing.assert_array_equal(restored["state"]["w"], params["w"])
    assert_same(take(fresh, 5), reference[3:8])


def test_tfds_through_pipeline_without_tensorflow(tiny_tfds) -> None:
    source = data.get_source("tfds", "train", tfds_name=tiny_tfds.name, data_dir=str(tiny_tfds.data_dir))
    it = data.make_train_iterator(
        source,
        global_batch_size=8,
        num_views=2,
        augment="random_resized_crop(6)|color_jitter|grayscale|gaussian_blur",
        seed=0,
    )
    batches = take(it, 4)  # 24 records: 3 batches per epoch, then epoch 2
    assert batches[0]["view_0"].shape == (8, 6, 6, 3) and batches[0]["view_1"].dtype == np.uint8
    assert sorted(np.concatenate([b["label"] for b in batches[:3]]).tolist()) == sorted(
        [i % tiny_tfds.num_classes for i in range(24)]
    )
    assert "tensorflow" not in sys.modules


def test_load_arrays() -> None:
    source = _source(n=7)
    images, labels = data.load_arrays(source)
    assert images.shape == (7, 10, 10, 1) and labels.dtype == np.int32

    class Plain:  # protocol only, no arrays attribute
        def __len__(self) -> int:
            return 7

        def __getitem__(self, i: int):
            return source[i]

    images2, labels2 = data.load_arrays(Plain())
    np.testing.assert_array_equal(images2, images)
    np.testing.assert_array_equal(labels2, labels)

    first, first_labels = data.load_arrays(Plain(), limit=3)
    np.testing.assert_array_equal(first, images[:3])
    np.testing.assert_array_equal(first_labels, labels[:3])


def test_load_arrays_preprocesses_images_of_varying_size() -> None:
    class Varying:  # ImageNet-like: every image has its own size
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int):
            return {"image": np.full((10 + i, 14 - i, 3), i, np.uint8), "label": np.int32(i)}

    with pytest.raises(ValueError, match="Set data.eval_preprocess"):
        data.load_arrays(Varying())
    images, labels = data.load_arrays(Varying(), preprocess="resize_shorter(8)|center_crop(8)")
    assert images.shape == (4, 8, 8, 3) and labels.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(images[2], 2)
