"""qat: quantization-aware fine-tuning of the baseline (STE fake-quant; fixed calibrated ranges or LSQ)
at each bit width in qat.bits; writes variants/qat/qat-<bits>-<quantizer>/ (deployed + simulated forms),
per-epoch curves (plots/qat/curves.csv) and metrics/qat.json (validation numbers only).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from compress.checkpoint import CheckpointError
from compress.data import load_meta, load_split
from compress.evaluate import accuracy
from compress.quant.fakequant import quantize_model
from compress.quant.deploy import export_onnx, quantize_onnx_int8, simulated_float_model
from compress.quant.observers import read_ranges
from compress.quant.qat import export_quantized, prepare_qat, save_qat_packed, train_qat, weight_bits_average
from compress.quant.qat_config import parse_bits
from compress.runtimes import load_baseline, load_predictor
from compress.train import evaluate_model, seed_everything
from compress.variants import Form, Manifest, read_manifest, write_variant
from stages.common import die, load_params_or_exit, mlflow_run, stage_args, write_csv, write_json


def main() -> None:
    args = stage_args(__doc__)
    P = load_params_or_exit(args.params)
    Q = P.qat
    meta = load_meta(P.data.out)
    base = Path(P.train.out)
    try:
        baseline, spec = load_baseline(base)
    except CheckpointError as e:
        die(str(e))
    tags = [(t, *parse_bits(t)) for t in Q.bits]
    C = P.calibrate
    if Q.calibration not in C.methods:
        die(f"qat.calibration = {Q.calibration!r} is not calibrated; allowed: calibrate.methods = {C.methods}")
    missing = sorted({a for _, _, a in tags if a is not None} - set(C.act_bits))
    if missing:
        die(f"qat.bits = {Q.bits} needs {missing[0]}-bit activation ranges; add {missing[0]} to calibrate.act_bits (now {C.act_bits})")
    if not Path(C.out).exists():
        die(f"{C.out} is missing: run the calibrate stage first (dvc repro calibrate)")
    ranges_file = json.loads(Path(C.out).read_text())
    try:
        ranges = {ab: read_ranges(ranges_file, Q.calibration, ab, C.out) for ab in {a for _, _, a in tags if a is not None}}
    except ValueError as e:  # a stale ranges file: say which stage to rerun
        die(f"{e} (rerun: dvc repro calibrate)")
    x_calib, _ = load_split(P.data.out, "calib")
    train, val = load_split(P.data.out, "train"), load_split(P.data.out, "val")
    fp_val = evaluate_model(baseline, *val)[1]
    curves, summary = [], {"dataset": meta["dataset"], "dataset_substituted": meta["substituted"], "quantizer": Q.quantizer,
                           "calibration": Q.calibration, "epochs": Q.epochs, "baseline_val_acc": fp_val, "variants": {}}
    out = Path(Q.out)
    shutil.rmtree(out, ignore_errors=True)  # no stale variants from other bit widths

    with mlflow_run(P, "qat", ["data", "qat", "calibrate"], meta) as mlf:
        for tag, wb, ab in tags:
            seed_everything(P.seed)
            rng = ranges.get(ab)
            ptq_val = evaluate_model(quantize_model(baseline, wb, ab, rng), *val)[1]  # same quantizers, no fine-tuning
            q = prepare_qat(baseline, wb, ab, rng, Q.quantizer, Q.weight_granularity, Q.rounding)
            name = f"qat-{tag}-{Q.quantizer}"

            def on_eval(r: dict, name=name) -> None:
                curves.append({"variant": name, **{k: r[k] for k in ("epoch", "iteration", "train_loss", "val_loss", "val_acc")}})
                mlf.log_metrics({f"{tag}_val_acc": r["val_acc"], f"{tag}_val_loss": r["val_loss"], f"{tag}_train_loss": r["train_loss"]},
                                step=r["iteration"])

            hist = train_qat(q, train, val, Q, seed=P.seed, lsq_lr=Q.lsq_lr, on_eval=on_eval, desc=name)
            q.eval()
            qat_val = evaluate_model(q, *val)[1]
            # 1. export: integer codes + (s, z) per channel and the activation quantizers -> one bit-packed file
            qts, floats, acts = export_quantized(q)
            vdir = out / name
            vdir.mkdir(parents=True, exist_ok=True)
            packed = save_qat_packed(q, vdir / "model.cspk", {"variant": name})
            sim = Form(runtime="packed", files=[packed.name])
            what = f"W{wb}A{ab if ab else 'fp'} QAT ({Q.quantizer}, {Q.epochs} epochs from the baseline)"
            if (wb, ab) == (8, 8):  # 2. int8: the same real runtime as PTQ (ONNX Runtime static QDQ)
                with tempfile.TemporaryDirectory() as tmp:
                    fp32 = export_onnx(simulated_float_model(q, baseline), Path(tmp) / "m.onnx", x_calib[:2])
                    quantize_onnx_int8(fp32, vdir / "model.int8.onnx", x_calib, {n: (a["lo"], a["hi"]) for n, a in acts.items()})
                deploy = Form(runtime="onnxruntime-int8", files=["model.int8.onnx"])
                notes = (f"{what}; deployed on ONNX Runtime int8 (QDQ) with the QAT weight grid and layer-input ranges; ORT also "
                         "quantizes conv/linear outputs (min-max on the calib split), the simulation does not"
                         + ("; LSQ weight steps are re-derived by ORT as max|w|/127 per channel" if Q.quantizer == "lsq" else ""))
            else:  # 3. sub-8-bit: bit-packed codes, dequantized at load (no int<8 kernels on this CPU)
                deploy = sim
                notes = f"{what}; {wb}-bit weight codes bit-packed; runs dequantized on fp32 kernels (no int{wb} kernels on this CPU)"
            man = Manifest(variant=name, stage="qat", method=f"qat-{Q.quantizer}", model=spec, dataset=meta["dataset"], seed=P.seed,
                           avg_weight_bits=weight_bits_average(qts, baseline), act_bits=ab, sparsity=0.0,
                           params=sum(qt.q.numel() for qt in qts.values()) + sum(t.numel() for t in floats.values()),
                           deploy=deploy, sim=sim, notes=notes,
                           extra={"calibration": Q.calibration, "quantizer": Q.quantizer, "epochs": Q.epochs, "val_acc_qat": qat_val,
                                  "val_acc_ptq_same_ranges": ptq_val, "baseline_val_acc": fp_val})
            write_variant(vdir, man)
            # 4. the artifacts, re-loaded through their runtimes: the simulated one must reproduce the trained model
            re_sim = accuracy(load_predictor(vdir, read_manifest(vdir), sim), *val)
            if abs(re_sim - qat_val) > 1e-3:
                die(f"{name}: re-loaded packed artifact gives val acc {re_sim:.4f}, the trained QAT model {qat_val:.4f}")
            dep_val = re_sim if deploy is sim else accuracy(load_predictor(vdir, read_manifest(vdir)), *val)
            summary["variants"][name] = {"bits": tag, "val_acc_qat": qat_val, "val_acc_deployed": dep_val, "val_acc_ptq_same_ranges": ptq_val,
                                         "val_drop_pp_vs_fp32": 100 * (fp_val - qat_val), "best_val_acc": hist.best_val_acc,
                                         "iterations": hist.iterations, "seconds": hist.seconds,
                                         "bytes_packed": packed.stat().st_size, "deploy_runtime": deploy.runtime,
                                         "bytes_deployed": sum((vdir / f).stat().st_size for f in deploy.files)}
            mlf.log_metrics({f"{tag}_val_acc_qat": qat_val, f"{tag}_val_acc_ptq": ptq_val})
            print(f"qat: {name}: val acc {qat_val:.4f}, deployed ({deploy.runtime}) {dep_val:.4f}; PTQ with the same quantizers "
                  f"{ptq_val:.4f}; fp32 {fp_val:.4f}")
    write_json("metrics/qat.json", summary)
    write_csv("plots/qat/curves.csv", curves)


if __name__ == "__main__":
    main()
