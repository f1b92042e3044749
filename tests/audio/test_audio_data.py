"""Audio data: eSpeak NG digits and their cache, TFDS audio, the waveform pipeline, log-mel, AudioInputs."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jssl.data import audio, spoken_digits
from jssl.methods import CPC


def _random_source(n=24, seed=0, max_len=900):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(200, max_len, n)
    waves = np.zeros((n, max_len), np.float32)
    for i, length in enumerate(lengths):
        waves[i, :length] = rng.uniform(-1, 1, length)
    return audio.WaveformSource(waves, lengths, np.arange(n) % 10, name="random")


# ---- eSpeak NG digits ----------------------------------------------------------------------------


def test_synthesis_is_one_word_of_speech_at_16khz():
    a = spoken_digits.synthesize("seven", voice="en+m1", rate=150, pitch=50)
    b = spoken_digits.synthesize("seven", voice="en+m1", rate=150, pitch=50)
    fast = spoken_digits.synthesize("seven", voice="en+m1", rate=300, pitch=50)
    assert a.dtype == np.float32 and a.ndim == 1
    # eSpeak NG varies its rendering by a few ms per call (the cache fixes the data set).
    assert abs(len(a) - len(b)) < 0.05 * len(a)
    assert 0.2 * 16000 < len(a) < 1.2 * 16000  # one word
    assert len(fast) < len(a)  # the rate is applied
    assert 0.05 < np.abs(a).max() <= 1.0


def test_unknown_voice_is_a_clear_error():
    with pytest.raises(ValueError, match="no voice"):
        spoken_digits.synthesize("one", voice="xx+nobody", rate=150, pitch=50)


def test_digits_cache_and_voice_split(tmp_path, monkeypatch):
    monkeypatch.setenv("JSSL_CACHE", str(tmp_path))
    settings = dict(voices=("en+m1", "en+f2"), rates=(160,), pitches=(50,))
    first = spoken_digits.synthesize_digits(**settings)
    files = list(tmp_path.glob("spoken_digits_*.npz"))
    assert len(files) == 1
    again = spoken_digits.synthesize_digits(**settings)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    np.testing.assert_array_equal(first["labels"], np.tile(np.arange(10), 2))
    assert set(first["voices"]) == {0, 1}
    spoken_digits.synthesize_digits(**{**settings, "pitches": (60,)})
    assert len(list(tmp_path.glob("spoken_digits_*.npz"))) == 2  # other settings, other file
    options = dict(voices=settings["voices"], held_out_voices=("en+f2",), rates=(160,), pitches=(50,))
    train = audio.get_audio_source("spoken_digits", "train", **options)
    test = audio.get_audio_source("spoken_digits", "test", **options)
    assert len(train) == len(test) == 10
    assert set(train.speakers) == {0} and set(test.speakers) == {1}
    record = test[3]
    assert record["label"] == 3 and record["waveform"].dtype == np.float32
    with pytest.raises(ValueError, match="not among the voices"):
        audio.get_audio_source("spoken_digits", "test", **{**options, "held_out_voices": ("en+m7",)})


# ---- clear errors -------------------------------------------------------------------------------


def test_clear_errors():
    with pytest.raises(ValueError, match="22050 Hz"):
        audio.WaveformSource(np.zeros((2, 10)), np.array([5, 5]), np.array([0, 1]), sample_rate=22050)
    with pytest.raises(ValueError, match="mono"):
        audio.check_waveform(np.zeros((2, 100)), where="test")
    with pytest.raises(ValueError, match="empty"):
        audio.WaveformSource(np.zeros((0, 10)), np.zeros(0, int), np.zeros(0, int))
    with pytest.raises(ValueError, match=r"\[clips, samples\]"):
        audio.WaveformSource(np.zeros((2, 10, 2)), np.array([5, 5]), np.array([0, 1]))
    with pytest.raises(ValueError, match="unknown audio data set"):
        audio.get_audio_source("librivox", "train")
    with pytest.raises(ValueError, match="exceeds"):
        audio.make_audio_iterator(_random_source(n=4), global_batch_size=8, crop_samples=100, seed=0)


# ---- pipeline ------------------------------------------------------------------------------------


def test_crops_masks_and_determinism():
    source = _random_source()
    it1 = audio.make_audio_iterator(source, global_batch_size=8, crop_samples=600, seed=3)
    it2 = audio.make_audio_iterator(source, global_batch_size=8, crop_samples=600, seed=3)
    for _ in range(4):  # past the end of the first epoch (3 batches)
        a, b = next(it1), next(it2)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert a["waveform"].shape == a["mask"].shape == (8, 600) and a["mask"].dtype == bool
    lengths = a["mask"].sum(1)
    # Masks are prefixes; clips shorter than the crop are whole and zero beyond.
    np.testing.assert_array_equal(a["mask"], np.arange(600)[None] < lengths[:, None])
    assert np.all(a["waveform"][~a["mask"]] == 0)
    other = next(audio.make_audio_iterator(source, global_batch_size=8, crop_samples=600, seed=4))
    assert not np.array_equal(other["waveform"], a["waveform"])


def test_crop_is_a_window_of_the_clip():
    clip = np.arange(1000, dtype=np.float32) / 1000
    source = audio.WaveformSource(clip[None], np.array([1000]), np.array([0]))
    batch = next(audio.make_audio_iterator(source, global_batch_size=1, crop_samples=300, seed=0))
    w = batch["waveform"][0]
    start = int(round(w[0] * 1000))
    np.testing.assert_allclose(w, clip[start : start + 300])
    assert batch["mask"].all()


def test_iterator_resume_is_exact():
    source = _random_source()
    it = audio.make_audio_iterator(source, global_batch_size=4, crop_samples=500, seed=1)
    for _ in range(5):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(3)]
    resumed = audio.make_audio_iterator(source, global_batch_size=4, crop_samples=500, seed=1)
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_process_shards_are_disjoint():
    source = _random_source(n=16)
    seen = []
    for p in range(2):
        it = audio.make_audio_iterator(source, global_batch_size=8, crop_samples=900, seed=0, process_index=p,
                                       process_count=2)  # fmt: skip
        batch = next(it)
        assert batch["waveform"].shape == (4, 900)
        seen.append({tuple(np.round(w[:5], 6)) for w in batch["waveform"]})
    assert not seen[0] & seen[1]


# ---- log-mel baseline ---------------------------------------------------------------------------


def test_log_mel_peaks_at_the_tone_and_ignores_padding():
    t = np.arange(8000) / 16000
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)[None]
    spec = audio.log_mel_spectrogram(tone)
    assert spec.shape == (1, 1 + (8000 - 400) // 160, 40)
    edges = 700 * (10 ** (np.linspace(2595 * np.log10(1 + 20 / 700), 2595 * np.log10(1 + 8000 / 700), 42) / 2595) - 1)
    band = int(np.argmax(spec[0].mean(0)))
    assert edges[band] < 1000 < edges[band + 2]
    short = audio.log_mel_features(tone, np.ones_like(tone, bool))
    padded = np.concatenate([tone, np.zeros((1, 4000), np.float32)], 1)
    mask = np.arange(12000)[None] < 8000
    np.testing.assert_allclose(audio.log_mel_features(padded, mask), short, rtol=1e-5, atol=1e-5)
    assert short.shape == (1, 80)


# ---- TFDS audio ---------------------------------------------------------------------------------


class JsslTinyAudio(tfds.core.GeneratorBasedBuilder):
    """Six int16 clips of 400..900 samples stored as a plain Tensor feature (builds without TensorFlow,
    which tfds's `Audio` feature needs)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16),
                "label": tfds.features.ClassLabel(num_classes=3),
            }),
        )  # fmt: skip

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        rng = np.random.default_rng(0)
        for i in range(6):
            yield i, {"audio": rng.integers(-3000, 3000, 400 + 100 * i, dtype=np.int16), "label": i % 3}


