"""evaluate: discover every variant and measure each the same way on every enabled deploy engine
-> reports/variants.csv.

accuracy (re-loaded artifact, test set; per engine in metrics/summary.json), accuracy_sim (fake-quant
form, if any), size_bytes (deployed files on disk), latency_ms_b1/b256 (the fastest engine at each
batch size: median of adaptive repeats after warm-up) and speed-ups against the fp32 reference of
the same architecture in PyTorch eager and on its best fp32 engine.  metrics/summary.json holds only
deterministic values, so `dvc repro -f` twice gives the same file; latencies, the fastest engines and
speed-ups (which vary run to run) go to metrics/latency.json and the CSV.  A variant whose artifact
is missing or corrupt is a row with an `error` (one line: the file and the stage that rebuilds it);
the others are measured and written, then the stage exits 1 so that DVC does not cache the table.
"""
from __future__ import annotations

import sys

import pandas as pd
from tqdm.auto import tqdm

from compress.evaluate import COLUMNS, evaluate_all, records, set_threads
from compress.tables import write_csv
from compress.variants import scan
from stages.common import Stage, timings, write_json
from stages.pipeline import VARIANTS_CSV, VARIANTS_ROOT, metrics

LOGGED = ["accuracy", "accuracy_sim", "size_bytes", "latency_ms_b1", "latency_ms_b256", "params", "avg_weight_bits", "sparsity",
          "speedup_vs_eager_b1", "speedup_vs_eager_b256", "speedup_vs_best_fp32_b1", "speedup_vs_best_fp32_b256"]
def main() -> None:
    st = Stage("evaluate", __doc__)
    P, meta = st.P, st.meta
    found, broken = st.load(scan, VARIANTS_ROOT)
    if not found and not broken:
        st.die(f"no variants under {VARIANTS_ROOT}/: run the stages that produce them (dvc repro)")
    threads = set_threads(P.evaluate.threads)
    test_x, test_y = st.split("test")
    details: dict = {}
    with st.run():
        def on_row(row: dict) -> None:
            if row["error"]:
                tqdm.write(f"  {row['variant']:<32} FAILED: {row['error']}")
            else:
                tqdm.write(f"  {row['variant']:<32} acc {row['accuracy']:.4f} size {row['size_bytes']:>9} B "
                           f"b1 {row['latency_ms_b1']:.3f} ms [{row['fastest_b1']}] b256 {row['latency_ms_b256']:.3f} ms [{row['fastest_b256']}]")

        rows, failures = evaluate_all(found, test_x, test_y, P.evaluate, on_row=on_row, broken=broken, details=details)
        for row in rows:
            tags = {"method": str(row["method"]), "variant_stage": row["stage"], "runtime": str(row["runtime"]), "threads": str(threads)}
            if row["error"]:
                tags["error"] = row["error"][:5000]
            with st.variant_run(row["variant"], **tags) as vr:
                vr.log_params({"variant_model": str(row["model"]), "act_bits": str(row["act_bits"]), "engines": str(row["engines"])})
                vr.log_metrics({k: float(row[k]) for k in LOGGED if row[k] is not None})
    df = pd.DataFrame(rows, columns=COLUMNS)
    write_csv(VARIANTS_CSV, df, float_format="%.6g")
    summary, latency = records(rows, details, meta, threads)
    write_json(metrics("summary"), summary)
    write_json(metrics("latency"), {**latency, **timings()})
    write_csv(st.plot("variants.csv"), df[["variant", "method", "accuracy", "size_bytes", "latency_ms_b1", "latency_ms_b256"]])
    print(f"evaluate: {len(rows) - len(failures)} variants measured on {', '.join(details.get('engines', []))}, {len(failures)} failed, "
          f"on {meta['dataset']} ({threads} threads) -> {VARIANTS_CSV}")
    if failures:  # the table is written; a non-zero exit keeps DVC from caching it as a complete result
        for line in failures:
            print(f"error: {line}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
