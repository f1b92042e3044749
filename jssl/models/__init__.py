"""Backbones and heads, found by variant name.

`get_backbone('resnet18', in_channels=3, ...)` or `get_backbone('vit_s16', ...)` builds a
backbone; unknown names raise a `ValueError` listing the known ones. Denoising networks, which
map (image, timestep) to an image rather than to features, have their own registry:
`get_unet('unet', ...)` (`UNETS`); text Transformers (token ids in, features and vocabulary
logits out) theirs: `get_text_model('gpt2_small', vocab_size=..., ...)` (`TEXT_MODELS`); raw-waveform
models (wav2vec 2.0, CPC) theirs: `get_audio_model('wav2vec2_base', ...)` (`AUDIO_MODELS`).
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from jssl.models.audio import AUDIO_MODELS, get_audio_model
from jssl.models.autoencoder import AUTOENCODERS
from jssl.models.heads import LinearClassifier, MLPHead
from jssl.models.resnet import RESNETS, ResNet
from jssl.models.text import TEXT_MODELS, TextTransformer, get_text_model
from jssl.models.unet import UNETS, UNet, get_unet
from jssl.models.vit import VITS, VisionTransformer

BACKBONES = {**RESNETS, **VITS, **AUTOENCODERS}


def get_backbone(name: str, *, rngs: nnx.Rngs, **kwargs: Any) -> nnx.Module:
    """Builds the backbone called `name`; it exposes `feature_dim` and maps images to features."""
    if name not in BACKBONES:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(BACKBONES)}")
    return BACKBONES[name](rngs=rngs, **kwargs)


__all__ = [
    "AUDIO_MODELS",
    "BACKBONES",
    "UNETS",
    "LinearClassifier",
    "MLPHead",
    "ResNet",
    "TEXT_MODELS",
    "TextTransformer",
    "UNet",
    "VisionTransformer",
    "get_audio_model",
    "get_backbone",
    "get_text_model",
    "get_unet",
]
