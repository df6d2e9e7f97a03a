"""qat: quantization-aware fine-tuning of the baseline (STE fake-quant; fixed calibrated ranges or LSQ)
at each bit width in qat.bits; writes variants/qat/qat-<bits>-<quantizer>/ (deployed + simulated forms),
per-epoch curves (plots/qat/curves.csv) and metrics/qat.json (validation numbers only).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from compress.checkpoint import load_into
from compress.data import load_meta, load_split
from compress.evaluate import accuracy
from compress.models import prunable_layers
from compress.quant.fakequant import quantize_model
from compress.quant.packing import save_packed
from compress.quant.qat import export_quantized, prepare_qat, train_qat, weight_bits_average
from compress.quant.qat_config import parse_bits
from compress.runtimes import load_predictor, model_from_spec
from compress.train import evaluate_model, seed_everything
from compress.variants import Form, Manifest, read_manifest, write_variant
from stages.common import die, load_params_or_exit, mlflow_run, stage_args, write_json


def load_ranges(path: str, method: str, abits: int, layers: list[str]) -> dict[str, tuple[float, float]]:
    """The calibrated input range of every layer for ``method`` (at ``abits`` when the file keeps several)."""
    p = Path(path)
    if not p.exists():
        die(f"qat.ranges_file = {path!r} not found: run the calibrate stage first (dvc repro calibrate)")
    data = json.loads(p.read_text())
    found: list[tuple[tuple, dict]] = []

    def walk(node, keys: tuple) -> None:  # find {layer: [lo, hi]} maps under a key path that names the method
        if not isinstance(node, dict):
            return
        if set(layers) <= set(node) and all(isinstance(node[n], (list, tuple)) and len(node[n]) == 2 for n in layers):
            if method in keys:
                found.append((keys, node))
            return
        for k, v in node.items():
            walk(v, keys + (str(k),))

    walk(data, ())
    if not found:
        die(f"qat.calibration = {method!r}: no ranges for it in {path} (re-run calibrate with that method in calibrate.methods)")
    # several activation widths calibrated (MSE/KL depend on the width): prefer abits, else the first
    best = next((n for k, n in found if str(abits) in k or f"a{abits}" in k), found[0][1])
    return {n: (float(best[n][0]), float(best[n][1])) for n in layers}


def main() -> None:
    args = stage_args(__doc__)
    P = load_params_or_exit(args.params)
    Q = P.qat
    if Q.quantizer == "lsq" and Q.schedule == "onecycle":
        die("qat.schedule = 'onecycle' cannot be combined with qat.quantizer = 'lsq' (OneCycleLR would override qat.lsq_lr); use cosine or constant")
    meta = load_meta(P.data.out)
    base = Path(P.train.out)
    spec = json.loads((base / "spec.json").read_text())
    baseline = load_into(model_from_spec(spec), base / "model.safetensors").eval()
    layers = list(prunable_layers(baseline))
    tags = [(t, *parse_bits(t)) for t in Q.bits]
    ranges = {ab: load_ranges(Q.ranges_file, Q.calibration, ab, layers) for ab in {a for _, _, a in tags if a is not None}}
    train, val = load_split(P.data.out, "train"), load_split(P.data.out, "val")
    fp_val = evaluate_model(baseline, *val)[1]
    curves, summary = [], {"dataset": meta["dataset"], "dataset_substituted": meta["substituted"], "quantizer": Q.quantizer,
                           "calibration": Q.calibration, "epochs": Q.epochs, "baseline_val_acc": fp_val, "variants": {}}
    out = Path(Q.out)

    with mlflow_run(P, "qat", ["data", "qat"], meta) as mlf:
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
            # 1. export: integer codes + (s, z) per channel, activation quantizers -> one packed file
            qts, floats, acts = export_quantized(q)
            vdir = out / name
            vdir.mkdir(parents=True, exist_ok=True)
            packed = save_packed(vdir / "weights.cspk", qts, floats, meta={"acts": acts, "variant": name})
            sim = Form(runtime="qat-fakequant", files=[packed.name])
            deploy, notes = sim, (f"w{wb} codes bit-packed ({wb} bits/weight + per-channel scales); no integer kernel below 8 bits on "
                                  "this CPU, so the deployed form dequantizes at load and simulates the activation quantizer")
            man = Manifest(variant=name, stage="qat", method=f"qat-{Q.quantizer}", model=spec, dataset=meta["dataset"], seed=P.seed,
                           avg_weight_bits=weight_bits_average(qts, baseline), act_bits=ab, sparsity=0.0,
                           params=sum(qt.q.numel() for qt in qts.values()) + sum(t.numel() for t in floats.values()),
                           deploy=deploy, sim=sim, notes=notes,
                           extra={"calibration": Q.calibration, "epochs": Q.epochs, "val_acc_qat": qat_val, "val_acc_ptq_same_ranges": ptq_val,
                                  "baseline_val_acc": fp_val, "act_ranges": acts})
            write_variant(vdir, man)
            # 2. the artifact, re-loaded through its runtime, must reproduce the trained QAT model
            re_val = accuracy(load_predictor(vdir, read_manifest(vdir), sim), *val)
            if abs(re_val - qat_val) > 1e-3:
                die(f"{name}: re-loaded simulated artifact gives val acc {re_val:.4f}, the trained model {qat_val:.4f}")
            summary["variants"][name] = {"bits": tag, "val_acc_qat": qat_val, "val_acc_ptq_same_ranges": ptq_val,
                                         "val_drop_pp_vs_fp32": 100 * (fp_val - qat_val), "best_val_acc": hist.best_val_acc,
                                         "iterations": hist.iterations, "seconds": hist.seconds,
                                         "bytes_packed": packed.stat().st_size, "deploy_runtime": deploy.runtime}
            mlf.log_metrics({f"{tag}_val_acc_qat": qat_val, f"{tag}_val_acc_ptq": ptq_val})
            print(f"qat: {name}: val acc {qat_val:.4f} (PTQ with the same quantizers {ptq_val:.4f}, fp32 {fp_val:.4f})")
    write_json("metrics/qat.json", summary)
    Path("plots/qat").mkdir(parents=True, exist_ok=True)
    with open("plots/qat/curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(curves[0]))
        w.writeheader()
        w.writerows(curves)


if __name__ == "__main__":
    main()