# A one-part module name: tfds then skips looking for the builder's code inside the `tests`
# package (that look-up reaches for TensorFlow on this path).
JsslTinyAudio.__module__ = "jssl_tiny_audio"


@pytest.fixture(scope="module")
def tiny_audio(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds_audio")
    JsslTinyAudio(data_dir=str(data_dir)).download_and_prepare(file_format="array_record")
    return str(data_dir)


def test_tfds_audio_source(tiny_audio):
    options = dict(tfds_name="jssl_tiny_audio", data_dir=tiny_audio)
    source = audio.get_audio_source("tfds", "train", sample_rate=16000, **options)
    assert len(source) == 6
    records = [source[i] for i in range(6)]
    lengths = sorted(len(r["waveform"]) for r in records)
    assert lengths == [400, 500, 600, 700, 800, 900]  # whole clips, int16 scaled into [-0.1, 0.1]
    for r in records:
        assert r["waveform"].dtype == np.float32 and np.abs(r["waveform"]).max() < 0.1
        assert r["label"] == ((len(r["waveform"]) - 400) // 100) % 3
    batch = next(audio.make_audio_iterator(source, global_batch_size=2, crop_samples=500, seed=0))
    assert batch["waveform"].shape == (2, 500)
    with pytest.raises(ValueError, match="8000 Hz"):
        audio.get_audio_source("tfds", "train", sample_rate=8000, **options)
    with pytest.raises(ValueError, match="sample rate"):
        audio.get_audio_source("tfds", "train", **options)
    with pytest.raises(ValueError, match="tfds_name"):
        audio.get_audio_source("tfds", "train")


# ---- AudioInputs ---------------------------------------------------------------------------------


def test_audio_inputs_contract(tmp_path, monkeypatch):
    import jax.numpy as jnp
    import ml_collections

    from jssl import config as common

    monkeypatch.setenv("JSSL_CACHE", str(tmp_path))
    config = common.base_config()
    common.spoken_digits(config)
    config.global_batch_size = 4
    config.data.crop_samples = 4000
    config.data.eval_samples = 6000
    config.data.spoken_digits = ml_collections.ConfigDict(
        dict(voices=("en+m1", "en+f2"), held_out_voices=("en+f2",), rates=(170,), pitches=(50,))
    )
    inputs = audio.AudioInputs(config, method_class=CPC)
    assert isinstance(inputs, audio.AudioInputs) and inputs.model_kwargs() == {}
    batch = next(inputs.train_iterator(process_index=0, process_count=1))
    assert set(batch) == {"waveform", "mask", "label"} and batch["label"].dtype == np.int32
    ev = inputs.eval_set()
    assert ev.train["waveform"].shape == (10, 6000) and ev.test["mask"].shape == (10, 6000)
    np.testing.assert_array_equal(ev.test_labels, np.arange(10))
    assert ev.num_classes == 10 and ev.labelled
    seen = {}

    def feature_evals(train, test):
        seen["shapes"] = (train.shape, test.shape)
        return {"knn": 0.5}

    assert inputs.baselines(ev, feature_evals) == {"log_mel": {"knn": 0.5}}
    assert seen["shapes"] == ((10, 80), (10, 80))
    prepared = inputs.to_method({k: jnp.asarray(v) for k, v in batch.items()}, step=jnp.asarray(0))
    w, m = np.asarray(prepared["waveform"]), np.asarray(prepared["mask"])
    for row, real in zip(w, m):  # zero mean, unit variance over the real samples; padding zero
        np.testing.assert_allclose([row[real].mean(), row[real].std()], [0.0, 1.0], atol=1e-3)
        assert np.all(row[~real] == 0)
