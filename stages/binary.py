"""binary: BinaryConnect (det / stoch, several seeds) and optionally an unregularised fp32 MLP, trained from
scratch on permutation-invariant MNIST in parallel worker processes; 1-bit packed variants + the
paper-comparison table.

The paper table needs TEST error, so this stage reads the test split (the contract's exception
for paper-figure code); every output that holds test numbers says so.
"""
from __future__ import annotations

from compress.parallel import default_workers
from compress.quant.binary import PROTOCOL, paper_table, paper_table_rows, train_runs
from compress.quant.export import write_binary_variant
from compress.tables import write_csv
from dashboards.methods import binary_figure
from stages.common import Stage

TEST_NOTE = "test error measured on the test split by the binary stage (paper-comparison table only; the contract allows it here)"


def main() -> None:
    st = Stage("binary", __doc__)
    B, meta = st.P.binary, st.meta
    train, val, test = st.split("train", "val", "test")
    shape, ncls = meta["input_shape"], meta["num_classes"]
    runs = [(m, s) for m in B.modes for s in B.seeds] + [("fp32", s) for s in B.fp32_seeds]
    curves, rows = [], []
    with st.run() as mlf:
        def on_result(r: dict) -> None:
            name = f"binary-bc-{r['method']}-s{r['seed']}" if r["method"] != "fp32" else f"binary-fp32-mlp-s{r['seed']}"
            rows.append(write_binary_variant(st.variants / name, r, B, shape, ncls, dataset=meta["dataset"], val=val, note=TEST_NOTE))
            for h in r["history"]:
                curves.append({"run": f"{r['method']}-s{r['seed']}", "method": r["method"], "seed": r["seed"], "epoch": h["epoch"],
                               "train_loss": h["train_loss"], "val_loss": h["val_loss"], "val_error": 100 * (1 - h["val_acc"])})
                mlf.log_metrics({f"{r['method']}_s{r['seed']}_val_error": 100 * (1 - h["val_acc"])}, step=h["iteration"])
            mlf.log_metrics({f"{r['method']}_s{r['seed']}_test_error": r["test_error"]})
            print(f"binary: {name} test error {r['test_error']:.2f} % ({r['cpu_seconds']:.0f} CPU s)")

        train_runs(train, val, test, shape, ncls, runs, hidden=B.hidden, cfg=B, lr_scale=B.lr_scale, fp32_lr=B.fp32_lr,
                   workers=B.workers or default_workers(len(runs)), on_result=on_result)
        rows.sort(key=lambda r: (r["method"], r["seed"]))
        curves.sort(key=lambda c: (c["run"], c["epoch"]))
        table = paper_table(rows)
        mlf.log_metrics({f"{m}_test_error_mean": t["mean"] for m, t in table.items()})
        write_csv(st.plot("curves.csv"), curves)
        write_csv(st.plot("paper_table.csv"), paper_table_rows(table, B.epochs))
        mlf.log_artifact(str(binary_figure(table, B.epochs, st.plot("paper_comparison.png"))))
    det = table.get("det", {}).get("mean")
    st.write_metrics({"note": TEST_NOTE, "epochs": B.epochs, "hidden": list(B.hidden), "test_error_pct": table, "runs": rows,
                      "protocol": PROTOCOL, "lr_scale_formula": "1/sqrt(1.5/(fan_in+fan_out))" if B.lr_scale == "glorot" else "1",
                      "schedule": {"epochs": B.epochs, "lr": B.lr, "schedule": B.schedule},
                      "det_mean_le_1_5": None if det is None else bool(det <= 1.5)})
    for m, t in table.items():
        print(f"binary: {m:5s} test error {t['mean']:.2f} ± {t['std']:.2f} % over {t['n']} seeds (paper {t['paper']} %)")


if __name__ == "__main__":
    main()
