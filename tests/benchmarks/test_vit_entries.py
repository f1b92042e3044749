"""ViT benchmark entries (`gpu-vit`, `cpu-vit`, the tiny MAE in `cpu-smoke`) and their analytic FLOPs.

Everything runs on the CPU at tiny sizes: the entries' own code path (recipe, overrides,
multi-crop, teachers) with a 2-block, 64-wide ViT on 32 px crops.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from benchmarks import flops, flops_vit, hlo_breakdown, profile_summary
from benchmarks.run import Runner, report, scaled_entry
from benchmarks.step import count_flops, entry_config, run_step, view_shapes
from benchmarks.suites import (
    GPU_VIT_STEPS,
    MESHES,
    TINY_MAE,
    TINY_VIT,
    StepEntry,
    get_suite,
    tiny_vit,
    vit_scaling_entries,
)
from jssl.train.trainer import view_augmentations

# Wide enough that matmuls dominate XLA's count (LayerNorm, GELU, softmax and the optimizer
# are elementwise and not in the analytic count): XLA lands 2-4% above it here.
WIDE = (("model.kwargs.embed_dim", 256), ("model.kwargs.num_heads", 4), ("model.kwargs.depth", 1))
WIDE_DECODER = (("method.decoder_embed_dim", 256), ("method.decoder_num_heads", 4))


def test_suites_list_the_vit_entries():
    gpu = get_suite("gpu-vit")
    assert [e.method for e in gpu.steps] == ["mae", "dino", "moco_v3"]
    assert all(e.precision == "bfloat16" and e.model.startswith("vit_") for e in gpu.steps)
    assert [dict(e.mesh) for e in gpu.scaling_entries] == [dict(m) for m in MESHES.values()]
    assert TINY_MAE in get_suite("cpu-smoke").steps
    cpu = get_suite("cpu-vit")
    assert len(cpu.steps) == 3 and len(cpu.scaling_entries) == 3 and cpu.scaling_devices == (1, 2, 4, 8)


def test_entry_with_overrides_survives_json():
    entry = tiny_vit(GPU_VIT_STEPS[1])  # DINO: data.crops is a nested tuple
    again = StepEntry.from_dict(json.loads(json.dumps(entry.to_dict())))
    assert again == entry and hash(again) == hash(entry)


def test_vit_on_a_resnet_recipe_gets_vit_kwargs_only():
    config = entry_config(GPU_VIT_STEPS[2])  # MoCo v3's recipe is a ResNet-50 one
    assert config.model.name == "vit_b16" and "small_image_stem" not in config.model.kwargs
    assert config.model.kwargs.pos_embed == "sincos" and config.method.projection_layers == 3
    assert entry_config(GPU_VIT_STEPS[0]).model.kwargs.image_size == 224  # MAE's recipe keeps its own


def test_scaled_entry_batches():
    base = StepEntry(name="b", batch=8, mesh=MESHES["data"])
    assert scaled_entry(base, 4, limit_devices=True).batch == 32
    assert scaled_entry(dataclasses.replace(base, mesh=MESHES["fsdp"]), 4, limit_devices=True).batch == 32
    tensor = scaled_entry(dataclasses.replace(base, mesh=MESHES["tensor"]), 4, limit_devices=True)
    assert tensor.batch == 8 and tensor.devices == 4 and tensor.limit_devices


def test_vit_b16_forward_is_17_6_gmacs():
    from jssl.models import get_backbone

    vit = nnx.eval_shape(lambda: get_backbone("vit_b16", in_channels=3, dtype=jnp.float32, rngs=nnx.Rngs(0)))
    assert sum(flops_vit.vit_macs(vit, image_hw=(224, 224)).values()) == pytest.approx(17.56e9, rel=0.005)
    # DINO's 96 px local crop: 36 patches + the class token.
    local = flops_vit.vit_macs(vit, image_hw=(96, 96))
    assert local["attn_scores"] == 12 * 37 * 37 * 768


def test_attention_n2_terms_match_xla():
    """A forward where the O(n^2 d) terms are 73% of the matmuls (512 tokens, 64 wide): a wrong
    factor on them would move the ratio far outside the band. One head of 64 so that the
    softmax (elementwise, uncounted) is small beside the scores it normalizes; XLA: +5%."""
    from jssl.models.transformer import Encoder

    enc = Encoder(depth=1, embed_dim=64, num_heads=1, mlp_dim=64, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(enc)
    x = jnp.ones((2, 512, 64))
    xla = flops.xla_flops(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)).lower(state, x))
    macs = flops_vit.transformer_macs(enc, tokens=512)
    assert (macs["attn_scores"] + macs["attn_values"]) / sum(macs.values()) > 0.7
    assert 1.0 <= xla / (2.0 * 2 * sum(macs.values())) < 1.08


@pytest.mark.parametrize("index", range(len(GPU_VIT_STEPS)))
def test_analytic_step_flops_match_xla(index):
    entry = tiny_vit(GPU_VIT_STEPS[index], batch=16)
    wide = WIDE + (WIDE_DECODER if entry.method == "mae" else ())
    entry = dataclasses.replace(entry, overrides=entry.overrides + wide)
    counts = count_flops(entry)
    assert 1.0 <= counts["xla_over_analytic"] < 1.06, counts
    shares = counts["analytic_shares"]
    assert sum(shares[k] for k in ("attention", "mlp", "teacher_forward", "rest")) == pytest.approx(1.0)
    assert (shares["teacher_forward"] > 0) == (entry.method != "mae")


@pytest.mark.parametrize("index", range(len(GPU_VIT_STEPS)))
def test_hlo_dots_match_analytic_components_exactly(index):
    """XLA's dots attributed by source function equal the analytic count layer kind by layer
    kind (teachers included): the per-component model, not only its total, is XLA's."""
    entry = tiny_vit(GPU_VIT_STEPS[index], batch=8)
    counts = count_flops(entry)
    config = entry_config(entry)
    comps = flops_vit.analytic_vit_step_flops(config, view_shapes(entry, view_augmentations(config)))["components"]

    def analytic(*prefixes):
        return sum(v for k, v in comps.items() if k.startswith(prefixes))

    assert counts["hlo_attention_proj_flops"] == pytest.approx(analytic("attn_proj"), rel=1e-6)
    assert counts["hlo_attention_n2_flops"] == pytest.approx(analytic("attn_scores", "attn_values"), rel=1e-6)
    assert counts["hlo_mlp_flops"] == pytest.approx(analytic("mlp"), rel=1e-6)
    assert counts["hlo_patch_embed_flops"] == pytest.approx(analytic("patch_embed"), rel=1e-6)
    assert counts["hlo_attention_custom_calls"] == 0  # the CPU runs XLA's own attention


