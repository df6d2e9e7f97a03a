"""obd: Optimal Brain Damage (LeCun, Denker & Solla) on the baseline, with magnitude pruning as control.

1. A Hessian-diagonal estimate on calibration batches (``obd.diag``: Gauss-Newton by default; negative
   Hutchinson estimates handled by ``obd.negative``) -> saliencies s_i = ½ H_ii w_i²; the one-shot deletion
   curve (no retraining): training loss vs weights deleted, OBD vs |w|, predicted (Σ s_i) vs actual loss
   increase (LeCun et al. Fig. 1-2).
2. The OBD procedure: (saliencies -> delete ``obd.prune_fraction`` of the remaining weights -> retrain) x
   ``obd.rounds``, and the same loop with |w| as control, in ``obd.workers`` processes. Each OBD round is a
   variant (compact sparse file). Training loss is measured on ``obd.loss_samples`` training images; the
   test split is not read here.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from compress.hessian.hawq import calib_batches
from compress.models import model_from_spec
from compress.prune import obd
from compress.prune.export import write_sparse_variant
from compress.tables import write_csv
from compress.train import seed_everything
from dashboards.methods import obd_figure
from stages.common import Stage
from stages.pipeline import reports


def main() -> None:
    st = Stage("obd", __doc__)
    P, O, meta = st.P, st.P.obd, st.meta
    model, spec = st.baseline()
    calib, train, val = st.split("calib", "train", "val")
    hb = st.load(calib_batches, calib, O.hessian.batch_size, O.hessian.batches, key="obd.hessian")
    n_loss = min(O.loss_samples, len(train[1]))
    lb = [(train[0][i : i + 1000], train[1][i : i + 1000]) for i in range(0, n_loss, 1000)]
    seed_everything(P.seed)
    with st.run() as mlf:
        # 1. one-shot curve from the trained baseline
        one = obd.one_shot(model, hb, lb, O, seed=P.seed)
        d = one["diag"]
        print(f"obd: {d.description} of {one['total']} weights: {d.hvps} passes in {d.seconds:.1f}s; "
              f"negative H_ii estimates: {one['negative_raw']}")
        # 2. iterative OBD (one variant per round) and the magnitude control, in parallel processes
        jobs = obd.iterative_prune_jobs(model, train, val, hb, lb, O, seed=P.seed, workers=O.workers)
        for res, state in zip(*jobs["obd"]):
            m = model_from_spec(spec)
            m.load_state_dict(state)
            name = f"obd-r{res.round}-sp{round(100 * res.sparsity)}"
            write_sparse_variant(st.variants / name, m, name, "obd", "obd", spec, meta["dataset"], P.seed, res.sparsity,
                                 notes=obd.round_notes(res.round, O.diag, O.hessian.samples, O.retrain.max_iterations, O.negative),
                                 extra=dataclasses.asdict(res))
            mlf.log_metrics({"val_acc": res.val_acc, "sparsity": res.sparsity, "loss_retrained": res.loss_retrained}, step=res.round)
        rounds = {s: [dataclasses.asdict(r) | {"method": s} for r in jobs[s][0]] for s in jobs}
        for r in rounds["obd"] + rounds["magnitude"]:
            print(f"obd: {r['method']} round {r['round']}: sparsity {r['sparsity']:.3f}; loss {r['loss_before']:.4f} -> pruned "
                  f"{r['loss_pruned']:.4f} (predicted +{r['predicted_increase']:.4f}, actual +{r['actual_increase']:.4f}) -> "
                  f"retrained {r['loss_retrained']:.4f}; val acc {r['val_acc']:.4f}")
        write_csv(st.plot("curve.csv"), one["curve"])
        write_csv(st.plot("rounds.csv"), rounds["obd"] + rounds["magnitude"])
        fig = obd_figure(one["curve"], rounds, Path(reports("obd")) / "obd_figure.png")
        mlf.log_artifact(str(fig))
        mlf.log_metrics({"hessian_seconds": d.seconds, "one_shot_obd_not_worse_points": one["wins"]})
    st.write_metrics({"loss_split": f"train[:{n_loss}]", "weights": one["total"], "diag": O.diag, "diag_description": d.description,
                      "negative": O.negative, "negative_diag_estimates": one["negative_raw"], "hessian_hvps": d.hvps,
                      "hessian_seconds": d.seconds, "one_shot_obd_not_worse_points": one["wins"], "one_shot_points": one["points"],
                      "workers": O.workers,
                      "final": {m: {k: rounds[m][-1][k] for k in ("sparsity", "loss_retrained", "val_acc")} for m in rounds}})
    print(f"obd: one-shot OBD loss <= magnitude at {one['wins']}/{one['points']} deletion counts")


if __name__ == "__main__":
    main()
