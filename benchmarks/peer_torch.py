"""The PyTorch peer: the same SimCLR ResNet-18 train step with lightly's `NTXentLoss`
(the augmentation comparison is `benchmarks.aug_rate`).

Matches jssl's step: torchvision ResNet-18 (v1.5, identical layer shapes; with the CIFAR stem
the 7x7/2 conv + max-pool become one 3x3/1 conv, as `small_image_stem=True` does in jssl),
the projector Linear(512, 2048, no bias) -> BN -> ReLU -> Linear(2048, 128), one forward over
both views concatenated (shared BN statistics), NT-Xent at temperature 0.1, LARS on the
SSL parameters, an online linear probe on detached features trained by AdamW, and uint8
images normalised inside the step. Needs the `bench` extra (torch, torchvision, lightly).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks import harness


def _model(small_image_stem: bool):
    import torch
    import torchvision

    net = torchvision.models.resnet18()
    if small_image_stem:
        net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = torch.nn.Identity()
    net.fc = torch.nn.Identity()
    projector = torch.nn.Sequential(
        torch.nn.Linear(512, 2048, bias=False), torch.nn.BatchNorm1d(2048), torch.nn.ReLU(), torch.nn.Linear(2048, 128)
    )
    probe = torch.nn.Linear(512, 10)
    return net, projector, probe


def torch_step(resolution: int, batch: int, small_image_stem: bool, warmup: int, steps: int, seed: int = 0, **_) -> dict[str, Any]:
    import torch
    from lightly.loss import NTXentLoss
    from lightly.utils.lars import LARS

    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    net, projector, probe = _model(small_image_stem)
    criterion = NTXentLoss(temperature=0.1)
    ssl_params = list(net.parameters()) + list(projector.parameters())
    opt = LARS(ssl_params, lr=0.3 * batch / 256, momentum=0.9, weight_decay=1e-6)
    probe_opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=0.0)
    mean = torch.full((1, 3, 1, 1), 0.5)
    std = torch.full((1, 3, 1, 1), 0.25)

    rng = np.random.default_rng(seed)
    shape = (batch, 3, resolution, resolution)
    v0 = torch.from_numpy(rng.integers(0, 256, shape, dtype=np.uint8))
    v1 = torch.from_numpy(rng.integers(0, 256, shape, dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 10, (batch,)).astype(np.int64))

    def step():
        x = (torch.cat([v0, v1]).float() / 255.0 - mean) / std
        features = net(x)
        z = projector(features)
        loss = criterion(z[:batch], z[batch:])
        probe_loss = torch.nn.functional.cross_entropy(probe(features[:batch].detach()), labels)
        opt.zero_grad(set_to_none=True)
        probe_opt.zero_grad(set_to_none=True)
        (loss + probe_loss).backward()
        opt.step()
        probe_opt.step()
        return loss.item()

    times = harness.time_calls(step, warmup=warmup, steps=steps, sync=lambda x: x)
    stats = harness.summarize(times)
    return {
        "kind": "peer-step", "impl": "pytorch+lightly", "torch": torch.__version__, "threads": threads,
        "resolution": resolution, "batch": batch, "small_image_stem": small_image_stem,
        **{f"step_{k}": v for k, v in stats.items()},
        "examples_per_s": batch / stats["median_s"],
    }


def torch_conv_micro(batch: int, size: int, cin: int, cout: int, kernel: int, stride: int, steps: int = 5) -> dict[str, Any]:
    """PyTorch's side of `benchmarks.conv_micro`: the same convolution's forward, input grad and
    weight grad (aten's `convolution_backward` with one output selected), NCHW as users write it."""
    import torch

    torch.manual_seed(0)
    x = torch.randn(batch, cin, size, size)
    w = torch.randn(cout, cin, kernel, kernel) * 0.05
    pad = kernel // 2
    with torch.no_grad():
        y = torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)
    g = torch.ones_like(y)

    def backward(mask):
        return torch.ops.aten.convolution_backward(
            g, x, w, None, [stride, stride], [pad, pad], [1, 1], False, [0, 0], 1, mask)

    ops = {
        "forward": lambda: torch.nn.functional.conv2d(x, w, stride=stride, padding=pad),
        "input_grad": lambda: backward([True, False, False]),
        "weight_grad": lambda: backward([False, True, False]),
    }
    useful = 2.0 * y.shape[2] * y.shape[3] * kernel * kernel * cin * cout * batch
    rows = []
    with torch.no_grad():
        for name, fn in ops.items():
            times = harness.time_calls(fn, warmup=2, steps=steps, sync=lambda r: r)
            median = harness.summarize(times)["median_s"]
            rows.append({"op": name, "lowering": "torch (oneDNN)", "median_s": median, "gflops_per_s": useful / median / 1e9})
    return {"kind": "conv-micro", "shape": f"{batch}x{size}x{size}x{cin} -> {cout}, {kernel}x{kernel}/{stride}", "rows": rows}


def torch_breakdown(resolution: int, batch: int, small_image_stem: bool, warmup: int, steps: int, **_) -> dict[str, Any]:
    """PyTorch's side of `benchmarks.step.run_breakdown`: the ResNet-18 alone, forward and forward + backward."""
    import torch

    torch.manual_seed(0)
    net, _, _ = _model(small_image_stem)
    x = torch.randn(2 * batch, 3, resolution, resolution)

    def forward():
        with torch.no_grad():
            return net(x).sum().item()

    def forward_backward():
        net.zero_grad(set_to_none=True)
        loss = net(x).sum()
        loss.backward()
        return loss.item()

    out = {}
    for name, fn in (("encoder_forward", forward), ("encoder_forward_backward", forward_backward)):
        out[name + "_s"] = harness.summarize(harness.time_calls(fn, warmup=warmup, steps=steps, sync=lambda r: r))["median_s"]
    return {"kind": "breakdown", "impl": "pytorch", "resolution": resolution, "batch": batch, **out}
