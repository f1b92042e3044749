"""Audio data: waveform sources by name, the raw-waveform Grain pipeline, log-mel baseline, `AudioInputs`.

Sources (:data:`AUDIO_SOURCES`, looked up by :func:`get_audio_source`) are Grain random-access
sources whose records are `{'waveform': float32 [samples] in [-1, 1], 'label': int32}` of mono
16 kHz audio:

* `'spoken_digits'`: the ten digits spoken by eSpeak NG over many voices, rates and pitches,
  synthesized locally and cached (`jssl.data.spoken_digits`; no download); labels are the digit,
  records also keep the voice id (`'speaker'`); held-out split = voices never trained on;
* `'tfds'`: any TFDS audio data set prepared as ArrayRecord (`speech_commands`, ...), read with
  `tfds.data_source` (no TensorFlow import); its audio feature must be 16 kHz.

Training stream (:func:`make_audio_iterator`): the process's shard of the source, shuffled per
epoch, each clip randomly cropped to `crop_samples` (clips shorter than that are zero-padded at
the end and the `mask` marks the real samples), batched, repeated; a Grain iterator whose
state Orbax checkpoints, so a resumed run sees exactly the batches it would have seen.

Evaluation (:meth:`AudioInputs.eval_set`): the first `eval_samples` samples of every clip (padded
with a mask where shorter). Baseline: log-mel spectrogram features (40 mel bands, 25 ms windows,
10 ms hop; mean and standard deviation over the real frames) under the same kNN and probe.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np

from jssl.data.inputs import EvalSet, FeatureEvals, Inputs
from jssl.data.pipeline import _derive_seed, _ensure_absl_flags_parsed, _READ_BUFFER, _READ_THREADS, ignore_interrupts

__all__ = [
    "AUDIO_SOURCES",
    "SAMPLE_RATE",
    "AudioInputs",
    "RandomCrop",
    "WaveformSource",
    "TfdsAudioSource",
    "eval_arrays",
    "get_audio_source",
    "log_mel_features",
    "log_mel_spectrogram",
    "make_audio_iterator",
    "normalize_waveform",
]

SAMPLE_RATE = 16000


def check_waveform(waveform: np.ndarray, *, where: str) -> np.ndarray:
    """`waveform` as float32 `[samples]` in [-1, 1]; int16 is scaled; other ranks are an error."""
    waveform = np.asarray(waveform)
    if waveform.ndim == 2 and 1 in waveform.shape:
        waveform = waveform.reshape(-1)  # [samples, 1] / [1, samples]: mono with a channel axis
    if waveform.ndim != 1:
        raise ValueError(f"{where}: audio must be mono, [samples]; got shape {waveform.shape}")
    if waveform.dtype == np.int16:
        return waveform.astype(np.float32) / 32768.0
    if not np.issubdtype(waveform.dtype, np.floating):
        raise ValueError(f"{where}: audio must be int16 or float in [-1, 1]; got {waveform.dtype}")
    return waveform.astype(np.float32)


def check_sample_rate(sample_rate: int | None, *, where: str, expected: int = SAMPLE_RATE) -> None:
    if sample_rate != expected:
        raise ValueError(
            f"{where}: audio is at {sample_rate} Hz but the models expect {expected} Hz "
            "(every stride and the log-mel baseline assume it); resample the data set first"
        )


class WaveformSource:
    """In-memory clips: `waveforms: [n, max_samples]` (int16 or float) padded at the end, `lengths: [n]`.

    Records: `{'waveform': float32 [lengths[i]], 'label': int32, 'speaker': int32}`.
    """

    def __init__(
        self,
        waveforms: np.ndarray,
        lengths: np.ndarray,
        labels: np.ndarray,
        *,
        speakers: np.ndarray | None = None,
        sample_rate: int = SAMPLE_RATE,
        name: str = "waveforms",
        split: str = "",
    ) -> None:
        waveforms, lengths, labels = np.asarray(waveforms), np.asarray(lengths), np.asarray(labels)
        where = f"data set {name!r} split {split!r}"
        check_sample_rate(sample_rate, where=where)
        if waveforms.ndim != 2:
            raise ValueError(f"{where}: waveforms must be [clips, samples]; got shape {waveforms.shape}")
        if waveforms.shape[0] == 0:
            raise ValueError(f"{where} is empty")
        if lengths.shape != (waveforms.shape[0],) or labels.shape != (waveforms.shape[0],):
            raise ValueError(
                f"{where}: lengths {lengths.shape} and labels {labels.shape} must be [{waveforms.shape[0]}]"
            )
        if lengths.min() < 1 or lengths.max() > waveforms.shape[1]:
            raise ValueError(f"{where}: lengths must be in 1..{waveforms.shape[1]}")
        self.waveforms = waveforms
        self.lengths = lengths.astype(np.int32)
        self.labels = labels.astype(np.int32)
        self.speakers = np.zeros_like(self.labels) if speakers is None else np.asarray(speakers, np.int32)
        self.sample_rate = sample_rate
        self.name, self.split = name, split

    def __len__(self) -> int:
        return int(self.waveforms.shape[0])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        clip = self.waveforms[index, : self.lengths[index]]
        return {
            "waveform": check_waveform(clip, where=self.name),
            "label": self.labels[index],
            "speaker": self.speakers[index],
        }

    def __repr__(self) -> str:
        return f"WaveformSource(name={self.name!r}, split={self.split!r}, clips={len(self)})"


def spoken_digits_source(
    split: str,
    *,
    voices: tuple[str, ...] | None = None,
    held_out_voices: tuple[str, ...] | None = None,
    rates: tuple[int, ...] | None = None,
    pitches: tuple[int, ...] | None = None,
) -> WaveformSource:
    """The eSpeak NG spoken digits (`jssl.data.spoken_digits`); 'test' = the held-out voices' clips."""
    from jssl.data import spoken_digits as sd

    voices = tuple(voices or sd.DEFAULT_VOICES)
    held_out = tuple(sd.DEFAULT_HELD_OUT_VOICES if held_out_voices is None else held_out_voices)
    unknown = sorted(set(held_out) - set(voices))
    if unknown:
        raise ValueError(f"spoken_digits: held-out voices {unknown} are not among the voices {list(voices)}")
    if split not in ("train", "test"):
        raise ValueError(f"data set 'spoken_digits' has splits ['train', 'test']; got {split!r}")
    d = sd.synthesize_digits(voices=voices, rates=rates or sd.DEFAULT_RATES, pitches=pitches or sd.DEFAULT_PITCHES)
    held = np.isin(d["voices"], [voices.index(v) for v in held_out])
    keep = held if split == "test" else ~held
    if not keep.any():
        raise ValueError(f"spoken_digits split {split!r} is empty (voices {voices}, held out {held_out})")
    return WaveformSource(
        d["waveforms"][keep], d["lengths"][keep], d["labels"][keep], speakers=d["voices"][keep],
        name="spoken_digits", split=split,
    )  # fmt: skip


