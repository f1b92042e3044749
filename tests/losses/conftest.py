"""Shared fixtures for the jssl.losses tests.

The 8 fake CPU devices must be requested before jax is first imported, hence the
environment tweak at the very top of this file.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

NUM_DEVICES = 8


@pytest.fixture(scope="session")
def mesh():
    if len(jax.devices()) < NUM_DEVICES:
        pytest.skip(
            f"needs {NUM_DEVICES} devices (set XLA_FLAGS="
            "--xla_force_host_platform_device_count=8 before jax is imported)"
        )
    # Auto axes: inputs are plain (unsharded) arrays and shard_map's in_specs do the
    # sharding, as in a GSPMD trainer. jax>=0.9 defaults make_mesh to Explicit axes.
    axis_type = getattr(jax.sharding, "AxisType", None)
    if axis_type is None:
        return jax.make_mesh((NUM_DEVICES,), ("data",))
    return jax.make_mesh((NUM_DEVICES,), ("data",), axis_types=(axis_type.Auto,))
