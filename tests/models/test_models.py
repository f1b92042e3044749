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
