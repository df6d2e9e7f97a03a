"""prune: magnitude / gradient / structured pruning of the baseline + fine-tuning -> variants/prune/.

One variant per ``prune.variants`` key, run in ``prune.workers`` processes (bit-identical to a serial run).
Unstructured variants are stored compactly (bitmask or CSR, compress.prune.sparse_io); structured variants
are smaller dense models. ``imp-*`` variants prune iteratively with retraining (Han et al. 2015): metrics
hold each variant's validation drop against the baseline (the claim on test is the report's, from evaluate).
Only train/val are read here.
"""
from __future__ import annotations

from compress.models import count_params
from compress.prune.export import write_pruned_variant
from compress.prune.variant import (
    check_layers,
    drop_claim,
    prune_variants,
    val_accuracy,
)
from stages.common import Stage


def main() -> None:
    st = Stage("prune", __doc__)
    P, C, meta = st.P, st.P.prune, st.meta
    base, spec = st.baseline()
    for name, v in C.variants.items():  # every layer pattern checked before any work
        st.load(check_layers, base, v, key=f"prune.variants.{name}")
    train, val = st.split("train", "val")
    base_params, base_acc = count_params(base), val_accuracy(base, val)
    summary = {"baseline_val_acc": base_acc, "baseline_params": base_params, "workers": C.workers, "variants": {}}
    out = st.variants
    with st.run() as mlf:

        def done(name: str, res) -> None:
            variant, v = f"prune-{name}", C.variants[name]
            row = write_pruned_variant(out / variant, res, v, variant=variant, dataset=meta["dataset"], seed=P.seed,
                                       storage=C.storage, baseline_params=base_params)
            row.update(cpu_seconds=round(res.cpu_seconds, 1), val_drop=drop_claim(base_acc, row["val_acc"], res.sparsity))
            summary["variants"][variant] = row
            with st.variant_run(variant, method=f"prune-{v.method}") as vr:
                vr.log_params({f"variant.{k}": str(x) for k, x in v.model_dump(mode="json").items()})
                vr.log_metrics({"sparsity": row["sparsity"], "params": row["params"], "val_acc": row["val_acc"],
                                "artifact_bytes": row["size_bytes"], "cpu_seconds": row["cpu_seconds"]})
            print(f"prune: {variant:<28} sparsity {res.sparsity:.4f} params {row['params']:>6} val_acc {row['val_acc']:.4f} "
                  f"bytes {row['size_bytes']} ({row['cpu_seconds']} CPU s)")

        prune_variants(base, spec, C.variants, C.finetune, train, val, seed=P.seed, workers=C.workers, on_result=done,
                       round_ft={n: v.retrain for n, v in C.variants.items() if v.retrain is not None})
        mlf.log_metric("baseline_val_acc", base_acc)
    summary["variants"] = dict(sorted(summary["variants"].items()))
    st.write_metrics(summary)


if __name__ == "__main__":
    main()