class TfdsAudioSource:
    """A prepared ArrayRecord TFDS split with 16 kHz mono audio, as `{'waveform', 'label'}` records.

    The audio feature is either a `tfds.features.Audio` (its `sample_rate` is checked) or a
    plain int16/float `Tensor` of shape `[samples]`, whose rate must be declared (`sample_rate`).
    Caveat: tfds (4.9) builds an `Audio` feature's decoder with TensorFlow, so reading
    `speech_commands` and the like needs `tensorflow` (CPU) installed; `Tensor` features read
    without it.
    """

    def __init__(
        self,
        name: str,
        split: str,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        audio_key: str = "audio",
        label_key: str = "label",
        sample_rate: int | None = None,
    ) -> None:
        import tensorflow_datasets as tfds

        self.name, self.split, self.audio_key, self.label_key = name, split, audio_key, label_key
        try:
            # download=False: sources only read what was prepared before (often needs TensorFlow).
            self._source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        except Exception as error:  # tfds raises many unrelated types here.
            raise ValueError(
                f"cannot open TFDS data set {name!r} split {split!r} (data_dir={data_dir!r}); it must already be "
                f"prepared with file_format='array_record': {error}"
            ) from error
        features = self._source.dataset_info.features
        for key in (audio_key, label_key):
            if key not in features:
                raise ValueError(f"TFDS data set {name!r} has features {sorted(features)}; no {key!r}")
        stored = getattr(features[audio_key], "sample_rate", None)
        if stored is None and sample_rate is None:
            raise ValueError(
                f"TFDS {name!r} feature {audio_key!r} does not record a sample rate; declare it (data.sample_rate)"
            )
        if stored is not None and sample_rate is not None and stored != sample_rate:
            raise ValueError(f"TFDS {name!r} {audio_key!r} is at {stored} Hz, not data.sample_rate={sample_rate}")
        check_sample_rate(stored or sample_rate, where=f"TFDS {name!r} {audio_key!r}")
        if len(self._source) == 0:
            raise ValueError(f"data set {name!r} split {split!r} is empty")
        self.sample_rate = SAMPLE_RATE

    def __len__(self) -> int:
        return len(self._source)

    def _normalise(self, record: dict[str, Any]) -> dict[str, np.ndarray]:
        waveform = check_waveform(record[self.audio_key], where=f"TFDS {self.name!r}")
        if waveform.size == 0:
            raise ValueError(f"TFDS {self.name!r} has an empty clip")
        return {"waveform": waveform, "label": np.int32(record[self.label_key]), "speaker": np.int32(0)}

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self._normalise(self._source[index])

    def __getitems__(self, indices: Any) -> list[dict[str, np.ndarray]]:
        return [self._normalise(r) for r in self._source.__getitems__(indices)]

    def __repr__(self) -> str:
        return f"TfdsAudioSource(name={self.name!r}, split={self.split!r}, len={len(self)})"


