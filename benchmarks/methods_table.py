"""Every method's CPU recipe, run for real, in one table: `python -m benchmarks.methods_table`.

Runs `jssl train --config configs/<method>_mnist.py` for each image method, and the text and
audio methods' CPU recipes (`SEQUENCE_RECIPES`: pydoc text, spoken digits), one at a time so
timings are of a quiet machine, then prints the README results table from each run's `results.json`
and `metrics.jsonl`: held-out kNN, linear probe and online probe of the SSL encoder beside the
random-init and raw-pixel baselines, wall time (everything: start-up, compile, evals) and the
median step time. `--total-steps 150` reruns the short-budget check. Finished runs are reused
(`--rerun` forces them), so an interrupted table continues where it stopped.

  python -m benchmarks.methods_table                          # all methods, README recipes
  python -m benchmarks.methods_table --methods byol dino      # some
  python -m benchmarks.methods_table --total-steps 150        # the short-budget check
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Text and audio methods: their CPU recipe on the embedded corpus / spoken digits.
SEQUENCE_RECIPES = {"gpt": "gpt_pydoc", "bert": "bert_pydoc", "cpc": "cpc_digits", "wav2vec2": "wav2vec2_digits"}


def recipes() -> list[str]:
    """Method names with a CPU recipe (`configs/<method>_mnist.py`, or `SEQUENCE_RECIPES`), SimCLR first."""
    names = sorted(os.path.basename(p)[: -len("_mnist.py")] for p in glob.glob(os.path.join(REPO, "configs", "*_mnist.py")))
    names += [m for m, cfg in SEQUENCE_RECIPES.items() if os.path.exists(os.path.join(REPO, "configs", f"{cfg}.py"))]
    return sorted(names, key=lambda n: (n != "simclr", n in SEQUENCE_RECIPES, n))


def recipe_config(method: str) -> str:
    return SEQUENCE_RECIPES.get(method, f"{method}_mnist")


def run_one(method: str, workdir: str, total_steps: int | None, rerun: bool, extra: tuple[str, ...] = ()) -> dict:
    """Trains one recipe (unless `workdir` already holds a finished run) and returns its row.

    `extra`: more `--config.*` arguments (the Fréchet encoder of generative methods).
    """
    results_path = os.path.join(workdir, "results.json")
    timing_path = os.path.join(workdir, "wall_time.json")
    if rerun or not (os.path.exists(results_path) and os.path.exists(timing_path)):
        shutil.rmtree(workdir, ignore_errors=True)  # a half-finished run must not be resumed
        command = [
            sys.executable, "-m", "jssl.cli", "train",
            f"--config={os.path.join(REPO, 'configs', f'{recipe_config(method)}.py')}",
            f"--workdir={workdir}", "--config.progress_bar=false",
            # No t-SNE map (seconds of one CPU core at the end): wall times stay comparable.
            "--config.eval.tsne_points=0",
        ]
        if total_steps:
            command.append(f"--config.total_steps={total_steps}")
        command.extend(extra)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)}
        print(f"[{method}] {' '.join(command[2:])}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"[{method}] failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        with open(timing_path, "w") as f:
            json.dump({"wall_s": wall, "command": command[2:]}, f)
    results = json.load(open(results_path))
    if os.path.exists(timing_path):
        wall = json.load(open(timing_path))["wall_s"]
    else:  # a run made by hand: config.json is written at its start, results.json at its end
        wall = os.path.getmtime(results_path) - os.path.getmtime(os.path.join(workdir, "config.json"))
    step_times = []
    collapse = []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if record.get("steps_per_second"):
                step_times.append(1.0 / record["steps_per_second"])
            if "method/embedding_spread" in record:
                collapse.append(record["method/embedding_spread"])
    from jssl.config import load_config  # jax-heavy: only once a row is read
    from jssl.methods import get_method_class

    run_config = load_config(os.path.join(workdir, "config.json"))
    config = run_config.to_dict()
    cls = get_method_class(run_config.method.name)
    return {
        "method": method,
        "config": recipe_config(method),
        "inputs": cls.inputs,
        "steps": results["step"],
        "batch": config["global_batch_size"],
        "views": cls.num_views(run_config) if cls.inputs == "images" else 1,
        "ssl": results["ssl"],
        "random_init": results.get("random_init", {}),
        "raw_pixels": results.get("raw_pixels", {}),
        # Data-only baselines of text and audio (unigram model, bag of tokens, log-mel features).
        "baselines": {k: v for k, v in results.items() if k not in ("step", "ssl", "random_init", "raw_pixels", "eval")},
        "task": results.get("eval", {}).get("task"),
        "wall_s": wall,
        # The median of the logged intervals: eval steps and the first (compiling) interval are outliers.
        "step_s": statistics.median(step_times[1:] or step_times),
        "final_embedding_spread": collapse[-1] if collapse else None,
    }


def markdown(rows: list[dict]) -> str:
    def pct(x):
        return f"{x:.3f}" if isinstance(x, float) else "-"

    lines = [
        "| method | steps x batch (views) | kNN | linear probe | online probe | random-init kNN / probe "
        "| raw-pixel kNN / probe | wall | step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("inputs", "images") != "images":
            continue
        ssl, rnd, raw = r["ssl"], r["random_init"], r["raw_pixels"]
        minutes, seconds = divmod(round(r["wall_s"]), 60)
        lines.append(
            f"| {r['method']} | {r['steps']} x {r['batch']} ({r['views']}) | **{pct(ssl.get('knn'))}** "
            f"| **{pct(ssl.get('linear_probe'))}** | {pct(ssl.get('online_probe'))} "
            f"| {pct(rnd.get('knn'))} / {pct(rnd.get('linear_probe'))} | {pct(raw.get('knn'))} / {pct(raw.get('linear_probe'))} "
            f"| {minutes} min {seconds:02d} s | {r['step_s']:.2f} s |"
        )
    return "\n".join(lines)


def _natural_key(name: str) -> list:
    return [float(part) if part.replace(".", "", 1).isdigit() else part for part in re.split(r"(\d+(?:\.\d+)?)", name)]


def generative_markdown(rows: list[dict]) -> str:
    """The generative methods' own table: held-out measures and the Fréchet distance of samples."""
    lines = [
        "| method | steps x batch | held-out measures (random init) | Fréchet: samples / training images | wall |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("inputs", "images") != "images":
            continue
        ssl, rnd = r["ssl"], r["random_init"]
        # Natural order: denoise_mse_t50 before denoise_mse_t250.
        measures = sorted((k for k in ssl if k.startswith("heldout/")), key=_natural_key)
        if not measures:
            continue
        cells = []
        for k in measures:
            base = f" ({rnd[k]:.4g})" if isinstance(rnd.get(k), float) else ""
            cells.append(f"{k[len('heldout/'):]} {ssl[k]:.4g}{base}")
        if "frechet_distance" in ssl:
            frechet = f"{ssl['frechet_distance']:.3g} / {ssl['frechet_reference_train_vs_heldout']:.3g}"
        else:
            frechet = "-"
        minutes, seconds = divmod(round(r["wall_s"]), 60)
        lines.append(
            f"| {r['method']} | {r['steps']} x {r['batch']} | {'; '.join(cells)} | {frechet} "
            f"| {minutes} min {seconds:02d} s |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def sequence_markdown(rows: list[dict]) -> str:
    """The text and audio methods' table: the held-out measure against its data-only baseline,
    and the probes of the pooled features against random init and the data's own features."""

    def num(x, fmt=".3f"):
        return format(x, fmt) if isinstance(x, (int, float)) else "-"

    lines = [
        "| method | config | steps x batch | held-out measure (baseline) | probe task | kNN / linear probe "
        "| random-init kNN / probe | data-feature kNN / probe | wall | step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("inputs", "images") == "images":
            continue
        ssl, rnd, base = r["ssl"], r["random_init"], r.get("baselines", {})
        unigram = base.get("unigram", {})
        if "heldout/perplexity" in ssl:
            measure = f"perplexity **{ssl['heldout/perplexity']:.1f}** (unigram {num(unigram.get('perplexity'), '.1f')})"
        elif "heldout/masked_accuracy" in ssl:
            measure = (
                f"masked-token accuracy **{ssl['heldout/masked_accuracy']:.3f}** "
                f"(most frequent token {num(unigram.get('most_frequent_token_accuracy'))})"
            )
        else:  # the method's own held-out measures (wav2vec 2.0's contrastive accuracy), random init in brackets
            names = sorted(k for k, v in ssl.items() if k.startswith("heldout/") and isinstance(v, float))
            measure = "; ".join(
                f"{k[len('heldout/'):].replace('_', ' ')} **{ssl[k]:.3f}** (random init {num(rnd.get(k))})" for k in names
            ) or "-"
        features = next((v for k, v in base.items() if k != "unigram" and isinstance(v, dict) and "knn" in v), {})
        feature_name = next((k for k, v in base.items() if v is features), "")
        minutes, seconds = divmod(round(r["wall_s"]), 60)
        lines.append(
            f"| {r['method']} | `{r['config']}` | {r['steps']} x {r['batch']} | {measure} | {r.get('task') or '-'} "
            f"| **{num(ssl.get('knn'))}** / **{num(ssl.get('linear_probe'))}** "
            f"| {num(rnd.get('knn'))} / {num(rnd.get('linear_probe'))} "
            f"| {feature_name + ' ' if feature_name else ''}{num(features.get('knn'))} / {num(features.get('linear_probe'))} "
            f"| {minutes} min {seconds:02d} s | {r['step_s']:.2f} s |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def frechet_arguments(method: str, root: str) -> tuple[str, ...]:
    """`--config.eval.frechet_encoder=<the SimCLR run>` for generative methods, once SimCLR has run."""
    from jssl.methods import get_method_class  # jax-heavy: only when a row is made

    encoder = os.path.join(root, "simclr")
    if method != "simclr" and get_method_class(method).is_generative() and os.path.exists(
        os.path.join(encoder, "results.json")
    ):
        return (f"--config.eval.frechet_encoder={encoder}",)
    return ()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=None, help="method names (default: every *_mnist.py)")
    parser.add_argument("--total-steps", type=int, default=None, help="override total_steps (e.g. 150)")
    parser.add_argument("--root", default=os.path.join(REPO, "runs", "methods_table"))
    parser.add_argument("--rerun", action="store_true", help="retrain even where a finished run exists")
    parser.add_argument("--out", default=None, help="JSON file for the rows (default: benchmarks/results/)")
    args = parser.parse_args()

    names = args.methods or recipes()
    unknown = sorted(set(names) - set(recipes()))
    if unknown:
        raise SystemExit(f"no CPU recipe (configs/<method>_mnist.py or {SEQUENCE_RECIPES}) for {unknown}; known: {recipes()}")
    tag = f"{args.total_steps}steps" if args.total_steps else "recipe"
    out = args.out or os.path.join(REPO, "benchmarks", "results", f"methods_table_{tag}.json")
    stamp = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip(),
    }
    root = os.path.join(args.root, tag)
    new_rows = []
    for n in names:  # SimCLR first: its run is the generative methods' Fréchet encoder
        row = run_one(n, os.path.join(root, n), args.total_steps, args.rerun, frechet_arguments(n, root))
        new_rows.append({**row, **stamp})
    payload = merge_rows(out, new_rows, stamp)
    print(payload["table"])
    for key in ("generative_table", "sequence_table"):
        if payload.get(key):
            print("\n" + payload[key])
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(payload, f, indent=2)
    print(f"rows: {out}")


def merge_rows(path: str, new_rows: list[dict], stamp: dict) -> dict:
    """The table file at `path` with `new_rows` replacing the rows of the same methods: rerunning
    some methods (`--methods dino --rerun`) keeps every other method's measured row. Rows written
    before rows carried their own date and commit get the file's."""
    rows: list[dict] = []
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        rows = [{"date": old.get("date"), "commit": old.get("commit"), "machine": old.get("machine"), **r}
                for r in old.get("rows", [])]
    fresh = {r["method"]: r for r in new_rows}
    rows = [fresh.pop(r["method"], r) for r in rows] + list(fresh.values())
    order = {name: i for i, name in enumerate(recipes())}
    rows.sort(key=lambda r: order.get(r["method"], len(order)))
    return {**stamp, "rows": rows, "table": markdown(rows), "generative_table": generative_markdown(rows),
            "sequence_table": sequence_markdown(rows)}


if __name__ == "__main__":
    main()