def test_unmodelled_vit_method_falls_back_to_xla():
    entry = StepEntry(name="byol-vit", method="byol", model="vit_ti16", resolution=32, batch=4,
                      overrides=TINY_VIT + (("data.augment", "random_resized_crop(32)"),))
    counts = count_flops(entry)
    assert counts["xla_flops"] > 0 and counts["xla_over_analytic"] != counts["xla_over_analytic"]  # NaN


@pytest.mark.heavy  # tracing the full-size ViT-B MAE step
def test_full_size_mae_flops_match_xla():
    """MAE ViT-B/16 at 224 px as the GPU entry builds it (lowered only): within 3% of XLA."""
    entry = dataclasses.replace(GPU_VIT_STEPS[0], batch=8)
    counts = count_flops(entry)
    assert 1.0 <= counts["xla_over_analytic"] < 1.03
    assert counts["analytic_forward_flops_per_image"] == pytest.approx(2 * 17.56e9, rel=0.005)


# MAE and MoCo v3 (with a profile) by default; DINO's multi-crop entry is `heavy` (13 s on 2 cores).
@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(e, marks=pytest.mark.heavy if e.method == "dino" else ())
        for e in [TINY_MAE, *(tiny_vit(e) for e in GPU_VIT_STEPS[1:])]
    ],
    ids=lambda e: e.method,
)
def test_entry_runs_one_step(entry, tmp_path):
    entry = dataclasses.replace(entry, batch=4, warmup=0, steps=1)
    result = run_step(entry, profile_dir=str(tmp_path) if entry.method == "moco_v3" else None)
    assert result["loss_finite"] and result["step_median_s"] > 0 and result["compile_s"] > 0
    assert result["mfu_flops_source"] == "analytic" and 0.9 < result["flops_agreement"] < 1.3
    assert result["views_per_s_per_device"] > 0 and result["compiled_bytes"] > 0
    if entry.method == "moco_v3":
        assert list(tmp_path.glob("**/*.trace.json.gz")) and "profile_dir" in result
        assert result["hlo_mlp_share"] > 0.3
        assert sum(result[f"hlo_{k}_share"] for k in hlo_breakdown.CATEGORIES) == pytest.approx(1.0)
        assert "Profiled device time" in report({"suite": "t", "commit": "c", "date": "d", "steps": [result]})


