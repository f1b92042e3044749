"""Optimizers from config: LARS / AdamW / SGD with warmup + cosine, the online probe's own, fine-tuning's.

Weight decay (and LARS's trust ratio) is masked off biases and normalization parameters,
i.e. everything with fewer than two dimensions or named `*bias`, as in SimCLR/BYOL/DINO. The
online linear probe gets its own optimizer so its learning rate never depends on the SSL recipe.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jssl.evaluators.finetune import scale_by_layer

PROBE_PREFIX = "probe"


def warmup_cosine(*, peak: float, warmup_steps: int, total_steps: int, end_ratio: float) -> optax.Schedule:
    """Linear warmup from 0 to `peak`, then cosine decay to `peak * end_ratio` at `total_steps`."""
    warmup = min(warmup_steps, max(total_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=peak * end_ratio,
    )


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    opt = config.optimizer
    return warmup_cosine(
        peak=opt.base_learning_rate * config.global_batch_size / opt.lr_scaling_batch,
        warmup_steps=opt.warmup_steps,
        total_steps=config.total_steps,
        end_ratio=opt.min_learning_rate_ratio,
    )


def weight_decay_schedule(config: ml_collections.ConfigDict) -> optax.ScalarOrSchedule:
    """`optimizer.weight_decay`, constant, or cosine to `weight_decay_end` over the run (DINO's ViTs).

    DINO raises the decay 0.04 -> 0.4 with `end + (start - end) (1 + cos(pi k / K)) / 2`: optax's
    cosine decay with `alpha = end / start` (> 1 makes it rise).
    """
    opt = config.optimizer
    if opt.weight_decay_schedule == "constant":
        return opt.weight_decay
    if opt.weight_decay_schedule == "cosine":
        start, end = float(opt.weight_decay), float(opt.weight_decay_end)
        if start <= 0:
            raise ValueError(f"a cosine weight-decay schedule needs optimizer.weight_decay > 0; got {start}")
        return optax.cosine_decay_schedule(start, max(int(config.total_steps), 1), alpha=end / start)
    raise ValueError(
        f"unknown optimizer.weight_decay_schedule {opt.weight_decay_schedule!r}; known: ['constant', 'cosine']"
    )


def _leaf_name(path) -> str:
    """The parameter's own name: the last dict key of its path (NNX adds a `.value` attribute)."""
    names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
    return str(names[-1]) if names else ""


def decay_mask(params: Any) -> Any:
    """True for the weights that get weight decay: all but biases and normalization parameters."""
    # Biases are excluded by name as well as by shape: a Transformer's fused query/key/value
    # bias is [3, heads, head_dim], several dimensions yet still a bias.
    def decayed(path, p) -> bool:
        return p.ndim > 1 and not _leaf_name(path).endswith("bias")

    return jax.tree_util.tree_map_with_path(decayed, params)


def _top_level_name(path) -> str:
    key = path[0]
    return str(getattr(key, "key", getattr(key, "name", key)))


def _param_labels(params: Any) -> Any:
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "probe" if _top_level_name(path) == PROBE_PREFIX else "ssl", params
    )


def scale_by_trust_ratio(*, trust_coefficient: float = 0.001, eps: float = 0.0) -> optax.GradientTransformation:
    """`optax.scale_by_trust_ratio` (with its default `min_norm=0`) on plain norms.

    Why not optax's: it takes each norm through `numerics.safe_norm`, which masks the tensor with
    `jnp.where` and takes the norm a second time so that a gradient *through* the norm stays
    finite at zero. An optimizer never differentiates its update, and XLA CPU materializes that
    masked copy of every parameter and update (`benchmarks/`: a ResNet-18 32 px step on 2 cores).
    With `min_norm=0` the masked norm equals the plain one, so the update is optax's up to float32
    rounding of the norms (tested against `optax.lars`); the state is optax's (`EmptyState`).
    """

    def update(updates: Any, state: optax.EmptyState, params: Any = None) -> tuple[Any, optax.EmptyState]:
        if params is None:
            raise ValueError("scale_by_trust_ratio needs the parameters: pass params to update()")

        def scale(u: jax.Array, p: jax.Array) -> jax.Array:
            param_norm, update_norm = jnp.linalg.norm(p), jnp.linalg.norm(u)
            ratio = trust_coefficient * param_norm / (update_norm + eps)
            # A zero norm would freeze (or blow up) the tensor: no scaling then, as in optax.
            zero = jnp.logical_or(param_norm == 0.0, update_norm == 0.0)
            return u * jnp.where(zero, jnp.array(1.0, dtype=p.dtype), ratio)

        return jax.tree.map(scale, updates, params), state

    return optax.GradientTransformation(optax.init_empty_state, update)


