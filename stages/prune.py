"""prune: magnitude / gradient / structured pruning of the baseline + fine-tuning -> variants/prune/.

Unstructured variants are stored compactly (bitmask or CSR, compress.prune.sparse_io) and run
on the ``sparse-eager`` runtime; structured variants are smaller dense models on ``torch-eager``.
Only train/val are read here: test accuracy comes from the evaluate stage.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch

from compress.checkpoint import load_into, save_state_dict
from compress.data import load_meta, load_split
from compress.models import count_params, prunable_layers
from compress.prune.sparse_io import save_sparse
from compress.prune.variant import check_layers, prune_variant, val_accuracy
from compress.runtimes import model_from_spec
from compress.train import seed_everything
from compress.variants import Form, Manifest, write_variant
from stages.common import die, load_params_or_exit, mlflow_run, stage_args, write_json


def main() -> None:
    args = stage_args(__doc__)
    P = load_params_or_exit(args.params)
    C = P.prune
    meta = load_meta(P.data.out)
    base_dir = Path(C.baseline)
    try:
        spec = json.loads((base_dir / "spec.json").read_text())
    except OSError as e:
        die(f"prune.baseline = {C.baseline!r}: {e.strerror} ({base_dir / 'spec.json'}); run the train stage first")
    base = model_from_spec(spec)
    for name, v in C.variants.items():  # every layer pattern checked before any work
        try:
            check_layers(base, v, key=f"prune.variants.{name}")
        except ValueError as e:
            die(f"{args.params}: {e}")
    load_into(base, base_dir / "model.safetensors")
    if C.threads:
        torch.set_num_threads(C.threads)
    train, val = load_split(P.data.out, "train"), load_split(P.data.out, "val")
    out = Path(C.out)
    shutil.rmtree(out, ignore_errors=True)  # stale variants of removed keys must not survive
    base_params, base_acc = count_params(base), val_accuracy(base, val)
    summary = {"dataset": meta["dataset"], "dataset_substituted": meta["substituted"], "baseline_val_acc": base_acc,
               "baseline_params": base_params, "variants": {}}

    with mlflow_run(P, "prune", ["prune"], meta) as mlf:
        for name, v in C.variants.items():
            seed_everything(P.seed)
            variant = f"prune-{name}"
            res = prune_variant(copy.deepcopy(base), spec, v, C.finetune, train, val, seed=P.seed, key=f"prune.variants.{name}")
            model = res.model.eval()
            vdir = out / variant
            vdir.mkdir(parents=True, exist_ok=True)
            nnz = count_params(model, nonzero=True)
            if v.method == "structured":
                save_state_dict(model, vdir / "model.safetensors")
                deploy = Form(runtime="torch-eager", files=["model.safetensors"])
                notes = (f"structured ({v.norm} norm): {v.sparsity:.0%} of units removed per layer -> widths "
                         f"{res.spec['kwargs'].get('widths', res.spec['kwargs'].get('hidden'))}, a smaller dense model")
            else:
                keys = [f"{n}.weight" for n in prunable_layers(model)]
                layout = save_sparse(model.state_dict(), vdir / "model.safetensors", keys, C.storage)
                fmts = sorted({layout[k]["format"] for k in keys})
                deploy = Form(runtime="sparse-eager", files=["model.safetensors"], options={"formats": fmts})
                notes = (f"{v.method} {v.scope} {v.criterion}, {v.rounds} round(s)"
                         f"{f', L1 lambda {v.l1_lambda:g}' if v.l1_lambda else ''}; stored {'/'.join(fmts)}; "
                         "decoded to dense at load: no sparse-kernel speedup")
            acc = res.history[-1]["val_acc"]
            write_variant(vdir, Manifest(
                variant=variant, stage="prune", method=f"prune-{v.method}", model=res.spec, dataset=meta["dataset"],
                seed=P.seed, avg_weight_bits=32.0, act_bits=None, sparsity=round(res.sparsity, 6), params=nnz,
                deploy=deploy, notes=notes, extra={"config": v.model_dump(mode="json"), "val_acc": acc,  # no timings: reproducible
                                                   "history": [{k: x for k, x in h.items() if k != "seconds"} for h in res.history],
                                                   "baseline_params": base_params}))
            row = {"sparsity": res.sparsity, "params": nnz, "val_acc": acc,
                   "size_bytes": sum((vdir / f).stat().st_size for f in deploy.files)}
            summary["variants"][variant] = row
            with mlflow_run(P, "prune", ["prune"], meta, run_name=variant, nested=True,
                            extra_tags={"variant": variant, "method": f"prune-{v.method}"}) as vr:
                vr.log_params({f"variant.{k}": str(x) for k, x in v.model_dump(mode="json").items()})
                vr.log_metrics({"sparsity": row["sparsity"], "params": row["params"], "val_acc": acc,
                                "artifact_bytes": row["size_bytes"], "train_seconds": sum(h["seconds"] for h in res.history)})
            print(f"prune: {variant:<28} sparsity {res.sparsity:.4f} params {nnz:>6} val_acc {acc:.4f} "
                  f"bytes {row['size_bytes']}")
        mlf.log_metric("baseline_val_acc", base_acc)
    write_json("metrics/prune.json", summary)


if __name__ == "__main__":
    main()
