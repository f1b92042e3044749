"""Named benchmark entries and the suites that group them.

An entry fixes everything that changes the number: method, model, resolution, global batch
(in example pairs for two-view methods), precision, mesh and device count, plus the XLA
flags it runs under. Suites add the data-pipeline, peer and scaling measurements.
Importing this module must not import jax: the runner sets XLA_FLAGS per worker process.
"""

from __future__ import annotations

import dataclasses
from typing import Any

SIMCLR_AUGMENT = "random_resized_crop({res})|hflip|color_jitter|grayscale|gaussian_blur"


@dataclasses.dataclass(frozen=True)
class StepEntry:
    name: str
    method: str = "simclr"
    model: str = "resnet18"
    resolution: int = 32
    batch: int = 256  # global batch; for SimCLR, pairs of views
    precision: str = "float32"
    mesh: tuple[tuple[str, int], ...] = (("data", -1), ("fsdp", 1), ("tensor", 1))
    devices: int = 1  # fake CPU devices (--xla_force_host_platform_device_count); ignored on GPU
    small_image_stem: bool = False
    warmup: int = 1
    steps: int = 5
    e2e_steps: int = 0  # >0: also run end to end with the real Grain pipeline
    e2e_workers: int = 0
    xla_flags: str = ""
    threads: int = 0  # 0: all cores; else pin the worker to this many cores
    # A config in configs/ (e.g. 'byol_imagenet') to start from: its method, heads, crops and
    # schedules; the entry's model, batch, precision and mesh override it, and the views take
    # the recipe's crop sizes (resolution is then only the source image size).
    recipe: str = ""
    # Dotted config paths set last, as `--config.a.b=v` would: ViT widths
    # (`model.kwargs.depth`), method options (`method.decoder_depth`), crops (`data.crops`).
    overrides: tuple[tuple[str, Any], ...] = ()
    # Use exactly the first `devices` devices on any platform (scaling runs); otherwise GPUs
    # use every visible device and `devices` only sets the fake CPU device count.
    limit_devices: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mesh"] = dict(self.mesh)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StepEntry":
        d = dict(d)
        if isinstance(d.get("mesh"), dict):
            d["mesh"] = tuple(d["mesh"].items())
        # JSON turns tuples into lists; entries are hashed (the runner's cache), so freeze back.
        d["overrides"] = tuple((k, _freeze(v)) for k, v in d.get("overrides", ()))
        return cls(**d)


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


@dataclasses.dataclass(frozen=True)
class DataEntry:
    """Two-view augmentation throughput of the Grain pipeline."""

    name: str
    source: str  # 'mnist' (embedded) | 'jpeg' (synthetic JPEG-encoded images)
    resolution: int
    augment: str
    workers: tuple[int, ...] = (0, 1, 2)
    batch: int = 32
    batches: int = 4
    num_images: int = 256


@dataclasses.dataclass(frozen=True)
class AugRateEntry:
    """Two-view augmentation from JPEG bytes: each implementation in `benchmarks.aug_rate`
    on the same images, each pinned to `threads` cores."""

    name: str
    resolution: int = 224
    images: int = 128
    batch: int = 16  # the device path's batch (host paths go image by image)
    threads: int = 1
    impls: tuple[str, ...] = ("jssl-host", "jssl-device", "lightly", "torchvision-v2")
    # Rounds of every implementation in turn (A B C D A B C D ...): a shared 2-core machine's
    # speed drifts by 2x within minutes, so each ratio compares runs seconds apart, and the
    # table reports the median round.
    rounds: int = 3


@dataclasses.dataclass(frozen=True)
class PeerEntry:
    """jssl vs PyTorch + lightly, both pinned to the same cores."""

    name: str
    resolution: int = 32
    batch: int = 32
    small_image_stem: bool = False
    threads: int = 2
    warmup: int = 1
    steps: int = 3
    # Also time the encoder alone (forward; forward + backward) on both sides.
    breakdown: bool = True