def _tfds_audio(
    split: str, *, tfds_name: str = "", data_dir: str = "", audio_key: str = "audio", label_key: str = "label",
    sample_rate: int | None = None,
) -> TfdsAudioSource:  # fmt: skip
    if not tfds_name:
        raise ValueError("audio source 'tfds' needs data.tfds_name (e.g. 'speech_commands')")
    return TfdsAudioSource(tfds_name, split, data_dir or None, audio_key=audio_key, label_key=label_key,
                           sample_rate=sample_rate)  # fmt: skip


#: Source name -> factory `(split, **options) -> source`.
AUDIO_SOURCES: dict[str, Callable[..., Any]] = {"spoken_digits": spoken_digits_source, "tfds": _tfds_audio}


def get_audio_source(name: str, split: str, **options: Any) -> Any:
    """Audio source `name` at `split`; options that are None or empty are dropped."""
    if name not in AUDIO_SOURCES:
        raise ValueError(f"unknown audio data set {name!r}; known: {sorted(AUDIO_SOURCES)}")
    options = {k: v for k, v in options.items() if v not in (None, "", ())}
    source = AUDIO_SOURCES[name](split, **options)
    if len(source) == 0:
        raise ValueError(f"data set {name!r} split {split!r} is empty")
    return source


# ==================================================================================================
# Training pipeline
# ==================================================================================================


