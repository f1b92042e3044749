"""Spoken digits ("zero" .. "nine") synthesized locally with eSpeak NG: real speech, no download.

The `espeakng-loader` wheel (from the package registry) ships the eSpeak NG shared library and
its voice data; this module drives the library's C API through `ctypes`
(`espeak_Initialize` in synchronous mode, a synthesis callback that collects the 16-bit
samples, `espeak_SetVoiceByName`, `espeak_SetParameter` for rate and pitch). Every combination
of voice x speaking rate x pitch says each of the ten digits once; clips are resampled from
eSpeak's 22,050 Hz to 16 kHz (polyphase, `scipy.signal.resample_poly`).

eSpeak NG's rendering is not bit-reproducible: the same word, voice, rate and pitch come out a
few milliseconds longer or shorter from one call to the next (neither `espeak_ng_SetRandSeed`
nor re-initializing the library fixes it). The cache is what makes the data set fixed: every
run on a machine reads the same clips; two machines' first syntheses differ slightly.

The result is cached on first use as an `.npz` under `$JSSL_CACHE` (default `~/.cache/jssl`),
named by a hash of the generator settings (voices, rates, pitches, sample rate, this module's
`GENERATOR_VERSION` and the eSpeak NG version), so changing a setting makes a new file and a
stale one is never read. Synthesizing the default 2,560 clips takes about 20 s on one core.

Split (deterministic, by speaker): the clips of the voices in `held_out_voices` form the
held-out split ('test'), all others 'train'. The held-out voices never occur in training, so a
probe must recognize the digit in an unseen voice.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from math import gcd

import numpy as np

__all__ = [
    "DEFAULT_HELD_OUT_VOICES",
    "DEFAULT_PITCHES",
    "DEFAULT_RATES",
    "DEFAULT_VOICES",
    "DIGIT_WORDS",
    "GENERATOR_VERSION",
    "cache_dir",
    "synthesize",
    "synthesize_digits",
]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# eSpeak NG voice = language + optional variant (male m1-m7, female f1-f5, ...); British and
# American English differ in their vowels, so both are used.
DEFAULT_VOICES = (
    "en+m1", "en+m2", "en+m3", "en+m4", "en+m5", "en+m6",
    "en+f1", "en+f2", "en+f3", "en+f4",
    "en-us+m1", "en-us+m3", "en-us+f2", "en-us+f4",
    "en+m7", "en-us+f5",
)  # fmt: skip
# Two male and two female voices, one of each accent, never heard in training.
DEFAULT_HELD_OUT_VOICES = ("en+m3", "en+f3", "en-us+m3", "en-us+f4")
DEFAULT_RATES = (120, 150, 180, 210)  # words per minute (eSpeak's default is 175)
DEFAULT_PITCHES = (30, 45, 60, 75)  # eSpeak's 0-99 scale (default 50)
# Bump when the synthesis or its post-processing changes: it is part of the cache key.
GENERATOR_VERSION = 1

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _ESpeak:
    """The process-wide eSpeak NG library (it keeps global state: one voice, one callback)."""

    _lock = threading.Lock()
    _instance: _ESpeak | None = None

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as error:
            raise ValueError(
                "the spoken_digits data set needs the `espeakng-loader` package (pip install espeakng-loader)"
            ) from error
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Info.restype = ctypes.c_char_p
        data_path = espeakng_loader.get_data_path().encode()
        self.sample_rate = int(self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0))
        if self.sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialize (data at {data_path!r})")
        self.version = self.lib.espeak_Info(None).decode()
        self._chunks: list[np.ndarray] = []
        # Kept on the instance: ctypes frees a callback whose Python object is collected.
        self._callback = _CALLBACK(self._collect)
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, num_samples: int, events) -> int:
        del events
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0  # 0: continue synthesis

    @classmethod
    def get(cls) -> _ESpeak:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def say(self, text: str, *, voice: str, rate: int, pitch: int) -> np.ndarray:
        """int16 `[samples]` at `self.sample_rate` of `text` in `voice` at `rate` wpm and `pitch`."""
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"eSpeak NG has no voice {voice!r} (e.g. 'en+m1', 'en-us+f2')")
            self.lib.espeak_SetParameter(_ESPEAK_RATE, int(rate), 0)
            self.lib.espeak_SetParameter(_ESPEAK_PITCH, int(pitch), 0)
            self._chunks = []
            encoded = text.encode() + b"\0"
            status = self.lib.espeak_Synth(
                ctypes.c_char_p(encoded), ctypes.c_size_t(len(encoded)), ctypes.c_uint(0), ctypes.c_int(0),
                ctypes.c_uint(0), ctypes.c_uint(0), None, None,
            )  # fmt: skip
            self.lib.espeak_Synchronize()
            if status != 0 or not self._chunks:
                raise RuntimeError(f"eSpeak NG produced no audio for {text!r} in voice {voice!r} (status {status})")
            return np.concatenate(self._chunks).astype(np.int16)


def resample(waveform: np.ndarray, *, source_rate: int, target_rate: int) -> np.ndarray:
    """float32 `[samples']` from `waveform: [samples]` at `source_rate`, polyphase-resampled."""
    from scipy.signal import resample_poly

    if waveform.ndim != 1:
        raise ValueError(f"resample takes one mono clip [samples]; got shape {waveform.shape}")
    if source_rate == target_rate:
        return waveform.astype(np.float32)
    g = gcd(source_rate, target_rate)
    return resample_poly(waveform.astype(np.float32), target_rate // g, source_rate // g).astype(np.float32)


def synthesize(text: str, *, voice: str, rate: int, pitch: int, sample_rate: int = 16000) -> np.ndarray:
    """float32 `[samples]` in [-1, 1] at `sample_rate`: `text` spoken by eSpeak NG."""
    engine = _ESpeak.get()
    raw = engine.say(text, voice=voice, rate=rate, pitch=pitch)
    return np.clip(resample(raw / 32768.0, source_rate=engine.sample_rate, target_rate=sample_rate), -1.0, 1.0)


def cache_dir() -> str:
    """`$JSSL_CACHE`, or `~/.cache/jssl`."""
    return os.path.expanduser(os.environ.get("JSSL_CACHE") or os.path.join("~", ".cache", "jssl"))


def _settings_key(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def synthesize_digits(
    *,
    voices: Sequence[str] = DEFAULT_VOICES,
    rates: Sequence[int] = DEFAULT_RATES,
    pitches: Sequence[int] = DEFAULT_PITCHES,
    sample_rate: int = 16000,
    use_cache: bool = True,
) -> dict[str, np.ndarray]:
    """Every (voice, rate, pitch, digit) clip, cached on disk.

    Returns `{'waveforms': int16 [n, max_samples]` (zero-padded at the end), `'lengths':
    int32 [n]`, `'labels': int32 [n]` (the digit), `'voices': int32 [n]` (index into
    `voices`), `'rates'`, `'pitches'`: int32 [n]}`, in the order voice, rate, pitch, digit.
    """
    voices, rates, pitches = tuple(map(str, voices)), tuple(map(int, rates)), tuple(map(int, pitches))
    if not voices or not rates or not pitches:
        raise ValueError(f"spoken digits need at least one voice, rate and pitch; got {voices}, {rates}, {pitches}")
    if len(set(voices)) != len(voices):
        raise ValueError(f"spoken digits: voices repeat: {voices}")
    if any(not 80 <= r <= 450 for r in rates) or any(not 0 <= p <= 99 for p in pitches):
        raise ValueError(f"eSpeak NG rates must be in 80..450 wpm and pitches in 0..99; got {rates}, {pitches}")
    engine = _ESpeak.get()
    settings = dict(
        voices=voices, rates=rates, pitches=pitches, sample_rate=sample_rate,
        version=GENERATOR_VERSION, espeak=engine.version,
    )  # fmt: skip
    path = os.path.join(cache_dir(), f"spoken_digits_{_settings_key(settings)}.npz")
    if use_cache and os.path.exists(path):
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    clips, meta = [], []
    for v, voice in enumerate(voices):
        for rate in rates:
            for pitch in pitches:
                for digit, word in enumerate(DIGIT_WORDS):
                    clips.append(synthesize(word, voice=voice, rate=rate, pitch=pitch, sample_rate=sample_rate))
                    meta.append((digit, v, rate, pitch))
    lengths = np.array([len(c) for c in clips], np.int32)
    waveforms = np.zeros((len(clips), int(lengths.max())), np.int16)
    for i, clip in enumerate(clips):
        waveforms[i, : len(clip)] = np.round(clip * 32767.0).astype(np.int16)
    meta = np.array(meta, np.int32)
    out = dict(
        waveforms=waveforms, lengths=lengths, labels=meta[:, 0], voices=meta[:, 1], rates=meta[:, 2],
        pitches=meta[:, 3],
    )  # fmt: skip
    if use_cache:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Written under a temporary name and renamed, so a concurrent or killed run never
        # leaves a half-written cache that a later run would read.
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **out)
        os.replace(tmp, path)
    return out
