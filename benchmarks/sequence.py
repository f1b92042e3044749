"""Step time, tokens (or audio seconds) per second per device and MFU of the text and audio methods.

Entries start from the published recipes (`configs/bert_base.py`, `configs/gpt2_small.py`,
`configs/wav2vec2_base.py`) and swap their TFDS data sets for the embedded ones (pydoc text,
eSpeak spoken digits), which only decide the tokenizer and the batch shapes: every entry times
the jit'd train step on one device-resident batch drawn from the real pipeline, compile time
apart. The `cpu` suite shrinks the models to CPU size (fewer and narrower blocks, shorter
sequences) and keeps the recipes' methods, heads and optimizers; the `gpu` suite runs them at
full size in bfloat16 (GPT-2 small at 1,024 tokens, BERT-base at 128, wav2vec 2.0 base on
15.6 s crops).

FLOPs: XLA's count of the lowered step, and for the Transformers an analytic count, per
trained token, `6 * (block matmul parameters + head matmul parameters per predicted token) +
12 * depth * seq_len * width` (attention scores and values, causal attention counted in full,
as PaLM's MFU does); MFU uses the analytic count where there is one (on GPUs the attention may
run as a fused kernel XLA's cost analysis does not see).

Run:
  python -m benchmarks.sequence --suite cpu                 # ~5 min on 2 cores
  python -m benchmarks.sequence --suite gpu --out runs/bench/sequence-gpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

import numpy as np

from benchmarks import flops, harness

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class SeqEntry:
    name: str
    recipe: str  # configs/<recipe>.py
    batch: int
    overrides: tuple[tuple[str, Any], ...] = ()
    precision: str = "float32"
    warmup: int = 1
    steps: int = 5


# The embedded data sets in place of the recipes' TFDS ones (no download on any machine).
TEXT_DATA = (("data.name", "pydoc"), ("data.data_dir", ""), ("data.tfds_name", ""), ("data.max_eval_examples", 0),
             ("data.num_workers", 0), ("data.vocab_size", 8192), ("data.tokenizer_documents", 0))
AUDIO_DATA = (("data.name", "spoken_digits"), ("data.data_dir", ""), ("data.tfds_name", ""),
              ("data.num_classes", 10), ("data.max_eval_examples", 64), ("data.num_workers", 0))
CPU_TEXT_MODEL = (("model.kwargs.embed_dim", 256), ("model.kwargs.depth", 2), ("model.kwargs.num_heads", 4))

SUITES: dict[str, tuple[SeqEntry, ...]] = {
    "cpu": (
        SeqEntry("gpt2-cpu-2x256-seq256-b8", "gpt2_small", 8,
                 TEXT_DATA + CPU_TEXT_MODEL + (("data.seq_len", 256), ("model.kwargs.max_len", 256),
                                               ("model.kwargs.vocab_size", 8192))),
        SeqEntry("bert-cpu-2x256-seq128-b16", "bert_base", 16,
                 TEXT_DATA + CPU_TEXT_MODEL + (("data.seq_len", 128), ("model.kwargs.vocab_size", 8192))),
        SeqEntry("wav2vec2-cpu-2x256-1s-b4", "wav2vec2_base", 4,
                 AUDIO_DATA + (("model.kwargs.embed_dim", 256), ("model.kwargs.depth", 2),
                               ("model.kwargs.num_heads", 4), ("data.crop_samples", 16000))),
    ),
    "gpu": (
        SeqEntry("gpt2-small-seq1024-b16-bf16", "gpt2_small", 16, TEXT_DATA + (("data.vocab_size", 50257),),
                 precision="bfloat16", warmup=3, steps=20),
        SeqEntry("bert-base-seq128-b256-bf16", "bert_base", 256, TEXT_DATA + (("data.vocab_size", 30522),),
                 precision="bfloat16", warmup=3, steps=20),
        SeqEntry("wav2vec2-base-15.6s-b8-bf16", "wav2vec2_base", 8, AUDIO_DATA + (("data.crop_samples", 250_000),),
                 precision="bfloat16", warmup=3, steps=20),
    ),
}


def entry_config(entry: SeqEntry):
    """The recipe's config with the entry's data, batch, precision and overrides."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(entry.recipe, os.path.join(REPO, "configs", f"{entry.recipe}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.global_batch_size = entry.batch
    config.model.dtype = entry.precision
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = -1, 1, 1
    config.total_steps = 10_000  # shapes the schedules only
    for path, value in entry.overrides:
        *parents, leaf = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


