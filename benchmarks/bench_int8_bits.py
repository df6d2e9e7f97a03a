"""Benchmark: do fewer weight bits cost int8 latency?  W8A8 vs W4A8 vs mixed-bit codes, one engine at a time.

Issue 12's target: a W4A8 or HAWQ-style mixed-precision variant runs within 15 % of the W8A8
variant's latency on the same runtime, because a b-bit code is an int8 value and the int8 graph is
the same.  ``bench_deploy`` times ~20 runtimes of a model interleaved, all loaded at once; there
the OpenVINO sub-8-bit rows came out 20-40 % slower than W8A8 at batch 256 on one machine.  This
script times the same three graphs with nothing else loaded: each round builds a predictor
(``compress.deploy``, the path evaluate measures), times it and drops it, format after format, so a
difference that remains belongs to the graph, not to its neighbours.

    python -m benchmarks.bench_int8_bits [--threads 2] [--models lenet5 lenet300 mlp1024] [--rounds 3]
"""
from __future__ import annotations

import argparse
import gc
import os
import tempfile
import warnings
from pathlib import Path

import torch

from benchmarks.bench_deploy import MIXED, batch_of, calib_images, cpu_name, load_models, median_ms, packed_int_variants
from compress.deploy.engines import resolve_runtimes
from compress.deploy.graphs import deploy_predictors
from compress.quant.observers import calibrate

ENGINES = ("onnxruntime", "openvino")


def time_alone(folder: Path, man, engine, xb: torch.Tensor, warmup: int, repeats: int) -> float:
    """Build this variant's predictor on one engine, time it, drop it: median ms."""
    preds, skipped = deploy_predictors(folder, man, [engine])
    if engine.name not in preds:
        raise RuntimeError(f"{man.variant} on {engine.name}: {skipped.get(engine.name, 'not built')}")
    p = preds[engine.name]
    ms = median_ms(p, xb, warmup, repeats)
    del preds, p
    gc.collect()
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["lenet5", "lenet300", "mlp1024"], choices=sorted(MIXED))
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=50, help="timed calls per round at batch 1 (batch 256: a fifth, >= 10)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--baseline", default="models/baseline")
    ap.add_argument("--prepared", default="data/prepared")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()
    x_cal = calib_images(a.prepared)
    engines, missing = resolve_runtimes(list(ENGINES))
    for n, why in (missing or {}).items():
        print(f"  {n} not measured: {why}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (model, spec) in load_models(Path(a.baseline)).items():
            if name not in a.models:
                continue
            ranges = calibrate(model, x_cal, ["minmax"])["minmax"]
            formats = {tag: (f, m) for tag, (f, m, _) in packed_int_variants(name, model, spec, ranges, Path(tmp)).items()}
            for b in a.batches:
                xb = batch_of(x_cal, b)
                reps = a.repeats if b == 1 else max(10, a.repeats // 5)
                for eng in engines:
                    best = {tag: float("inf") for tag in formats}
                    for _ in range(a.rounds):  # formats interleaved round by round, each alone in memory
                        for tag, (folder, man) in formats.items():
                            best[tag] = min(best[tag], time_alone(folder, man, eng, xb, a.warmup, reps))
                    for tag, ms in best.items():
                        rows.append((name, b, eng.name, tag, ms, ms / best["W8A8"]))
    desc = (f"{cpu_name()}, {os.cpu_count()} logical cores, {a.threads} threads, torch {torch.__version__.split('+')[0]}, "
            f"load average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"\n# bench_int8_bits on {desc}\n")
    print("| model | batch | engine | weights | median ms | vs W8A8 | within 15 % |")
    print("|---|---:|---|---|---:|---:|---|")
    for name, b, eng, tag, ms, rel in rows:
        print(f"| {name} | {b} | {eng} | {tag} | {ms:.4f} | {rel:.2f}× | {'yes' if rel <= 1.15 else 'NO'} |")
    worst = max((r for r in rows if r[3] != "W8A8"), key=lambda r: r[5], default=None)
    if worst:
        print(f"\nworst sub-8-bit row: {worst[0]} b{worst[1]} {worst[2]} {worst[3]} at {worst[5]:.2f}× W8A8")


if __name__ == "__main__":
    main()