# The tensor mesh (the one whose FLOPs are not simply split) by default; data and FSDP `heavy`.
@pytest.mark.parametrize("mesh", [m if m == "tensor" else pytest.param(m, marks=pytest.mark.heavy) for m in MESHES])
def test_scaling_entry_on_8_fake_devices(mesh):
    """Each mesh on 8 fake CPU devices in a worker process. XLA's per-device FLOPs x 8 over the
    analytic whole-step count: ~1 when the work is split (data, FSDP), 8+ when replicated. A
    tensor mesh splits only the blocks' heads and MLP units; at this width the replicated rest
    (LayerNorms, patch embedding, decoder embedding, loss, optimizer on replicated parameters)
    leaves it near 3, still far below full replication."""
    base = next(e for e in vit_scaling_entries(tiny_vit(GPU_VIT_STEPS[0], batch=8)) if e.name.endswith(mesh))
    entry = scaled_entry(dataclasses.replace(base, warmup=0, steps=1), 8, limit_devices=True)
    result = Runner(argparse.Namespace(peak_tflops=None)).worker("step", entry.to_dict(), devices=8, timeout=300)
    assert "error" not in result, result.get("traceback")
    assert result["num_devices"] == 8 and result["loss_finite"]
    assert 0.9 < result["flops_agreement"] < (4.0 if mesh == "tensor" else 1.5), result["flops_agreement"]


def test_profile_summary_of_a_gpu_trace(tmp_path):
    events = [
        {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/host:CPU"}},
        {"ph": "X", "pid": 1, "name": "sm90_xmma_gemm_bf16", "dur": 3000.0},
        {"ph": "X", "pid": 1, "name": "cudnn_generated_fort_native_sdpa", "args": {"hlo_op": "custom-call.3"},
         "dur": 1000.0},
        {"ph": "X", "pid": 1, "name": "loop_add_fusion", "dur": 500.0},
        {"ph": "X", "pid": 1, "name": "ncclDevKernel_AllReduce", "dur": 500.0},
        {"ph": "X", "pid": 2, "name": "python", "dur": 9e9},  # host events are not device time
    ]
    (tmp_path / "a").mkdir()
    with gzip.open(tmp_path / "a" / "h.trace.json.gz", "wt") as f:
        json.dump({"traceEvents": events}, f)
    s = profile_summary.summarize_trace(str(tmp_path), steps=2)
    assert s["matmul_s"] == pytest.approx(1.5e-3) and s["attention_s"] == pytest.approx(0.5e-3)
    assert s["collective_s"] == pytest.approx(0.25e-3) and s["other_s"] == pytest.approx(0.25e-3)
    assert s["device_total_s"] == pytest.approx(2.5e-3)
