"""DDPM on CIFAR-10: the paper's recipe (Ho et al. 2020, Sec. 4 and Appendix B), for GPUs.

* Data: CIFAR-10's 50,000 training images as prepared by
  `tfds build cifar10 --file_format=array_record` (`data.name='tfds'`, `data.tfds_name='cifar10'`),
  scaled to [-1, 1] (mean 0.5, std 0.5); random horizontal flips (the paper's only augmentation);
  the 10,000 test images are the held-out split (kNN / linear probe, held-out denoising loss,
  pictures).
* Model: the 35.7M-parameter U-Net, `ch=128`, `ch_mult=(1, 2, 2, 2)` (32, 16, 8, 4 px), 2
  residual blocks per level, self-attention at 16x16 (and in the middle block), dropout 0.1.
* Diffusion: T = 1000, linear betas 1e-4..0.02, epsilon prediction (L_simple).
* Optimization: Adam (AdamW with weight decay 0), lr 2e-4, batch 128, 5,000 linear warm-up
  steps then constant, gradient norm clipped at 1, 800k steps; EMA of the weights with decay
  0.9999 for sampling and evaluation.
* Sampling for the pictures: DDIM (Song et al. 2021) with 100 steps, eta 0 (the paper samples
  ancestrally with all 1000 steps: `DDPM.sample(..., sampler='ddpm')`).
The paper reports FID 3.17 and IS 9.46 for this model; jssl does not compute FID.

Evaluation: kNN / linear probe on the EMA U-Net's middle-block activations at t = 50 (256
wide), held-out denoising loss at t = 50, 250, 500, 750. Fine-tuning is off (`DDPM.backbone`).
bfloat16 compute with float32 parameters and EMA (the paper trains in float32 on TPU v3-8).

Not yet run here: the number to compare with is the paper's FID 3.17 (the reference code's
800k-step run takes 10.6 hours on a TPU v3-8, Appendix B); a GPU run of this config is the
lead's to schedule.

Launch:
  tfds build cifar10 --file_format=array_record
  jssl train --config configs/ddpm_cifar10.py --workdir runs/ddpm_cifar10
  jssl train --config configs/ddpm_cifar10.py:smoke --workdir /tmp/smoke   # needs cifar10 prepared

Variants (after the colon): `smoke` (a few steps, a narrow U-Net).

References:
  Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020,
  https://arxiv.org/abs/2006.11239 (Sec. 4, Appendix B); reference code
  https://github.com/hojonathanho/diffusion (scripts/run_cifar.py);
  Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021.
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    config.data.name = "tfds"
    config.data.tfds_name = "cifar10"
    config.data.data_dir = "~/tensorflow_datasets"
    config.data.train_split = "train"
    config.data.eval_split = "test"
    config.data.num_classes = 10
    config.data.mean = (0.5,)
    config.data.std = (0.5,)
    config.data.augment = "hflip"
    config.data.num_workers = 8

    config.total_steps = 800_000
    config.global_batch_size = 128
    config.log_every_steps = 100
    config.model.name = "unet"
    config.model.dtype = "bfloat16"
    # Listed in full so that --config.model.kwargs.* overrides reach every field.
    config.model.kwargs = ml_collections.ConfigDict(
        {
            "image_size": 32,
            "ch": 128,
            "ch_mult": (1, 2, 2, 2),
            "num_res_blocks": 2,
            "attn_resolutions": (16,),
            "dropout": 0.1,
        }
    )

    m = config.method  # the base config's SimCLR fields stay, unused, as in every recipe
    m.name = "ddpm"
    m.schedule = "linear"
    m.num_timesteps = 1000
    m.beta_start = 1e-4
    m.beta_end = 0.02
    m.prediction = "epsilon"
    m.ema_decay = 0.9999
    m.ema_warmup = False
    m.sample_steps = 100
    m.eta = 0.0
    m.clip_denoised = True
    m.num_samples = 64
    m.represent_timestep = 50
    m.picture_timesteps = (50, 250, 500, 750)
    m.heldout_timesteps = (50, 250, 500, 750)

    config.optimizer.name = "adamw"
    config.optimizer.base_learning_rate = 2e-4
    config.optimizer.lr_scaling_batch = 128  # lr = 2e-4 at the paper's batch
    config.optimizer.weight_decay = 0.0
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.warmup_steps = 5000
    config.optimizer.min_learning_rate_ratio = 1.0  # constant after the warm-up
    config.optimizer.grad_clip_norm = 1.0

    config.eval.every_steps = 50_000
    config.eval.batch_size = 1000
    config.eval.baselines = False
    config.checkpoint.every_steps = 10_000
    config.finetune.enabled = False  # see DDPM.backbone

    if variant == "smoke":
        common.make_smoke(config)
        config.model.dtype = "float32"
        config.model.kwargs = ml_collections.ConfigDict(
            {
                "image_size": 32,
                "ch": 16,
                "ch_mult": (1, 2, 2, 2),
                "num_res_blocks": 1,
                "attn_resolutions": (16,),
                "dropout": 0.1,
            }
        )
        config.data.num_workers = 0
        config.method.sample_steps = 4
        config.method.num_samples = 4
        config.eval.num_pictures = 4
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of ddpm_cifar10; known: 'smoke'")
    return config
