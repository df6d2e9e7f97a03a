"""calibrate: run the calibration split (never test data) through the baseline and record the
INPUT range of every prunable layer with each observer -> calibration/ranges.json.

``ranges`` holds the ranges for the primary activation width (calibrate.act_bits[0]);
``ranges_by_bits`` holds them for every width (MSE and KL optimise the range for a width).
"""
from __future__ import annotations

import time

from compress.data import meta_summary
from compress.quant.observers import calibrate, ranges_rows
from compress.tables import write_csv
from compress.train import seed_everything
from stages.common import Stage, write_json
from stages.pipeline import RANGES


def main() -> None:
    st = Stage("calibrate", __doc__)
    P, C, meta = st.P, st.P.calibrate, st.meta
    seed_everything(P.seed)
    model, _ = st.baseline()
    x_calib, _ = st.split("calib")
    if len(x_calib) == 0:
        st.die(f"{st.args.params}: data.calib_size gives an empty calibration set; set data.calib_size >= 1")

    with st.run() as mlf:
        t0 = time.perf_counter()
        by_bits = {str(b): calibrate(model, x_calib, C.methods, C.batch_size, bits=b, observer_kwargs=C.observer_kwargs())
                   for b in C.act_bits}
        seconds = time.perf_counter() - t0
        write_json(RANGES, {"ranges": by_bits[str(C.act_bits[0])], "ranges_by_bits": by_bits, "act_bits": C.act_bits[0],
                            "methods": C.methods, "calib_images": len(x_calib), "split": "calib", **meta_summary(meta)})
        mlf.log_artifact(RANGES)
        mlf.log_metrics({"calib_images": len(x_calib), "calibrate_seconds": seconds})
    write_csv(st.plot("ranges.csv"), ranges_rows(by_bits))
    st.write_metrics({"calib_images": len(x_calib), "seconds": round(seconds, 2), "methods": C.methods, "act_bits": C.act_bits})
    print(f"calibrate: {len(C.methods)} observers x {len(C.act_bits)} widths on {len(x_calib)} calib images "
          f"({meta['dataset']}) in {seconds:.1f}s -> {RANGES}")


if __name__ == "__main__":
    main()
