"""prune: magnitude / gradient / structured pruning of the baseline + fine-tuning -> variants/prune/.

Unstructured variants are stored compactly (bitmask or CSR, compress.prune.sparse_io) and run
on the ``sparse-eager`` runtime; structured variants are smaller dense models on ``torch-eager``.
Only train/val are read here: test accuracy comes from the evaluate stage.
"""
from __future__ import annotations

import copy

import torch

from compress.models import count_params
from compress.prune.export import write_pruned_variant
from compress.prune.variant import check_layers, prune_variant, val_accuracy
from compress.train import seed_everything
from stages.common import Stage


def main() -> None:
    st = Stage("prune", __doc__)
    P, C, meta = st.P, st.P.prune, st.meta
    base, spec = st.baseline()
    for name, v in C.variants.items():  # every layer pattern checked before any work
        try:
            check_layers(base, v, key=f"prune.variants.{name}")
        except ValueError as e:
            st.die(f"{st.args.params}: {e}")
    if C.threads:
        torch.set_num_threads(C.threads)
    train, val = st.split("train", "val")
    out = st.variants
    base_params, base_acc = count_params(base), val_accuracy(base, val)
    summary = {"baseline_val_acc": base_acc, "baseline_params": base_params, "variants": {}}

    with st.run() as mlf:
        for name, v in C.variants.items():
            seed_everything(P.seed)
            variant = f"prune-{name}"
            res = prune_variant(copy.deepcopy(base), spec, v, C.finetune, train, val, seed=P.seed, key=f"prune.variants.{name}")
            row = write_pruned_variant(out / variant, res, v, variant=variant, dataset=meta["dataset"], seed=P.seed,
                                       storage=C.storage, baseline_params=base_params)
            summary["variants"][variant] = row
            with st.variant_run(variant, method=f"prune-{v.method}") as vr:
                vr.log_params({f"variant.{k}": str(x) for k, x in v.model_dump(mode="json").items()})
                vr.log_metrics({"sparsity": row["sparsity"], "params": row["params"], "val_acc": row["val_acc"],
                                "artifact_bytes": row["size_bytes"], "train_seconds": sum(h["seconds"] for h in res.history)})
            print(f"prune: {variant:<28} sparsity {res.sparsity:.4f} params {row['params']:>6} val_acc {row['val_acc']:.4f} "
                  f"bytes {row['size_bytes']}")
        mlf.log_metric("baseline_val_acc", base_acc)
    st.write_metrics(summary)


if __name__ == "__main__":
    main()