@dataclasses.dataclass
class Suite:
    name: str
    description: str
    steps: list[StepEntry] = dataclasses.field(default_factory=list)
    data: list[DataEntry] = dataclasses.field(default_factory=list)
    peers: list[PeerEntry] = dataclasses.field(default_factory=list)
    aug_rates: list[AugRateEntry] = dataclasses.field(default_factory=list)
    # XLA CPU flag variants run on `flag_study_entry` to find what closes the conv gap.
    flag_variants: dict[str, str] = dataclasses.field(default_factory=dict)
    flag_study_entry: StepEntry | None = None
    # Per-device throughput on 1, 2, 4, ... devices (fake CPU devices, or the first n GPUs).
    # Each entry's batch is per data x fsdp replica: global batch = batch x (data x fsdp size),
    # so data/FSDP meshes scale weakly (same per-device batch) and a tensor mesh strongly
    # (same global batch, the model split over the devices).
    scaling_devices: tuple[int, ...] = ()
    scaling_entry: StepEntry | None = None
    scaling_entries: list[StepEntry] = dataclasses.field(default_factory=list)
    # FLOP check only (lowered, not compiled): entries too big to run here.
    flop_checks: list[StepEntry] = dataclasses.field(default_factory=list)
    # Single-convolution breakdowns (forward / input grad / weight grad): kwargs of conv_micro.
    conv_micro: list[dict[str, int]] = dataclasses.field(default_factory=list)


# jaxlib 0.10.2 lowers most CPU convolutions to YNNPACK by default; "ynn_off" shows what that
# is worth (everything on XLA's Eigen convolution). The XNNPACK switches leave the compiled
# HLO byte-identical in this build; the oneDNN ones move 7 convolutions to oneDNN fusions
# (see the HLO census); xla_cpu_use_thunk_runtime=false is deprecated and ignored (XLA warns).
# "no_algsimp": the algebraic simplifier rewrites convolutions whose kernel is larger than
# their input (3x3 on the 2x2 and 1x1 maps of a 32 px image after the 224 px stem) into
# operand-swapped convolutions that neither YNNPACK nor Eigen run well; without it the
# step is ~3x faster here. A blunt switch (it disables every algebraic simplification).
CPU_FLAG_VARIANTS = {
    "default": "",
    "no_algsimp": "--xla_disable_hlo_passes=algsimp",
    "ynn_off": "--xla_cpu_experimental_ynn_fusion_type=",
    # The conv micro-benchmark has Eigen beating YNNPACK on weight gradients: both together.
    "no_algsimp+ynn_off": "--xla_disable_hlo_passes=algsimp --xla_cpu_experimental_ynn_fusion_type=",
    "onednn": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
    "xnnpack": "--xla_cpu_use_xnnpack=true --xla_cpu_experimental_xnn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
}


# ================================================================================================
# DDPM: the U-Net of configs/ddpm_cifar10.py (35.7M parameters at 32 px, Ho et al. 2020)
# ================================================================================================

def ddpm_entry(resolution: int, batch: int, *, precision: str = "bfloat16", ch: int = 128, steps: int = 20,
               warmup: int = 3, name: str = "") -> StepEntry:
    """The DDPM CIFAR-10 recipe's train step (U-Net, EMA update, one view) on `resolution` px images.

    At 64 px the same U-Net gets one more halving (64, 32, 16, 8 px; attention still at 16 px),
    as the paper's 64 px-and-up models keep attention at 16x16. `ch` narrows it (CPU entries).
    Images/s per device is the table's `views_per_s_per_device` (one view per image); MFU comes
    from XLA's count of the lowered step (no analytic U-Net count: `flops.py` models ResNets).
    """
    width = "" if ch == 128 else f"-ch{ch}"
    return StepEntry(
        name=name or f"ddpm-unet{width}-{resolution}px-b{batch}-{'bf16' if precision == 'bfloat16' else 'fp32'}",
        method="ddpm", recipe="ddpm_cifar10", model="unet", resolution=resolution, batch=batch,
        precision=precision, steps=steps, warmup=warmup, limit_devices=True,
        overrides=(("model.kwargs.image_size", resolution), ("model.kwargs.ch", ch)))


# One GPU each (limit_devices): the paper's batch 128 at 32 px; 64 px images cost ~4x, batch 64.
GPU_DDPM_STEPS = (ddpm_entry(32, 128), ddpm_entry(64, 64))
# The same step narrowed to 32 channels (1/16 of the FLOPs), small batches: ~1 min on 2 cores.
CPU_DDPM_STEPS = (ddpm_entry(32, 8, precision="float32", ch=32, steps=3, warmup=1),
                  ddpm_entry(64, 2, precision="float32", ch=32, steps=3, warmup=1))


