"""Run recipes end to end on full MNIST and measure them: baseline training + steps + artifact.

    python -m benchmarks.bench_recipes --preset default --parallel 2 --threads 1 --out /tmp/recipes

Each recipe runs in its own process (``--parallel`` at a time, ``--threads`` torch threads each,
longest first): train (or load) the model's own fp32 baseline, run the steps, write the artifact,
reload it FROM DISK and measure test error of the baseline and of the artifact.  Writes
``<out>/<recipe>/model.rcz``, ``<out>/<recipe>/result.json``, ``<out>/trail.csv`` and prints a
markdown table plus the total wall time (what the 5-minute budget is about).  Validation choices
only ever look at the val split; the test split is read here for the final numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

DATA = "/work/cache/mnist/data/prepared"
ROOT = Path(__file__).resolve().parents[1]


def presets() -> dict[str, dict[str, dict]]:
    """The recipes of params.yaml (``default``) and of the ``paper`` preset (presets/paper.yaml)."""
    import yaml

    default = yaml.safe_load((ROOT / "params.yaml").read_text()).get("recipes") or {}
    paper = yaml.safe_load((ROOT / "presets" / "paper.yaml").read_text()).get("recipes") or {}
    return {"default": default, "paper": paper}


def snapped_error(raw: bytes, test) -> float | None:
    """Test error after snapping every float k-means codebook to its per-layer symmetric int8 grid
    (what int8 kernels need), without any fine-tuning; None when nothing is snapped."""
    from compress.quant.fakequant import quantize_weight
    from compress.quant.sharing import INT8_GRID
    from compress.recipes.artifact import deserialize
    from compress.recipes.tensors import model_from_artifact
    from compress.train import evaluate_model

    art = deserialize(raw)
    hit = False
    for r in art.tensors.values():
        if getattr(r, "kind", None) == "kmeans" and r.levels is None:
            q, s, _ = quantize_weight(r.centroids.reshape(1, -1), INT8_GRID)
            r.levels, r.multipliers, hit = q.reshape(-1).to(torch.int8), s.reshape(1), True
    return 1 - evaluate_model(model_from_artifact(art), *test)[1] if hit else None


# the train stage's fit knobs (params.yaml train:): retraining with them reproduces models/baseline
TRAIN_STAGE = {"epochs": 8, "batch_size": 128, "optimizer": "adam", "lr": 3e-3, "schedule": "onecycle", "augment_shift": 2}


def run_one(name: str, preset: str, out: Path, data: str, seed: int, threads: int, root: str, train_baselines: bool) -> dict:
    import torch

    torch.set_num_threads(threads)
    from compress.data import load_meta, load_split
    from compress.recipes.engine import fp32_bytes, run_recipe, train_baseline, validate_recipe
    from compress.recipes.tensors import model_from_bytes
    from compress.train import evaluate_model, seed_everything

    t0, c0 = time.perf_counter(), time.process_time()
    meta = load_meta(data)
    recipe = validate_recipe(name, presets()[preset][name], meta["input_shape"], meta["num_classes"])
    stage_baseline = str(Path(root) / "models" / "baseline") if recipe.baseline.source == "train" else None
    if train_baselines and stage_baseline is not None:  # count the train stage's training in the budget
        from compress.recipes.engine import BaselineSettings

        recipe.baseline = BaselineSettings(**TRAIN_STAGE)
    seed_everything(seed)
    train, val, test = (load_split(data, s) for s in ("train", "val", "test"))
    base, info = train_baseline(recipe, train, val, seed=seed, input_shape=meta["input_shape"], num_classes=meta["num_classes"],
                                trained=stage_baseline)
    t_base = time.perf_counter() - t0
    same_as_stage = None
    if stage_baseline is not None:
        from compress.checkpoint import load_baseline

        ref, _ = load_baseline(stage_baseline)
        same_as_stage = all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), base.state_dict().values()))
    res = run_recipe(recipe, base, train, val, seed=seed, baseline_seconds=info["seconds"],
                     input_shape=meta["input_shape"], num_classes=meta["num_classes"])
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.rcz").write_bytes(res.artifact)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    reloaded = model_from_bytes((folder / "model.rcz").read_bytes(), str(folder / "model.rcz"))
    base_err = 1 - evaluate_model(base, *test)[1]
    err = 1 - evaluate_model(reloaded, *test)[1]
    snap = snapped_error(res.artifact, test)
    result = {"recipe": name, "preset": preset, "model": recipe.model, "threads": threads, "seed": seed,
              "baseline_source": info["source"], "baseline_identical_to_train_stage": same_as_stage, "baseline_bytes": fp32_bytes(base), "size_bytes": (folder / "model.rcz").stat().st_size,
              "ratio": round(fp32_bytes(base) / (folder / "model.rcz").stat().st_size, 2),
              "baseline_test_err_pct": round(100 * base_err, 2), "test_err_pct": round(100 * err, 2),
              "delta_pp": round(100 * (err - base_err), 2),
              "snap_int8_test_err_pct": None if snap is None else round(100 * snap, 2), "baseline_val_acc": res.summary["baseline_val_acc"],
              "val_acc": res.summary["val_acc"], "baseline_seconds": round(t_base, 1), "wall_seconds": round(wall, 1),
              "cpu_seconds": round(cpu, 1), "trail": res.trail}
    (folder / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main() -> None:
    from compress.tables import write_csv

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--recipes", nargs="*", default=None, help="default: every recipe of the preset")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--root", default="/work/cache/mnist", help="where relative baseline paths (models/baseline) live")
    ap.add_argument("--out", default="/tmp/recipes-bench")
    ap.add_argument("--train-baselines", action="store_true",
                    help="retrain baselines given by path (models/baseline) with the train stage's knobs, inside the budget")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    out = Path(a.out)
    if a.one:
        print(json.dumps(run_one(a.one, a.preset, out, a.data, a.seed, a.threads, a.root, a.train_baselines)))
        return
    names = a.recipes or list(presets()[a.preset])
    t0 = time.perf_counter()

    def launch(name: str) -> dict:
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "TQDM_DISABLE": "1"}
        cmd = [sys.executable, "-m", "benchmarks.bench_recipes", "--one", name, "--preset", a.preset, "--threads",
               str(a.threads), "--seed", str(a.seed), "--data", a.data, "--root", a.root, "--out", str(out)] + (["--train-baselines"] if a.train_baselines else [])
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError(f"{name} failed:\n{p.stderr[-3000:]}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"done {name}: {r['ratio']}x, test err {r['test_err_pct']} % (baseline {r['baseline_test_err_pct']} %), "
              f"wall {r['wall_seconds']} s", flush=True)
        return r

    with ThreadPoolExecutor(a.parallel) as pool:  # the list order is the launch order: longest first
        results = list(pool.map(launch, names))
    total = time.perf_counter() - t0
    write_csv(out / "trail.csv", [{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in row.items()}
                                  for r in results for row in r["trail"]])
    print("\n| recipe | model | baseline err % | artifact err % | Δ pp | int8-snapped err % | bytes | ratio | wall s | cpu s |"
          "\n|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['recipe']} | {r['model']} | {r['baseline_test_err_pct']} | {r['test_err_pct']} | {r['delta_pp']:+} | "
              f"{r['snap_int8_test_err_pct']} | {r['size_bytes']} | {r['ratio']} | {r['wall_seconds']} | {r['cpu_seconds']} |")
    for r in results:
        print(f"\n{r['recipe']} trail:")
        for row in r["trail"]:
            print(f"  {row['index']} {row['step']:9s} {row['size_bytes']:>9d} B  {row['ratio']:>7.1f}x  val {row['val_acc']:.4f}  {row['seconds']:>6.1f} s")
    print(f"\nTOTAL WALL {total:.1f} s ({a.parallel} processes x {a.threads} threads, preset {a.preset})")
    (out / "summary.json").write_text(json.dumps({"total_wall_seconds": round(total, 1), "parallel": a.parallel,
                                                   "threads": a.threads, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
