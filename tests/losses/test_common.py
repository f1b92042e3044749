"""Generic checks run on every loss of the table in cases.py: independent reference,
jit vs eager, bf16 vs fp32, finite gradients, and sharded == single-device (values,
metrics and per-device gradients)."""

import chex
import jax
import numpy as np
import pytest

from tests.losses import cases
from tests.losses import helpers

CASES = cases.CASES
SHARDED = [c for c in CASES if c.specs is not None]


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_reference_and_jit(case):
    args = case.build()
    fn = case.make(None)
    eager = fn(*args)
    jitted = jax.jit(fn)(*args)
    chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-6)
    loss, metrics = jitted
    assert loss.shape == () and loss.dtype == np.float32
    for k, v in metrics.items():
        assert isinstance(k, str) and v.shape == (), (k, v.shape)
    expected = case.ref(*[np.asarray(a) for a in args])
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_bf16_close_to_fp32(case):
    helpers.check_bf16_close(
        case.make(None), case.build(), set(case.float_args), rtol=case.bf16_tol, atol=case.bf16_tol
    )


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_grads_finite(case):
    helpers.check_finite_grads(case.make(None), case.build(), case.grad_args)


@pytest.mark.parametrize("case", SHARDED, ids=repr)
def test_sharded_equals_single_device(case, mesh):
    args = case.build()
    argnums = case.grad_args
    vg = lambda ax: jax.value_and_grad(case.make(ax), argnums=argnums, has_aux=True)
    ref = jax.jit(vg(None))(*args)
    sharded = helpers.shard_map(
        vg("data"),
        mesh,
        in_specs=case.specs,
        out_specs=((helpers.P(), helpers.P()), tuple(case.specs[i] for i in argnums)),
    )
    got = jax.jit(sharded)(*args)
    chex.assert_trees_all_close(got, ref, rtol=2e-5, atol=1e-6)
