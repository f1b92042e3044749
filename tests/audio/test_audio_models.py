"""wav2vec 2.0 and CPC networks: length formula, span-mask statistics, padding, sizes, position conv."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jssl.models import audio
from tests.train.helpers import load_config


@pytest.mark.parametrize("samples", [400, 12345])
def test_feature_encoder_length_formula(samples):
    encoder = audio.FeatureEncoder(layers=((4, 10, 5), (4, 3, 2), (4, 2, 2)), rngs=nnx.Rngs(0))
    features, frames = nnx.jit(lambda e, w, m: e(w, m))(encoder, jnp.ones((2, samples)), jnp.ones((2, samples), bool))
    expected = samples
    for k, s in ((10, 5), (3, 2), (2, 2)):
        expected = (expected - k) // s + 1
    assert features.shape == (2, expected, 4) and frames.all()
    assert encoder.output_length(samples) == expected


def test_wav2vec2_base_frames_and_cpc_downsampling():
    # The paper's 320x: 1 s at 16 kHz is 49 frames of 20 ms (receptive field 400 samples, 25 ms).
    assert audio.conv_output_length(16000, layers=audio.WAV2VEC2_CONV) == 49
    assert audio.conv_output_length(400, layers=audio.WAV2VEC2_CONV) == 1
    assert audio.conv_output_length(399, layers=audio.WAV2VEC2_CONV) == 0
    cpc = audio.get_audio_model("cpc_tiny", rngs=nnx.Rngs(0))
    for samples in (1600, 16000, 20480):
        assert cpc.output_length(samples) == samples // 160
    z, frames = nnx.jit(lambda e, w, m: e(w, m))(cpc.encoder, jnp.ones((1, 1600)), jnp.ones((1, 1600), bool))
    assert z.shape == (1, 10, 64)
    # The last frame reads the convs' right-hand zero padding: not real.
    np.testing.assert_array_equal(np.asarray(frames), [[True] * 9 + [False]])


def _expected_fraction(length: int, span: int, prob: float, min_spans: int) -> float:
    """Exact expected masked fraction of fairseq's scheme: n spans, starts uniform without replacement."""
    starts = length - span + 1
    x = prob * length / span
    counts = {max(min(math.floor(x), starts), min_spans): 1 - (x - math.floor(x))}
    top = max(min(math.floor(x) + 1, starts), min_spans)
    counts[top] = counts.get(top, 0.0) + (x - math.floor(x))
    total = 0.0
    for n, weight in counts.items():
        covered = 0.0
        for t in range(length):
            window = min(t, starts - 1) - max(0, t - span + 1) + 1  # starts whose span covers t
            covered += 1 - math.comb(starts - window, n) / math.comb(starts, n)
        total += weight * covered / length
    return total


@pytest.mark.parametrize("length,span,prob", [(100, 10, 0.65), (49, 10, 0.65), (25, 5, 0.5)])
def test_span_mask_fraction_and_contiguity(length, span, prob):
    batch, frames = 4000, length + 7  # 7 padding frames never masked
    mask = np.asarray(
        audio.span_mask(jax.random.key(0), lengths=jnp.full((batch,), length), frames=frames, mask_prob=prob, span=span)
    )
    assert not mask[:, length:].any()
    expected = _expected_fraction(length, span, prob, min_spans=2)
    # 4,000 clips: the standard error of the mean fraction is below 0.003.
    assert abs(mask[:, :length].mean() - expected) < 0.01, (mask.mean(), expected)
    # Spans are contiguous runs of at least `span` frames (overlapping spans merge).
    padded = np.pad(mask.astype(np.int8), ((0, 0), (1, 1)))
    edges = np.diff(padded, axis=1)
    run_lengths = np.nonzero(edges == -1)[1] - np.nonzero(edges == 1)[1]
    assert run_lengths.min() >= span
    assert (mask.sum(1) >= span).all()  # at least one span (min_spans = 2 ask for two)


def test_span_mask_is_per_example_and_respects_lengths():
    lengths = jnp.array([30, 12, 50, 50])
    mask = np.asarray(audio.span_mask(jax.random.key(1), lengths=lengths, frames=50, mask_prob=0.65, span=10))
    for row, length in zip(mask, np.asarray(lengths)):
        assert not row[length:].any() and row[:length].sum() >= 10
    assert not np.array_equal(mask[2], mask[3])  # each clip its own spans
    again = np.asarray(audio.span_mask(jax.random.key(1), lengths=lengths, frames=50, mask_prob=0.65, span=10))
    np.testing.assert_array_equal(mask, again)
    with pytest.raises(ValueError, match="mask_prob"):
        audio.span_mask(jax.random.key(0), lengths=lengths, frames=50, mask_prob=0.0, span=10)


