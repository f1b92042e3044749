"""Model FLOPs per train step, two ways: XLA's cost analysis and an analytic count.

The analytic count walks the jssl ResNet and MLP head modules and multiplies out the
multiply-accumulates (MACs) of every convolution and dense layer; elementwise work (BatchNorm,
ReLU, the loss, the optimizer) is left out, which is why it sits a few percent below XLA's.
2 FLOPs per MAC. A train step costs the forward, the weight gradient (same MACs as the
forward) and the input gradient (same again) for every layer except the first, whose input
(the images) needs no gradient: XLA removes that work too, so counting it would overshoot.
Vision Transformers (attention, multi-crop, MAE's masking, teachers) are counted in
`benchmarks.flops_vit`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax


def xla_flops(compiled_or_lowered: Any) -> float | None:
    """`flops` from `cost_analysis()`, which is a dict or a list of per-module dicts by jax version."""
    try:
        analysis = compiled_or_lowered.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it; report n/a, not a crash
        return None
    if analysis is None:
        return None
    if isinstance(analysis, dict):
        analysis = [analysis]
    total = sum(float(a.get("flops", 0.0)) for a in analysis if a)
    return total if total > 0 else None


@dataclasses.dataclass
class LayerCount:
    """One conv or dense layer's forward MACs per example."""

    name: str
    macs: int
    first: bool = False  # consumes the raw input: no input gradient in training


def _conv_out(size: int, stride: int) -> int:
    # jssl pads every conv by kernel // 2 (odd kernels), and the max-pool by 1 with window 3:
    # for all of them the output size is ceil(size / stride).
    return (size - 1) // stride + 1


def _taps(size: int, kernel: int, stride: int, valid_only: bool) -> int:
    """Sum over output positions of the kernel taps that land inside the (unpadded) input."""
    out = _conv_out(size, stride)
    if not valid_only:
        return out * kernel
    pad = kernel // 2
    return sum(sum(0 <= o * stride - pad + k < size for k in range(kernel)) for o in range(out))


def _conv_layer(name: str, conv, h: int, w: int, valid_only: bool) -> tuple[LayerCount, int, int]:
    kh, kw = conv.kernel_size
    sh, sw = conv.strides
    groups = getattr(conv, "feature_group_count", 1) or 1
    taps = _taps(h, kh, sh, valid_only) * _taps(w, kw, sw, valid_only)
    macs = taps * (conv.in_features // groups) * conv.out_features
    return LayerCount(name, macs), _conv_out(h, sh), _conv_out(w, sw)


def resnet_layers(resnet, image_hw: tuple[int, int], *, valid_only: bool = False) -> tuple[list[LayerCount], int, int]:
    """Per-example forward MACs of every conv in a `jssl.models.resnet.ResNet` (real or abstract).

    `valid_only=False` is the textbook count (every kernel tap, padding included: ResNet-50 at
    224 px is 4.1 GMACs). `valid_only=True` skips taps that fall on zero padding, which is
    what XLA's cost analysis counts; the two differ little at 224 px but a lot at 32 px,
    where the last stage is 1x1 and a 3x3 kernel has one valid tap of nine.
    """
    from jssl.models.resnet import BasicBlock, BottleneckBlock

    h, w = image_hw
    stem, h, w = _conv_layer("stem_conv", resnet.stem_conv, h, w, valid_only)
    stem.first = True
    layers = [stem]
    if not resnet.small_image_stem:
        h, w = _conv_out(h, 2), _conv_out(w, 2)
    for i, block in enumerate(resnet.blocks):
        bh, bw = h, w
        names = ("conv1", "conv2") if isinstance(block, BasicBlock) else ("conv1", "conv2", "conv3")
        if not isinstance(block, (BasicBlock, BottleneckBlock)):
            raise TypeError(f"unknown block type {type(block).__name__}")
        for name in names:
            layer, h, w = _conv_layer(f"blocks.{i}.{name}", getattr(block, name), h, w, valid_only)
            layers.append(layer)
        if block.shortcut is not None:
            layer, _, _ = _conv_layer(f"blocks.{i}.shortcut", block.shortcut.conv, bh, bw, valid_only)
            layers.append(layer)
    return layers, h, w


def dense_layers(prefix: str, module) -> list[LayerCount]:
    """Every `nnx.Linear` inside `module`, per example."""
    from flax import nnx

    out = []
    for path, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Linear):
            out.append(LayerCount(prefix + ".".join(map(str, path)), node.in_features * node.out_features))
    return out


