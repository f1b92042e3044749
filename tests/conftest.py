"""Test-wide set-up: 8 fake CPU devices, so sharding is exercised in every test run.

The flags must be set before jax is first imported anywhere in the session. XLA's backend
optimizations are switched off: the tests' models are tiny, so compiling dominates their time,
and at level 0 a step compiles about twice as fast (results stay deterministic; the benchmarks,
not the tests, measure speed).
"""

import os

FAST_COMPILE = "--xla_backend_optimization_level=0"
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {FAST_COMPILE}")

# One persistent XLA compilation cache for the whole test session, shared by the test workers and
# the CLI subprocesses they start: many tests compile the same tiny steps (the same method on
# the same mesh), and compiling dominates their time. Only programs that took over a second to
# compile are stored (JAX's default threshold). A fresh directory per session (the controller's
# process id, inherited by the workers), so no run reads another's entries; `JSSL_TEST_JAX_CACHE=0`
# turns it off.
if os.environ.get("JSSL_TEST_JAX_CACHE", "1") != "0" and "PYTEST_XDIST_WORKER" not in os.environ:
    import tempfile

    os.environ.setdefault(
        "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"jssl-test-xla-cache-{os.getpid()}")
    )