def _cpu_smoke() -> Suite:
    # threads=2 so the step table, the flag study's default and the peer's jssl side are one run.
    r18 = StepEntry(name="simclr-r18-32px-b32", resolution=32, batch=32, steps=4, e2e_steps=3, threads=2)
    return Suite(
        name="cpu-smoke",
        description="CPU suite for a 2-core machine: under 10 minutes",
        # The tiny MAE is the ViT code path's smoke test (~1 min here); cpu-vit has the rest.
        # The same step augmenting on the device: synthetic = source images already on the device
        # (the step's time includes the augmentation), e2e = fed by the Grain pipeline.
        steps=[r18, dataclasses.replace(r18, name="simclr-r18-32px-b32-devaug", overrides=(("data.augment_on", "device"),)),
               TINY_MAE, *CPU_DDPM_STEPS],
        data=[
            DataEntry(name="aug-mnist-28px", source="mnist", resolution=28,
                      augment="random_resized_crop(28, scale=(0.3, 1.0))|color_jitter|gaussian_blur", batch=64, batches=4, num_images=512),
            DataEntry(name="aug-jpeg-224px", source="jpeg", resolution=224,
                      augment=SIMCLR_AUGMENT.format(res=224), workers=(0, 1, 2), batch=16, batches=3, num_images=96),
        ],
        peers=[PeerEntry(name="peer-r18-32px-b32", resolution=32, batch=32, steps=4, threads=2)],
        # One core each: the per-core comparison. The host implementations are one sequential loop
        # (one DataLoader / Grain worker's work), so only the device path has a 2-core row.
        aug_rates=[AugRateEntry(name="simclr-224px-jpeg-1core", threads=1),
                   AugRateEntry(name="simclr-224px-jpeg-2core", threads=2, impls=("jssl-device",))],
        # The full list is in cpu-full; XNNPACK and oneDNN measured as noise in a 3-round study.
        flag_variants={k: CPU_FLAG_VARIANTS[k] for k in ("default", "no_algsimp", "ynn_off", "no_algsimp+ynn_off")},
        flag_study_entry=r18,
        scaling_devices=(1, 2, 4, 8),
        scaling_entry=StepEntry(name="scale-mini-32px", model="resnet_mini", resolution=32, batch=16, steps=5, warmup=2),
        flop_checks=[StepEntry(name="flops-r50-224px", model="resnet50", resolution=224, batch=8),
                     *(dataclasses.replace(e, name=f"flops-{e.name}", batch=8) for e in GPU_DDPM_STEPS)],
        # ResNet-18 at 224 px's stage-2 entry conv (strided: its input grad is lhs-dilated), 8 images.
        conv_micro=[dict(batch=8, size=56, cin=64, cout=128, kernel=3, stride=2)],
    )


def _cpu_full() -> Suite:
    suite = _cpu_smoke()
    suite.name = "cpu-full"
    suite.description = "The issue's reference point: ResNet-18, 32 px, 256 pairs, both stems (about an hour on 2 cores)"
    r18 = StepEntry(name="simclr-r18-32px-b256", resolution=32, batch=256, steps=3, e2e_steps=2, threads=2)
    suite.steps = [
        r18,
        StepEntry(name="simclr-r18cifar-32px-b256", resolution=32, batch=256, small_image_stem=True, steps=2, threads=2),
        StepEntry(name="simclr-r18-32px-b32-bf16", resolution=32, batch=32, precision="bfloat16", steps=3),
    ]
    suite.flag_study_entry = r18
    suite.flag_variants = dict(CPU_FLAG_VARIANTS)
    suite.peers = [
        PeerEntry(name="peer-r18-32px-b256", resolution=32, batch=256, steps=3),
        PeerEntry(name="peer-r18cifar-32px-b256", resolution=32, batch=256, small_image_stem=True, steps=2),
        # One core each: PyTorch's OpenMP stalls when other jobs share its cores; this does not.
        PeerEntry(name="peer-r18-32px-b32-1core", resolution=32, batch=32, steps=4, threads=1, breakdown=False),
    ]
    return suite


