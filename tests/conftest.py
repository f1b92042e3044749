"""Test-wide set-up: 8 fake CPU devices, so sharding is exercised in every test run.

The flags must be set before jax is first imported anywhere in the session (CLI subprocesses
inherit them). The tests' models are tiny, so compiling dominates their time, and two XLA:CPU
flags make compiling cheaper (results stay deterministic; the benchmarks, not the tests, measure
speed):
- backend optimization level 0: a step compiles about twice as fast;
- the legacy fusion code generator instead of the MLIR fusion emitters: every compile, from one
  eager op (175 -> 99 ms for a `jax.random.uniform`) to a whole train step (SimCLR's 1- and
  8-device steps: 8.6 -> 4.3 s), takes about half as long; the whole suite on 2 cores went from
  975 s to 640 s.
"""

import os

FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {FAST_COMPILE}")
