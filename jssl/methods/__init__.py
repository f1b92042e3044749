"""SSL methods, found by name: `config.method.name = 'simclr'` -> `SimCLR`.

Each method file answers the five questions in `jssl.methods.base`; the trainer asks nothing
else, so adding a method never touches the trainer.
"""

from __future__ import annotations

import ml_collections
from flax import nnx

from jssl.methods.barlow_twins import BarlowTwins
from jssl.methods.base import Method, MethodOutput
from jssl.methods.bert import BERT
from jssl.methods.byol import BYOL
from jssl.methods.cpc import CPC
from jssl.methods.dae import DAE
from jssl.methods.ddpm import DDPM
from jssl.methods.dino import DINO
from jssl.methods.gpt import GPT
from jssl.methods.mae import MAE
from jssl.methods.moco_v2 import MoCoV2
from jssl.methods.moco_v3 import MoCoV3
from jssl.methods.simclr import SimCLR
from jssl.methods.simsiam import SimSiam
from jssl.methods.swav import SwAV
from jssl.methods.vae import VAE
from jssl.methods.vicreg import VICReg
from jssl.methods.wav2vec2 import Wav2Vec2

METHODS: dict[str, type[Method]] = {
    "simclr": SimCLR,
    "moco_v2": MoCoV2,
    "moco_v3": MoCoV3,
    "byol": BYOL,
    "simsiam": SimSiam,
    "vicreg": VICReg,
    "barlow_twins": BarlowTwins,
    "swav": SwAV,
    "dino": DINO,
    "mae": MAE,
    "dae": DAE,
    "vae": VAE,
    "ddpm": DDPM,
    "bert": BERT,
    "gpt": GPT,
    "cpc": CPC,
    "wav2vec2": Wav2Vec2,
}


def get_method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {sorted(METHODS)}")
    return METHODS[name]


def build_method(config: ml_collections.ConfigDict, *, dtype, rngs: nnx.Rngs, **model_kwargs) -> Method:
    """Builds the method named by `config.method.name` with its networks and buffers.

    `model_kwargs` are what the data kind tells the constructor (`Inputs.model_kwargs()`):
    `in_channels` for images, the vocabulary for text.
    """
    cls = get_method_class(config.method.name)
    return cls(config, dtype=dtype, rngs=rngs, **model_kwargs)


__all__ = [
    "METHODS",
    "BERT",
    "BYOL",
    "BarlowTwins",
    "CPC",
    "DAE",
    "DDPM",
    "DINO",
    "GPT",
    "MAE",
    "Method",
    "MethodOutput",
    "MoCoV2",
    "MoCoV3",
    "SimCLR",
    "SimSiam",
    "SwAV",
    "VAE",
    "VICReg",
    "Wav2Vec2",
    "build_method",
    "get_method_class",
]
