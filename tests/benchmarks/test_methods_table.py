"""The methods table reads finished runs (no training here) and formats the README table."""

from __future__ import annotations

import json

from benchmarks import methods_table
from jssl.config import save_config
from tests.train.helpers import load_config


def _finished_run(workdir, *, method: str):
    workdir.mkdir(parents=True)
    ssl = {"knn": 0.912, "linear_probe": 0.95, "online_probe": 0.9}
    results = {"step": 300, "ssl": ssl, "random_init": {"knn": 0.46, "linear_probe": 0.47}, "raw_pixels": {"knn": 0.944, "linear_probe": 0.884}}
    (workdir / "results.json").write_text(json.dumps(results))
    (workdir / "wall_time.json").write_text(json.dumps({"wall_s": 125.4}))
    config = load_config(None, name=f"{method}_mnist")  # the run's saved config, as the trainer writes it
    config.global_batch_size = 256
    save_config(config, str(workdir / "config.json"))
    lines = [{"step": 10, "steps_per_second": 0.1}, {"step": 20, "steps_per_second": 2.0, "method/embedding_spread": 0.7},
             {"step": 30, "steps_per_second": 1.0, "method/embedding_spread": 0.6}, {"step": 40, "steps_per_second": 4.0}]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_row_from_a_finished_run_is_not_retrained(tmp_path):
    _finished_run(tmp_path / "dino", method="dino")  # views: 2 global + 4 local crops
    row = methods_table.run_one("dino", str(tmp_path / "dino"), None, rerun=False)
    assert row["views"] == 6 and row["batch"] == 256 and row["steps"] == 300
    assert row["step_s"] == 0.5  # median of the intervals after the first (compiling) one
    assert row["final_embedding_spread"] == 0.6
    table = methods_table.markdown([row])
    assert "| dino | 300 x 256 (6) | **0.912** | **0.950** | 0.900 | 0.460 / 0.470 | 0.944 / 0.884 | 2 min 05 s | 0.50 s |" in table


def test_every_cpu_recipe_is_listed_simclr_first():
    names = methods_table.recipes()
    assert names[0] == "simclr"
    from jssl import methods

    assert set(names) == set(methods.METHODS), "each method needs a CPU recipe (and nothing else does)"
    image = [n for n in names if n not in methods_table.SEQUENCE_RECIPES]
    assert names[: len(image)] == image, "image methods first, then text and audio"


def test_rerunning_some_methods_keeps_the_other_rows(tmp_path):
    path = tmp_path / "table.json"
    row = lambda method, knn: {"method": method, "steps": 300, "batch": 256, "views": 2, "ssl": {"knn": knn},  # noqa: E731
                               "random_init": {}, "raw_pixels": {}, "wall_s": 60.0, "step_s": 0.4}
    path.write_text(json.dumps({"date": "2026-11-25", "commit": "abc", "rows": [row("simclr", 0.889), row("dino", 0.78)]}))
    stamp = {"date": "2026-11-30", "commit": "def"}
    merged = methods_table.merge_rows(str(path), [{**row("dino", 0.843), **stamp}], stamp)
    by_method = {r["method"]: r for r in merged["rows"]}
    assert [r["method"] for r in merged["rows"]] == ["simclr", "dino"]
    assert by_method["simclr"]["ssl"]["knn"] == 0.889 and by_method["simclr"]["commit"] == "abc"
    assert by_method["dino"]["ssl"]["knn"] == 0.843 and by_method["dino"]["date"] == "2026-11-30"
    assert "**0.843**" in merged["table"] and "**0.889**" in merged["table"]


def test_generative_rows_get_their_own_table():
    row = {"method": "vae", "steps": 900, "batch": 128, "views": 1, "wall_s": 301.0, "step_s": 0.2,
           "ssl": {"knn": 0.9, "heldout/neg_elbo_nats": 95.25, "heldout/bits_per_dim": 0.1753,
                   "frechet_distance": 12.5, "frechet_reference_train_vs_heldout": 1.25},
           "random_init": {"heldout/neg_elbo_nats": 545.0}, "raw_pixels": {}}
    plain = {"method": "simclr", "steps": 300, "batch": 256, "views": 2, "wall_s": 60.0, "step_s": 0.4,
             "ssl": {"knn": 0.88}, "random_init": {}, "raw_pixels": {}}
    table = methods_table.generative_markdown([plain, row])
    assert "simclr" not in table
    assert "| vae | 900 x 128 | bits_per_dim 0.1753; neg_elbo_nats 95.25 (545) | 12.5 / 1.25 | 5 min 01 s |" in table
    assert methods_table.generative_markdown([plain]) == ""


def test_text_and_audio_rows_get_their_own_table():
    gpt = {"method": "gpt", "config": "gpt_pydoc", "inputs": "tokens", "steps": 500, "batch": 32, "views": 1,
           "wall_s": 400.0, "step_s": 0.5, "task": "pydoc topic (12 classes, 128-token windows)",
           "ssl": {"knn": 0.41, "linear_probe": 0.52, "heldout/perplexity": 61.23, "heldout/nll": 4.11},
           "random_init": {"knn": 0.2, "linear_probe": 0.3}, "raw_pixels": {},
           "baselines": {"unigram": {"perplexity": 384.4}, "bag_of_tokens": {"knn": 0.35, "linear_probe": 0.6}}}
    cpc = {"method": "cpc", "config": "cpc_digits", "inputs": "waveforms", "steps": 900, "batch": 64, "views": 1,
           "wall_s": 61.0, "step_s": 0.2, "task": "digit",
           "ssl": {"knn": 0.8, "linear_probe": 0.9, "heldout/contrastive_accuracy": 0.39},
           "random_init": {"knn": 0.4, "linear_probe": 0.5, "heldout/contrastive_accuracy": 0.11}, "raw_pixels": {},
           "baselines": {"log_mel": {"knn": 0.7, "linear_probe": 0.85}}}
    table = methods_table.sequence_markdown([gpt, cpc])
    assert ("| gpt | `gpt_pydoc` | 500 x 32 | perplexity **61.2** (unigram 384.4) | pydoc topic (12 classes, "
            "128-token windows) | **0.410** / **0.520** | 0.200 / 0.300 | bag_of_tokens 0.350 / 0.600 | 6 min 40 s | 0.50 s |") in table
    assert "| cpc | `cpc_digits` | 900 x 64 | contrastive accuracy **0.390** (random init 0.110) | digit | **0.800** / **0.900** | 0.400 / 0.500 | log_mel 0.700 / 0.850 |" in table
    # Neither leaks into the image tables.
    assert "gpt" not in methods_table.markdown([gpt, cpc]) and methods_table.generative_markdown([gpt]) == ""
