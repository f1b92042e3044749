"""VAE (Bernoulli likelihood) with a small convolutional encoder/decoder on the embedded MNIST subset.

Data as every `configs/*_mnist.py` (4,000 train / 1,000 held out, no download), but normalized
to [0, 1] (`data.mean = (0.,)`, `data.std = (1.,)`), which the Bernoulli likelihood needs, and
one view per example without augmentation (`identity`): a VAE models the images as they are.

Recipe (Kingma & Welling 2014, with a convolutional encoder and decoder):
* `conv_ae_small`: 3x3 stem, two stages of a stride-2 conv + one GroupNorm residual block
  (16 and 32 channels: 28 -> 14 -> 7), flattened into a 32-dim posterior mean (and a
  log-variance head); the decoder mirrors it (nearest 2x upsampling + conv);
* Bernoulli likelihood on gray levels, beta = 1, no free bits;
* Adam(W) lr 1e-3 at batch 128 (base 2e-3 per 256), no weight decay, 50 warm-up steps, cosine.

Measured (2-core CPU shared with two other jobs, 2026-12-01; held-out 1,000 images; held-out
metrics from the final checkpoint, one posterior sample per image):
  * this config (latent 32, 1,200 steps = 38 epochs; `python -m jssl.cli train --config
    configs/vae_mnist.py --workdir /tmp/vae_run`): kNN 0.959, linear probe 0.885, online probe
    0.886 (evals: kNN 0.956 at 400, 0.959 at 800); held-out negative ELBO 118.3 nats = 0.218
    bits per dim (KL 30.0, reconstruction 88.3), training 115.0; 7 min 45 s wall, median 2.5
    steps/s, with a test run beside it;
  * latent 32, 1,500 steps (48 epochs), 4 steps/s while alone: kNN 0.958, linear probe 0.881,
    online probe 0.889 (evals: kNN 0.956 at 500, 0.960 at 1,000) against a random-init encoder's
    0.841 / 0.722 and raw pixels' 0.944 / 0.884; held-out negative ELBO 115.7 nats (0.213 bits
    per dim; KL 29.8, reconstruction 85.8), training 114.5: little overfitting; 11 min wall
    with a test suite running beside it;
  * latent 16, 1,200 steps: kNN 0.945, linear 0.876, held-out 115.4 nats (KL 25.0); its prior
    samples looked no better, so the recipe keeps 32.
Quiet timing (2-core CPU alone, 2026-12-01, commit f0bade4, `python -m benchmarks.methods_table
--methods vae`): the same kNN 0.959 / linear probe 0.885 / online 0.886; the trainer's held-out
negative ELBO 118.0 nats = 0.217 bits per dim (KL 30.0, reconstruction 88.0; random init 983
nats); Fréchet distance of 1,000 prior samples to the held-out images in the SimCLR recipe's
feature space 1.47 (1,000 training images: 0.081); 3 min 49 s wall, 0.17 s a step.
Pictures at the end of both latent-32 runs (nearly identical): reconstructions of the 8 held-out digits are sharp
and right (3 0 6 7 8 2 7 1); interpolations morph smoothly (3 -> 0, 6 -> 7, 8 -> 2, 7 -> 1);
of the 32 prior samples about half are clear digits (4s, 9s, 2s, a 3), the rest digit-like
strokes, as expected of a plain VAE with a 32-dim latent on 4,000 images.

Launch:
  python -m jssl.cli train --config configs/vae_mnist.py --workdir runs/vae_mnist
  python -m jssl.cli train --config configs/vae_mnist.py:smoke --workdir /tmp/smoke     # seconds, CPU
Pictures: `<workdir>/pictures/{reconstruction,samples,interpolation}.png`.

References:
  Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014;
  Higgins et al., "beta-VAE", ICLR 2017 (`--config.method.beta=4`);
  Kingma et al., "Improved Variational Inference with Inverse Autoregressive Flow", NeurIPS
  2016 (free bits: `--config.method.free_bits=0.25`).

Variants (after the colon): `smoke` (a few steps, tiny batch, for tests and CI).
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.mnist(config)
    config.total_steps = 1200
    config.global_batch_size = 128
    config.data.mean = (0.0,)
    config.data.std = (1.0,)
    config.data.augment = "identity"
    config.model.name = "conv_ae_small"
    # Listed in full so that --config.model.kwargs.* overrides reach every field.
    config.model.kwargs = ml_collections.ConfigDict(
        {"image_size": 28, "widths": (16, 32), "blocks_per_stage": 1, "latent_dim": 32, "norm": "group", "groups": 8}
    )

    config.method.name = "vae"
    config.method.likelihood = "bernoulli"  # p(x|z): 'bernoulli' (decoder logits) or 'gaussian'
    config.method.beta = 1.0  # KL weight: 1 the VAE, > 1 beta-VAE
    config.method.free_bits = 0.0  # nats per latent dim below which the KL is not penalized (0: off)

    config.optimizer.name = "adamw"
    config.optimizer.base_learning_rate = 2e-3  # x global_batch/256: 1e-3 at batch 128
    config.optimizer.weight_decay = 0.0
    config.optimizer.warmup_steps = 50

    config.eval.every_steps = 400
    config.checkpoint.every_steps = 200

    if variant == "smoke":
        common.make_smoke(config)
        # The test helpers keep non-ResNet/ViT backbones at their smoke size: make it small.
        config.model.kwargs.widths = (8, 16)
        config.model.kwargs.latent_dim = 16
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of vae_mnist; known: 'smoke'")
    return config
