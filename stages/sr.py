"""sr: round-to-nearest vs stochastic rounding in low precision.

1. The stagnation example: GD on f(x) = (x - target)^2 with the iterate in an 8-bit float (fp8 e5m2, unit
   roundoff 2^-3): plots/sr/stagnation.csv (DVC plot) + plots/sr/stagnation.png.
2. (sr.train.enabled) an MLP trained with its weights stored in sr.train.format, updated with RN vs SR
   (Gupta et al. 2015): validation accuracy of both + an fp32 reference (no test data).
"""
from __future__ import annotations

from compress.quant.formats import get_format
from compress.quant.sr_training import (
    compare_weight_training,
    stagnation_demo,
    stagnation_rows,
)
from compress.tables import write_csv
from dashboards.methods import sr_stagnation
from stages.common import Stage


def main() -> None:
    st = Stage("sr", __doc__)
    P, S, T = st.P, st.P.sr, st.P.sr.train
    meta = st.meta
    if not T.enabled:
        st.meta = None  # the stagnation demo alone reads no data
    with st.run(**({} if T.enabled else {"dataset": "none (synthetic)"})) as mlf:
        # 1. stagnation demo
        r = stagnation_demo(S.format, S.target, S.x0, S.lr, S.steps, S.sr_runs, S.rounded, P.seed)
        summary = {"format": S.format, "t": get_format(S.format).t, **r.summary(S.target)}
        write_csv(st.plot("stagnation.csv"), stagnation_rows(r))
        mlf.log_artifact(str(sr_stagnation(r, S.format, S.target, S.lr, st.plot("stagnation.png"))))
        mlf.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
        # 2. low-precision weight training, RN vs SR (validation accuracy only)
        if T.enabled:
            train, val = st.split("train", "val")
            summary["weight_training"] = compare_weight_training(
                meta["input_shape"], meta["num_classes"], train, val, T, P.seed,
                on_result=lambda mode, res: mlf.log_metrics({f"train_{mode}_val_acc": res["val_acc"]}))
            st.meta = meta
        else:  # the stagnation demo alone reads no data
            summary.update({"dataset": "none (synthetic f(x) = (x - target)^2)", "dataset_substituted": False})
    st.write_metrics(summary)
    print(f"sr: RN stalls at x = {summary['rn_final']:g} (step {summary['rn_stall_step']}), SR mean ends at "
          f"{summary['sr_final_mean']:g}; target {S.target:g}")


if __name__ == "__main__":
    main()
