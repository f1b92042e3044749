"""Test-wide set-up: 8 fake CPU devices, so sharding is exercised in every test run.

The flags must be set before jax is first imported anywhere in the session. XLA's backend
optimizations are switched off: the tests' models are tiny, so compiling dominates their time,
and at level 0 a step compiles about twice as fast (results stay deterministic; the benchmarks,
not the tests, measure speed).
"""

import os

FAST_COMPILE = "--xla_backend_optimization_level=0"
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {FAST_COMPILE}")
