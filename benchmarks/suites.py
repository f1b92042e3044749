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

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mesh"] = dict(self.mesh)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StepEntry":
        d = dict(d)
        if isinstance(d.get("mesh"), dict):
            d["mesh"] = tuple(d["mesh"].items())
        return cls(**d)


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
class PeerEntry:
    """jssl vs PyTorch + lightly, both pinned to the same cores."""

    name: str
    resolution: int = 32
    batch: int = 32
    small_image_stem: bool = False
    threads: int = 2
    warmup: int = 1
    steps: int = 3
    # Augmentation side: images per measurement, on one core (like lightly's DataLoader worker).
    aug_resolution: int = 224
    aug_images: int = 48
    # Also time the encoder alone (forward; forward + backward) on both sides.
    breakdown: bool = True


@dataclasses.dataclass
class Suite:
    name: str
    description: str
    steps: list[StepEntry] = dataclasses.field(default_factory=list)
    data: list[DataEntry] = dataclasses.field(default_factory=list)
    peers: list[PeerEntry] = dataclasses.field(default_factory=list)
    # XLA CPU flag variants run on `flag_study_entry` to find what closes the conv gap.
    flag_variants: dict[str, str] = dataclasses.field(default_factory=dict)
    flag_study_entry: StepEntry | None = None
    # Per-device throughput on 1, 2, 4, ... fake CPU devices with this entry's per-device batch.
    scaling_devices: tuple[int, ...] = ()
    scaling_entry: StepEntry | None = None
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


def _cpu_smoke() -> Suite:
    # threads=2 so the step table, the flag study's default and the peer's jssl side are one run.
    r18 = StepEntry(name="simclr-r18-32px-b32", resolution=32, batch=32, steps=4, e2e_steps=3, threads=2)
    return Suite(
        name="cpu-smoke",
        description="CPU suite for a 2-core machine: under 10 minutes",
        steps=[r18],
        data=[
            DataEntry(name="aug-mnist-28px", source="mnist", resolution=28,
                      augment="random_resized_crop(28, scale=(0.3, 1.0))|color_jitter|gaussian_blur", batch=64, batches=4, num_images=512),
            DataEntry(name="aug-jpeg-224px", source="jpeg", resolution=224,
                      augment=SIMCLR_AUGMENT.format(res=224), workers=(0, 1, 2), batch=16, batches=3, num_images=96),
        ],
        peers=[PeerEntry(name="peer-r18-32px-b32", resolution=32, batch=32, steps=4, threads=2)],
        # The full list is in cpu-full; XNNPACK and oneDNN measured as noise in a 3-round study.
        flag_variants={k: CPU_FLAG_VARIANTS[k] for k in ("default", "no_algsimp", "ynn_off", "no_algsimp+ynn_off")},
        flag_study_entry=r18,
        scaling_devices=(1, 2, 4, 8),
        scaling_entry=StepEntry(name="scale-mini-32px", model="resnet_mini", resolution=32, batch=16, steps=5, warmup=2),
        flop_checks=[StepEntry(name="flops-r50-224px", model="resnet50", resolution=224, batch=8)],
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


SUITES = {"cpu-smoke": _cpu_smoke, "cpu-full": _cpu_full, "gpu": _gpu, "gpu-methods": _gpu_methods}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; known: {sorted(SUITES)}")
    return SUITES[name]()