def _gpu() -> Suite:
    return Suite(
        name="gpu",
        description="One GPU (or all local GPUs with --devices): ResNet-50 at 224 px, bf16 and fp32",
        steps=[
            StepEntry(name="simclr-r50-224px-b256-bf16", model="resnet50", resolution=224, batch=256,
                      precision="bfloat16", steps=20, warmup=3, e2e_steps=10, e2e_workers=8),
            StepEntry(name="simclr-r50-224px-b128-fp32", model="resnet50", resolution=224, batch=128, steps=20, warmup=3),
            StepEntry(name="simclr-r18-32px-b512-bf16", resolution=32, batch=512, small_image_stem=True,
                      precision="bfloat16", steps=20, warmup=3),
            *GPU_DDPM_STEPS,
        ],
        flop_checks=[StepEntry(name="flops-r50-224px", model="resnet50", resolution=224, batch=8)],
    )


# Every method's ImageNet recipe (its heads, teachers, queues and crops) at ResNet-50, 224 px, bf16.
RECIPE_METHODS = ("simclr", "moco_v2", "moco_v3", "byol", "simsiam", "vicreg", "barlow_twins", "swav", "dino")


def _gpu_methods() -> Suite:
    return Suite(
        name="gpu-methods",
        description="One GPU: each method's ImageNet recipe step, ResNet-50 at 224 px (multi-crop as configured), bf16",
        steps=[
            StepEntry(name=f"{m}-r50-224px-b128-bf16", method=m, recipe=f"{m}_imagenet", model="resnet50",
                      resolution=256, batch=128, precision="bfloat16", steps=20, warmup=3)
            for m in RECIPE_METHODS
        ],
    )


# ================================================================================================
# Vision Transformers
# ================================================================================================

MESHES = {
    "data": (("data", -1), ("fsdp", 1), ("tensor", 1)),
    "fsdp": (("data", 1), ("fsdp", -1), ("tensor", 1)),
    "tensor": (("data", 1), ("fsdp", 1), ("tensor", -1)),
}

# The three ViT recipes on one GPU, bf16. Per-device batches are the largest round numbers that
# leave room on an 80 GB H100 by an activation estimate (bf16 matmul inputs, float32 residual
# stream): MAE's encoder sees 50 tokens and its 512-wide decoder 197, ~0.1 GB an image, so 256
# (the paper: 4096 over 64 V100s, 64 each); DINO's student sees 2 x 197 + 10 x 37 tokens an
# image through ViT-S, 128 (the paper: 1024 over 16 GPUs); MoCo v3 trains ViT-B on two
# 197-token views, 128 pairs (256 images). XLA CPU's buffer assignment for these exact steps
# (compile only, 2026-11-25): 52, 58 and 63 GB (arguments + temporaries), under 80 GB even
# with attention scores materialized; not yet measured on a GPU. `limit_devices`: always the
# first GPU alone, so a batch is per GPU on any host; the scaling entries cover several GPUs.
GPU_VIT_STEPS = (
    StepEntry(name="mae-vitb16-224px-b256-bf16", method="mae", recipe="mae_imagenet", model="vit_b16",
              resolution=256, batch=256, precision="bfloat16", steps=20, warmup=3, limit_devices=True),
    # DINO's ViT-S/16 recipe differs from configs/dino_imagenet.py's ResNet-50 one where it changes
    # the step: stochastic depth 0.1 and AdamW (weight decay 0.04, its start value).
    StepEntry(name="dino-vits16-2x224+10x96-b128-bf16", method="dino", recipe="dino_imagenet", model="vit_s16",
              resolution=256, batch=128, precision="bfloat16", steps=20, warmup=3, limit_devices=True,
              overrides=(("model.kwargs.drop_path", 0.1), ("optimizer.name", "adamw"),
                         ("optimizer.weight_decay", 0.04))),
    # MoCo v3's ViT settings (its paper, Sec. 4 and Table 8 of the appendix): sin-cos positions,
    # 3-layer projector, temperature 0.2, AdamW with weight decay 0.1.
    StepEntry(name="moco_v3-vitb16-224px-b128-bf16", method="moco_v3", recipe="moco_v3_imagenet", model="vit_b16",
              resolution=256, batch=128, precision="bfloat16", steps=20, warmup=3, limit_devices=True,
              overrides=(("model.kwargs.pos_embed", "sincos"), ("method.projection_layers", 3),
                         ("method.temperature", 0.2), ("optimizer.name", "adamw"), ("optimizer.weight_decay", 0.1))),
)

