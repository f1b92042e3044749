"""Backbones and heads: shapes, parameter counts against the papers, dtypes, name lookup."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jssl.models import MLPHead, get_backbone


def _num_params(module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize("name, expected_millions, feature_dim", [("resnet18", 11.18, 512), ("resnet50", 23.51, 2048)])
def test_parameter_counts_match_torchvision(name, expected_millions, feature_dim):
    # torchvision's resnet18/50 without the final fc: 11.18M and 23.51M parameters.
    model = nnx.eval_shape(lambda: get_backbone(name, in_channels=3, rngs=nnx.Rngs(0)))
    assert model.feature_dim == feature_dim
    assert abs(_num_params(model) / 1e6 - expected_millions) < 0.01


def test_small_image_stem_width_multiplier_and_output():
    model = get_backbone(
        "resnet_mini", in_channels=1, small_image_stem=True, stem_stride=2, width_multiplier=2.0, rngs=nnx.Rngs(0)
    )
    assert model.feature_dim == 128
    out = model(jnp.ones((4, 28, 28, 1)))
    assert out.shape == (4, 128) and out.dtype == jnp.float32


def test_bfloat16_compute_float32_params_and_features():
    model = get_backbone("resnet_mini", in_channels=3, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert model(jnp.ones((2, 64, 64, 3))).dtype == jnp.float32


def test_every_parameter_has_logical_axes():
    model = get_backbone("resnet_mini", in_channels=3, rngs=nnx.Rngs(0))
    head = MLPHead(model.feature_dim, 32, 16, rngs=nnx.Rngs(0))
    for module in (model, head):
        for path, variable in nnx.state(module, nnx.Param).flat_state():
            names = variable.get_metadata().get("out_sharding")
            assert names is not None and len(names) == variable.get_value().ndim, path


def test_mlp_head_shapes_and_layers():
    head = MLPHead(8, 16, 4, num_layers=3, last_batch_norm=True, rngs=nnx.Rngs(0))
    assert len(head.layers) == 3 and len(head.norms) == 3
    assert head(jnp.ones((5, 8))).shape == (5, 4)
    with pytest.raises(ValueError, match="num_layers"):
        MLPHead(8, 16, 4, num_layers=0, rngs=nnx.Rngs(0))


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown model 'resnet7'.*resnet18"):
        get_backbone("resnet7", rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
    "size, kernel, stride", [(1, 3, 1), (2, 3, 1), (2, 3, 2), (1, 3, 2), (3, 7, 2), (2, 1, 1), (4, 3, 2), (3, 3, 2), (5, 3, 2)]
)
def test_small_map_conv_equals_the_xla_convolution_and_its_gradients(size, kernel, stride):
    # Output maps smaller than the kernel take the einsum path (CPU speed, see resnet.Conv); it must
    # be the same function as the plain convolution, forward and backward (5 px, stride 2: a 3x3
    # output, which stays a convolution, is the control).
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jssl.models.resnet import conv

    layer = conv(4, 6, kernel, stride, dtype=jnp.float32, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, size, size, 4))
    w = layer.kernel.get_value()
    pad = kernel // 2

    def reference(x, w):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad)] * 2,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            precision=jax.lax.Precision.HIGHEST)

    graphdef, params = nnx.split(layer)

    def ours(x, w):  # functional, so that jax.grad reaches the kernel
        return nnx.merge(graphdef, jax.tree.map(lambda _: w, params))(x)

    np.testing.assert_allclose(ours(x, w), reference(x, w), rtol=1e-5, atol=1e-5)
    probe = jax.random.normal(jax.random.PRNGKey(2), reference(x, w).shape)
    g_ref = jax.grad(lambda x, w: jnp.sum(reference(x, w) * probe), argnums=(0, 1))(x, w)
    g_ours = jax.grad(lambda x, w: jnp.sum(ours(x, w) * probe), argnums=(0, 1))(x, w)
    for a, b in zip(g_ours, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_small_map_conv_leaves_no_convolution_whose_kernel_exceeds_its_input():
    # The CPU slowdown came from XLA rewriting such convolutions; the ResNet-18 forward at 32 px
    # (standard stem: maps down to 1x1) must have none (their gradients are then dots, no convs).
    model = get_backbone("resnet18", in_channels=3, dtype=jnp.float32, rngs=nnx.Rngs(0))
    def eqns(jaxpr):  # every equation, also inside nested jit calls (jnp.einsum is one)
        for e in jaxpr.eqns:
            yield e
            for p in e.params.values():
                inner = getattr(p, "jaxpr", p)
                if hasattr(inner, "eqns"):
                    yield from eqns(inner)

    model.eval()  # running BatchNorm statistics: nothing to update while tracing
    all_eqns = list(eqns(jax.make_jaxpr(model)(jnp.ones((2, 32, 32, 3))).jaxpr))
    convs = [e for e in all_eqns if e.primitive.name == "conv_general_dilated"]
    shapes = [(e.invars[0].aval.shape[1:3], e.invars[1].aval.shape[:2]) for e in convs]
    assert len(convs) >= 10, shapes  # the stem and the larger maps' convolutions stay convolutions
    assert all(h >= kh and w >= kw for (h, w), (kh, kw) in shapes), shapes
    # Nor one whose output is smaller than its kernel (the strided 4x4 -> 2x2 conv's input gradient).
    outs = [(e.outvars[0].aval.shape[1:3], e.invars[1].aval.shape[:2]) for e in convs]
    assert all(h >= kh and w >= kw for (h, w), (kh, kw) in outs), outs
    assert any(e.primitive.name == "dot_general" for e in all_eqns)  # the small maps' einsums


@pytest.mark.parametrize("size", [16, 15, 7, 2, 1])
def test_stem_max_pool_equals_nnx_max_pool_and_its_gradient(size):
    from jssl.models.resnet import max_pool_3x3_stride2

    x = jax.nn.relu(jax.random.normal(jax.random.PRNGKey(0), (2, size, size + 1, 3)))  # ReLU: ties at 0

    def reference(x):
        return nnx.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

    np.testing.assert_array_equal(max_pool_3x3_stride2(x), reference(x))
    probe = jax.random.normal(jax.random.PRNGKey(1), reference(x).shape)
    # Through the ReLU, as in the stem: its zero gradient at 0 makes tie-breaking immaterial.
    y = jax.random.normal(jax.random.PRNGKey(0), x.shape)
    g_ours = jax.grad(lambda y: jnp.sum(max_pool_3x3_stride2(jax.nn.relu(y)) * probe))(y)
    g_ref = jax.grad(lambda y: jnp.sum(reference(jax.nn.relu(y)) * probe))(y)
    np.testing.assert_allclose(g_ours, g_ref, rtol=1e-6, atol=1e-6)
