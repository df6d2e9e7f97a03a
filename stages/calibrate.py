"""calibrate: run the calibration split (never test data) through the baseline and record the
INPUT range of every prunable layer with each observer -> calibration/ranges.json.

``ranges`` holds the ranges for the primary activation width (calibrate.act_bits[0]);
``ranges_by_bits`` holds them for every width (MSE and KL optimise the range for a width).
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

from compress.checkpoint import CheckpointError
from compress.data import load_meta, load_split, meta_summary
from compress.quant.observers import calibrate
from compress.runtimes import load_baseline
from compress.train import seed_everything
from stages.common import die, load_params_or_exit, mlflow_run, stage_args, write_json

BASELINE = Path("models/baseline")


def main() -> None:
    args = stage_args(__doc__)
    P = load_params_or_exit(args.params)
    C = P.calibrate
    meta = load_meta(P.data.out)
    seed_everything(P.seed)
    try:
        model, _ = load_baseline(BASELINE)
    except CheckpointError as e:
        die(str(e))
    x_calib, _ = load_split(P.data.out, "calib")
    if len(x_calib) == 0:
        die(f"{args.params}: data.calib_size gives an empty calibration set; set data.calib_size >= 1")

    with mlflow_run(P, "calibrate", ["calibrate"], meta) as mlf:
        t0 = time.perf_counter()
        by_bits = {str(b): calibrate(model, x_calib, C.methods, C.batch_size, bits=b, observer_kwargs=C.observer_kwargs())
                   for b in C.act_bits}
        seconds = time.perf_counter() - t0
        primary = by_bits[str(C.act_bits[0])]
        out = {"ranges": primary, "ranges_by_bits": by_bits, "act_bits": C.act_bits[0], "methods": C.methods,
               "calib_images": len(x_calib), "split": "calib", **meta_summary(meta)}
        write_json(C.out, out)
        mlf.log_artifact(C.out)
        mlf.log_metrics({"calib_images": len(x_calib), "calibrate_seconds": seconds})
    Path("plots/calibrate").mkdir(parents=True, exist_ok=True)
    with open("plots/calibrate/ranges.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["act_bits", "method", "layer", "lo", "hi", "width"])
        for b, table in by_bits.items():
            for m, layers in table.items():
                for layer, (lo, hi) in layers.items():
                    w.writerow([b, m, layer, f"{lo:.6g}", f"{hi:.6g}", f"{hi - lo:.6g}"])
    write_json("metrics/calibrate.json", {"calib_images": len(x_calib), "seconds": round(seconds, 2), "methods": C.methods,
                                          "act_bits": C.act_bits, **meta_summary(meta)})
    print(f"calibrate: {len(C.methods)} observers x {len(C.act_bits)} widths on {len(x_calib)} calib images "
          f"({meta['dataset']}) in {seconds:.1f}s -> {C.out}")


if __name__ == "__main__":
    main()
