"""Fine-tuning pieces: layer-wise lr decay, label smoothing, weight transfer, frozen vs trainable, config round trip."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jssl.config import load_config, save_config
from jssl.evaluators.finetune import (
    Classifier,
    key_path,
    layer_decay_scales,
    load_variable_values,
    smoothed_cross_entropy,
    variable_values,
)
from jssl.models import ResNet, get_backbone
from jssl.train.finetune import build_finetuner
from jssl.train.optimizers import build_finetune_optimizer
from tests.train.helpers import load_config as load_config_file
from tests.train.helpers import tiny_config


class ToyBackbone(nnx.Module):
    """A stem and three blocks, with the layer interface ViT/ResNet backbones provide."""

    num_layers = 3

    def __init__(self, *, rngs: nnx.Rngs):
        self.stem = nnx.Linear(4, 8, rngs=rngs)
        self.blocks = nnx.List([nnx.Linear(8, 8, rngs=rngs) for _ in range(3)])
        self.norm = nnx.LayerNorm(8, rngs=rngs)
        self.feature_dim = 8

    def layer_index(self, path: tuple[str, ...]) -> int:
        if path[0] == "stem":
            return 0
        if path[0] == "blocks":
            return int(path[1]) + 1
        return self.num_layers + 1  # the final norm: after the blocks, at the head's rate

    def __call__(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = nnx.relu(block(x))
        return self.norm(x)


def _toy_params():
    model = Classifier(ToyBackbone(rngs=nnx.Rngs(0)), num_classes=5, rngs=nnx.Rngs(1))
    return model, nnx.state(model, nnx.Param)


def test_layer_decay_scales_follow_the_formula():
    model, params = _toy_params()
    decay = 0.5
    tree = layer_decay_scales(params, backbone=model.backbone, decay=decay)
    scales = {"/".join(key_path(path)): s for path, s in jax.tree_util.tree_flatten_with_path(tree)[0]}
    # layer i gets decay ** (num_layers + 1 - i); num_layers = 3; the head is layer 4 (scale 1)
    expected = {
        "backbone/stem/kernel": decay**4,
        "backbone/stem/bias": decay**4,
        "backbone/blocks/0/kernel": decay**3,
        "backbone/blocks/1/bias": decay**2,
        "backbone/blocks/2/kernel": decay**1,
        "backbone/norm/scale": 1.0,
        "head/linear/kernel": 1.0,
        "head/linear/bias": 1.0,
    }
    for name, value in expected.items():
        assert scales[name] == pytest.approx(value), name
    assert len(scales) == 12

    class Wrong(ToyBackbone):
        def layer_index(self, path):
            return 5

    with pytest.raises(ValueError, match="outside"):
        layer_decay_scales(params, backbone=Wrong(rngs=nnx.Rngs(0)), decay=decay)


def test_no_layer_interface_means_no_decay():
    class Plain(ToyBackbone):
        layer_index = None  # e.g. a backbone that does not define its layers

    backbone = Plain(rngs=nnx.Rngs(0))
    params = nnx.state(Classifier(backbone, num_classes=3, rngs=nnx.Rngs(0)), nnx.Param)
    assert set(jax.tree.leaves(layer_decay_scales(params, backbone=backbone, decay=0.5))) == {1.0}


def test_optimizer_steps_scale_with_the_layer():
    """Adam's first step moves every weight by lr * scale (|m / sqrt(v)| = 1), so the update shows the scale."""
    model, params = _toy_params()
    config = tiny_config(**{"finetune.warmup_steps": 0, "finetune.weight_decay": 0.0, "finetune.learning_rate": 0.1})
    from jssl.evaluators.finetune import layer_scale_fn

    tx, schedule = build_finetune_optimizer(config, lr_scale=layer_scale_fn(model.backbone, decay=0.5))
    grads = jax.tree.map(lambda p: jnp.ones_like(p), params)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert float(schedule(0)) == pytest.approx(0.1)
    assert np.allclose(np.abs(updates["backbone"]["stem"]["kernel"][...]), 0.1 * 0.5**4, rtol=1e-4)
    assert np.allclose(np.abs(updates["backbone"]["blocks"][2]["kernel"][...]), 0.1 * 0.5, rtol=1e-4)
    assert np.allclose(np.abs(updates["head"]["linear"]["kernel"][...]), 0.1, rtol=1e-4)


def test_label_smoothing_matches_the_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)) * 3
    labels = np.array([0, 3, 1, 2, 2, 0])
    a, k = 0.2, 4
    log_p = logits - logits.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    # -(1 - a) log p_y - (a / K) sum_k log p_k, averaged over the batch
    expected = np.mean(-(1 - a) * log_p[np.arange(6), labels] - a / k * log_p.sum(1))
    got = float(smoothed_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), smoothing=a))
    assert got == pytest.approx(expected, rel=1e-5)
    unsmoothed = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits), jnp.asarray(labels)).mean()
    assert float(smoothed_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), smoothing=0.0)) == pytest.approx(
        float(unsmoothed), rel=1e-6
    )


