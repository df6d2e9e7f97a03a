"""qat: quantization-aware fine-tuning of the baseline (STE fake-quant; fixed calibrated ranges or LSQ)
at each bit width in qat.bits; writes variants/qat/qat-<bits>-<quantizer>/ (deployed + simulated forms),
per-epoch curves (plots/qat/curves.csv) and metrics/qat.json (validation numbers only).
"""
from __future__ import annotations

from compress.evaluate import accuracy
from compress.quant.config import check_qat_against_calibrate, parse_bits
from compress.quant.export import write_qat_variant
from compress.quant.fakequant import quantize_model
from compress.quant.observers import read_ranges
from compress.quant.qat import prepare_qat, train_qat
from compress.runtimes import load_predictor
from compress.tables import write_csv
from compress.train import evaluate_model, seed_everything
from compress.variants import artifact_bytes, read_manifest
from stages.common import Stage
from stages.pipeline import RANGES


def main() -> None:
    st = Stage("qat", __doc__)
    P, Q = st.P, st.P.qat
    tags = [(t, *parse_bits(t)) for t in Q.bits]
    st.load(check_qat_against_calibrate, Q, P.calibrate)
    meta = st.meta
    baseline, spec = st.baseline()
    ranges_file = st.ranges()
    ranges = {ab: st.load(read_ranges, ranges_file, Q.calibration, ab, RANGES) for _, _, ab in tags if ab is not None}
    x_calib, _ = st.split("calib")
    train, val = st.split("train", "val")
    fp_val = evaluate_model(baseline, *val)[1]
    curves, summary = [], {"quantizer": Q.quantizer, "calibration": Q.calibration, "epochs": Q.epochs,
                           "baseline_val_acc": fp_val, "variants": {}}
    with st.run() as mlf:
        for tag, wb, ab in tags:
            seed_everything(P.seed)
            rng = ranges.get(ab)
            ptq_val = evaluate_model(quantize_model(baseline, wb, ab, rng), *val)[1]  # same quantizers, no fine-tuning
            q = prepare_qat(baseline, wb, ab, rng, Q.quantizer, Q.weight_granularity, Q.rounding)
            name = f"qat-{tag}-{Q.quantizer}"

            def on_eval(r: dict, name=name, tag=tag) -> None:
                curves.append({"variant": name, **{k: r[k] for k in ("epoch", "iteration", "train_loss", "val_loss", "val_acc")}})
                mlf.log_metrics({f"{tag}_val_acc": r["val_acc"], f"{tag}_val_loss": r["val_loss"],
                                 f"{tag}_train_loss": r["train_loss"]}, step=r["iteration"])

            hist = train_qat(q, train, val, Q, seed=P.seed, lsq_lr=Q.lsq_lr, on_eval=on_eval, desc=name)
            qat_val = evaluate_model(q.eval(), *val)[1]
            vdir = st.variants / name
            man, sim = write_qat_variant(vdir, q, baseline, variant=name, spec=spec, dataset=meta["dataset"], seed=P.seed,
                                         wbits=wb, abits=ab, quantizer=Q.quantizer, epochs=Q.epochs, x_calib=x_calib,
                                         extra={"calibration": Q.calibration, "quantizer": Q.quantizer, "epochs": Q.epochs,
                                                "val_acc_qat": qat_val, "val_acc_ptq_same_ranges": ptq_val,
                                                "baseline_val_acc": fp_val})
            # the artifacts, re-loaded through their runtimes: the simulated one must reproduce the trained model
            re_sim = accuracy(load_predictor(vdir, read_manifest(vdir), sim), *val)
            if abs(re_sim - qat_val) > 1e-3:
                st.die(f"{name}: re-loaded packed artifact gives val acc {re_sim:.4f}, the trained QAT model {qat_val:.4f}")
            dep_val = re_sim if man.deploy == sim else accuracy(load_predictor(vdir, read_manifest(vdir)), *val)
            summary["variants"][name] = {"bits": tag, "val_acc_qat": qat_val, "val_acc_deployed": dep_val,
                                         "val_acc_ptq_same_ranges": ptq_val, "val_drop_pp_vs_fp32": 100 * (fp_val - qat_val),
                                         "best_val_acc": hist.best_val_acc, "iterations": hist.iterations,
                                         "seconds": hist.seconds, "bytes_packed": artifact_bytes(vdir, sim),
                                         "deploy_runtime": man.deploy.runtime, "bytes_deployed": artifact_bytes(vdir, man.deploy)}
            mlf.log_metrics({f"{tag}_val_acc_qat": qat_val, f"{tag}_val_acc_ptq": ptq_val})
            print(f"qat: {name}: val acc {qat_val:.4f}, deployed ({man.deploy.runtime}) {dep_val:.4f}; PTQ with the same "
                  f"quantizers {ptq_val:.4f}; fp32 {fp_val:.4f}")
    st.write_metrics(summary)
    write_csv(st.plot("curves.csv"), curves)


if __name__ == "__main__":
    main()
