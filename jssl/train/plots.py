"""Pictures of a finished run: its curves and a t-SNE map of its held-out features.

At the end of `train` (when `config.eval.plots`), process 0 writes
- `<workdir>/plots/curves.png`: the training loss and every `eval/*` measure against the step,
  read back from `metrics.jsonl` (final `final/*` values are marked on their eval curve);
- `<workdir>/plots/features_tsne.png`: scikit-learn's t-SNE of the representation of up to
  `config.eval.tsne_points` held-out examples (a fixed random subset), coloured by label;
  skipped, with a log line, when the held-out data has no labels or `tsne_points` is 0,
and both as images `plots/curves` and `plots/features_tsne` to the metric writer (TensorBoard,
trackers). matplotlib draws off-screen (Agg) and is imported only here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jssl.metrics import save_png

log = logging.getLogger("jssl")

PLOTS_DIR = "plots"


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl; a line cut short by a kill is skipped."""
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def _series(rows: Sequence[Mapping[str, Any]], name: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `name`, one value per step (the last written), in step order."""
    by_step = {int(r["step"]): float(r[name]) for r in rows if name in r}
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def _figure_pixels(fig) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def curves_picture(rows: Sequence[Mapping[str, Any]]) -> np.ndarray | None:
    """uint8 `[H, W, 3]`: one panel for the loss and one per `eval/*` name; None without a loss."""
    names = ["loss"] + sorted({k for r in rows for k in r if k.startswith("eval/")})
    names = [n for n in names if _series(rows, n)[0]]
    if "loss" not in names:
        return None
    cols = min(3, len(names))
    panel_rows = -(-len(names) // cols)
    fig = _new_figure(4.2 * cols, 3.0 * panel_rows)
    axes = fig.subplots(panel_rows, cols, squeeze=False).ravel()
    for ax, name in zip(axes, names):
        steps, values = _series(rows, name)
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3)
        final = "final/" + name[len("eval/") :] if name.startswith("eval/") else None
        if final is not None:
            final_steps, final_values = _series(rows, final)
            if final_steps:
                ax.plot(final_steps[-1:], final_values[-1:], "r*", markersize=10, label="final")
                ax.legend(loc="best", fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    return _figure_pixels(fig)


def tsne_picture(features: np.ndarray, labels: np.ndarray, *, seed: int = 0, subtitle: str = "") -> np.ndarray:
    """uint8 `[H, W, 3]`: a 2-D t-SNE embedding of `features` `[n, d]`, one colour per label."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, np.float32).reshape(len(features), -1)
    # Perplexity must stay below the number of points (small held-out sets in tests).
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    # One OpenMP thread: with XLA's threads and other jobs on the host, more threads spin and
    # slow the gradient steps down several-fold (measured 3x on 2 busy cores).
    with threadpool_limits(1):
        xy = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(x)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    fig = _new_figure(6.5, 5.5)
    ax = fig.subplots()
    cmap = "tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20 else "nipy_spectral"
    colours = {c: i / max(1, len(classes) - 1) if len(classes) > 20 else i for i, c in enumerate(classes)}
    import matplotlib

    palette = matplotlib.colormaps[cmap]
    for c in classes:
        mask = labels == c
        ax.scatter(xy[mask, 0], xy[mask, 1], s=6, color=palette(colours[c]), label=str(c), alpha=0.8)
    if len(classes) <= 20:
        ax.legend(markerscale=2.5, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), title="label")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of {len(x)} held-out features" + (f": {subtitle}" if subtitle else ""), fontsize=10)
    return _figure_pixels(fig)


def heldout_features(exp: Any, state: Any, eval_set: Any, num: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The representation of up to `num` held-out examples (a fixed random subset) and their labels.

    None when the held-out data has no labels. Runs on every process (the forward pass is
    collective), through the same `represent` as the kNN evaluation.
    """
    # The trainer imports this module; its pieces are imported here to keep the import acyclic.
    from jssl import sharding
    from jssl.train.trainer import map_in_chunks

    if not eval_set.labelled or num <= 0:
        return None
    total = len(eval_set.test_labels)
    rng = np.random.default_rng(exp.config.seed)
    index = np.sort(rng.choice(total, size=min(num, total), replace=False))
    subset = {k: v[index] for k, v in eval_set.test.items()}
    fn = lambda x: exp.represent(state.params, state.buffers, x, False)  # noqa: E731
    ways = sharding.batch_size_per_shard(exp.mesh)
    features, _ = map_in_chunks(subset, fn, chunk=exp.config.eval.batch_size, ways=ways, mesh=exp.mesh)
    return features, eval_set.test_labels[index]


def final_plots(exp: Any, state: Any, eval_set: Any, writer: Any, workdir: str, step: int) -> dict[str, str]:
    """Writes the curves and the t-SNE map (see the module docstring); returns `{name: PNG path}`.

    Call on every process, after the final scalars are written.
    """
    config = exp.config
    is_chief = jax.process_index() == 0
    directory = os.path.join(workdir, PLOTS_DIR)
    pictures = {}
    writer.flush()
    if is_chief:
        if writer.jsonl_path is not None and os.path.exists(writer.jsonl_path):
            curves = curves_picture(read_jsonl(writer.jsonl_path))
            if curves is not None:
                pictures["curves"] = curves
        else:
            log.info("plots: no loss curves (logging.writers has no 'jsonl' to read them from)")
    sample = heldout_features(exp, state, eval_set, config.eval.tsne_points)
    if sample is None or len(sample[1]) < 5:  # t-SNE needs a perplexity below the number of points
        why = (
            "eval.tsne_points is 0" if config.eval.tsne_points <= 0
            else "the held-out data has no labels" if sample is None
            else "fewer than 5 held-out examples"
        )
        log.info("plots: no t-SNE map of the held-out features (%s)", why)
    elif is_chief:
        subtitle = f"{config.method.name}, step {step}"
        pictures["features_tsne"] = tsne_picture(*sample, seed=config.seed, subtitle=subtitle)
    paths = {}
    for name, picture in pictures.items():
        paths[name] = os.path.join(directory, f"{name}.png")
        save_png(picture, paths[name])
    writer.write_images(step, {f"plots/{name}": picture for name, picture in pictures.items()})
    if paths:
        log.info("plots: %s", ", ".join(paths.values()))
    return paths
