"""Analytic FLOPs of Vision Transformer train steps (ViT encoders, MAE, DINO multi-crop, MoCo v3).

Counted per example from the built modules' shapes (abstract, no parameter memory), in
multiply-accumulates (MACs) x 2, by component:

  * `patch_embed`: `n_patches * p*p*c * d` (a stride-p convolution as one matmul);
  * `attn_proj`: query/key/value and output projections, `tokens * 4 d^2`;
  * `attn_scores` (`Q K^T`) and `attn_values` (`softmax V`): `tokens^2 * d` each, the O(n^2 d)
    terms;
  * `mlp`: `tokens * 2 d * mlp_dim`;
  * `heads`: every dense layer of the method's heads (projector, predictor, DINO head, MAE's
    decoder embedding and pixel prediction), plus the online probe.

Training multipliers: a trained layer costs its forward, its weight gradient and its input
gradient (3x forward); `Q K^T` and `softmax V` have no weights but two activation inputs,
so their backward is two matmuls of the forward's size (3x as well). Two exceptions, as XLA
computes them: the patch embedding's input is the image, which needs no gradient (2x); the
online probe sees stop-gradient features (2x: forward + weight gradient). Teachers (DINO's
EMA teacher on the global crops, MoCo v3's momentum encoder on both views) run forward only
(1x). Elementwise work (LayerNorm, GELU, softmax, the loss, the optimizer, EMA updates) is
left out, which is why the count sits a few percent below XLA's `cost_analysis()` at small
widths and converges to it as width grows.

Multi-crop views are counted at their own resolution (DINO's 96 px crops are 36 patches + a
class token). MAE's encoder runs on the class token + `int(n * (1 - mask_ratio))` visible
patches, its decoder on the class token + all `n` patches, and its pixel prediction on the
`n` patch tokens; the patch embedding still sees every patch (it runs before the masking).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import jax

# Components in report order; `*_teacher` are forward-only copies.
COMPONENTS = ("patch_embed", "attn_proj", "attn_scores", "attn_values", "mlp", "heads", "probe")


def transformer_macs(encoder, *, tokens: int) -> dict[str, int]:
    """Forward MACs per example of a `jssl.models.transformer.Encoder` on `tokens` tokens."""
    blocks = list(encoder.blocks)
    d = blocks[0].attn.qkv_kernel.get_value().shape[0]
    mlp_dim = blocks[0].mlp.fc1_kernel.get_value().shape[1]
    depth = len(blocks)
    return {
        "attn_proj": depth * tokens * 4 * d * d,
        "attn_scores": depth * tokens * tokens * d,
        "attn_values": depth * tokens * tokens * d,
        "mlp": depth * tokens * 2 * d * mlp_dim,
    }


def vit_macs(vit, *, image_hw: tuple[int, int], visible: int | None = None) -> dict[str, int]:
    """Forward MACs per image of a `VisionTransformer`; `visible` patches enter the blocks (MAE),
    default all of them. Pooling is a slice or a mean: no MACs."""
    gh, gw = vit.grid_size(image_hw)
    patches = gh * gw
    kernel_shape = vit.patch_embed.kernel.get_value().shape  # [p, p, c, d]
    patch_dim = kernel_shape[0] * kernel_shape[1] * kernel_shape[2]
    tokens = vit.num_prefix_tokens + (patches if visible is None else visible)
    return {"patch_embed": patches * patch_dim * vit.embed_dim, **transformer_macs(vit.transformer, tokens=tokens)}


def head_macs(module) -> int:
    """Per-example MACs of every dense layer in a head: `nnx.Linear`s and DINO's weight-normalized
    last layer (a bare `[in, out]` kernel)."""
    from flax import nnx

    total = 0
    for _, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Linear):
            total += node.in_features * node.out_features
        elif type(node).__name__ == "WeightNormLinear":
            rows, cols = node.kernel.get_value().shape
            total += rows * cols
    return total


def _add(into: dict[str, float], macs: dict[str, int], *, images: int, multiplier: float, suffix: str = "") -> None:
    """Accumulates train FLOPs: 2 FLOPs per MAC x `multiplier` passes x `images`."""
    for name, value in macs.items():
        factor = 2.0 if name == "patch_embed" and multiplier == 3.0 else multiplier  # no input grad of images
        into[name + suffix] += 2.0 * value * factor * images


def _is_vit(module) -> bool:
    return all(hasattr(module, a) for a in ("embed_patches", "encode", "pool", "transformer"))


def analytic_vit_step_flops(config, view_shapes: Sequence[tuple[int, ...]]) -> dict[str, Any]:
    """Analytic train-step FLOPs of a jssl experiment on a ViT backbone, by component.

    `view_shapes`: each view's `(h, w, c)` (multi-crop views at their own size). Returns
    `train_flops` (the whole step), `components` (train FLOPs by `COMPONENTS`, with `_teacher`
    entries for forward-only copies) and `encoder_forward_flops_per_image` at the first view's
    size. Raises `NotImplementedError` for methods whose teacher schedule is not modelled here.
    """
    from flax import nnx

    from jssl import methods
    from jssl.train.state import SSLModel

    def build():
        rngs = nnx.Rngs(0)
        method = methods.build_method(config, in_channels=view_shapes[0][-1], dtype=jax.numpy.float32, rngs=rngs)
        return SSLModel(method, num_classes=config.data.num_classes, rngs=rngs)

    model = nnx.eval_shape(build)
    method = model.method
    name = config.method.name
    encoder = method.encoder
    if not _is_vit(encoder):
        raise TypeError(f"analytic ViT FLOPs need a ViT encoder; model {config.model.name!r} is not one")
    batch = int(config.global_batch_size)
    hw = [tuple(s[:2]) for s in view_shapes]
    out: dict[str, float] = collections.defaultdict(float)

    if name == "mae":
        # Encoder on the visible tokens, decoder on all: the decoder embedding sees the encoder's
        # output tokens (prefix + visible), the pixel prediction only the patch tokens.
        _add(out, vit_macs(encoder, image_hw=hw[0], visible=method.keep), images=batch, multiplier=3.0)
        n, prefix = method.num_patches, encoder.num_prefix_tokens
        _add(out, transformer_macs(method.decoder, tokens=prefix + n), images=batch, multiplier=3.0, suffix="_decoder")
        dec = method.decoder_embed.in_features * method.decoder_embed.out_features * (prefix + method.keep)
        pred = method.decoder_pred.in_features * method.decoder_pred.out_features * n
        _add(out, {"heads": dec + pred}, images=batch, multiplier=3.0)
    elif name == "dino":
        for shape in hw:  # the student sees every crop at its own size
            _add(out, vit_macs(encoder, image_hw=shape), images=batch, multiplier=3.0)
            _add(out, {"heads": head_macs(method.head)}, images=batch, multiplier=3.0)
        for shape in hw[: method.num_global_crops]:  # the teacher only the global crops
            _add(out, vit_macs(encoder, image_hw=shape), images=batch, multiplier=1.0, suffix="_teacher")
            _add(out, {"heads": head_macs(method.head)}, images=batch, multiplier=1.0, suffix="_teacher")
    elif name == "moco_v3":
        heads = head_macs(method.projector) + head_macs(method.predictor)
        for shape in hw[:2]:
            _add(out, vit_macs(encoder, image_hw=shape), images=batch, multiplier=3.0)
            _add(out, {"heads": heads}, images=batch, multiplier=3.0)
            _add(out, vit_macs(encoder, image_hw=shape), images=batch, multiplier=1.0, suffix="_teacher")
            _add(out, {"heads": head_macs(method.projector)}, images=batch, multiplier=1.0, suffix="_teacher")
    elif name in ("simclr", "vicreg", "barlow_twins", "simsiam"):
        # Teacher-free methods: every view through the encoder and the heads, all trained.
        heads = sum(head_macs(getattr(method, h)) for h in ("projector", "predictor") if hasattr(method, h))
        for shape in hw:
            _add(out, vit_macs(encoder, image_hw=shape), images=batch, multiplier=3.0)
            _add(out, {"heads": heads}, images=batch, multiplier=3.0)
    else:
        raise NotImplementedError(f"analytic ViT FLOPs do not model method {name!r}'s teachers or queues")

    # The online probe: stop-gradient features of one view per example, forward + weight grad.
    _add(out, {"probe": head_macs(model.probe)}, images=batch, multiplier=2.0)
    forward = 2.0 * sum(v for k, v in vit_macs(encoder, image_hw=hw[0]).items())
    return {
        "train_flops": float(sum(out.values())),
        "components": dict(out),
        "encoder_forward_flops_per_image": forward,
    }


def component_summary(components: dict[str, float]) -> dict[str, float]:
    """Shares of the step's FLOPs: attention (projections + O(n^2 d)), of which O(n^2 d), MLP,
    teacher forwards, and the rest (patch embedding, heads, probe)."""
    total = sum(components.values()) or 1.0

    def share(pred) -> float:
        return sum(v for k, v in components.items() if pred(k)) / total

    return {
        "attention": share(lambda k: k.startswith("attn_") and not k.endswith("_teacher")),
        "attention_n2": share(lambda k: k.startswith(("attn_scores", "attn_values")) and not k.endswith("_teacher")),
        "mlp": share(lambda k: k.startswith("mlp") and not k.endswith("_teacher")),
        "teacher_forward": share(lambda k: k.endswith("_teacher")),
        "rest": share(lambda k: not k.startswith(("attn_", "mlp")) and not k.endswith("_teacher")),
    }
