"""sr: round-to-nearest vs stochastic rounding in low precision.

1. The stagnation example: GD on f(x) = (x - target)^2 with the iterate in an 8-bit float
   (fp8 e5m2, unit roundoff 2^-3): plots/sr/stagnation.csv (DVC plot) + plots/sr/stagnation.png.
2. (sr.train.enabled) an MLP trained with its weights stored in sr.train.format, updated with
   RN vs SR (Gupta et al. 2015): validation accuracy of both + an fp32 reference (no test data).
"""
from __future__ import annotations

from pathlib import Path

from compress.models import MLP
from compress.quant.formats import get_format
from compress.quant.sr_training import stagnation_demo, train_low_precision
from compress.train import fit, seed_everything
from stages.common import Stage, write_csv


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
        sr_mean, sr_lo, sr_hi = r.sr.mean(0), r.sr.min(0).values, r.sr.max(0).values
        write_csv(st.plot("stagnation.csv"), [{"step": k, "exact": float(r.exact[k]), "rn": float(r.rn[k]), "sr_mean": float(sr_mean[k]),
                                              "sr_min": float(sr_lo[k]), "sr_max": float(sr_hi[k]), "sr_run0": float(r.sr[0, k])}
                                             for k in range(len(r.steps))])
        _plot(r, S, Path(st.plot("stagnation.png")))
        mlf.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
        mlf.log_artifact(st.plot("stagnation.png"))

        # 2. low-precision weight training, RN vs SR (validation accuracy only)
        if T.enabled:
            train, val = st.split("train", "val")
            if T.train_size is not None:
                train = (train[0][: T.train_size], train[1][: T.train_size])
            res = {}
            for mode in ("fp32", "nearest", "stochastic"):
                seed_everything(P.seed)
                model = MLP(meta["input_shape"], meta["num_classes"], hidden=T.hidden)
                if mode == "fp32":
                    from types import SimpleNamespace

                    cfg = SimpleNamespace(epochs=T.epochs, batch_size=T.batch_size, optimizer="sgd", lr=T.lr, weight_decay=0.0,
                                          momentum=0.0, schedule="constant", max_iterations=None, eval_every=0)
                    hist = fit(model, train, val, cfg, seed=P.seed, desc="fp32")
                else:
                    hist = train_low_precision(model, train, val, T.format, mode, epochs=T.epochs, batch_size=T.batch_size,
                                               lr=T.lr, seed=P.seed, progress=True)
                res[mode] = {"val_acc": hist.rows[-1]["val_acc"], "val_loss": hist.rows[-1]["val_loss"]}
                mlf.log_metrics({f"train_{mode}_val_acc": res[mode]["val_acc"]})
            summary["weight_training"] = {"format": T.format, "hidden": T.hidden, "epochs": T.epochs, "lr": T.lr,
                                          "train_size": len(train[1]), "optimizer": "sgd (no momentum)", **res,
                                          "sr_minus_rn_val_acc_pp": 100 * (res["stochastic"]["val_acc"] - res["nearest"]["val_acc"])}
            st.meta = meta
        else:  # the stagnation demo alone reads no data
            summary.update({"dataset": "none (synthetic f(x) = (x - target)^2)", "dataset_substituted": False})
    st.write_metrics(summary)
    print(f"sr: RN stalls at x = {summary['rn_final']:g} (step {summary['rn_stall_step']}), SR mean ends at "
          f"{summary['sr_final_mean']:g}; target {S.target:g}")


def _plot(r, S, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if r.region is not None:
        ax.axhspan(r.region[0], r.region[1], color="tab:red", alpha=0.12,
                   label=f"RN stagnation region [{r.region[0]:g}, {r.region[1]:g}]")
    for i in range(r.sr.shape[0]):
        ax.plot(r.steps, r.sr[i], color="tab:green", alpha=0.15, lw=0.8)
    ax.plot(r.steps, r.sr.mean(0), color="tab:green", lw=2, label=f"SR (mean of {r.sr.shape[0]} runs; thin: runs)")
    ax.plot(r.steps, r.rn, color="tab:red", lw=2, drawstyle="steps-post", label="RN (round to nearest)")
    ax.plot(r.steps, r.exact, color="k", ls="--", lw=1, label="exact GD (float64)")
    ax.axhline(S.target, color="gray", lw=0.8)
    ax.set_xlabel("step k")
    ax.set_ylabel("iterate x_k")
    ax.set_title(f"GD on (x - {S.target:g})^2 in {S.format} (u = 2^{-get_format(S.format).t}), lr = {S.lr}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
