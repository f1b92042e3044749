"""The DDPM U-Net: size, shapes at 28/32/64 px, zero-initialized output, timestep embedding,
dropout, logical axis names, and its errors (sizes it cannot halve, unknown names)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jssl.models import UNETS, get_unet
from jssl.models.unet import UNet, level_resolutions, timestep_embedding

CIFAR = {"ch": 128, "ch_mult": (1, 2, 2, 2), "num_res_blocks": 2, "attn_resolutions": (16,), "dropout": 0.1}
TINY = {"ch": 8, "ch_mult": (1, 2), "num_res_blocks": 1, "dropout": 0.0}


def _count(module) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _perturbed(module, seed: int = 1, scale: float = 0.1):
    """`module` with every parameter random: the zero-initialized layers hide everything else."""
    state = nnx.state(module, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    # numpy draws: one jax.random call per parameter shape would compile a kernel for each.
    rng = np.random.default_rng(seed)
    new = [jnp.asarray(scale * rng.standard_normal(x.shape), x.dtype) for x in leaves]
    nnx.update(module, jax.tree.unflatten(treedef, new))
    return module


def test_cifar10_unet_has_the_papers_35_7m_parameters():
    # Ho et al. 2020, App. B: "Our CIFAR10 model has 35.7 million parameters"; the reference
    # code's model has exactly this many.
    unet = nnx.eval_shape(lambda: get_unet("unet", in_channels=3, image_size=32, rngs=nnx.Rngs(0), **CIFAR))
    assert _count(unet) == 35_746_307
    assert unet.resolutions == (32, 16, 8, 4) and unet.feature_dim == 256


@pytest.mark.parametrize(
    "size, ch_mult, attn",
    [(28, (1, 2, 2), (7,)), pytest.param(32, (1, 2, 2), (16,), marks=pytest.mark.heavy), pytest.param(64, (1, 2, 2, 2), (16, 8), marks=pytest.mark.heavy)],
)
def test_shapes_and_zero_output_at_init(size, ch_mult, attn):
    unet = UNet(
        in_channels=3,
        image_size=size,
        ch=16,
        ch_mult=ch_mult,
        num_res_blocks=1,
        attn_resolutions=attn,
        dropout=0.0,
        rngs=nnx.Rngs(0),
    )
    x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, 3))
    out, features = unet(x, jnp.array([0, 999]), return_features=True)
    assert out.shape == x.shape and out.dtype == jnp.float32
    assert features.shape == (2, 16 * ch_mult[-1])
    # The last conv starts at zero (reference init_scale=0): the untrained network predicts 0.
    assert float(jnp.max(jnp.abs(out))) == 0.0
    assert unet.resolutions == tuple(size // 2**i for i in range(len(ch_mult)))


def test_output_depends_on_the_timestep_and_the_image():
    unet = _perturbed(UNet(in_channels=1, image_size=16, attn_resolutions=(8,), rngs=nnx.Rngs(0), **TINY))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 1))
    a = unet(x, jnp.array([10, 10]))
    assert not np.allclose(a, unet(x, jnp.array([500, 500])))
    assert not np.allclose(a[0], a[1])  # two images, two outputs


def test_timestep_embedding_is_the_reference_sinusoid():
    t = jnp.array([0, 7, 999])
    emb = np.asarray(timestep_embedding(t, 8))
    freqs = np.exp(-math.log(10000.0) / 3 * np.arange(4))
    expected = np.concatenate([np.sin(np.outer([0, 7, 999], freqs)), np.cos(np.outer([0, 7, 999], freqs))], 1)
    np.testing.assert_allclose(emb, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="even dimension"):
        timestep_embedding(t, 7)


def test_dropout_only_in_training_mode():
    unet = _perturbed(UNet(in_channels=1, image_size=16, rngs=nnx.Rngs(0), **{**TINY, "dropout": 0.5}))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 1))
    t = jnp.array([3, 4])
    a, b = unet(x, t, rngs=nnx.Rngs(1)), unet(x, t, rngs=nnx.Rngs(2))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, unet(x, t, rngs=nnx.Rngs(1)))  # a function of the key
    with pytest.raises(ValueError, match="needs `rngs`"):
        unet(x, t)
    unet.set_attributes(deterministic=True, raise_if_not_found=False)
    np.testing.assert_array_equal(unet(x, t), unet(x, t, rngs=nnx.Rngs(5)))


def test_group_norm_groups_divide_every_width():
    # ch 16 with ch_mult (1, 2): the up path concatenates 32 + 16 = 48 channels; 32 groups do not divide 48.
    unet = UNet(in_channels=1, image_size=16, ch=16, ch_mult=(1, 2), num_res_blocks=1, rngs=nnx.Rngs(0))
    assert unet.up_blocks[1][0].norm1.num_groups == 16 and unet.mid_block1.norm1.num_groups == 32
    assert unet.up_blocks[1][0].norm1.scale.shape == (48,)


def test_parameters_carry_logical_axis_names():
    unet = nnx.eval_shape(lambda: UNet(in_channels=1, image_size=16, attn_resolutions=(8,), rngs=nnx.Rngs(0), **TINY))
    names = {
        jax.tree_util.keystr(path): p.get_metadata().get("out_sharding")
        for path, p in jax.tree_util.tree_leaves_with_path(
            nnx.state(unet, nnx.Param), is_leaf=lambda x: isinstance(x, nnx.Variable)
        )
    }
    assert all(v is not None for v in names.values()), [k for k, v in names.items() if v is None]
    assert names["['conv_in']['kernel']"] == (None, None, "conv_in", "conv_out")
    assert names["['mid_attn']['attn']['qkv_kernel']"] == ("embed", None, "heads", "kv")
    assert names["['mid_block1']['norm1']['scale']"] == ("conv_out",)


def test_sizes_it_cannot_halve_and_other_errors():
    with pytest.raises(ValueError, match="cannot be halved 3 times"):
        UNet(in_channels=1, image_size=28, ch=8, ch_mult=(1, 2, 2, 2), rngs=nnx.Rngs(0))
    assert level_resolutions(28, 3) == [28, 14, 7]
    with pytest.raises(ValueError, match="match no level"):
        UNet(in_channels=1, image_size=28, ch=8, ch_mult=(1, 2, 2), attn_resolutions=(16,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown denoising network 'unet2'"):
        get_unet("unet2", in_channels=1, image_size=16, rngs=nnx.Rngs(0))
    assert sorted(UNETS) == ["unet"]
    unet = UNet(in_channels=1, image_size=16, attn_resolutions=(), rngs=nnx.Rngs(0), **TINY)
    with pytest.raises(ValueError, match="built for 16x16x1 images"):
        unet(jnp.zeros((1, 32, 32, 1)), jnp.zeros((1,), jnp.int32))
