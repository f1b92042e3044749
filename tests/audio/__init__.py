"""Tests of the audio half: spoken-digit data, waveform pipeline, wav2vec 2.0 and CPC."""
