"""Optimizers from config: LARS / AdamW / SGD with warmup + cosine, and the online probe's own.

Weight decay (and LARS's trust ratio) is masked off biases and normalization parameters,
i.e. everything with fewer than two dimensions or named `*bias`, as in SimCLR/BYOL/DINO. The
online linear probe gets its own optimizer so its learning rate never depends on the SSL recipe.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

PROBE_PREFIX = "probe"


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    opt = config.optimizer
    peak = opt.base_learning_rate * config.global_batch_size / opt.lr_scaling_batch
    warmup = min(opt.warmup_steps, max(config.total_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=warmup,
        decay_steps=max(config.total_steps, warmup + 1),
        end_value=peak * opt.min_learning_rate_ratio,
    )


def weight_decay_schedule(config: ml_collections.ConfigDict) -> optax.ScalarOrSchedule:
    """`optimizer.weight_decay`, constant, or cosine to `weight_decay_end` over the run (DINO's ViTs).

    DINO raises the decay 0.04 -> 0.4 with `end + (start - end) (1 + cos(pi k / K)) / 2`.
    """
    opt = config.optimizer
    if opt.weight_decay_schedule == "constant":
        return opt.weight_decay
    if opt.weight_decay_schedule == "cosine":
        start, end, total = float(opt.weight_decay), float(opt.weight_decay_end), max(int(config.total_steps), 1)

        def schedule(step):
            progress = jnp.minimum(jnp.asarray(step, jnp.float32), total) / total
            return end + 0.5 * (start - end) * (1.0 + jnp.cos(jnp.pi * progress))

        return schedule
    raise ValueError(
        f"unknown optimizer.weight_decay_schedule {opt.weight_decay_schedule!r}; known: ['constant', 'cosine']"
    )


def _leaf_name(path) -> str:
    """The parameter's own name: the last dict key of its path (NNX adds a `.value` attribute)."""
    names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
    return str(names[-1]) if names else ""


def _decay_mask(params: Any) -> Any:
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


def _ssl_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    opt = config.optimizer
    weight_decay = weight_decay_schedule(config)
    if opt.name == "lars":
        return optax.lars(
            schedule,
            weight_decay=weight_decay,
            weight_decay_mask=_decay_mask,
            trust_ratio_mask=_decay_mask,
            momentum=opt.momentum,
        )
    if opt.name == "adamw":
        return optax.adamw(schedule, b1=opt.b1, b2=opt.b2, weight_decay=weight_decay, mask=_decay_mask)
    if opt.name == "sgd":
        return optax.chain(
            optax.add_decayed_weights(weight_decay, mask=_decay_mask),
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
