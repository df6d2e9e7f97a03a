"""Benchmark: every number format on every runtime, against fp32 eager AND the best fp32 runtime.

One interleaved run (a script, not a test).  For LeNet-5 (the trained baseline), LeNet-300-100 and
the 784-1024-1024-10 MLP (seed-0 weights: latency does not depend on the values), at batch 1
and 256, each compressed form is written as the suite writes its variants (compress.quant.ptq,
compress.prune.sparse_io, compress.structured) and loaded through compress.deploy, the path the
evaluate stage measures:

    fp32            PyTorch eager | ONNX Runtime | OpenVINO  (+ torch.compile with --compile)
    W8A8            int8 QDQ built from the stored codes: ONNX Runtime | OpenVINO
                    stored quantize_static QDQ file: ONNX Runtime | OpenVINO
                    PT2E int8: torch.compile (freezing) | AOTInductor package (skipped when it computes other logits)
    W4A8, mixed     int8 QDQ built from the bit-packed codes: ONNX Runtime | OpenVINO; eager (today's path)
    90 % sparse     eager | ONNX Runtime | OpenVINO | torch.sparse CSR Linear layers
    Monarch (MLP)   eager | ONNX Runtime | OpenVINO fp32; ORT dynamic int8 (MatMulInteger) for the int8 question

Each cell: median of ``--repeats`` calls after ``--warmup``, in ``--rounds`` interleaved rounds
over all runtimes of a model and batch; the smallest round median is kept (other jobs on a
shared machine only add time).  Ratios: ``x eager`` = fp32 eager / cell, ``x best fp32`` =
fastest fp32 runtime of the dense model / cell.  ``int8 ops``: compute kernels the engine ran in
int8 / all (ONNX Runtime's optimized graph, OpenVINO's runtime model, the PT2E program).

    python -m benchmarks.bench_deploy [--threads 2] [--models lenet5 lenet300 mlp1024] [--pt2e both|aoti|compile|none]
                                      [--compile] [--rounds 3] [--repeats 50] [--profile lenet5] [--json reports/bench_deploy.json]

``--profile``: for those models, the per-op time of the fp32 and W8A8 ONNX runs from ONNX Runtime's
profiler and OpenVINO's performance counters, so a table row that is not faster can be explained.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from compress.checkpoint import save_state_dict
from compress.deploy.engines import resolve_runtimes
from compress.deploy.graphs import build_graphs, deploy_predictors
from compress.evaluate import measure_latency
from compress.deploy.engines import DeployGraph, get_engine
from compress.models import MLP, LeNet5, prunable_layers
from compress.quant.observers import calibrate
from compress.quant.ptq import build_int_sim, int_specs, save_packed_model
from compress.variants import Form, Manifest, model_spec, write_variant

MIXED = {"lenet5": {"conv1": 8, "conv2": 4, "fc1": 2, "fc2": 3, "fc3": 6},
         "lenet300": {"net.1": 3, "net.3": 4, "net.5": 8}, "mlp1024": {"net.1": 4, "net.3": 2, "net.5": 8}}


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def load_models(baseline: Path) -> dict[str, tuple[nn.Module, dict]]:
    from compress.runtimes import load_baseline

    out = {}
    if (baseline / "spec.json").exists() and json.loads((baseline / "spec.json").read_text())["name"] == "lenet5":
        m, spec = load_baseline(baseline)
        out["lenet5"] = (m, spec)
    else:
        torch.manual_seed(0)
        out["lenet5"] = (LeNet5().eval(), model_spec("lenet5", {}, [1, 28, 28], 10))
    torch.manual_seed(0)
    out["lenet300"] = (MLP(hidden=(300, 100)).eval(), model_spec("lenet300", {}, [1, 28, 28], 10))
    torch.manual_seed(0)
    out["mlp1024"] = (MLP(hidden=(1024, 1024)).eval(), model_spec("mlp", {"hidden": [1024, 1024]}, [1, 28, 28], 10))
    return out


def sparsify(model: nn.Module, sparsity: float) -> nn.Module:
    """Global magnitude pruning of every conv / linear weight (the prune stage's mag-global)."""
    m = copy.deepcopy(model)
    ws = [l.weight for l in prunable_layers(m).values()]
    thr = torch.cat([w.detach().abs().flatten() for w in ws]).kthvalue(int(sparsity * sum(w.numel() for w in ws))).values
    with torch.no_grad():
        for w in ws:
            w[w.abs() <= thr] = 0
    return m


def variant(folder: Path, name: str, spec: dict, deploy: Form, **kw) -> tuple[Path, Manifest]:
    d = dict(variant=name, stage="bench", method="bench", model=spec, dataset="bench", seed=0, avg_weight_bits=32.0,
             act_bits=None, sparsity=0.0, params=0, deploy=deploy)
    man = Manifest(**{**d, **kw})
    write_variant(folder, man)
    return folder, man


def packed_int_variants(name: str, model: nn.Module, spec: dict, ranges: dict, tmp: Path) -> dict[str, tuple]:
    """{tag: (folder, manifest, simulated model)}: the packed W8A8, W4A8 and mixed-bit variants of ``model``
    (activation ``ranges`` from :func:`compress.quant.observers.calibrate`, 8-bit activations), written as
    the ptq stage writes them."""
    out = {}
    for tag, wbits in (("W8A8", 8), ("W4A8", 4), ("mixed", MIXED[name])):
        ws, as_ = int_specs(8, 8)
        qm = build_int_sim(model, wbits, 8, ranges, ws, as_)
        d = tmp / name / tag
        d.mkdir(parents=True, exist_ok=True)
        save_packed_model(qm, d / "model.cspk")
        out[tag] = (*variant(d, f"{name}-{tag}", spec, Form("packed", ["model.cspk"]), act_bits=8), qm)
    return out


def calib_images(prepared: str | Path, n: int = 512) -> torch.Tensor:
    """The first ``n`` calibration images of the prepared data (random images where there is none)."""
    if (Path(prepared) / "meta.json").exists():
        from compress.data import load_split

        return load_split(prepared, "calib")[0][:n]
    return torch.randn(n, 1, 28, 28)


def batch_of(x: torch.Tensor, b: int) -> torch.Tensor:
    """A contiguous batch of ``b`` images from ``x`` (repeated when ``x`` is shorter)."""
    xb = x[:b] if len(x) >= b else x.repeat(b // len(x) + 1, 1, 1, 1)[:b]
    return xb.contiguous().clone()


def predictors(folder: Path, man: Manifest, names: list[str]) -> dict:
    engines, _ = resolve_runtimes(names)
    preds, skipped = deploy_predictors(folder, man, engines)
    for n, why in skipped.items():
        print(f"  [{man.variant}] {n} skipped: {why}")
    return preds


def build_cells(name: str, model: nn.Module, spec: dict, x_cal: torch.Tensor, tmp: Path, a) -> list[dict]:
    """[{label, format, fp32, fn, ops}] for one model."""
    cells = []

    def add(label: str, fmt: str, fn, fp32: bool = False, ops=None):
        cells.append({"label": label, "format": fmt, "fn": fn, "fp32": fp32, "ops": ops,
                      "profile": getattr(fn, "profile", None)})

    def add_preds(fmt: str, preds: dict, names: dict[str, str], fp32: bool = False):
        for eng, label in names.items():
            if eng in preds:
                add(label, fmt, preds[eng], fp32, preds[eng].low_precision_ops)

    t0 = time.perf_counter()
    # 1. fp32
    d = tmp / name / "fp32"
    save_state_dict(model, d / "model.safetensors")
    f, man = variant(d, f"{name}-fp32", spec, Form("torch-eager", ["model.safetensors"]))
    add_preds("fp32", predictors(f, man, ["torch-eager", "onnxruntime", "openvino"]),
              {"torch-eager": "fp32 eager", "onnxruntime": "ORT fp32", "openvino": "OpenVINO fp32"}, fp32=True)
    if a.compile:
        compiled = torch.compile(copy.deepcopy(model), dynamic=False)
        add("fp32 torch.compile", "fp32", lambda x, c=compiled: c(x), fp32=True)
    # 2. integer grids: W8A8, W4A8, mixed -> int8 QDQ built from the bit-packed codes
    ranges = calibrate(model, x_cal, ["minmax"])["minmax"]
    for tag, (d, man, qm) in packed_int_variants(name, model, spec, ranges, tmp).items():
        engines = ["onnxruntime", "openvino"] + (["torch-eager"] if tag != "W8A8" else [])
        fmt = {"W8A8": "W8A8 codes", "W4A8": "W4A8 codes", "mixed": "mixed-bit codes"}[tag]
        add_preds(fmt, predictors(d, man, engines), {"onnxruntime": f"ORT int8 ({fmt} -> QDQ)",
                                                     "openvino": f"OpenVINO int8 ({fmt} -> QDQ)",
                                                     "torch-eager": f"eager ({fmt} decoded, fake-quant)"})
        if tag == "W8A8":
            from compress.quant.deploy import export_onnx, export_pt2e_int8, quantize_onnx_int8, simulated_float_model

            sim_f = simulated_float_model(qm, model)
            fp = export_onnx(sim_f, d / "fp32.onnx", x_cal[:2])
            quantize_onnx_int8(fp, d / "model.int8.onnx", x_cal, ranges)
            f, man = variant(d, f"{name}-ort-qs", spec, Form("onnxruntime-int8", ["model.int8.onnx"]), act_bits=8)
            add_preds("W8A8 quantize_static", predictors(f, man, ["onnxruntime", "openvino"]),
                      {"onnxruntime": "ORT int8 (quantize_static file)", "openvino": "OpenVINO int8 (quantize_static file)"})
            if a.pt2e != "none":
                export_pt2e_int8(sim_f, d / "model.int8.pt2", x_cal, ranges)
                f, man = variant(d, f"{name}-pt2e", spec, Form("pt2e-inductor-int8", ["model.int8.pt2"]), act_bits=8)
                names = {"both": ["pt2e", "pt2e-aoti"], "compile": ["pt2e"], "aoti": ["pt2e-aoti"]}[a.pt2e]
                t = time.perf_counter()
                preds = predictors(f, man, names)
                for p in preds.values():  # compile every static shape now, not inside the timing
                    for b in a.batches:
                        p(x_cal[:1].repeat(b, 1, 1, 1))
                print(f"  [{name}] PT2E {'+'.join(names)}: {time.perf_counter() - t:.1f} s to compile (AOTI: or cache hit)")
                add_preds("W8A8 PT2E", preds, {"pt2e": "PT2E int8 torch.compile", "pt2e-aoti": "PT2E int8 AOTInductor"})
    # 3. 90 % unstructured sparsity (global magnitude)
    from compress.prune.sparse_io import save_sparse

    sm = sparsify(model, 0.9)
    d = tmp / name / "sparse90"
    save_sparse(sm.state_dict(), d / "model.safetensors", [f"{n}.weight" for n in prunable_layers(sm)])
    f, man = variant(d, f"{name}-sparse90", spec, Form("sparse-eager", ["model.safetensors"]), sparsity=0.9)
    add_preds("90% sparse", predictors(f, man, ["torch-eager", "onnxruntime", "openvino", "torch-sparse"]),
              {"torch-eager": "sparse eager (dense)", "onnxruntime": "sparse ORT fp32 (dense)",
               "openvino": "sparse OpenVINO fp32 (dense)", "torch-sparse": "sparse CSR Linear (torch.sparse)"})
    # 4. Monarch (MLP only): fp32 factors on every runtime; does a dynamic int8 matmul help?
    if name == "mlp1024":
        from compress.structured.export import write_structured_variant
        from compress.structured.monarch import monarchize, plan

        shapes = plan(model, "hidden")
        mon = monarchize(model, shapes)
        d = tmp / name / "monarch"
        man = write_structured_variant(d, variant="monarch", kind="monarch", model=mon, base_spec=spec, shapes=shapes, bits=None, dataset="b",
                                    seed=0, notes="")
        preds = predictors(d, man, ["torch-eager", "onnxruntime", "openvino"])
        add_preds("Monarch fp32", preds, {"torch-eager": "Monarch eager", "onnxruntime": "Monarch ORT fp32",
                                          "openvino": "Monarch OpenVINO fp32"})
        try:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            g = build_graphs(d, man)[0].payload
            src, dst = d / "mon.onnx", d / "mon.dyn.onnx"
            src.write_bytes(g.SerializeToString())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
            import onnx

            p = get_engine("onnxruntime").build(DeployGraph("onnx", onnx.load(str(dst)), "Monarch dynamic int8"))
            add("Monarch ORT dynamic int8 (MatMulInteger)", "Monarch int8", p, ops=p.low_precision_ops)
        except Exception as e:  # the measurement is optional: say why it is missing
            print(f"  [{name}] Monarch dynamic int8 not measured: {type(e).__name__}: {e}")
    print(f"  [{name}] {len(cells)} runtimes built in {time.perf_counter() - t0:.1f} s")
    return cells


def median_ms(fn, x, warmup: int, repeats: int) -> float:
    with torch.inference_mode():
        return measure_latency(fn, x, warmup, repeats)["median_ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["lenet5", "lenet300", "mlp1024"], choices=["lenet5", "lenet300", "mlp1024"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=50, help="calls per cell per round at batch 1 (batch 256: a fifth, >= 10)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--pt2e", default="both", choices=["both", "aoti", "compile", "none"])
    ap.add_argument("--compile", action="store_true", help="also fp32 torch.compile (compile time: tens of seconds per shape)")
    ap.add_argument("--baseline", default="models/baseline")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--profile", nargs="*", default=["lenet5"], help="models whose fp32 / W8A8 ONNX runs get an op profile")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()
    x_cal = calib_images(a.prepared)
    rows, profiles = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, spec) in load_models(Path(a.baseline)).items():
            if name not in a.models:
                continue
            cells = build_cells(name, model, spec, x_cal, Path(tmp), a)
            for b in a.batches:
                xb = batch_of(x_cal, b)
                reps = a.repeats if b == 1 else max(10, a.repeats // 5)
                best = {c["label"]: float("inf") for c in cells}
                for _ in range(a.rounds):  # interleaved: every runtime once per round
                    for c in cells:
                        best[c["label"]] = min(best[c["label"]], median_ms(c["fn"], xb, a.warmup, reps))
                eager = best["fp32 eager"]
                best_fp32 = min(best[c["label"]] for c in cells if c["fp32"])
                best_fp32_name = min((c for c in cells if c["fp32"]), key=lambda c: best[c["label"]])["label"]
                if name in a.profile:
                    profiles.append(f"\n## {name}, batch {b}: per-op time from each engine's profiler (ms per call, share)")
                    for c in cells:
                        if c["profile"] is not None and c["format"] in ("fp32", "W8A8 codes"):
                            top = c["profile"](xb, 10 if b == 1 else 3)[:6]
                            profiles.append(f"- {c['label']}: " + ", ".join(
                                f"{r['op']}[{r['kernel']}] {r['ms_per_call']:.4f} ({100 * r['share']:.0f}%)" for r in top))
                for c in cells:
                    ops = ""
                    if c["ops"] is not None:
                        try:
                            o = c["ops"]()
                            i8, f32 = sum(o.get("int8", {}).values()), sum(o.get("fp32", {}).values())
                            ops = f"{i8}/{i8 + f32}" if i8 + f32 else ""
                        except Exception as e:
                            ops = f"? ({type(e).__name__})"
                    ms = best[c["label"]]
                    rows.append({"model": name, "batch": b, "runtime": c["label"], "format": c["format"], "median_ms": ms,
                                 "x_vs_fp32_eager": eager / ms, "x_vs_best_fp32": best_fp32 / ms, "best_fp32": best_fp32_name,
                                 "int8_ops": ops})
    desc = (f"{cpu_name()}, {os.cpu_count()} logical cores, {a.threads} threads, torch {torch.__version__.split('+')[0]}, "
            f"load average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"\n# bench_deploy on {desc}\n")
    print("| model | batch | runtime | format | median ms | x fp32 eager | x best fp32 | int8 ops |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['runtime']} | {r['format']} | {r['median_ms']:.4f} | "
              f"{r['x_vs_fp32_eager']:.2f} | {r['x_vs_best_fp32']:.2f} | {r['int8_ops']} |")
    print("\n".join(profiles))
    print("\nbest fp32 runtime per model/batch: " + "; ".join(sorted({f"{r['model']} b{r['batch']}: {r['best_fp32']}" for r in rows})))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"machine": desc, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
