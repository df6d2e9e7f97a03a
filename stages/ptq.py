"""ptq: post-training quantization of the baseline -> variants/ptq/<variant>/.

Integer variants ``ptq-w<W>a<A>-<observer>`` (weights per-channel symmetric, activations
per-tensor with calibration/ranges.json), float variants ``ptq-<format>``.  Deploy forms: W8A8 ->
ONNX Runtime int8 (and PT2E + inductor for ptq.pt2e_methods, ``-pt2e`` suffix); other widths ->
bit-packed artifact (``packed`` runtime); floats -> weights stored in the format's dtype.
Every variant also has its simulated (fake-quant) form.  Only val accuracy is computed here:
test accuracy is the evaluate stage's job.
"""
from __future__ import annotations

import csv
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from compress.checkpoint import CheckpointError
from compress.data import load_meta, load_split, meta_summary
from compress.models import count_params
from compress.quant.config import check_ptq_against_calibrate, parse_tag
from compress.quant.deploy import export_onnx, export_pt2e_int8, quantize_onnx_int8, simulated_float_model
from compress.quant.fakequant import quantize_model_float
from compress.quant.formats import get_format
from compress.quant.observers import read_ranges
from compress.quant.ptq import (build_int_sim, float_sim_cfg, int_sim_cfg, int_specs, save_float_weights,
                                save_packed_model, write_sim)
from compress.runtimes import load_baseline, load_predictor
from compress.evaluate import accuracy
from compress.train import evaluate_model, seed_everything
from compress.variants import Form, Manifest, write_variant
from stages.common import die, load_params_or_exit, mlflow_run, stage_args, write_json

BASELINE = Path("models/baseline")