def train_flops_from_layers(layers: list[LayerCount], examples: int) -> float:
    """2 FLOPs per MAC; forward + weight grad for all, + input grad for all but the first layer."""
    per_example = sum(l.macs * (2 if l.first else 3) for l in layers)
    return 2.0 * per_example * examples


def analytic_step_flops(config, image_shape: tuple[int, int, int]) -> dict[str, float]:
    """Analytic train-step FLOPs of a jssl SimCLR-style experiment.

    Builds the model abstractly (no parameter memory) from the same config the trainer uses,
    so a change of width, stem or depth is counted without editing this file.
    """
    from flax import nnx

    from jssl import methods
    from jssl.train.state import SSLModel

    def build():
        rngs = nnx.Rngs(0)
        method = methods.build_method(config, in_channels=image_shape[-1], dtype=jax.numpy.float32, rngs=rngs)
        return SSLModel(method, num_classes=config.data.num_classes, rngs=rngs)

    model = nnx.eval_shape(build)
    method = model.method
    num_views = type(method).num_views(config)
    encoder = method.encoder
    conv_layers, _, _ = resnet_layers(encoder, image_shape[:2])
    valid_layers, _, _ = resnet_layers(encoder, image_shape[:2], valid_only=True)
    heads = []
    for name in ("projector", "predictor"):
        if hasattr(method, name):
            heads += dense_layers(f"{name}.", getattr(method, name))
    batch = config.global_batch_size
    backbone_forward = 2.0 * sum(l.macs for l in conv_layers)
    encoder_train = train_flops_from_layers(conv_layers, batch * num_views)
    heads_train = train_flops_from_layers(heads, batch * num_views)
    # The online probe sees stop-gradient features of one view: forward + weight grad only.
    probe = dense_layers("probe.", model.probe)
    probe_train = 2.0 * sum(2 * l.macs for l in probe) * batch
    valid_train = train_flops_from_layers(valid_layers, batch * num_views)
    return {
        "backbone_forward_flops_per_image": backbone_forward,
        "encoder_train_flops": encoder_train,
        "heads_train_flops": heads_train + probe_train,
        # Textbook count (what papers quote): every kernel tap.
        "train_flops": encoder_train + heads_train + probe_train,
        # Taps on zero padding skipped, as XLA counts them: the one to compare with XLA.
        "train_flops_valid": valid_train + heads_train + probe_train,
    }


def conv_lowering_census(hlo_text: str) -> dict[str, int]:
    """How XLA CPU lowered each convolution of a compiled module (from `compiled.as_text()`).

    In jaxlib 0.10 most convolutions become YNNPACK custom fusions (`__ynn_fusion`); the rest
    run on XLA's own Eigen-based convolution. The input gradient of a strided convolution is
    an lhs-dilated convolution (zeros between input pixels), which YNNPACK does not take.
    """
    import re

    kinds = re.findall(r'"kind":"(__\w+?_fusion)"', hlo_text)
    ynn = kinds.count("__ynn_fusion")
    # Convolutions outside any library fusion's body run on XLA's own (Eigen) kernels.
    native, dilated = 0, 0
    in_library_body = False
    fused_bodies = set(re.findall(r'calls=%([\w.\-]+)[^\n]*"kind":"__\w+_fusion"', hlo_text))
    for line in hlo_text.splitlines():
        header = re.match(r"\s*(?:ENTRY\s+)?%([\w.\-]+)\s.*\{\s*$", line)
        if header:
            in_library_body = header.group(1) in fused_bodies
        if " convolution(" in line and not in_library_body:
            native += 1
            dilated += "lhs_dilate" in line
    other = {k: kinds.count(k) for k in sorted(set(kinds)) if k != "__ynn_fusion"}
    return {"ynn_fusions": ynn, "native_convolutions": native, "native_lhs_dilated": dilated,
            "other_library_fusions": ", ".join(f"{k}:{v}" for k, v in other.items()) or "none"}
