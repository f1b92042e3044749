"""DDPM with a small U-Net on the embedded 5,000-image MNIST subset (CPU recipe).

Data as every `configs/*_mnist.py` (4,000 train / 1,000 held out, no download), but scaled
to [-1, 1] (mean 0.5, std 0.5) as diffusion models expect, and not augmented (one view, the
image itself: digits are neither flipped nor cropped for generation).

The paper's CIFAR-10 recipe (`configs/ddpm_cifar10.py`) scaled to a 2-core CPU:
* U-Net 16 wide, `ch_mult=(1, 2, 2)` (28, 14, 7 px), one residual block per level, attention
  at 7 px and in the middle block, no dropout (the paper's 0.1 is against over-fitting over
  800k steps; this run is short); 0.28M parameters, 0.28 GFLOPs per image per train step;
* T = 1000, linear betas 1e-4..0.02 as the paper, but v-prediction (Salimans & Ho 2022)
  instead of epsilon: at 900 steps epsilon's x0 estimates at high noise, amplified by
  1 / sqrt(abar_t) (17x at t = 750), gave about half the samples gray or white backgrounds
  (ancestral 1000-step sampling as well as DDIM), while v's samples all had MNIST's black
  background by step 300;
* Adam (AdamW without decay) lr 2e-3 at batch 64 (the paper's 2e-4 is for 800k steps), 100
  warm-up steps then constant (`min_learning_rate_ratio=1`), gradient clipping at 1;
* EMA 0.999 with the (1 + k) / (10 + k) warm-up (the paper's 0.9999 averages over 10k steps:
  longer than this run);
* DDIM sampling with 50 steps, eta 0, for the pictures.

Evaluation: kNN / linear probe on the EMA U-Net's middle-block activations at t = 50
(`method.represent_timestep`, 32 wide), the held-out denoising loss at t = 50, 250, 500, 750
(`ssl.heldout/denoise_mse_t*` in results.json),
and pictures: `<workdir>/pictures/samples.png` (64 DDIM samples) and `denoising.png` (held-out
digits; per t, the noised digit and the one-step x0 estimate). Fine-tuning is off: the U-Net
is not a feature extractor (`DDPM.backbone`).

Measured (2-core CPU shared with the lead's and another helper's jobs, load average 5-7,
2026-12-01):
  * U-Net widths (train step of batch 64, 1 device, under that load): ch 32 with 1 block 1.4 s
    (1.1 GFLOPs per image), ch 24 1.0 s, ch 16 with 2 blocks 0.8 s, ch 16 with 1 block 0.53 s;
  * epsilon prediction, otherwise this config, 900 steps: held-out kNN 0.645, linear probe
    0.800, online probe 0.229 (kNN 0.618 at 300, 0.648 at 600); random-init U-Net 0.324 /
    0.400; raw pixels 0.944 / 0.884. Held-out epsilon MSE (EMA, whole test split) t=50 0.100,
    t=250 0.039, t=500 0.0175, t=750 0.0033. Wall 18 min 53 s under the load above (about
    1.1 s a step, twice the unloaded rate). Samples: about half clean digits or digit-like
    strokes, half gray/white backgrounds;
  * this config (v; `python -m jssl.cli train --config configs/ddpm_mnist.py --workdir
    /tmp/ddpm/runB`): held-out kNN 0.594, linear probe 0.813, online probe 0.229 (kNN 0.586 at
    300, 0.584 at 600). Held-out v MSE (EMA, whole test split; not comparable with epsilon's)
    t=50 0.113, t=250 0.078, t=500 0.191, t=750 0.269. Wall 12 min 58 s under the load above
    (with this helper's own tests running beside it; about 0.6 s a step). Samples: 64 of 64 on
    a black background; most read as digits (0, 2, 3, 6, 7, 8, 9 clearly), the rest
    digit-like strokes. The representation is weak (raw pixels do better), as the
    diffusion-representation papers find for small t on short runs.
Quiet timing (2-core CPU alone, 2026-12-01, commit f0bade4, `python -m benchmarks.methods_table
--methods ddpm`, which adds `--config.eval.frechet_encoder=<the SimCLR recipe's run>`): the same
kNN 0.594 / linear probe 0.813; the trainer's held-out v MSE t=50 0.112, t=250 0.078, t=500
0.192, t=750 0.270 (random init 0.92-1.00); Fréchet distance of 1,000 DDIM samples to the
held-out images in the SimCLR encoder's feature space 0.681 (1,000 training images: 0.081);
9 min 33 s wall including those 1,000 samples, 0.40 s a step.

Launch:
  jssl train --config configs/ddpm_mnist.py --workdir runs/ddpm_mnist
  jssl train --config configs/ddpm_mnist.py:smoke --workdir /tmp/smoke     # seconds, CPU

Variants (after the colon): `smoke` (a few steps, a tiny U-Net, for tests and CI).

References:
  Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020,
  https://arxiv.org/abs/2006.11239; Song, Meng, Ermon, "Denoising Diffusion Implicit Models",
  ICLR 2021 (the sampler).
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def ddpm_method(c: ml_collections.ConfigDict) -> None:
    """Every `config.method` field of DDPM, at the paper's values (Ho et al. 2020, Sec. 4 and App. B)."""
    m = c.method  # the base config's SimCLR fields stay, unused, as in every recipe
    m.name = "ddpm"
    m.schedule = "linear"  # or 'cosine' (Nichol & Dhariwal 2021)
    m.num_timesteps = 1000  # T, the diffusion steps of training
    m.beta_start = 1e-4  # first noise variance of the linear schedule
    m.beta_end = 0.02  # last noise variance of the linear schedule
    m.prediction = "epsilon"  # or 'v' (Salimans & Ho 2022)
    m.ema_decay = 0.9999  # of the EMA weights that sample, draw pictures and represent
    m.ema_warmup = False  # EMA decay min(ema_decay, (1 + k) / (10 + k)) at step k, for short runs
    m.sample_steps = 100  # DDIM steps for the pictures
    m.eta = 0.0  # DDIM noise: 0 deterministic, 1 on all T steps is ancestral DDPM sampling
    m.clip_denoised = True  # clip each step's x0 estimate to [-1, 1] while sampling
    m.num_samples = 64  # images in the samples picture
    m.represent_timestep = 50  # the noise level t whose U-Net middle activations are the representation
    m.picture_timesteps = (50, 250, 500, 750)  # noise levels of the denoising picture
    m.heldout_timesteps = (50, 250, 500, 750)  # noise levels of the held-out denoising MSE


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.mnist(config)
    config.data.mean = (0.5,)
    config.data.std = (0.5,)
    config.data.augment = ""  # the image itself
    config.total_steps = 900
    config.global_batch_size = 64
    config.model.name = "unet"
    # Listed in full so that --config.model.kwargs.* overrides reach every field.
    config.model.kwargs = ml_collections.ConfigDict(
        {
            "image_size": 28,
            "ch": 16,
            "ch_mult": (1, 2, 2),
            "num_res_blocks": 1,
            "attn_resolutions": (7,),
            "dropout": 0.0,
        }
    )

    ddpm_method(config)
    # v rather than epsilon: the short run's x0 estimates at high noise are not amplified by
    # 1 / sqrt(abar_t) (see the docstring: half the epsilon samples had gray or white backgrounds).
    config.method.prediction = "v"
    config.method.ema_decay = 0.999
    config.method.ema_warmup = True
    config.method.sample_steps = 50

    config.optimizer.name = "adamw"
    config.optimizer.base_learning_rate = 2e-3
    config.optimizer.lr_scaling_batch = 64  # lr = base_learning_rate at this recipe's batch
    config.optimizer.weight_decay = 0.0
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.warmup_steps = 100
    config.optimizer.min_learning_rate_ratio = 1.0  # constant after the warm-up, as the paper
    config.optimizer.grad_clip_norm = 1.0

    config.eval.every_steps = 300
    config.checkpoint.every_steps = 150
    config.finetune.enabled = False  # see DDPM.backbone

    if variant == "smoke":
        common.make_smoke(config)
        config.model.kwargs = ml_collections.ConfigDict(
            {
                "image_size": 28,
                "ch": 8,
                "ch_mult": (1, 2),
                "num_res_blocks": 1,
                "attn_resolutions": (14,),
                "dropout": 0.1,
            }
        )
        config.method.sample_steps = 4
        config.method.num_samples = 4
        config.eval.num_pictures = 4
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of ddpm_mnist; known: 'smoke'")
    return config