def main() -> None:
    args = stage_args(__doc__)
    P = load_params_or_exit(args.params)
    Q, C = P.ptq, P.calibrate
    try:
        check_ptq_against_calibrate(Q, C, args.params)
    except ValueError as e:
        die(str(e))
    meta = load_meta(P.data.out)
    seed_everything(P.seed)
    for f in (BASELINE / "spec.json", Path(C.out)):
        if not f.exists():
            die(f"{f} is missing: run the {'train' if f.parent == BASELINE else 'calibrate'} stage first")
    try:
        base, spec = load_baseline(BASELINE)
    except CheckpointError as e:
        die(str(e))
    ranges_file = json.loads(Path(C.out).read_text())
    x_calib, _ = load_split(P.data.out, "calib")
    xv, yv = load_split(P.data.out, "val")
    xv, yv = xv[: Q.val_size], yv[: Q.val_size]
    out = Path(Q.out)
    shutil.rmtree(out, ignore_errors=True)
    params = count_params(base)
    fp32_val = evaluate_model(base, xv, yv)[1] if Q.val_size else None
    rows: list[dict] = []
    ort_methods = Q.ort_methods if Q.ort_methods is not None else Q.methods

    def variant(name: str, method: str, wbits: float, abits, deploy: Form, sim: Form, sim_model, notes: str, extra: dict):
        folder = out / name
        write_variant(folder, Manifest(variant=name, stage="ptq", method=method, model=spec, dataset=meta["dataset"],
                                       seed=P.seed, avg_weight_bits=float(wbits), act_bits=abits, sparsity=0.0,
                                       params=count_params(base, nonzero=True), deploy=deploy, sim=sim, notes=notes,
                                       extra=extra))
        row = {"variant": name, "method": method, "wbits": wbits, "abits": abits, "runtime": deploy.runtime,
               "calibration": extra.get("calibration", ""), "size_bytes": sum((folder / f).stat().st_size for f in deploy.files)}
        if Q.val_size:
            row["val_acc_sim"] = evaluate_model(sim_model, xv, yv)[1]
            if deploy.runtime in ("onnxruntime-int8", "pt2e-inductor-int8"):  # deployed val accuracy (the gap)
                m = json.loads((folder / "manifest.json").read_text())
                from compress.variants import Manifest as M
                row["val_acc_deployed"] = accuracy(load_predictor(folder, M.from_dict(m)), xv, yv, 256)
        rows.append(row)
        print(f"  {name:28s} {deploy.runtime:20s} {row['size_bytes']:8d} B  val sim {row.get('val_acc_sim', float('nan')):.4f}"
              + (f"  deployed {row['val_acc_deployed']:.4f}" if "val_acc_deployed" in row else ""))

    with mlflow_run(P, "ptq", ["ptq", "calibrate"], meta) as mlf, tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        # 1. integer variants: every bit width x every calibration method
        for tag in Q.bits:
            wbits, abits = parse_tag(tag)
            for method in Q.methods:
                ranges = read_ranges(ranges_file, method, abits, C.out)
                ws, as_ = int_specs(wbits, abits, Q.weight_granularity, Q.group_size, Q.rounding, Q.weight_symmetric)
                qm = build_int_sim(base, wbits, abits, ranges, ws, as_)
                name = f"ptq-{tag}-{method}"
                folder = out / name
                folder.mkdir(parents=True)
                sim = write_sim(folder, base, int_sim_cfg(wbits, abits, ranges, ws, as_))
                extra = {"calibration": method, "wbits": wbits, "abits": abits, "weight_granularity": Q.weight_granularity,
                         "rounding": Q.rounding}
                what = (f"W{wbits}A{abits} PTQ, weights {Q.weight_granularity} {'symmetric' if ws.symmetric else 'asymmetric'}, "
                        f"activations per-tensor ({method} ranges)")
                if wbits == 8 and abits == 8 and method in ort_methods and ws.symmetric and Q.weight_granularity == "channel":
                    fp32 = export_onnx(simulated_float_model(qm, base), Path(tmp) / f"{name}.onnx", x_calib[:2])
                    quantize_onnx_int8(fp32, folder / "model.int8.onnx", x_calib, ranges)
                    deploy = Form("onnxruntime-int8", ["model.int8.onnx"])
                    notes = (f"{what}; deployed on ONNX Runtime int8 (QDQ) with the same weight grid and layer-input "
                             "ranges; ORT also quantizes conv/linear outputs (min-max on the calib split), the simulation does not")
                else:
                    save_packed_model(qm, folder / "model.cspk", {"variant": name})
                    deploy = Form("packed", ["model.cspk"])
                    notes = f"{what}; {wbits}-bit weights bit-packed; runs dequantized on fp32 kernels (no int{wbits} kernels on this CPU)"
                variant(name, "ptq", wbits, abits, deploy, sim, qm, notes, extra)
                if tag == "w8a8" and method in Q.pt2e_methods and ws.symmetric and Q.weight_granularity == "channel":
                    name2 = f"{name}-pt2e"
                    f2 = out / name2
                    f2.mkdir(parents=True)
                    sim2 = write_sim(f2, base, int_sim_cfg(wbits, abits, ranges, ws, as_))
                    export_pt2e_int8(simulated_float_model(qm, base), f2 / "model.int8.pt2", x_calib, ranges)
                    variant(name2, "ptq", wbits, abits, Form("pt2e-inductor-int8", ["model.int8.pt2"]), sim2, qm,
                            f"{what}; deployed with PT2E X86InductorQuantizer + torch.compile(freezing): oneDNN int8 kernels; "
                            "the artifact is a torch.export program (int8 weights + serialized graph)", extra)
        # 2. float formats
        for fmt in Q.floats:
            f = get_format(fmt)
            name = f"ptq-{fmt.replace('_', '-')}"
            folder = out / name
            folder.mkdir(parents=True)
            save_float_weights(base, fmt, folder / "model.safetensors")
            sim = write_sim(folder, base, float_sim_cfg(fmt, Q.float_activations))
            qm = quantize_model_float(base, fmt, "same" if Q.float_activations else None)
            variant(name, "ptq-float", f.bits, f.bits if Q.float_activations else None,
                    Form("lowp-float", ["model.safetensors"], {"format": fmt, "activations": Q.float_activations}), sim, qm,
                    f"{fmt} (t={f.t}, emin={f.emin}, emax={f.emax}, {f.overflow} on overflow) weights stored in torch {f.torch_dtype}; "
                    f"{'layer inputs rounded to ' + fmt if Q.float_activations else 'float32 activations'}; fp32 kernels",
                    {"format": fmt, "unit_roundoff": 2.0 ** -f.t})
        seconds = time.perf_counter() - t0
        for r in rows:
            for k in ("val_acc_sim", "val_acc_deployed"):
                if k in r:
                    mlf.log_metric(f"{k}.{r['variant']}", r[k])
        mlf.log_metrics({"variants": len(rows), "ptq_seconds": seconds})
    summary = {"variants": len(rows), "seconds": round(seconds, 1), "val_images": int(len(yv)), "val_acc_fp32": fp32_val,
               "rows": rows, **meta_summary(meta)}
    write_json("metrics/ptq.json", summary)
    Path("plots/ptq").mkdir(parents=True, exist_ok=True)
    with open("plots/ptq/val_accuracy.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["variant", "method", "calibration", "wbits", "abits", "runtime", "size_bytes",
                                           "val_acc_sim", "val_acc_deployed"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    print(f"ptq: {len(rows)} variants in {seconds:.0f}s ({meta['dataset']}); fp32 val acc {fp32_val}")


if __name__ == "__main__":
    main()
