"""obd: Optimal Brain Damage (LeCun, Denker & Solla) on the baseline, with magnitude pruning as control.

1. Hutchinson diagonal of the Hessian on calibration batches -> saliencies s_i = ½ H_ii w_i²;
   one-shot deletion curve (no retraining): training loss vs weights deleted, OBD vs |w|, and
   predicted (Σ s_i) vs actual loss increase  (LeCun et al. Fig. 1-2).
2. The OBD procedure: (saliencies -> delete ``obd.prune_fraction`` of the remaining weights ->
   retrain) x ``obd.rounds``; the same loop with |w| scores as control.  Each OBD round is a
   variant (compact sparse file, ``sparse-eager`` runtime).  Training loss is measured on
   ``obd.loss_samples`` training images; the test split is not read here.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch

from compress.hessian import figures
from compress.prune import obd
from compress.train import seed_everything
from compress.prune.export import write_sparse_variant
from stages.common import Stage, write_csv
from stages.pipeline import reports



def main() -> None:
    st = Stage("obd", __doc__)
    P, O, meta = st.P, st.P.obd, st.meta
    model, spec = st.baseline()
    calib, train, val = st.split("calib", "train", "val")
    need = O.hessian.batches * O.hessian.batch_size
    if need > len(calib[1]):
        st.die(f"{st.args.params}: obd.hessian.batches x batch_size = {need} exceeds the {len(calib[1])} calibration images (data.calib_size)")
    seed_everything(P.seed)
    if O.threads is not None:
        torch.set_num_threads(O.threads)
    hb = [(calib[0][i : i + O.hessian.batch_size], calib[1][i : i + O.hessian.batch_size]) for i in range(0, need, O.hessian.batch_size)]
    n_loss = min(O.loss_samples, len(train[1]))
    lb = [(train[0][i : i + 1000], train[1][i : i + 1000]) for i in range(0, n_loss, 1000)]

    REPORT = Path(reports("obd"))
    with st.run() as mlf:
        # 1. one-shot curve from the trained baseline
        d = obd.hessian_diagonal(model, hb, O.diag, O.hessian.samples, seed=P.seed)
        sal = obd.saliency(model, d.diag)
        total = sum(t.numel() for t in sal.values())
        extra, neg = {}, {O.diag: sum(int((v < 0).sum()) for v in d.diag.values())}
        if O.compare_hutchinson and O.diag != "hutchinson":
            dh = obd.hessian_diagonal(model, hb, "hutchinson", O.hessian.samples, seed=P.seed)
            extra["obd-hutchinson"] = obd.saliency(model, dh.diag)
            neg["hutchinson"] = sum(int((v < 0).sum()) for v in dh.diag.values())
        curve = obd.one_shot_curve(model, sal, d.grad, obd.curve_counts(total, O.curve_points, O.curve_max_fraction), lb, extra)
        print(f"obd: {O.diag} Hessian diagonal of {total} weights: {d.hvps} passes in {d.seconds:.1f}s; negative H_ii estimates: {neg}")
        # 2. iterative OBD (variants) and the magnitude control
        rounds: dict[str, list[dict]] = {}

        def save(res: obd.RoundResult, m) -> None:
            name = f"obd-r{res.round}-sp{round(100 * res.sparsity)}"
            write_sparse_variant(st.variants / name, m, name, "obd", "obd", spec, meta["dataset"], P.seed, res.sparsity,
                                 notes=f"OBD round {res.round}: Hutchinson-diagonal saliency ({O.hessian.samples} probes), "
                                       f"{O.retrain.max_iterations} retraining steps", extra=dataclasses.asdict(res))
            mlf.log_metrics({"val_acc": res.val_acc, "sparsity": res.sparsity, "loss_retrained": res.loss_retrained}, step=res.round)

        for scorer in ("obd", "magnitude"):
            m = copy.deepcopy(model)
            rr = obd.iterative_prune(m, train, val, hb, lb, O, seed=P.seed, scorer=scorer, on_round=save if scorer == "obd" else None)
            rounds[scorer] = [dataclasses.asdict(r) | {"method": scorer} for r in rr]
            for r in rr:
                print(f"obd: {scorer} round {r.round}: sparsity {r.sparsity:.3f}; loss {r.loss_before:.4f} -> pruned {r.loss_pruned:.4f} "
                      f"(predicted +{r.predicted_increase:.4f}, actual +{r.actual_increase:.4f}) -> retrained {r.loss_retrained:.4f}; "
                      f"val acc {r.val_acc:.4f}")
        REPORT.mkdir(parents=True, exist_ok=True)
        write_csv(st.plot("curve.csv"), curve)
        write_csv(st.plot("rounds.csv"), rounds["obd"] + rounds["magnitude"])
        figures.obd_figure(curve, rounds, REPORT / "obd_figure.png")
        mlf.log_artifact(str(REPORT / "obd_figure.png"))
        one_shot = {m: {r["removed"]: r["train_loss"] for r in curve if r["method"] == m} for m in ("obd", "magnitude")}
        wins = sum(one_shot["obd"][k] <= one_shot["magnitude"][k] for k in one_shot["obd"] if k > 0)
        summary = {"loss_split": f"train[:{n_loss}]",
                   "weights": total, "diag": O.diag, "negative_diag_estimates": neg, "hessian_hvps": d.hvps, "hessian_seconds": d.seconds,
                   "one_shot_obd_not_worse_points": wins, "one_shot_points": len(one_shot["obd"]) - 1,
                   "final": {m: {k: rounds[m][-1][k] for k in ("sparsity", "loss_retrained", "val_acc")} for m in rounds}}
        mlf.log_metrics({"hessian_seconds": d.seconds, "one_shot_obd_not_worse_points": wins})
    st.write_metrics(summary)
    print(f"obd: one-shot OBD loss <= magnitude at {wins}/{summary['one_shot_points']} deletion counts")


if __name__ == "__main__":
    main()
