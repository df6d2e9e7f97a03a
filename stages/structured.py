"""structured: replace Linear layers of a trained dense model by a structured matrix (``structured.structure``;
Monarch: Dao et al. 2022, optimal projection), fine-tune it (dense-to-sparse), quantize the factors, write variants.

Reference: models/baseline when it is the requested architecture (structured.model), otherwise a dense
reference trained here with structured.reference (also written, as <structure>-dense-ref). Variants:
<structure>-projected (before fine-tuning), -finetuned, -finetuned-int<structured.quant_bits>.
"""
from __future__ import annotations

import json
from pathlib import Path

from compress.checkpoint import load_into
from compress.models import build_model
from compress.structured.export import write_structured_variant
from compress.structured.replace import (
    check_plan,
    reference,
    replace_and_finetune,
    summary,
)
from compress.tables import write_csv
from compress.train import pick_device, seed_everything
from compress.variants import write_fp32_variant
from stages.common import Stage
from stages.pipeline import BASELINE


def main() -> None:
    st = Stage("structured", __doc__)
    P, C, meta = st.P, st.P.structured, st.meta
    kind, base = C.structure, Path(BASELINE)
    seed_everything(P.seed)
    spec, source = st.load(reference, C.model, json.loads((base / "spec.json").read_text()) if (base / "spec.json").exists()
                           else None, meta["input_shape"], meta["num_classes"])
    shapes = st.load(check_plan, spec, kind, C.layers, C.nblocks, C.rank)  # every misfit before any work
    dense = build_model(spec["name"], spec["input_shape"], spec["num_classes"], **spec["kwargs"])
    if source == "baseline":
        load_into(dense, base / "model.safetensors")
    train, val = st.split("train", "val")
    out, common, rows = st.variants, dict(dataset=meta["dataset"], seed=P.seed), []
    with st.run(reference=source, structure=kind) as mlf:

        def on_eval(phase: str, offset: int, r: dict) -> None:  # one curve: reference steps, then fine-tuning
            rows.append({"phase": phase, "step": offset + r["iteration"], **r})
            mlf.log_metrics({f"{phase}_{k}": r[k] for k in ("train_loss", "val_loss", "val_acc") if k in r}, step=r["iteration"])

        res = replace_and_finetune(dense, kind, shapes, train, val, C.finetune, seed=P.seed, quant_bits=C.quant_bits,
                                   reference_cfg=None if source == "baseline" else C.reference,
                                   device=pick_device(P.train.device), on_eval=on_eval)
        if source != "baseline":
            write_fp32_variant(out / f"{kind}-dense-ref", res.dense, variant=f"{kind}-dense-ref", stage="structured",
                               method="baseline", spec=spec, **common,
                               notes=f"dense {C.model} reference trained by the structured stage ({C.reference.epochs} epochs)")
        rp, desc = res.replaced, ", ".join(f"{n}: {s.as_dict()}" for n, s in shapes.items())
        extra = {"replaced": rp, "shapes": {n: s.as_dict() for n, s in shapes.items()}, "projection_rel_error": res.errors,
                 "reference": source}
        todo = [(f"{kind}-projected", res.projected, None, "projected, before fine-tuning"),
                (f"{kind}-finetuned", res.tuned, None, f"fine-tuned {C.finetune.epochs} epochs")]
        if C.quant_bits:
            todo.append((f"{kind}-finetuned-int{C.quant_bits}", res.tuned, C.quant_bits, f"fine-tuned, factors int{C.quant_bits} per-channel"))
        for variant, model, bits, what in todo:
            write_structured_variant(out / variant, variant=variant, kind=kind, model=model, base_spec=spec, shapes=shapes,
                                     bits=bits, extra=extra, **common,
                                     notes=f"{kind} {what}; {rp['dense']}->{rp['structured']} weights in replaced layers "
                                           f"({rp['ratio']:.1f}x fewer); {desc}")
        metrics = summary(res, kind, C.model, source)
        mlf.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    st.write_metrics(metrics)
    cols = ("step", "phase", "iteration", "train_loss", "val_loss", "val_acc")
    write_csv(st.plot("history.csv"), [{k: r.get(k, "") for k in cols} for r in rows])
    print(f"structured ({kind}): {rp['dense']} -> {rp['structured']} weights in {list(shapes)} ({rp['ratio']:.1f}x); val acc "
          + ", ".join(f"{k} {v:.4f}" for k, v in res.val_acc.items()) + f" ({meta['dataset']}, reference {source})")


if __name__ == "__main__":
    main()
