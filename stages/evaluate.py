"""evaluate: discover every variant and measure each the same way -> reports/variants.csv.

accuracy (deployed, re-loaded artifact, test set), accuracy_sim (fake-quant form, if any),
size_bytes (deployed files on disk), latency_ms_b1/b256 (median of repeats after warm-up).
metrics/summary.json holds only the deterministic columns, so `dvc repro -f` twice gives the
same file; latencies (which vary run to run) go to metrics/latency.json and the CSV.
A variant whose artifact is missing or corrupt is a row with an `error` (one line: the file and the
stage that rebuilds it); the others are measured and written, then the stage exits 1 so that DVC
does not cache the partial table.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from compress.evaluate import COLUMNS, evaluate_all, set_threads
from compress.variants import scan
from stages.common import Stage, write_json
from stages.pipeline import VARIANTS_CSV, VARIANTS_ROOT, metrics

METRICS = ["accuracy", "accuracy_sim", "size_bytes", "latency_ms_b1", "latency_ms_b256", "params", "avg_weight_bits", "sparsity"]
DETERMINISTIC = ["accuracy", "accuracy_sim", "size_bytes", "params", "avg_weight_bits", "act_bits", "sparsity"]


def main() -> None:
    st = Stage("evaluate", __doc__)
    P, meta = st.P, st.meta
    found, broken = st.load(scan, VARIANTS_ROOT)
    if not found and not broken:
        st.die(f"no variants under {VARIANTS_ROOT}/: run the stages that produce them (dvc repro)")
    threads = set_threads(P.evaluate.threads)
    test_x, test_y = st.split("test")
    with st.run():

        def on_row(row: dict) -> None:
            if row["error"]:
                tqdm.write(f"  {row['variant']:<32} FAILED: {row['error']}")
            else:
                tqdm.write(f"  {row['variant']:<32} acc {row['accuracy']:.4f} size {row['size_bytes']:>9} B "
                           f"b1 {row['latency_ms_b1']:.3f} ms b256 {row['latency_ms_b256']:.3f} ms  [{row['runtime']}]")
            tags = {"method": str(row["method"]), "variant_stage": row["stage"], "runtime": str(row["runtime"]), "threads": str(threads)}
            if row["error"]:
                tags["error"] = row["error"][:5000]
            with st.variant_run(row["variant"], **tags) as vr:
                vr.log_params({"variant_model": str(row["model"]), "act_bits": str(row["act_bits"])})
                vr.log_metrics({k: float(row[k]) for k in METRICS if row[k] is not None})

        rows, failures = evaluate_all(found, test_x, test_y, P.evaluate, on_row=on_row, broken=broken)
    df = pd.DataFrame(rows, columns=COLUMNS)
    Path(VARIANTS_CSV).parent.mkdir(exist_ok=True)
    df.to_csv(VARIANTS_CSV, index=False, float_format="%.6g")
    ok = [r for r in rows if not r["error"]]
    summary = {"dataset": meta["dataset"], "dataset_substituted": meta["substituted"], "n_variants": len(df),
               "variants": {r["variant"]: {k: (round(r[k], 6) if isinstance(r[k], float) else r[k]) for k in DETERMINISTIC}
                            for r in ok}}
    if failures:
        summary["failed"] = {r["variant"]: r["error"] for r in rows if r["error"]}
    write_json(metrics("summary"), summary)
    write_json(metrics("latency"), {"dataset": meta["dataset"], "threads": threads,
                                    "variants": {r["variant"]: {"latency_ms_b1": r["latency_ms_b1"], "latency_ms_b256": r["latency_ms_b256"],
                                                                "runtime": r["runtime"]} for r in ok}})
    df[["variant", "method", "accuracy", "size_bytes", "latency_ms_b1", "latency_ms_b256"]].to_csv(st.plot("variants.csv"), index=False)
    print(f"evaluate: {len(ok)} variants measured, {len(failures)} failed, on {meta['dataset']} ({threads} threads) -> {VARIANTS_CSV}")
    if failures:  # the table is written; a non-zero exit keeps DVC from caching it as a complete result
        for line in failures:
            print(f"error: {line}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
