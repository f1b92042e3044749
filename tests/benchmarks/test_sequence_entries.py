"""The text/audio step benchmark: its entries build from the published recipes, and the analytic
Transformer FLOP count (the GPU MFU's numerator) agrees with XLA's count of the lowered step."""

from __future__ import annotations

import dataclasses

import jax
import pytest

from benchmarks import flops, sequence


@pytest.mark.parametrize("suite", sorted(sequence.SUITES))
def test_entries_start_from_their_recipes_on_embedded_data(suite):
    for entry in sequence.SUITES[suite]:
        config = sequence.entry_config(entry)
        assert config.global_batch_size == entry.batch and config.model.dtype == entry.precision
        assert config.data.name in ("pydoc", "spoken_digits"), entry.name
        assert config.method.name in ("gpt", "bert", "wav2vec2")


def test_analytic_transformer_flops_match_xla_on_a_tiny_gpt():
    from flax import nnx

    from jssl import methods, sharding
    from jssl.train import build_experiment

    base = sequence.SUITES["cpu"][0]
    tiny = (("model.kwargs.embed_dim", 64), ("model.kwargs.depth", 1), ("model.kwargs.num_heads", 2),
            ("data.seq_len", 64), ("model.kwargs.max_len", 64), ("model.kwargs.vocab_size", 8192))
    entry = dataclasses.replace(base, batch=4, overrides=base.overrides + tiny)
    config = sequence.entry_config(entry)
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    exp = build_experiment(config, mesh=mesh)
    batch = {"tokens": jax.ShapeDtypeStruct((4, 64), "int32")}
    xla = flops.xla_flops(exp.train_step.lower(exp.abstract_state, batch))
    method = nnx.eval_shape(
        lambda: methods.build_method(config, dtype=jax.numpy.float32, rngs=nnx.Rngs(0), **exp.inputs.model_kwargs())
    )
    analytic = sequence.transformer_train_flops(method.model, seq_len=64, predicted_per_seq=64, sequences=4)
    assert analytic is not None and 0.9 < xla / analytic < 1.15, (xla, analytic)