def test_padding_does_not_change_the_representation():
    model = audio.get_audio_model("wav2vec2_tiny", rngs=nnx.Rngs(0))
    cpc = audio.get_audio_model("cpc_tiny", rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    clip = rng.normal(size=(1, 6000)).astype(np.float32)
    mask = np.zeros((1, 9000), bool)
    mask[:, :6000] = True
    zeros = np.concatenate([clip, np.zeros((1, 3000), np.float32)], 1)
    noise = np.concatenate([clip, rng.normal(size=(1, 3000)).astype(np.float32)], 1)
    run = nnx.jit(lambda m, w, k: m(w, k))
    for m in (model, cpc):
        a, b = run(m, jnp.asarray(zeros), jnp.asarray(mask)), run(m, jnp.asarray(noise), jnp.asarray(mask))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
        # ... and the unpadded clip gives the same features too.
        c = run(m, jnp.asarray(clip), jnp.ones((1, 6000), bool))
        np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-4, atol=1e-5)


def test_feature_norm_variants_and_position_conv_weight_norm():
    for norm in audio.FEATURE_NORMS:
        enc = audio.FeatureEncoder(layers=((8, 10, 5), (8, 3, 2)), norm=norm, rngs=nnx.Rngs(0))
        assert len(enc.norms) == (2 if norm == "layer_norm" else 1)
        features, _ = nnx.jit(lambda e, w, m: e(w, m))(enc, jnp.sin(jnp.arange(800.0))[None], jnp.ones((1, 800), bool))
        assert np.isfinite(np.asarray(features)).all()
    with pytest.raises(ValueError, match="norm"):
        audio.FeatureEncoder(norm="batch_norm", rngs=nnx.Rngs(0))
    pos = audio.ConvPositionalEmbedding(16, kernel=8, groups=4, rngs=nnx.Rngs(0))
    plain = audio.ConvPositionalEmbedding(16, kernel=8, groups=4, weight_norm=False, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(2), (2, 11, 16))
    # At initialization the gain equals ||v||, so the weight-normed conv is the plain one; the
    # even kernel's extra frame is dropped.
    run = nnx.jit(lambda p, v: p(v))
    np.testing.assert_allclose(np.asarray(run(pos, x)), np.asarray(run(plain, x)), rtol=1e-5, atol=1e-6)
    assert run(pos, x).shape == x.shape
    assert pos.gain.get_value().shape == (8,)


def test_wav2vec2_base_has_95m_parameters():
    from jssl.methods import Wav2Vec2

    config = load_config(None, name="wav2vec2_base")
    method = nnx.eval_shape(lambda: Wav2Vec2(config, dtype=jnp.float32, rngs=nnx.Rngs(0)))
    count = sum(x.size for x in jax.tree.leaves(nnx.state(method, nnx.Param)))
    assert 94.5e6 < count < 95.5e6, count  # the paper: 95M
    assert method.encoder.transformer.blocks[0].attn.qkv_kernel.get_value().shape == (768, 3, 12, 64)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown audio model"):
        audio.get_audio_model("wav2vec3", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown arguments"):
        audio.get_audio_model("cpc_tiny", rngs=nnx.Rngs(0), embed_dim=4)


def test_grouped_conv_equals_xla_groups_and_its_gradient_is_right_on_a_2d_mesh():
    """`conv1d` splits groups into plain convs: equal to `feature_group_count`, and its kernel
    gradient stays right with the batch sharded over `data` and replicated over `tensor` (where
    XLA's grouped convolution doubled it)."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    x = jax.random.normal(jax.random.key(0), (8, 9, 4))
    k = jax.random.normal(jax.random.key(1), (4, 2, 4))
    xla = jax.lax.conv_general_dilated(x, k, (1,), ((2, 2),), dimension_numbers=("NWC", "WIO", "NWC"),
                                       feature_group_count=2)  # fmt: skip
    np.testing.assert_allclose(np.asarray(audio.conv1d(x, k, padding=2, groups=2)), np.asarray(xla), rtol=1e-5,
                               atol=1e-5)  # fmt: skip
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")

    def loss(kernel, inputs):
        return jnp.sum(jnp.tanh(audio.conv1d(inputs, kernel, padding=2, groups=2)) ** 2)

    mesh = jax.make_mesh((4, 2), ("data", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    ref = jax.jit(jax.grad(loss))(k, x)
    got = jax.jit(jax.grad(loss))(jax.device_put(k, NamedSharding(mesh, P())), jax.device_put(x, NamedSharding(mesh, P("data"))))
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-4, atol=1e-5)
