"""train: train the baseline (seeded), save w0 and the trained weights, write the fp32 variants."""
from __future__ import annotations

import json
from pathlib import Path

from compress.checkpoint import save_state_dict
from compress.data import load_meta, load_split
from compress.models import build_model, count_params
from compress.train import fit, pick_device, seed_everything
from compress.variants import Form, Manifest, model_spec, write_variant
from stages.common import load_params_or_exit, mlflow_run, stage_args, write_csv, write_json


def main() -> None:
    args = stage_args(__doc__)
    P = load_params_or_exit(args.params)
    meta = load_meta(P.data.out)
    seed_everything(P.seed)
    spec = model_spec(P.model.name, P.model.kwargs, meta["input_shape"], meta["num_classes"])
    model = build_model(spec["name"], spec["input_shape"], spec["num_classes"], **spec["kwargs"])
    out = Path(P.train.out)
    out.mkdir(parents=True, exist_ok=True)
    save_state_dict(model, out / "w0.safetensors")  # initial weights, for lottery-ticket rewinding
    train, val = load_split(P.data.out, "train"), load_split(P.data.out, "val")
    device = pick_device(P.train.device)

    with mlflow_run(P, "train", ["data", "model", "train"], meta) as mlf:
        hist = fit(model, train, val, P.train, seed=P.seed, device=device, desc="train",
                   on_eval=lambda r: mlf.log_metrics({k: r[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr")}, step=r["iteration"]))
        model.cpu()
        save_state_dict(model, out / "model.safetensors")
        (out / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        summary = {"dataset": meta["dataset"], "dataset_substituted": meta["substituted"], "device": str(device),
                   "val_acc": hist.rows[-1]["val_acc"], "val_loss": hist.rows[-1]["val_loss"],
                   "best_val_loss": hist.best_val_loss, "early_stop_iteration": hist.best_iteration,
                   "iterations": hist.iterations, "params": count_params(model)}
        mlf.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlf.log_metric("train_seconds", hist.seconds)
    write_json("metrics/train.json", summary)
    write_csv("plots/train/history.csv", [{k: v for k, v in r.items() if k != "seconds"} for r in hist.rows])

    # The baseline variants: the same fp32 artifact deployed eagerly and through torch.compile.
    runtimes = [("fp32", "torch-eager")] + ([("fp32-compiled", "torch-compile")] if P.train.compiled_variant else [])
    for name, runtime in runtimes:
        vdir = Path("variants/train") / f"baseline-{name}"
        vdir.mkdir(parents=True, exist_ok=True)
        save_state_dict(model, vdir / "model.safetensors")
        write_variant(vdir, Manifest(
            variant=f"baseline-{name}", stage="train", method="baseline", model=spec, dataset=meta["dataset"],
            seed=P.seed, avg_weight_bits=32.0, act_bits=None, sparsity=0.0, params=count_params(model, nonzero=True),
            deploy=Form(runtime=runtime, files=["model.safetensors"]),
            notes="fp32 reference" + (" (same weights, compiled by inductor)" if runtime == "torch-compile" else "")))
    print(f"train: {hist.iterations} iterations in {hist.seconds:.1f}s on {device}; val_acc {summary['val_acc']:.4f}; "
          f"early-stop iteration {hist.best_iteration}")


if __name__ == "__main__":
    main()
