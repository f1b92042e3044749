"""Where XLA CPU's convolution time goes: forward, weight gradient and input gradient of one
ResNet convolution, each jit'd alone, with its lowering (YNNPACK fusion or Eigen) and GFLOP/s.

A strided convolution's input gradient is an lhs-dilated convolution (the output gradient
with zeros between pixels); in jaxlib 0.10.2 YNNPACK does not take it, so it runs on Eigen and
multiplies by the inserted zeros too. This isolates that cost from the rest of the step.
"""

from __future__ import annotations

from typing import Any

from benchmarks import flops, harness


def conv_micro(batch: int, size: int, cin: int, cout: int, kernel: int, stride: int, steps: int = 5) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    dn = ("NHWC", "HWIO", "NHWC")
    pad = [(kernel // 2, kernel // 2)] * 2
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, size, size, cin))
    w = jax.random.normal(jax.random.PRNGKey(1), (kernel, kernel, cin, cout)) * 0.05

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), pad, dimension_numbers=dn)

    y, vjp = jax.vjp(conv, x, w)
    g = jnp.ones_like(y)
    ops = {
        "forward": (jax.jit(conv), (x, w)),
        "input_grad": (jax.jit(lambda g, w: jax.vjp(lambda x: conv(x, w), x)[1](g)[0]), (g, w)),
        "weight_grad": (jax.jit(lambda g, x: jax.vjp(lambda w: conv(x, w), w)[1](g)[0]), (g, x)),
    }
    rows = []
    for name, (fn, args) in ops.items():
        compiled, _ = harness.timed_compile(fn, *args)
        census = flops.conv_lowering_census(compiled.as_text())
        times = harness.time_calls(lambda: compiled(*args), warmup=2, steps=steps)
        median = harness.summarize(times)["median_s"]
        # Useful work is the forward's MACs for all three; XLA's count of the dilated one
        # skips the inserted zeros too, so the GFLOP/s are comparable.
        useful = 2.0 * y.shape[1] * y.shape[2] * kernel * kernel * cin * cout * batch
        lowering = "ynn" if census["ynn_fusions"] else ("eigen (lhs-dilated)" if census["native_lhs_dilated"] else "eigen")
        rows.append({"op": name, "lowering": lowering, "median_s": median, "gflops_per_s": useful / median / 1e9})
    shape = f"{batch}x{size}x{size}x{cin} -> {cout}, {kernel}x{kernel}/{stride}"
    return {"kind": "conv-micro", "shape": shape, "rows": rows}
