"""evaluate: discover every variant and measure each the same way -> reports/variants.csv.

accuracy (deployed, re-loaded artifact, test set), accuracy_sim (fake-quant form, if any),
size_bytes (deployed files on disk), latency_ms_b1/b256 (median of repeats after warm-up).
metrics/summary.json holds only the deterministic columns, so `dvc repro -f` twice gives the
same file; latencies (which vary run to run) go to metrics/latency.json and the CSV.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from compress.evaluate import COLUMNS, evaluate_variant, set_threads
from compress.variants import discover
from stages.common import Stage, write_json
from stages.pipeline import VARIANTS_CSV, VARIANTS_ROOT, metrics

METRICS = ["accuracy", "accuracy_sim", "size_bytes", "latency_ms_b1", "latency_ms_b256", "params", "avg_weight_bits", "sparsity"]
DETERMINISTIC = ["accuracy", "accuracy_sim", "size_bytes", "params", "avg_weight_bits", "act_bits", "sparsity"]


def main() -> None:
    st = Stage("evaluate", __doc__)
    P, meta = st.P, st.meta
    found = st.load(discover, VARIANTS_ROOT)
    if not found:
        st.die(f"no variants under {VARIANTS_ROOT}/: run the stages that produce them (dvc repro)")
    threads = set_threads(P.evaluate.threads)
    test_x, test_y = st.split("test")
    rows = []
    with st.run():
        for folder, man in tqdm(found, desc="evaluate variants"):
            row = evaluate_variant(folder, man, test_x, test_y, P.evaluate)
            rows.append(row)
            tqdm.write(f"  {row['variant']:<32} acc {row['accuracy']:.4f} size {row['size_bytes']:>9} B "
                       f"b1 {row['latency_ms_b1']:.3f} ms b256 {row['latency_ms_b256']:.3f} ms  [{row['runtime']}]")
            with st.variant_run(row["variant"], method=row["method"], variant_stage=row["stage"], runtime=row["runtime"],
                                threads=str(threads)) as vr:
                vr.log_params({"variant_model": row["model"], "act_bits": str(row["act_bits"])})
                vr.log_metrics({k: float(row[k]) for k in METRICS if row[k] is not None})
    df = pd.DataFrame(rows, columns=COLUMNS)
    Path(VARIANTS_CSV).parent.mkdir(exist_ok=True)
    df.to_csv(VARIANTS_CSV, index=False, float_format="%.6g")
    summary = {"dataset": meta["dataset"], "dataset_substituted": meta["substituted"], "n_variants": len(df),
               "variants": {r["variant"]: {k: (round(r[k], 6) if isinstance(r[k], float) else r[k]) for k in DETERMINISTIC}
                            for r in rows}}
    write_json(metrics("summary"), summary)
    write_json(metrics("latency"), {"dataset": meta["dataset"], "threads": threads,
                                        "variants": {r["variant"]: {"latency_ms_b1": r["latency_ms_b1"], "latency_ms_b256": r["latency_ms_b256"],
                                                                    "runtime": r["runtime"]} for r in rows}})
    df[["variant", "method", "accuracy", "size_bytes", "latency_ms_b1", "latency_ms_b256"]].to_csv(st.plot("variants.csv"), index=False)
    print(f"evaluate: {len(df)} variants on {meta['dataset']} ({threads} threads) -> {VARIANTS_CSV}")


if __name__ == "__main__":
    main()
