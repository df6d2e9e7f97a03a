"""monarch: replace Linear layers of a trained dense model by their optimal Monarch projections
(Dao et al. 2022), fine-tune (dense-to-sparse), quantize the factors (int8), write the variants.

Reference: models/baseline when it is the requested architecture (monarch.model), otherwise a
dense reference trained here with monarch.reference (also written, as monarch-dense-ref).
Variants: monarch-projected (before fine-tuning), monarch-finetuned, monarch-finetuned-int<monarch.quant_bits>.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from compress.checkpoint import load_into
from compress.models import build_model, count_params
from compress.structured.config import REFERENCE_MODELS
from compress.structured.export import replaced_params, spec_matches, write_monarch_variant
from compress.structured.quantize import fake_quantized
from compress.structured.monarch import monarchize, plan, projection_error
from compress.train import evaluate_model, fit, pick_device, seed_everything
from compress.variants import model_spec, write_fp32_variant
from stages.common import Stage, write_csv
from stages.pipeline import BASELINE



def main() -> None:
    st = Stage("monarch", __doc__)
    P, C, meta = st.P, st.P.monarch, st.meta
    seed_everything(P.seed)
    BASE = Path(BASELINE)
    # 1. the dense reference: the baseline if it is the requested architecture, else train one
    base = json.loads((BASE / "spec.json").read_text()) if (BASE / "spec.json").exists() else None
    if C.model == "baseline":
        if base is None:
            st.die("monarch.model = 'baseline' but models/baseline/spec.json is missing: run the train stage first")
        spec, source = base, "baseline"
    else:
        name, kwargs = REFERENCE_MODELS[C.model]
        use_base = base is not None and spec_matches(base, name, kwargs)
        spec = base if use_base else model_spec(name, kwargs, meta["input_shape"], meta["num_classes"])
        source = "baseline" if use_base else "trained here"
    dense = build_model(spec["name"], spec["input_shape"], spec["num_classes"], **spec["kwargs"])
    try:  # 2. every misfit (layer names, block counts, rank) is reported before any work
        shapes = plan(dense, C.layers, C.nblocks, C.rank)
    except ValueError as e:
        st.die(f"{st.args.params}: {e}")
    train, val = st.split("train", "val")
    device = pick_device(P.train.device)  # training only; projection, variants and metrics on the CPU
    out = st.variants
    common = dict(dataset=meta["dataset"], seed=P.seed)
    rows: list[dict] = []

    with st.run(reference=source) as mlf:
        def log(phase: str, offset: int = 0):  # one curve: reference steps, then the projection, then fine-tuning
            def on_eval(r: dict) -> None:
                rows.append({"phase": phase, "step": offset + r["iteration"], **r})
                mlf.log_metrics({f"{phase}_{k}": r[k] for k in ("train_loss", "val_loss", "val_acc")}, step=r["iteration"])
            return on_eval

        ref_steps = 0
        if source == "baseline":
            load_into(dense, BASE / "model.safetensors")
        else:
            ref_steps = fit(dense, train, val, C.reference, seed=P.seed, device=device, desc="monarch dense ref",
                            on_eval=log("reference")).iterations
            write_fp32_variant(out / "monarch-dense-ref", dense, variant="monarch-dense-ref", stage="monarch", method="baseline",
                               spec=spec, **common, notes=f"dense {C.model} reference trained by the monarch stage "
                                                          f"({C.reference.epochs} epochs)")
        dense.cpu().eval()
        # 3. project (optimal per-block SVD) and 4. fine-tune all parameters
        errors = {n: projection_error(dense.get_submodule(n).weight, s) for n, s in shapes.items()}
        projected = monarchize(dense, shapes)
        tuned = monarchize(dense, shapes)
        for phase, m in (("dense", dense), ("projected", projected)):
            vl, va = evaluate_model(m, *val)
            rows.append({"phase": phase, "step": ref_steps, "iteration": 0, "val_loss": vl, "val_acc": va})
        hist = fit(tuned, train, val, C.finetune, seed=P.seed, device=device, desc="monarch fine-tune",
                   on_eval=log("finetune", ref_steps))
        tuned.cpu().eval()
        rp = replaced_params(dense, shapes)
        desc = ", ".join(f"{n}: {s.in_features}->{s.out_features} k={s.nblocks_in} j={s.nblocks_out} r={s.rank}" for n, s in shapes.items())
        extra = {"replaced": rp, "shapes": {n: s.as_dict() for n, s in shapes.items()}, "projection_rel_error": errors,
                 "reference": source}
        todo = [("monarch-projected", projected, None, "projected, before fine-tuning"),
                ("monarch-finetuned", tuned, None, f"fine-tuned {C.finetune.epochs} epochs")]
        qb = C.quant_bits
        if qb:
            todo.append((f"monarch-finetuned-int{qb}", tuned, qb, f"fine-tuned, factors int{qb} per-channel"))
        for variant, model, bits, what in todo:
            write_monarch_variant(out / variant, variant=variant, model=model, base_spec=spec, shapes=shapes, bits=bits,
                                  extra=extra, **common,
                                  notes=f"Monarch {what}; {rp['dense']}->{rp['monarch']} weights in replaced layers "
                                        f"({rp['ratio']:.1f}x fewer); {desc}")
        models = [("dense", dense), ("projected", projected), ("finetuned", tuned)]
        if qb:  # the quantization round trip of the factors: what the packed artifact holds
            models.append(("finetuned_quant", fake_quantized(copy.deepcopy(tuned), qb)))
        val_acc = {name: evaluate_model(m, *val)[1] for name, m in models}
        summary = {"model": C.model,
                   "reference": source, "replaced_weights_dense": rp["dense"], "replaced_weights_monarch": rp["monarch"],
                   "replaced_compression": rp["ratio"], "params_dense": count_params(dense), "params_monarch": count_params(tuned),
                   "projection_rel_error": errors, "finetune_seconds": hist.seconds,
                   **{f"val_acc_{k}": v for k, v in val_acc.items()},
                   "val_acc_drop_pp": 100 * (val_acc["dense"] - val_acc["finetuned"])}
        mlf.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    st.write_metrics(summary)
    cols = ("step", "phase", "iteration", "train_loss", "val_loss", "val_acc")
    write_csv(st.plot("history.csv"), [{k: r.get(k, "") for k in cols} for r in rows])
    print(f"monarch: {rp['dense']} -> {rp['monarch']} weights in {list(shapes)} ({rp['ratio']:.1f}x); val acc dense "
          f"{val_acc['dense']:.4f} projected {val_acc['projected']:.4f} fine-tuned {val_acc['finetuned']:.4f} "
          f"int{qb} {val_acc.get('finetuned_quant', float('nan')):.4f} ({meta['dataset']}, reference {source})")


if __name__ == "__main__":
    main()
