"""train: train the baseline (seeded), save w0 and the trained weights, write the fp32 variants."""
from __future__ import annotations

import json
from pathlib import Path

from compress.checkpoint import save_state_dict
from compress.models import build_model, count_params
from compress.tables import write_csv
from compress.train import fit, pick_device, seed_everything
from compress.variants import model_spec, write_fp32_variant
from stages.common import Stage
from stages.pipeline import BASELINE


def main() -> None:
    st = Stage("train", __doc__)
    P, meta = st.P, st.meta
    seed_everything(P.seed)
    spec = model_spec(P.model.name, P.model.kwargs, meta["input_shape"], meta["num_classes"])
    model = build_model(spec["name"], spec["input_shape"], spec["num_classes"], **spec["kwargs"])
    out = Path(BASELINE)
    save_state_dict(model, out / "w0.safetensors")  # initial weights, for lottery-ticket rewinding
    train, val = st.split("train", "val")
    device = pick_device(P.train.device)

    with st.run() as mlf:
        hist = fit(model, train, val, P.train, seed=P.seed, device=device, desc="train",
                   on_eval=lambda r: mlf.log_metrics({k: r[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr")}, step=r["iteration"]))
        model.cpu()
        save_state_dict(model, out / "model.safetensors")
        (out / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        summary = {"device": str(device), "val_acc": hist.rows[-1]["val_acc"], "val_loss": hist.rows[-1]["val_loss"],
                   "best_val_loss": hist.best_val_loss, "early_stop_iteration": hist.best_iteration,
                   "iterations": hist.iterations, "params": count_params(model)}
        mlf.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlf.log_metric("train_seconds", hist.seconds)
    st.write_metrics(summary)
    write_csv(st.plot("history.csv"), [{k: v for k, v in r.items() if k != "seconds"} for r in hist.rows])

    # The baseline variants: the same fp32 artifact deployed eagerly and (optionally) through torch.compile.
    write_fp32_variant(st.variants / "baseline-fp32", model, variant="baseline-fp32", stage="train", method="baseline",
                       spec=spec, dataset=meta["dataset"], seed=P.seed, notes="fp32 reference")
    if P.train.compiled_variant:
        write_fp32_variant(st.variants / "baseline-fp32-compiled", model, variant="baseline-fp32-compiled",
                           stage="train", method="baseline", spec=spec, dataset=meta["dataset"], seed=P.seed,
                           runtime="torch-compile", notes="fp32 reference (same weights, compiled by inductor)")
    print(f"train: {hist.iterations} iterations in {hist.seconds:.1f}s on {device}; val_acc {summary['val_acc']:.4f}; "
          f"early-stop iteration {hist.best_iteration}")


if __name__ == "__main__":
    main()