def test_transfer_checks_the_architecture():
    small = get_backbone("resnet_mini", in_channels=1, rngs=nnx.Rngs(0), width_multiplier=0.5)
    wide = get_backbone("resnet_mini", in_channels=1, rngs=nnx.Rngs(1), width_multiplier=1.0)
    with pytest.raises(ValueError, match="has shape"):
        load_variable_values(wide, variable_values(small))
    other = get_backbone("resnet_mini", in_channels=1, rngs=nnx.Rngs(2), width_multiplier=0.5)
    load_variable_values(other, variable_values(small))
    for name, value in variable_values(small).items():
        np.testing.assert_array_equal(variable_values(other)[name], value)


def _random_batch(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "view_0": rng.integers(0, 256, (n, 16, 16, 1), dtype=np.uint8),
        "label": rng.integers(0, 10, (n,)).astype(np.int32),
    }


def _finetune_two_steps(config):
    from jssl import sharding

    tuner = build_finetuner(config, in_channels=1)
    pretrained_model = get_backbone("resnet_mini", in_channels=1, rngs=nnx.Rngs(7), **config.model.kwargs)
    pretrained = variable_values(pretrained_model)
    state = tuner.init_state(pretrained)
    start = jax.device_get(state.params)
    for name, value in pretrained.items():  # the backbone starts from the pretrained values
        if name.endswith(("kernel", "scale", "bias")):
            *path, leaf = name.split("/")
            node = start["backbone"]
            for p in path:
                node = node[int(p) if p.isdigit() else p]
            np.testing.assert_array_equal(node[leaf][...], value)
    start = jax.tree.map(np.asarray, start)  # the step donates the state's buffers
    for seed in range(2):
        state, _ = tuner.train_step(state, sharding.host_batch_to_global(_random_batch(16, seed), tuner.mesh))
    end = jax.device_get(state.params)
    changed = lambda part: any(  # noqa: E731
        not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(start[part]), jax.tree.leaves(end[part]))
    )
    return changed("backbone"), changed("head")


def test_finetuning_trains_the_backbone_and_layer_decay_zero_freezes_it(monkeypatch):
    config = tiny_config(
        **{"finetune.batch_size": 16, "finetune.warmup_steps": 0, "finetune.steps": 2, "finetune.layer_decay": 0.0}
    )
    # Without a layer interface layer_decay is ignored and everything trains.
    monkeypatch.delattr(ResNet, "layer_index", raising=False)
    assert _finetune_two_steps(config) == (True, True)
    # A fake one (stem 0, block i -> i + 1): decay 0 leaves only the head (layer num_layers + 1)
    # learning, i.e. a linear probe on the frozen backbone.
    monkeypatch.setattr(ResNet, "num_layers", 3, raising=False)
    monkeypatch.setattr(
        ResNet, "layer_index", lambda self, path: int(path[1]) + 1 if path[0] == "blocks" else 0, raising=False
    )
    assert _finetune_two_steps(config) == (False, True)


def test_config_json_loads_back_exactly(tmp_path):
    config = tiny_config(**{"data.crops": ((1, "identity"), (1, "hflip")), "finetune.steps": 7})
    path = str(tmp_path / "config.json")
    assert save_config(config, path)
    loaded = load_config(path)
    assert loaded.to_dict() == config.to_dict()
    assert isinstance(loaded.data.mean, tuple) and isinstance(loaded.sharding_rules[0], tuple)


def test_vit_config_json_loads_back_without_resnet_options(tmp_path):
    """`model.kwargs` belongs to the chosen model: a ViT run's must not gain the ResNet defaults."""
    config = load_config_file("smoke", name="mae_mnist")
    path = str(tmp_path / "config.json")
    assert save_config(config, path)
    loaded = load_config(path)
    assert loaded.model.kwargs.to_dict() == config.model.kwargs.to_dict()
    assert "width_multiplier" not in loaded.model.kwargs


def test_old_config_json_gets_new_fields_at_their_defaults(tmp_path):
    config = tiny_config()
    del config["finetune"]
    path = str(tmp_path / "config.json")
    save_config(config, path)
    assert load_config(path).finetune.layer_decay == 0.75


@pytest.mark.parametrize("name", ["simclr", "dino", "byol"])
def test_each_methods_backbone_loads_into_the_finetuned_network(name):
    """The weights fine-tuning starts from are what `represent` runs (DINO: the teacher)."""
    from jssl import methods
    from tests.methods.helpers import tiny_config as method_config

    config = method_config(name)
    method = methods.build_method(config, in_channels=1, dtype=jnp.float32, rngs=nnx.Rngs(0))
    if name == "dino":  # make the teacher differ from the student, so the test can tell them apart
        method.teacher_encoder.stem_conv.kernel.set_value(method.teacher_encoder.stem_conv.kernel.get_value() + 1.0)
    fresh = get_backbone(config.model.name, in_channels=1, rngs=nnx.Rngs(3), **config.model.kwargs)
    load_variable_values(fresh, variable_values(method.backbone()))
    images = jnp.asarray(np.random.default_rng(0).normal(size=(4, 28, 28, 1)), jnp.float32)
    method.eval(), fresh.eval()
    np.testing.assert_allclose(fresh(images), method.represent(images), rtol=1e-5, atol=1e-5)
    # The fine-tuned network's weights are trainable Params, also where they came from a Teacher.
    count = lambda module: len(jax.tree.leaves(nnx.state(module, nnx.Param)))  # noqa: E731
    assert count(fresh) == count(method.encoder) > 0