def transformer_train_flops(model: Any, *, seq_len: int, predicted_per_seq: int, sequences: int) -> float | None:
    """Analytic train FLOPs (see the module docstring) of a `TextTransformer`-like module, or None."""
    encoder = getattr(model, "encoder", None)
    blocks = getattr(encoder, "blocks", None)
    if blocks is None or not hasattr(model, "vocab_size"):
        return None
    from flax import nnx

    block_params = sum(
        int(np.prod(v.shape)) for _, v in nnx.state(blocks, nnx.Param).flat_state() if len(v.shape) >= 2
    )
    width, depth = model.embed_dim, len(blocks)
    head = model.vocab_size * width + (width * width if getattr(model, "transform_kernel", None) is not None else 0)
    per_sequence = (6 * block_params + 12 * depth * seq_len * width) * seq_len + 6 * head * predicted_per_seq
    return float(per_sequence * sequences)


def _first_batch(exp) -> dict[str, np.ndarray]:
    import jax

    iterator = exp.inputs.train_iterator(process_index=jax.process_index(), process_count=jax.process_count())
    return next(iterator)


def run_entry(entry: SeqEntry, peak_override: float | None = None) -> dict[str, Any]:
    import jax
    from flax import nnx

    from jssl import sharding
    from jssl.train import build_experiment

    config = entry_config(entry)
    exp = build_experiment(config)
    state = exp.init_state()
    host = _first_batch(exp)
    batch = sharding.host_batch_to_global(host, exp.mesh)
    jax.block_until_ready((state, batch))
    lowered, compiled, compile_times = harness.timed_lower_compile(exp.train_step, state, batch)
    xla_total = flops.xla_flops(lowered)
    holder = {"state": state}

    def one_step():
        holder["state"], metrics = compiled(holder["state"], batch)
        return holder["state"], metrics

    stats = harness.summarize(harness.time_calls(one_step, warmup=entry.warmup, steps=entry.steps))
    median = stats["median_s"]
    devices = exp.mesh.size
    device = exp.mesh.devices.flat[0]

    model = nnx.merge(exp.graphdef, state.params, state.buffers).method
    backbone = getattr(model, "model", None) or getattr(model, "encoder", None)
    if "tokens" in host:
        sequences, seq_len = host["tokens"].shape
        units, unit = sequences * seq_len, "tokens"
        predicted = int(getattr(model, "max_predictions", seq_len))  # BERT: its masked positions only
        analytic = transformer_train_flops(backbone, seq_len=seq_len, predicted_per_seq=predicted, sequences=sequences)
    else:
        units, unit = float(np.sum(host["mask"])) / 16000.0, "audio_seconds"
        analytic = None
    use_analytic = analytic is not None
    per_device = (analytic if use_analytic else (xla_total or 0.0)) / devices
    achieved = per_device / median / 1e12
    peak = harness.peak_tflops(device.device_kind, entry.precision, peak_override)
    return {
        "name": entry.name,
        "recipe": entry.recipe,
        "method": config.method.name,
        "model": config.model.name,
        "batch": entry.batch,
        "batch_shapes": {k: list(v.shape) for k, v in host.items()},
        "precision": entry.precision,
        "device_kind": device.device_kind,
        "num_devices": devices,
        "parameters": int(sum(np.prod(v.shape) for v in jax.tree.leaves(state.params))),
        **compile_times,
        **{f"step_{k}": v for k, v in stats.items()},
        f"{unit}_per_s_per_device": units / median / devices,
        "xla_flops": xla_total,
        "analytic_flops": analytic,
        "xla_over_analytic": xla_total / analytic if (xla_total and analytic) else None,
        "tflops_per_device": achieved,
        "mfu_flops_source": "analytic" if use_analytic else "xla",
        "peak_tflops": peak,
        "mfu": achieved / peak if peak else None,
        "loss_finite": bool(np.isfinite(float(jax.device_get(one_step()[1]["loss"])))),
    }


COLUMNS = (
    ("name", "entry"),
    ("parameters", "params"),
    ("compile_s", "compile s"),
    ("step_median_s", "step s (med)"),
    ("tokens_per_s_per_device", "tokens/s/dev"),
    ("audio_seconds_per_s_per_device", "audio s/s/dev"),
    ("xla_over_analytic", "XLA/analytic"),
    ("tflops_per_device", "TFLOP/s/dev"),
    ("mfu", "MFU"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=sorted(SUITES), default="cpu")
    parser.add_argument("--only", default="", help="comma-separated substrings of entry names")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    entries = [e for e in SUITES[args.suite] if not args.only or any(s in e.name for s in args.only.split(","))]
    rows = []
    for entry in entries:
        print(f"== {entry.name}", file=sys.stderr, flush=True)
        rows.append(run_entry(entry, args.peak_tflops))
    table = harness.format_table(rows, COLUMNS)
    print(table)
    out = args.out or os.path.join("runs", "bench", f"sequence-{args.suite}.json")
    harness.write_json(out, {"suite": args.suite, "entries": rows, "table": table})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