def lars(
    learning_rate: optax.ScalarOrSchedule,
    *,
    weight_decay: Any,
    weight_decay_mask: Any,
    trust_ratio_mask: Any,
    momentum: float,
    trust_coefficient: float = 0.001,
) -> optax.GradientTransformation:
    """`optax.lars` (You et al. 2017, "Large Batch Training of Convolutional Networks") with
    `scale_by_trust_ratio` above: the same chain and state, without the masked copies."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=weight_decay_mask),
        optax.masked(scale_by_trust_ratio(trust_coefficient=trust_coefficient), trust_ratio_mask),
        optax.scale_by_learning_rate(learning_rate),
        optax.trace(decay=momentum, nesterov=False),
    )


def _ssl_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    opt = config.optimizer
    weight_decay = weight_decay_schedule(config)
    if opt.name == "lars":
        return lars(
            schedule,
            weight_decay=weight_decay,
            weight_decay_mask=decay_mask,
            trust_ratio_mask=decay_mask,
            momentum=opt.momentum,
        )
    if opt.name == "adamw":
        return optax.adamw(schedule, b1=opt.b1, b2=opt.b2, weight_decay=weight_decay, mask=decay_mask)
    if opt.name == "sgd":
        return optax.chain(
            optax.add_decayed_weights(weight_decay, mask=decay_mask),
            optax.sgd(schedule, momentum=opt.momentum),
        )
    raise ValueError(f"unknown optimizer {opt.name!r}; known optimizers: ['adamw', 'lars', 'sgd']")


def build_optimizer(config: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer over all trainable parameters, and the SSL learning-rate schedule (for logging)."""
    schedule = learning_rate_schedule(config)
    ssl = _ssl_optimizer(config, schedule)
    if config.optimizer.grad_clip_norm > 0:
        ssl = optax.chain(optax.clip_by_global_norm(config.optimizer.grad_clip_norm), ssl)
    probe = optax.adamw(config.probe.learning_rate, weight_decay=config.probe.weight_decay)
    return optax.multi_transform({"ssl": ssl, "probe": probe}, _param_labels), schedule


def build_finetune_optimizer(
    config: ml_collections.ConfigDict, *, lr_scale: Callable[[tuple[str, ...]], float]
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW for `config.finetune` with per-parameter learning-rate scales (layer-wise decay).

    The scale multiplies the whole AdamW update, decoupled weight decay included, which is
    exactly AdamW with that parameter's learning rate scaled (as MAE/BEiT's parameter groups).
    """
    ft = config.finetune
    schedule = warmup_cosine(
        peak=ft.learning_rate,
        warmup_steps=ft.warmup_steps,
        total_steps=ft.steps,
        end_ratio=ft.min_learning_rate_ratio,
    )
    parts = [optax.clip_by_global_norm(ft.grad_clip_norm)] if ft.grad_clip_norm > 0 else []
    parts += [
        optax.scale_by_adam(b1=ft.b1, b2=ft.b2),
        optax.add_decayed_weights(ft.weight_decay, mask=decay_mask),
        scale_by_layer(lr_scale),
        optax.scale_by_learning_rate(schedule),
    ]
    return optax.chain(*parts), schedule
