"""ptq: post-training quantization of the baseline -> variants/ptq/<variant>/.

Integer variants ``ptq-w<W>a<A>-<observer>`` (weights per-channel symmetric, activations per-tensor with
calibration/ranges.json), float variants ``ptq-<format>``; every variant also has its simulated (fake-quant)
form. The deployed form is chosen by compress.quant.export.deploy_form. Only val accuracy is computed here:
test accuracy is the evaluate stage's job.
"""
from __future__ import annotations

import time

from compress.evaluate import accuracy
from compress.quant.config import check_ptq_against_calibrate
from compress.quant.export import ptq_variants
from compress.runtimes import load_predictor
from compress.tables import write_csv
from compress.train import evaluate_model, seed_everything
from compress.variants import artifact_bytes, read_manifest
from stages.common import Stage
from stages.pipeline import RANGES

INT8_RUNTIMES = ("onnxruntime-int8", "pt2e-inductor-int8")  # deployed val accuracy measured here too (the gap)


def deployed(folder):
    """The int8 predictor: a PT2E program on evaluate's AOTInductor packages (compiled here once, cached
    for evaluate; torch.compile would be a second cold compile of the same kernels), else its runtime."""
    from compress.deploy.engines import get_engine
    from compress.deploy.graphs import deploy_predictors

    man = read_manifest(folder)
    if man.deploy.runtime == "pt2e-inductor-int8" and get_engine("pt2e-aoti").check() is None:
        preds, skipped = deploy_predictors(folder, man, [get_engine("pt2e-aoti")])
        if "pt2e-aoti" in preds:
            return preds["pt2e-aoti"]
        print(f"  {man.variant}: pt2e-aoti skipped ({skipped.get('pt2e-aoti')}); val accuracy through torch.compile")
    return load_predictor(folder, man)


def main() -> None:
    st = Stage("ptq", __doc__)
    P, Q = st.P, st.P.ptq
    st.load(check_ptq_against_calibrate, Q, P.calibrate, st.args.params)
    meta = st.meta
    seed_everything(P.seed)
    base, spec = st.baseline()
    ranges_file = st.ranges()
    x_calib, _ = st.split("calib")
    xv, yv = (t[: Q.val_size] for t in st.split("val"))
    fp32_val = evaluate_model(base, xv, yv)[1] if Q.val_size else None

    with st.run() as mlf:
        t0 = time.perf_counter()
        done = st.load(ptq_variants, base, spec, ranges_file, Q, x_calib, st.variants, dataset=meta["dataset"],
                       seed=P.seed, ranges_source=RANGES)
        rows = []
        for v in done:
            row = {"variant": v.name, "method": "ptq" if v.deploy.runtime != "lowp-float" else "ptq-float", **v.row,
                   "runtime": v.deploy.runtime, "size_bytes": artifact_bytes(v.folder, v.deploy)}
            if Q.val_size:
                row["val_acc_sim"] = evaluate_model(v.sim_model, xv, yv)[1]
                if v.deploy.runtime in INT8_RUNTIMES:
                    row["val_acc_deployed"] = accuracy(deployed(v.folder), xv, yv, 256)
                    mlf.log_metric(f"val_acc_deployed.{v.name}", row["val_acc_deployed"])
                mlf.log_metric(f"val_acc_sim.{v.name}", row["val_acc_sim"])
            rows.append(row)
            print(f"  {v.name:28s} {v.deploy.runtime:20s} {row['size_bytes']:8d} B  val sim {row.get('val_acc_sim', float('nan')):.4f}"
                  + (f"  deployed {row['val_acc_deployed']:.4f}" if "val_acc_deployed" in row else ""))
        seconds = time.perf_counter() - t0
        mlf.log_metrics({"variants": len(rows), "ptq_seconds": seconds})
    st.write_metrics({"variants": len(rows), "seconds": round(seconds, 1), "val_images": len(yv), "val_acc_fp32": fp32_val,
                      "rows": rows})
    write_csv(st.plot("val_accuracy.csv"), [{k: r.get(k, "") for k in ("variant", "method", "calibration", "wbits", "abits",
                                                                        "runtime", "size_bytes", "val_acc_sim", "val_acc_deployed")}
                                            for r in rows])
    print(f"ptq: {len(rows)} variants in {seconds:.0f}s ({meta['dataset']}); fp32 val acc {fp32_val}")


if __name__ == "__main__":
    main()