def crop_or_pad(waveform: np.ndarray, *, num_samples: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`(float32 [num_samples], bool mask [num_samples])`: `waveform[start:start + num_samples]`, zero-padded."""
    out = np.zeros(num_samples, np.float32)
    piece = waveform[start : start + num_samples]
    out[: len(piece)] = piece
    mask = np.zeros(num_samples, bool)
    mask[: len(piece)] = True
    return out, mask


class RandomCrop(grain.transforms.RandomMap):
    """Record -> `{'waveform': float32 [crop], 'mask': bool [crop], 'label': int32}`.

    A clip longer than `crop_samples` is cut at a uniformly random offset; a shorter one is kept
    whole, zero-padded at the end, its real samples marked in `mask` (always a prefix).
    """

    def __init__(self, crop_samples: int) -> None:
        self.crop_samples = int(crop_samples)

    def random_map(self, element: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        waveform = element["waveform"]
        extra = len(waveform) - self.crop_samples
        start = int(rng.integers(0, extra + 1)) if extra > 0 else 0
        wav, mask = crop_or_pad(waveform, num_samples=self.crop_samples, start=start)
        return {"waveform": wav, "mask": mask, "label": np.int32(element["label"])}


def make_audio_iterator(
    source: Any,
    *,
    global_batch_size: int,
    crop_samples: int,
    seed: int,
    num_workers: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.DatasetIterator:
    """Endless, checkpointable iterator of `{'waveform': float32 [B, crop], 'mask': bool [B, crop], 'label'}`.

    `B = global_batch_size // process_count`; each process reads the disjoint shard
    `source[process_index::process_count]`, reshuffled and re-cropped every epoch from `seed`;
    the output is the same for any `num_workers`.
    """
    if len(source) == 0:
        raise ValueError(f"source {source!r} is empty")
    if crop_samples < 1:
        raise ValueError(f"data.crop_samples must be positive; got {crop_samples}")
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"need 0 <= process_index < process_count; got {process_index} of {process_count}")
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size ({global_batch_size}) must be a positive multiple of process_count ({process_count})"
        )
    local_batch = global_batch_size // process_count
    dataset = grain.MapDataset.source(source)[process_index::process_count]
    if local_batch > len(dataset):
        raise ValueError(
            f"local batch size {local_batch} exceeds the {len(dataset)} clips of this process's shard of {source!r}"
        )
    derived = _derive_seed(seed, process_index)
    dataset = dataset.shuffle(seed=derived).random_map(RandomCrop(crop_samples), seed=derived)
    dataset = dataset.batch(local_batch, drop_remainder=True).repeat(None)
    iter_dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=_READ_THREADS, prefetch_buffer_size=_READ_BUFFER))
    if num_workers > 0:
        _ensure_absl_flags_parsed()
        iter_dataset = iter_dataset.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=num_workers), worker_init_fn=ignore_interrupts
        )
    return iter(iter_dataset)


def eval_arrays(source: Any, *, num_samples: int, limit: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first `limit` clips (0: all) as `(waveform float32 [n, num_samples], mask bool [n, num_samples], labels)`.

    Each clip from its start, cut or zero-padded to `num_samples`.
    """
    n = len(source) if not limit else min(limit, len(source))
    if n == 0:
        raise ValueError(f"source {source!r} is empty")
    records = source.__getitems__(list(range(n))) if hasattr(source, "__getitems__") else [source[i] for i in range(n)]
    pairs = [crop_or_pad(r["waveform"], num_samples=num_samples) for r in records]
    return (
        np.stack([p[0] for p in pairs]),
        np.stack([p[1] for p in pairs]),
        np.array([r["label"] for r in records], np.int32),
    )


# ==================================================================================================
# Log-mel baseline (numpy)
# ==================================================================================================


@functools.lru_cache(maxsize=8)
def _mel_filterbank(*, sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """HTK-mel triangular filters `[n_fft // 2 + 1, n_mels]` (area not normalized, as Kaldi's fbank)."""

    def to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2))
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lower) / (center - lower)
    down = (upper - freqs[:, None]) / (upper - center)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def log_mel_spectrogram(
    waveform: np.ndarray,
    *,
    sample_rate: int = SAMPLE_RATE,
    window_samples: int = 400,
    hop_samples: int = 160,
    n_mels: int = 40,
) -> np.ndarray:
    """`log(mel power + 1e-6)`: `[batch, frames, n_mels]` from `waveform: [batch, samples]`.

    Hann windows of `window_samples` (25 ms at 16 kHz) every `hop_samples` (10 ms), no centring:
    frame `i` covers samples `[i * hop, i * hop + window)`.
    """
    if waveform.ndim != 2:
        raise ValueError(f"log_mel_spectrogram takes waveform [batch, samples]; got shape {waveform.shape}")
    if waveform.shape[1] < window_samples:
        raise ValueError(f"clips of {waveform.shape[1]} samples are shorter than one {window_samples}-sample window")
    frames = 1 + (waveform.shape[1] - window_samples) // hop_samples
    index = np.arange(window_samples)[None, :] + hop_samples * np.arange(frames)[:, None]
    windows = waveform.astype(np.float32)[:, index] * np.hanning(window_samples).astype(np.float32)
    power = np.abs(np.fft.rfft(windows, n=window_samples, axis=-1)) ** 2
    bank = _mel_filterbank(sample_rate=sample_rate, n_fft=window_samples, n_mels=n_mels, f_min=20.0, f_max=sample_rate / 2)
    return np.log(power @ bank + 1e-6)


