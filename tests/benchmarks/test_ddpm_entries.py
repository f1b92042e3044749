"""DDPM benchmark entries (`gpu`, `cpu-smoke`): the CIFAR-10 recipe's U-Net step at 32 and 64 px.

The full-size entries are only lowered here (their FLOPs); the CPU entries' narrow U-Net runs
one step at a tiny batch (both `slow`: a trace or compile of a U-Net each).
"""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks.step import count_flops, entry_config, run_step, view_shapes
from benchmarks.suites import CPU_DDPM_STEPS, GPU_DDPM_STEPS, get_suite
from jssl.train.trainer import view_augmentations


def test_suites_list_the_ddpm_entries():
    gpu = get_suite("gpu")
    assert all(e in gpu.steps for e in GPU_DDPM_STEPS)
    assert [e.resolution for e in GPU_DDPM_STEPS] == [32, 64]
    assert all(e.precision == "bfloat16" and e.recipe == "ddpm_cifar10" for e in GPU_DDPM_STEPS)
    cpu = get_suite("cpu-smoke")
    assert all(e in cpu.steps for e in CPU_DDPM_STEPS)
    assert [e.resolution for e in CPU_DDPM_STEPS] == [32, 64] and all(e.batch <= 8 for e in CPU_DDPM_STEPS)


@pytest.mark.parametrize("entry", GPU_DDPM_STEPS, ids=lambda e: e.name)
def test_entry_config_is_the_recipe_unet_at_the_entry_size(entry):
    config = entry_config(entry)
    assert config.method.name == "ddpm" and config.model.name == "unet"
    assert "small_image_stem" not in config.model.kwargs  # a ResNet option, not a U-Net one
    assert config.model.kwargs.image_size == entry.resolution and config.model.kwargs.ch == 128
    assert view_shapes(entry, view_augmentations(config)) == [(entry.resolution, entry.resolution, 3)]


@pytest.mark.slow
@pytest.mark.heavy  # tracing the 35.7M-parameter step twice: ~1 min on 2 shared cores
def test_full_size_flops_grow_with_the_image():
    """XLA's count of the lowered full-size step (batch 2): 64 px costs ~4x 32 px per image."""
    small, large = (count_flops(dataclasses.replace(e, batch=2)) for e in GPU_DDPM_STEPS)
    # Forward + backward of the 35.7M-parameter U-Net: ~6 GMACs forward at 32 px, so ~36 GFLOPs per image.
    assert 25e9 < small["xla_flops_per_image_view"] < 50e9, small
    assert 3.5 < large["xla_flops_per_image_view"] / small["xla_flops_per_image_view"] < 4.5


@pytest.mark.slow
@pytest.mark.heavy  # a compile each: ~1 min on 2 shared cores
@pytest.mark.parametrize("entry", CPU_DDPM_STEPS, ids=lambda e: e.name)
def test_cpu_entry_runs_one_step(entry):
    result = run_step(dataclasses.replace(entry, batch=2, warmup=0, steps=1))
    assert result["loss_finite"] and result["step_median_s"] > 0
    assert result["mfu_flops_source"] == "xla" and result["xla_flops"] > 0
    assert result["views_per_s_per_device"] > 0  # images/s per device: one view per image