# A ViT small enough for a test or a 2-core CI machine: 32 px images in 8 px patches (16 tokens),
# widths divisible by 8 so that every axis of an 8-device tensor or FSDP mesh splits evenly.
TINY_VIT = (("model.kwargs.image_size", 32), ("model.kwargs.patch_size", 8), ("model.kwargs.embed_dim", 64),
            ("model.kwargs.depth", 2), ("model.kwargs.num_heads", 8))
TINY_METHOD = {
    "mae": (("data.augment", "random_resized_crop(32, scale=(0.2, 1.0))|hflip"), ("method.decoder_embed_dim", 64),
            ("method.decoder_depth", 1), ("method.decoder_num_heads", 8)),
    "dino": (("data.crops", ((1, "random_resized_crop(32, scale=(0.14, 1.0))|hflip"),
                             (1, "random_resized_crop(32, scale=(0.14, 1.0))|hflip"),
                             (10, "random_resized_crop(16, scale=(0.05, 0.14))|hflip"))),
             ("method.out_dim", 256), ("method.head_hidden_dim", 64), ("method.head_bottleneck_dim", 32)),
    "moco_v3": (("data.crops", ((2, "random_resized_crop(32, scale=(0.2, 1.0))|hflip"),)),
                ("method.projection_hidden_dim", 64), ("method.projection_dim", 32),
                ("method.predictor_hidden_dim", 64)),
}


def tiny_vit(entry: StepEntry, *, batch: int = 8, name: str = "") -> StepEntry:
    """`entry` with a tiny ViT, its method shrunk alike and 32 px crops (DINO's local crops 16 px):
    the same code path as the full entry, small enough for CPU tests and CI."""
    return dataclasses.replace(
        entry, name=name or f"{entry.name}-tiny", batch=batch, resolution=40, precision="float32",
        overrides=entry.overrides + TINY_VIT + TINY_METHOD[entry.method], warmup=1, steps=3)


def vit_scaling_entries(base: StepEntry) -> list[StepEntry]:
    """`base` on a data, an FSDP and a tensor-parallel mesh (the runner sets the device counts)."""
    return [dataclasses.replace(base, name=f"{base.name}-{mesh}", mesh=MESHES[mesh]) for mesh in MESHES]


TINY_MAE = tiny_vit(GPU_VIT_STEPS[0], name="mae-vit-tiny-32px-b32", batch=32)


def _vit_flop_checks() -> list[StepEntry]:
    """The GPU entries at full model size and batch 8, lowered only (cheap on a CPU)."""
    return [dataclasses.replace(e, name=f"flops-{e.method}-{e.model.replace('_', '')}-b8", batch=8)
            for e in GPU_VIT_STEPS]


def _cpu_vit() -> Suite:
    return Suite(
        name="cpu-vit",
        description="CPU, tiny ViTs: MAE, DINO multi-crop and MoCo v3 steps, scaling over data/FSDP/tensor "
                    "meshes on 1-8 fake devices, and the full-size GPU entries' FLOPs (lowered only)",
        steps=[TINY_MAE, *(tiny_vit(e, name=f"{e.method}-vit-tiny-b16", batch=16) for e in GPU_VIT_STEPS[1:])],
        scaling_devices=(1, 2, 4, 8),
        scaling_entries=vit_scaling_entries(tiny_vit(GPU_VIT_STEPS[0], name="scale-mae-vit-tiny", batch=8)),
        flop_checks=_vit_flop_checks(),
    )


def _gpu_vit() -> Suite:
    return Suite(
        name="gpu-vit",
        description="GPUs: MAE ViT-B/16, DINO ViT-S/16 multi-crop and MoCo v3 ViT-B/16 steps (bf16), and MAE "
                    "ViT-B/16 over the first 1/2/4/8 GPUs on data, FSDP and tensor meshes",
        steps=list(GPU_VIT_STEPS),
        scaling_devices=(1, 2, 4, 8),
        scaling_entries=vit_scaling_entries(dataclasses.replace(GPU_VIT_STEPS[0], name="scale-mae-vitb16", batch=128,
                                                                steps=10)),
        flop_checks=_vit_flop_checks(),
    )


SUITES = {"cpu-smoke": _cpu_smoke, "cpu-full": _cpu_full, "cpu-vit": _cpu_vit, "gpu": _gpu,
          "gpu-methods": _gpu_methods, "gpu-vit": _gpu_vit}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; known: {sorted(SUITES)}")
    return SUITES[name]()