def log_mel_features(
    waveform: np.ndarray, mask: np.ndarray, *, sample_rate: int = SAMPLE_RATE, n_mels: int = 40, chunk: int = 256
) -> np.ndarray:
    """Mean and standard deviation over the real frames of the log-mel spectrogram: `[batch, 2 * n_mels]`.

    `waveform: [batch, samples]`, `mask: [batch, samples]` (a prefix of real samples); a frame is
    real when its window ends inside the real samples (at least one frame per clip counts).
    """
    out = []
    for lo in range(0, len(waveform), chunk):
        spec = log_mel_spectrogram(waveform[lo : lo + chunk], sample_rate=sample_rate, n_mels=n_mels)
        lengths = mask[lo : lo + chunk].sum(axis=1)
        real_frames = np.maximum(1, 1 + (lengths - 400) // 160)
        valid = (np.arange(spec.shape[1])[None, :] < real_frames[:, None]).astype(np.float32)[..., None]
        count = valid.sum(axis=1)
        mean = (spec * valid).sum(axis=1) / count
        std = np.sqrt(((spec - mean[:, None]) ** 2 * valid).sum(axis=1) / count)
        out.append(np.concatenate([mean, std], axis=1))
    return np.concatenate(out).astype(np.float32)


# ==================================================================================================
# The batch contract for waveforms
# ==================================================================================================


def normalize_waveform(waveform: jax.Array, mask: jax.Array) -> jax.Array:
    """Zero mean, unit variance over each clip's real samples (padding stays 0): `[b, T]` -> `[b, T]`."""
    m = mask.astype(jnp.float32)
    n = jnp.maximum(jnp.sum(m, axis=1, keepdims=True), 1.0)
    mean = jnp.sum(waveform * m, axis=1, keepdims=True) / n
    var = jnp.sum(jnp.square(waveform - mean) * m, axis=1, keepdims=True) / n
    return (waveform - mean) * jax.lax.rsqrt(var + 1e-7) * m


class AudioInputs(Inputs):
    """Raw 16 kHz waveforms and their padding masks (`Method.inputs = 'waveforms'`).

    Config fields (`config.data`): `name` (an `AUDIO_SOURCES` key), `tfds_name`, `data_dir`,
    `audio_key`, `label_key`, `train_split`, `eval_split`, `crop_samples` (training crop),
    `eval_samples` (evaluation length), `normalize` (per-clip zero mean / unit variance, on the
    device), `num_workers`, `max_eval_examples`, and for `spoken_digits` the sub-config
    `data.spoken_digits` (`voices`, `held_out_voices`, `rates`, `pitches`).
    """

    kind = "waveforms"
    has_train_labels = True

    def _source(self, split: str) -> Any:
        d = self.config.data
        options: dict[str, Any] = {}
        if d.name == "tfds":
            options = dict(
                tfds_name=d.get("tfds_name", ""), data_dir=d.get("data_dir", ""),
                audio_key=d.get("audio_key", "audio") or "audio", label_key=d.get("label_key", "") or "label",
                sample_rate=d.get("sample_rate", None),
            )  # fmt: skip
        elif d.name == "spoken_digits" and "spoken_digits" in d:
            options = {k: tuple(v) for k, v in d.spoken_digits.items()}
        return get_audio_source(d.name, split, **options)

    def model_kwargs(self) -> dict[str, Any]:
        return {}

    def train_iterator(self, *, process_index: int, process_count: int) -> Any:
        d = self.config.data
        return make_audio_iterator(
            self._source(d.train_split), global_batch_size=self.config.global_batch_size,
            crop_samples=int(d.crop_samples), seed=int(self.config.seed), num_workers=int(d.get("num_workers", 0)),
            process_index=process_index, process_count=process_count,
        )  # fmt: skip

    def eval_set(self) -> EvalSet:
        d = self.config.data
        num = int(d.get("eval_samples", 0) or d.crop_samples)
        limit = int(d.get("max_eval_examples", 0))
        train_w, train_m, train_y = eval_arrays(self._source(d.train_split), num_samples=num, limit=limit)
        test_w, test_m, test_y = eval_arrays(self._source(d.eval_split), num_samples=num, limit=limit)
        task = "spoken digit (held-out voices)" if d.name == "spoken_digits" else f"{d.get('label_key') or 'label'}"
        return EvalSet(
            train={"waveform": train_w, "mask": train_m}, test={"waveform": test_w, "mask": test_m},
            train_labels=train_y, test_labels=test_y, num_classes=int(d.num_classes), task=task,
            info={"train_split": d.train_split, "eval_split": d.eval_split, "num_train": len(train_y),
                  "num_test": len(test_y), "eval_samples": num, "sample_rate": SAMPLE_RATE},
        )  # fmt: skip

    def baselines(self, eval_set: EvalSet, feature_evals: FeatureEvals) -> dict[str, dict[str, float]]:
        if not eval_set.labelled:
            return {}
        train = log_mel_features(eval_set.train["waveform"], eval_set.train["mask"])
        test = log_mel_features(eval_set.test["waveform"], eval_set.test["mask"])
        # Standardized with the bank's statistics, so no band dominates the kNN distance.
        mean, std = train.mean(0), train.std(0) + 1e-6
        return {"log_mel": feature_evals((train - mean) / std, (test - mean) / std)}

    def describe(self) -> dict[str, Any]:
        d = self.config.data
        return {"data": d.name, "sample_rate": SAMPLE_RATE, "crop_samples": int(d.crop_samples)}

    def _prepare(self, inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
        waveform = inputs["waveform"].astype(jnp.float32)
        mask = inputs["mask"].astype(bool)
        if self.config.data.get("normalize", True):
            waveform = normalize_waveform(waveform, mask)
        return {"waveform": waveform, "mask": mask}

    def to_method(self, batch: dict[str, jax.Array], *, step: jax.Array) -> dict[str, jax.Array]:
        del step
        return self._prepare(batch)

    def to_represent(self, inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return self._prepare(inputs)
