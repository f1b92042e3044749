"""Shared input validation for `jssl.losses`.

Every public loss validates its arguments with these helpers so that a wrong shape or dtype
fails at trace time with a message naming the loss and the argument, instead of surfacing as
an opaque broadcasting error deep inside XLA.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp


def shape_str(x) -> str:
    return f"shape {tuple(x.shape)} and dtype {x.dtype}"


def check_array(fn: str, name: str, x, *, ndim: int | Sequence[int] | None = None, kind: str = "float") -> None:
    """Checks that `x` is an array of the given rank and dtype kind ('float', 'int', 'bool',
    'int_or_bool', 'any')."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise ValueError(f"{fn}: `{name}` must be an array, got {type(x).__name__}.")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{fn}: `{name}` must have rank {want}, got {shape_str(x)}.")
    dt = jnp.dtype(x.dtype)
    ok = {
        "float": jnp.issubdtype(dt, jnp.floating),
        "int": jnp.issubdtype(dt, jnp.integer),
        "bool": dt == jnp.bool_,
        "int_or_bool": jnp.issubdtype(dt, jnp.integer) or dt == jnp.bool_,
        "any": True,
    }[kind]
    if not ok:
        want = {
            "float": "a floating dtype (float32, bfloat16, ...)",
            "int": "an integer dtype",
            "bool": "dtype bool",
            "int_or_bool": "an integer or bool dtype",
        }[kind]
        raise ValueError(f"{fn}: `{name}` must have {want}, got {shape_str(x)}.")


def check_same_shape(fn: str, **arrays) -> None:
    names = list(arrays)
    first = arrays[names[0]]
    for n in names[1:]:
        if tuple(arrays[n].shape) != tuple(first.shape):
            raise ValueError(
                f"{fn}: `{names[0]}` and `{n}` must have the same shape, got "
                f"{tuple(first.shape)} and {tuple(arrays[n].shape)}."
            )


def check_dim(fn: str, name: str, x, axis: int, size: int, what: str) -> None:
    if x.shape[axis] != size:
        raise ValueError(f"{fn}: `{name}` must have size {size} along axis {axis} ({what}), got {shape_str(x)}.")


def _is_static(value) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, jax.core.Tracer)


def check_positive(fn: str, name: str, value, *, allow_zero: bool = False) -> None:
    """Checks a scalar hyper-parameter. Traced values (e.g. a scheduled temperature) cannot
    be inspected at trace time and are let through."""
    if not _is_static(value):
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{fn}: `{name}` must be {bound}, got {value}.")


def check_in_range(fn: str, name: str, value, lo: float, hi: float) -> None:
    if not _is_static(value):
        return
    if not lo <= value <= hi:
        raise ValueError(f"{fn}: `{name}` must be in [{lo}, {hi}], got {value}.")


def check_positive_int(fn: str, name: str, value, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{fn}: `{name}` must be a positive int, got {value!r}.")
