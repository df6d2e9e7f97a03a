"""Benchmark: does int8 inference get faster on this CPU?  (a script, not a test)

For LeNet-5 and a 784-1024-1024-10 MLP, at batch 1 and 256, measures the median latency of
fp32 eager, fp32 torch.compile, ONNX Runtime fp32 / int8 (static QDQ) and PT2E int8
(X86InductorQuantizer + torch.compile with freezing), all on the same weights and calibration
data, and prints latency ratios against fp32 eager and fp32 compiled.  Each latency is the
median of ``--repeats`` calls after warm-up, measured in ``--rounds`` interleaved rounds; the
smallest round median is reported (other jobs on a shared machine only ever add time).

    python benchmarks/bench_quant.py [--threads N] [--repeats 50] [--out reports/bench_quant.json]

Weights: the trained baseline for LeNet-5 when models/baseline holds one, otherwise random
(latency does not depend on the values).  Calibration: the prepared calib split when present,
otherwise random inputs.  Timings on a shared machine are noisy: rerun when it is idle.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import torch

from compress.evaluate import measure_latency
from compress.models import MLP, LeNet5
from compress.quant.deploy import OrtPredictor, Pt2eInductorPredictor, export_onnx, export_pt2e_int8, quantize_onnx_int8
from compress.quant.observers import calibrate


def machine() -> str:
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                   if l.startswith("Model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    return f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}, threads {torch.get_num_threads()}"


def models(prepared: Path) -> tuple[list[tuple[str, torch.nn.Module]], torch.Tensor]:
    lenet = LeNet5()
    if Path("models/baseline/spec.json").exists() and json.loads(Path("models/baseline/spec.json").read_text())["name"] == "lenet5":
        from compress.checkpoint import load_into

        load_into(lenet, "models/baseline/model.safetensors")
    torch.manual_seed(0)
    mlp = MLP(hidden=(1024, 1024))
    if (prepared / "calib.pt").exists():
        from compress.data import load_split

        x = load_split(prepared, "calib")[0][:512]
    else:
        x = torch.randn(512, 1, 28, 28)
    return [("LeNet-5", lenet.eval()), ("MLP 784-1024-1024-10", mlp.eval())], x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the minimum of the per-round medians is reported")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--out", default=None, help="also write the table as JSON here")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    nets, x_cal = models(Path(a.prepared))
    with tempfile.TemporaryDirectory() as tmp:
        for name, m in nets:
            ranges = calibrate(m, x_cal, ["minmax"])["minmax"]
            fp32_onnx = export_onnx(m, Path(tmp) / "fp32.onnx", x_cal[:2])
            int8_onnx = quantize_onnx_int8(fp32_onnx, Path(tmp) / "int8.onnx", x_cal, ranges)
            pt2 = export_pt2e_int8(m, Path(tmp) / "int8.pt2", x_cal, ranges)
            compiled = torch.compile(copy.deepcopy(m), dynamic=False)
            runtimes = {
                "fp32 eager": lambda x, m=m: m(x),
                "fp32 torch.compile": lambda x, c=compiled: c(x),
                "ORT fp32": OrtPredictor(fp32_onnx, "fp32"),
                "ORT int8 (QDQ)": OrtPredictor(int8_onnx, "int8"),
                "PT2E int8 + inductor": Pt2eInductorPredictor(pt2),
            }
            for b in (1, 256):
                xb = x_cal[:b].clone() if len(x_cal) >= b else x_cal.repeat(b // len(x_cal) + 1, 1, 1, 1)[:b].clone()
                lat = {r: float("inf") for r in runtimes}
                with torch.no_grad():
                    # interleaved rounds; keep each runtime's least-disturbed median (the box is shared)
                    for _ in range(a.rounds):
                        for rname, fn in runtimes.items():
                            lat[rname] = min(lat[rname], measure_latency(fn, xb, a.warmup, a.repeats)["median_ms"])
                for rname, ms in lat.items():
                    rows.append({"model": name, "batch": b, "runtime": rname, "median_ms": round(ms, 4),
                                 "speedup_vs_eager": round(lat["fp32 eager"] / ms, 2),
                                 "speedup_vs_compiled": round(lat["fp32 torch.compile"] / ms, 2)})
    desc = machine()
    print(f"# bench_quant on {desc}\n")
    print("| model | batch | runtime | median ms | x vs fp32 eager | x vs fp32 compiled |")
    print("|---|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['runtime']} | {r['median_ms']:.3f} | {r['speedup_vs_eager']:.2f} | {r['speedup_vs_compiled']:.2f} |")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"machine": desc, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
