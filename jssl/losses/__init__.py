"""jssl.losses: self-supervised objectives as pure, sharding-aware JAX functions.

Every loss takes arrays first and options keyword-only, and returns `(loss, metrics)`:
a float32 scalar and a flat dict of str -> float32 scalar diagnostics. Losses that look at
other examples of the batch (negatives, batch statistics, Sinkhorn, token counts) take
`axis_name`; inside `shard_map` over that mesh axis they return the same value and
gradients as the single-device function on the concatenated global batch. Per-example
losses (negative_cosine, dino, denoising, vae_elbo, ddpm) need no `axis_name`: `pmean`
them.

This package imports only jax and numpy.
"""

from jssl.losses.audio import cpc
from jssl.losses.audio import gumbel_product_quantizer
from jssl.losses.audio import sample_distractors
from jssl.losses.audio import wav2vec2
from jssl.losses.clustering import sinkhorn_knopp
from jssl.losses.clustering import swav
from jssl.losses.contrastive import info_nce
from jssl.losses.contrastive import l2_normalize
from jssl.losses.contrastive import nt_xent
from jssl.losses.contrastive import update_queue
from jssl.losses.distillation import dino
from jssl.losses.distillation import negative_cosine
from jssl.losses.distillation import update_center
from jssl.losses.generative import alphas_cumprod
from jssl.losses.generative import cosine_beta_schedule
from jssl.losses.generative import ddpm
from jssl.losses.generative import ddpm_corrupt
from jssl.losses.generative import linear_beta_schedule
from jssl.losses.generative import vae_elbo
from jssl.losses.generative import vae_terms
from jssl.losses.language import masked_lm
from jssl.losses.language import next_token
from jssl.losses.language import token_nll
from jssl.losses.reconstruction import denoising
from jssl.losses.reconstruction import mae
from jssl.losses.reconstruction import patchify
from jssl.losses.reconstruction import unpatchify
from jssl.losses.redundancy import barlow_twins
from jssl.losses.redundancy import vicreg

__all__ = [
    "alphas_cumprod",
    "barlow_twins",
    "cosine_beta_schedule",
    "cpc",
    "ddpm",
    "ddpm_corrupt",
    "denoising",
    "dino",
    "gumbel_product_quantizer",
    "info_nce",
    "l2_normalize",
    "linear_beta_schedule",
    "mae",
    "masked_lm",
    "negative_cosine",
    "next_token",
    "nt_xent",
    "patchify",
    "sample_distractors",
    "sinkhorn_knopp",
    "swav",
    "token_nll",
    "unpatchify",
    "update_center",
    "update_queue",
    "vae_elbo",
    "vae_terms",
    "vicreg",
    "wav2vec2",
]
