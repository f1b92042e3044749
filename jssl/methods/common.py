"""Pieces several methods share: EMA teachers, buffers, schedules, multi-crop forwards, diagnostics.

Teachers and buffers are NNX variables of their own types (`Teacher`, `Buffer`), never
`nnx.Param`: the trainer optimizes exactly the `nnx.Param`s, so a teacher can never receive a
gradient or enter the optimizer state, while sharding (by the same logical axis names as the
student) and checkpointing treat it like any other state. flax's `nnx.EMA` keeps the tracked
variables' type (`Param`), which would put the teacher in the optimizer, hence these types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jssl import losses


class Teacher(nnx.Variable):
    """Weights moved by an exponential moving average of the student's, never by gradients."""


class Buffer(nnx.Variable):
    """Non-trainable method state: queues and their pointers, DINO's center, ..."""


def teacher_copy(module: nnx.Module) -> nnx.Module:
    """A copy of `module` whose `Param`s become `Teacher`s (same values, same logical axes).

    BatchNorm statistics are copied as they are, so the teacher keeps running statistics of
    its own. Parameters stay float32 whatever the module's compute dtype. Stochastic layers
    (drop path, dropout) are made deterministic.
    """
    graphdef, state = nnx.split(module)

    def convert(variable):
        value = jnp.copy(variable.get_value())
        if type(variable) is nnx.Param:
            return Teacher(value, **variable.get_metadata())
        return type(variable)(value, **variable.get_metadata())

    teacher = nnx.merge(graphdef, jax.tree.map(convert, state, is_leaf=lambda x: isinstance(x, nnx.Variable)))
    # Teachers never drop paths or units (stochastic depth, dropout): the DINO and MoCo v3
    # reference code builds the teacher without them, so its targets are deterministic.
    teacher.set_attributes(deterministic=True, raise_if_not_found=False)
    return teacher


def ema_update(teacher: nnx.Module, student: nnx.Module, momentum: jax.Array) -> None:
    """`teacher <- momentum * teacher + (1 - momentum) * student`, for every Teacher/Param pair.

    Only weights are averaged; the teacher's BatchNorm statistics come from its own forwards.
    """
    teacher_vars = jax.tree.leaves(nnx.state(teacher, Teacher), is_leaf=lambda x: isinstance(x, nnx.Variable))
    student_vars = jax.tree.leaves(nnx.state(student, nnx.Param), is_leaf=lambda x: isinstance(x, nnx.Variable))
    if len(teacher_vars) != len(student_vars):
        raise ValueError(f"teacher has {len(teacher_vars)} weights but the student {len(student_vars)}")
    m = jnp.asarray(momentum, jnp.float32)
    for t, s in zip(teacher_vars, student_vars):
        t.set_value((m * t.get_value() + (1.0 - m) * s.get_value().astype(jnp.float32)).astype(t.get_value().dtype))


def cosine_momentum(base: float, final: float, total_steps: int) -> optax.Schedule:
    """BYOL's `m(k) = 1 - (1 - base) (cos(pi k / K) + 1) / 2` from `base` up to `final` at step K.

    Written as a cosine decay of `1 - m` so optax provides the curve.
    """
    check_momentum("base momentum", base)
    check_momentum("final momentum", final)
    gap = 1.0 - base
    decay = optax.cosine_decay_schedule(gap, max(total_steps, 1), alpha=(1.0 - final) / gap if gap else 1.0)
    return lambda step: 1.0 - decay(step)


def check_momentum(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {value}")


def check_positive(name: str, value: float) -> None:
    if not float(value) > 0:
        raise ValueError(f"{name} must be positive; got {value}")


def multicrop_counts(config, method: str, global_role: str) -> tuple[int, int]:
    """`(method.num_global_crops, method.num_local_crops)`, checked: the views of a multi-crop method.

    `global_role` says what the global crops are for in `method`, for the error message.
    """
    g, l = int(config.method.num_global_crops), int(config.method.num_local_crops)
    if g < 1:
        raise ValueError(f"method.num_global_crops must be >= 1 ({global_role}); got {g}")
    if l < 0:
        raise ValueError(f"method.num_local_crops must be >= 0; got {l}")
    if g + l < 2:
        raise ValueError(f"{method} needs at least 2 crops (num_global_crops + num_local_crops); got {g + l}")
    return g, l


def forward_by_resolution(fn: Callable[[jax.Array], jax.Array], views: Sequence[jax.Array]) -> list[jax.Array]:
    """Runs `fn` once per group of consecutive same-shape views (multi-crop), not once per view.

    Returns one output per view, in order. Concatenating a group also makes BatchNorm
    statistics span all its crops, as in the SwAV and DINO reference code.
    """
    outputs: list[jax.Array] = []
    start = 0
    while start < len(views):
        end = start + 1
        while end < len(views) and views[end].shape == views[start].shape:
            end += 1
        group = fn(jnp.concatenate(list(views[start:end]), axis=0))
        outputs.extend(jnp.split(group, end - start, axis=0))
        start = end
    return outputs


def embedding_diagnostics(z: jax.Array) -> dict[str, jax.Array]:
    """Collapse diagnostics of an embedding `z: [batch, dim]` (logged by every method).

    `embedding_std` is the mean per-dimension standard deviation of the L2-normalized
    embedding over the batch (solo-learn's and lightly's collapse metric); `embedding_spread`
    is the same times sqrt(dim): about 1 for embeddings spread over the sphere and 0 at
    complete collapse, whatever the dimension (the trainer warns when it nears 0).
    """
    zn = losses.l2_normalize(jax.lax.stop_gradient(z).astype(jnp.float32))
    std = jnp.mean(jnp.std(zn, axis=0))
    return {"embedding_std": std, "embedding_spread": std * jnp.sqrt(jnp.float32(z.shape[-1]))}
