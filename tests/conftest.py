"""Test-wide set-up: 8 fake CPU devices, so sharding is exercised in every test run.

The flag must be set before jax is first imported anywhere in the session.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
