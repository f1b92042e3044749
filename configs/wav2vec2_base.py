"""wav2vec 2.0 BASE, the paper's pretraining recipe, on a TFDS audio data set (GPU/TPU cluster).

Baevski, Zhou, Mohamed, Auli, "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
Representations", NeurIPS 2020 (https://arxiv.org/abs/2006.11477), Sec. 4.2 and Appendix B,
and fairseq's `wav2vec2_base_librispeech.yaml`:

* model `wav2vec2_base` (95M with quantizer and heads): conv feature encoder 7 x 512
  (kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2; GroupNorm after the first conv; no conv
  bias), 12 Transformer blocks of 768 (12 heads, MLP 3072), convolutional position embedding
  (kernel 128, 16 groups, weight norm); jssl's blocks are pre-norm (fairseq's base is post-norm;
  the same parameters);
* masking: p = 0.065 of frames start a span of 10 (mask_prob 0.65 / span 10 in fairseq's
  parametrization, about 49% of frames masked), at least 2 spans;
* quantizer: G = 2 codebooks of V = 320 entries, codewords 128 (256 in all), Gumbel
  temperature 2 -> 0.5 by 0.999995 a step; final projection 256;
* loss: contrastive with K = 100 distractors from the same utterance, kappa = 0.1; diversity
  weight 0.1 over the masked frames; feature penalty weight 10;
* optimization: Adam (b1 0.9, b2 0.98, decoupled weight decay 0.01), peak lr 5e-4 after 8% (32k)
  warm-up steps, 400k updates; the paper decays linearly, jssl's schedule decays with a cosine.
  Batch: the paper's 1.6 h of audio per update (64 V100s x 1.4M samples, crops up to 250k
  samples from LibriSpeech's 960 h): here 5,760 one-second clips (the same 1.6 h).

Data: the paper pretrains on LibriSpeech 960 h, which has no per-clip label to probe; this recipe
reads TFDS `speech_commands` (16 kHz one-second keyword clips, 12 classes), prepared as
ArrayRecord, so that the kNN and linear probes have a task (`data.num_classes = 12`). tfds 4.9
builds an `Audio` feature's decoder with TensorFlow: install `tensorflow-cpu` on the hosts that
read it (jssl itself never imports TensorFlow). Not run here: no cluster.

Launch:
  tfds build speech_commands --file_format=array_record
  python -m jssl.cli train --config configs/wav2vec2_base.py --workdir gs://.../wav2vec2_base
  python -m jssl.cli train --config configs/wav2vec2_base.py:smoke --workdir /tmp/smoke   # needs the data set

Variants (after the colon): `smoke` (a few steps, tiny batch).
"""

from __future__ import annotations

import ml_collections

from jssl import config as common


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.spoken_digits(config)  # the audio data fields; the data set is set below
    config.data.name = "tfds"
    config.data.tfds_name = "speech_commands"
    config.data.data_dir = "~/tensorflow_datasets"
    config.data.train_split = "train"
    config.data.eval_split = "test"
    config.data.audio_key = "audio"
    config.data.label_key = "label"
    config.data.num_classes = 12
    config.data.crop_samples = 16000
    config.data.eval_samples = 16000
    config.data.normalize = False  # base: raw waveform (fairseq `normalize: false`)
    config.data.num_workers = 16
    config.data.max_eval_examples = 10_000

    config.total_steps = 400_000
    config.global_batch_size = 5760
    config.model.name = "wav2vec2_base"
    config.model.dtype = "bfloat16"
    config.model.kwargs = ml_collections.ConfigDict()
    config.method.update(
        dict(
            name="wav2vec2", mask_prob=0.65, mask_length=10, min_masks=2, num_negatives=100, logit_temperature=0.1,
            codebook_groups=2, codebook_entries=320, codebook_dim=256, final_dim=256, diversity_weight=0.1,
            feature_penalty_weight=10.0, gumbel_temperature_start=2.0, gumbel_temperature_end=0.5,
            gumbel_temperature_decay=0.999995,
        )
    )  # fmt: skip
    config.optimizer.name = "adamw"
    config.optimizer.base_learning_rate = 5e-4
    config.optimizer.lr_scaling_batch = 5760  # the peak lr is the paper's at this batch
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.98
    config.optimizer.weight_decay = 0.01
    config.optimizer.warmup_steps = 32_000
    config.log_every_steps = 100
    config.eval.every_steps = 20_000
    config.eval.batch_size = 512
    config.checkpoint.every_steps = 5000
    config.progress_bar = False

    if variant == "smoke":
        common.make_smoke(config)
        config.global_batch_size = 8
        config.eval.batch_size = 64
        config.data.max_eval_examples = 64
        config.data.num_workers = 0
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of wav2vec2_base; known: 'smoke'")
    return config
