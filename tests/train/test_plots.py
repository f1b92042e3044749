"""The end-of-run pictures: loss and eval curves, a t-SNE map of held-out features (`jssl.train.plots`)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from jssl.train import plots

TAB10 = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]  # matplotlib's first three tab10 colours


def test_curves_and_tsne_pictures(tmp_path):
    rows = [{"step": s, "time": 0.0, "loss": 1.0 / s} for s in range(1, 21)]
    rows += [{"step": s, "eval/knn": s / 40} for s in (10, 20)] + [{"step": 20, "final/knn": 0.6}]
    curves = plots.curves_picture(rows)
    assert curves.dtype == np.uint8 and curves.shape[-1] == 3
    assert curves.shape[1] > 1.5 * curves.shape[0]  # two panels side by side: loss, eval/knn
    assert plots.curves_picture([{"step": 1, "eval/knn": 0.5}]) is None  # nothing trained yet

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    features = rng.normal(size=(60, 8)) + 10 * np.eye(8)[labels]
    picture = plots.tsne_picture(features, labels)
    plots.save_png(picture, str(tmp_path / "plots" / "features_tsne.png"))
    saved = np.asarray(Image.open(tmp_path / "plots" / "features_tsne.png"))
    np.testing.assert_array_equal(saved, picture)
    for colour in TAB10:  # one colour per label
        assert (np.abs(picture.astype(int) - colour).sum(-1) < 30).sum() > 20, colour
